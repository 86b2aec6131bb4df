//! VM controller heartbeats against the fake API server: running instances are seen, one
//! whose Lease stops changing is gone after its lifetime.

use std::{collections::BTreeSet, time::Duration};

use bowline_fake_kube::FakeApiServer;
use bowline_kube::heartbeat::{Heartbeats, lease_name};

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_is_alive_while_its_lease_changes() {
    let server = FakeApiServer::start().await;
    let lifetime = Duration::from_secs(2);
    let mut a = Heartbeats::new(server.client(), "bowline-system", "bowline-a", lifetime);
    let b = Heartbeats::new(server.client(), "bowline-system", "bowline-b", lifetime);
    a.beat().await.unwrap();
    b.beat().await.unwrap();
    assert_eq!(a.alive().await.unwrap(), set(&["bowline-a", "bowline-b"]));
    let lease = server
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            Some("bowline-system"),
            &lease_name("bowline-b"),
        )
        .expect("b's lease");
    assert_eq!(lease["spec"]["holderIdentity"], "bowline-b");
    assert_eq!(
        lease["metadata"]["labels"]["bowline.io/vm-controller"],
        "true"
    );

    // b keeps beating for a while, then stops (a crash); a goes on.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        a.beat().await.unwrap();
        b.beat().await.unwrap();
        assert_eq!(a.alive().await.unwrap(), set(&["bowline-a", "bowline-b"]));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.beat().await.unwrap();
    assert_eq!(
        a.alive().await.unwrap(),
        set(&["bowline-a", "bowline-b"]),
        "within its lifetime"
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    a.beat().await.unwrap();
    let liveness = a.read().await.unwrap();
    assert_eq!(liveness.running, set(&["bowline-a"]), "b is gone");
    assert_eq!(liveness.stopped, set(&["bowline-b"]));

    // A new observer gives an unchanging Lease one lifetime before calling it gone.
    let mut c = Heartbeats::new(server.client(), "bowline-system", "bowline-c", lifetime);
    assert!(c.alive().await.unwrap().contains("bowline-b"));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(!c.alive().await.unwrap().contains("bowline-b"));
}
