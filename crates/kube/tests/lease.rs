//! Two replicas on one Lease: exactly one leads; a stopped leader hands over at once, a
//! crashed one after the lease duration.

use std::time::Duration;

use bowline_fake_kube::FakeApiServer;
use bowline_kube::{
    Credentials,
    lease::{Leadership, LeaseConfig, campaign},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        duration: Duration::from_secs(1),
        retry: Duration::from_millis(100),
        renew_deadline: Duration::from_millis(600),
        ..LeaseConfig::new("bowline-system", "bowline", identity)
    }
}

struct Replica {
    leadership: watch::Receiver<Leadership>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn replica(server: &FakeApiServer, identity: &str) -> Replica {
    let (tx, leadership) = watch::channel(Leadership::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(campaign(
        Credentials::Client(server.client()),
        config(identity),
        tx,
        stop.clone(),
    ));
    Replica {
        leadership,
        stop,
        task,
    }
}

/// Watches both replicas for `duration`, failing if both ever lead at once; who led last.
async fn observe(a: &Replica, b: &Replica, duration: Duration) -> (bool, bool) {
    let end = tokio::time::Instant::now() + duration;
    loop {
        let (la, lb) = (a.leadership.borrow().leading, b.leadership.borrow().leading);
        assert!(!(la && lb), "two leaders at once");
        if tokio::time::Instant::now() >= end {
            return (la, lb);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn one_leader_at_a_time_and_failover() {
    let server = FakeApiServer::start().await;
    let a = replica(&server, "a");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = replica(&server, "b");
    assert_eq!(
        observe(&a, &b, Duration::from_millis(1500)).await,
        (true, false),
        "the first replica keeps the lease by renewing it"
    );
    assert_eq!(b.leadership.borrow().holder.as_deref(), Some("a"));

    // A stopped leader releases the lease: the other takes over well within its duration.
    a.stop.cancel();
    a.task.await.unwrap();
    assert!(!a.leadership.borrow().leading);
    let mut b_leadership = b.leadership.clone();
    tokio::time::timeout(
        Duration::from_millis(600),
        b_leadership.wait_for(|l| l.leading),
    )
    .await
    .expect("handed over on release")
    .unwrap();

    // A crashed leader (no release): the follower waits out the lease, then takes it.
    let c = replica(&server, "c");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!c.leadership.borrow().leading);
    b.task.abort();
    let mut c_leadership = c.leadership.clone();
    let started = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), c_leadership.wait_for(|l| l.leading))
        .await
        .expect("taken over after the lease duration")
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "not before the crashed leader's lease could have expired"
    );
    let lease = server
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            Some("bowline-system"),
            "bowline",
        )
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "c");
    assert_eq!(lease["spec"]["leaseTransitions"], 2);
}
