//! A Kubernetes member against the fake API server: listing, changes, relists that catch
//! deletions, missing CRDs, an unreachable server and rotated credentials.

use std::{path::PathBuf, time::Duration};

use bowline_fake_kube::FakeApiServer;
use bowline_kube::{Credentials, KubeMember, WatchOptions};
use bowline_model::{Change, EventBody, MemberName, Object, ObjectKind, SourceEvent};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Member {
    server: FakeApiServer,
    events: mpsc::Receiver<SourceEvent>,
    kubeconfig: PathBuf,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start(server: FakeApiServer, token: &str) -> Member {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig_yaml(token)).unwrap();
    let (tx, events) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let member = KubeMember {
        member: MemberName::new("west"),
        credentials: Credentials::Kubeconfig {
            path: kubeconfig.clone(),
            context: None,
        },
        options: WatchOptions {
            recheck: Duration::from_millis(200),
            credential_check: Duration::from_millis(50),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            refused_retry: Duration::from_secs(600),
        },
    };
    tokio::spawn(member.run(tx, stop.clone()));
    Member {
        server,
        events,
        kubeconfig,
        stop,
        _dir: dir,
    }
}

impl Member {
    /// The next event for which `want` is true (others are skipped); fails after 20 s,
    /// naming the events skipped.
    async fn until(&mut self, what: &str, want: impl Fn(&EventBody) -> bool) -> EventBody {
        let mut skipped = Vec::new();
        let wait = async {
            loop {
                let event = self.events.recv().await.expect("the source is running");
                assert_eq!(event.member, MemberName::new("west"));
                if want(&event.body) {
                    return event.body;
                }
                skipped.push(format!("{:?}", event.body));
            }
        };
        let found = tokio::time::timeout(Duration::from_secs(20), wait).await;
        found.unwrap_or_else(|_| panic!("no event: {what}; skipped {skipped:#?}"))
    }

    async fn reset(&mut self) -> (Vec<String>, Vec<String>) {
        match self
            .until("a full listing", |b| matches!(b, EventBody::Reset { .. }))
            .await
        {
            EventBody::Reset {
                objects,
                rejections,
            } => (
                names(objects.iter().map(|o| o.key())),
                rejections.iter().map(|r| r.message.clone()).collect(),
            ),
            _ => unreachable!(),
        }
    }
}

fn names(keys: impl Iterator<Item = bowline_model::ObjectKey>) -> Vec<String> {
    let mut out: Vec<String> = keys
        .map(|k| format!("{}/{}/{}", k.kind, k.namespace, k.name))
        .collect();
    out.sort();
    out
}

fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"clusterIP": "10.0.0.7", "ports": [{"name": "http", "port": 80}]},
    })
}

fn slice(name: &str, service: &str, address: &str) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": true}}],
        "ports": [{"name": "http", "port": 8080}],
    })
}

fn cluster_id(id: &str) -> Value {
    json!({
        "apiVersion": "about.k8s.io/v1alpha1", "kind": "ClusterProperty",
        "metadata": {"name": "cluster.clusterset.k8s.io"},
        "spec": {"value": id},
    })
}

#[tokio::test]
async fn the_first_event_lists_every_kind_and_later_ones_are_changes() {
    let server = FakeApiServer::start().await;
    server.install_bowline_crds();
    server.apply_json(service("cart"));
    server.apply_json(slice("cart-1", "cart", "10.1.0.1"));
    server.apply_json(cluster_id("west"));
    // Bowline's own writes are not read back, as in a manifest directory.
    let mut own = slice("imported-cart-east-ipv4", "cart", "10.2.0.1");
    own["metadata"]["labels"]["bowline.io/managed-by"] = json!("mcs-controller");
    server.apply_json(own);
    // An invalid object is refused, naming the field, and the rest still works.
    let mut bad = service("broken");
    bad["spec"]["clusterIP"] = json!("not-an-ip");
    server.apply_json(bad);
    let mut member = start(server, "t").await;

    let (objects, rejections) = member.reset().await;
    assert_eq!(
        objects,
        [
            "ClusterProperty//cluster.clusterset.k8s.io",
            "EndpointSlice/shop/cart-1",
            "Service/shop/cart"
        ]
    );
    assert_eq!(rejections.len(), 1, "{rejections:?}");
    assert!(rejections[0].contains("clusterIP"), "{rejections:?}");

    member
        .server
        .apply_json(slice("cart-2", "cart", "10.1.0.2"));
    let body = member
        .until("the new slice", |b| matches!(b, EventBody::Changes { .. }))
        .await;
    let EventBody::Changes { changes, .. } = body else {
        unreachable!()
    };
    assert!(
        matches!(&changes[..], [Change::Apply(o)] if &*o.key().name == "cart-2"),
        "{changes:?}"
    );

    member.server.delete(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        Some("shop"),
        "cart-1",
    );
    let body = member
        .until("the deletion", |b| matches!(b, EventBody::Changes { .. }))
        .await;
    let EventBody::Changes { changes, .. } = body else {
        unreachable!()
    };
    assert!(
        matches!(&changes[..], [Change::Delete(k)] if &*k.name == "cart-1"),
        "{changes:?}"
    );

    // An object that becomes one of Bowline's is no longer read: as if deleted.
    let mut taken = slice("cart-2", "cart", "10.1.0.2");
    taken["metadata"]["labels"]["bowline.io/managed-by"] = json!("mcs-controller");
    member.server.apply_json(taken);
    let body = member
        .until("the slice that became Bowline's", |b| {
            matches!(b, EventBody::Changes { .. })
        })
        .await;
    let EventBody::Changes { changes, .. } = body else {
        unreachable!()
    };
    assert!(
        matches!(&changes[..], [Change::Delete(k)] if &*k.name == "cart-2"),
        "{changes:?}"
    );
    // Bowline's own writes (a member holds ten times more of them than of its own slices
    // at scale) are left out by the API server, not sent and dropped.
    let reads: Vec<_> = member
        .server
        .requests()
        .into_iter()
        .filter(|r| (r.verb == "list" || r.verb == "watch") && r.resource == "endpointslices")
        .collect();
    assert!(!reads.is_empty());
    assert!(
        reads
            .iter()
            .all(|r| r.label_selector.as_deref() == Some("!bowline.io/managed-by")),
        "{reads:?}"
    );
}

#[tokio::test]
async fn a_member_that_returns_is_relisted_and_deletions_missed_meanwhile_are_caught() {
    let server = FakeApiServer::start().await;
    server.install_bowline_crds();
    server.apply_json(service("cart"));
    server.apply_json(slice("cart-1", "cart", "10.1.0.1"));
    server.apply_json(slice("cart-2", "cart", "10.1.0.2"));
    let mut member = start(server, "t").await;
    member.reset().await;

    member.server.set_reachable(false).await;
    let body = member
        .until("the member is stale", |b| {
            matches!(b, EventBody::SourceError(_))
        })
        .await;
    let EventBody::SourceError(message) = body else {
        unreachable!()
    };
    assert!(!message.is_empty());
    // Deleted while Bowline could not see it, and the history compacted: only a relist
    // can tell.
    member.server.delete(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        Some("shop"),
        "cart-2",
    );
    member.server.compact();
    member.server.set_reachable(true).await;

    let (objects, _) = member.reset().await;
    assert_eq!(
        objects,
        ["EndpointSlice/shop/cart-1", "Service/shop/cart"],
        "the member is sent whole again, without what was deleted meanwhile"
    );
}

#[tokio::test]
async fn missing_crds_are_reported_and_picked_up_once_installed() {
    let server = FakeApiServer::start().await;
    server.apply_json(service("cart"));
    let mut member = start(server, "t").await;

    let body = member
        .until(
            "missing kinds",
            |b| matches!(b, EventBody::Missing(m) if m.len() == 6),
        )
        .await;
    let EventBody::Missing(missing) = body else {
        unreachable!()
    };
    let export = &missing[&ObjectKind::ServiceExport];
    assert!(
        export.contains("serviceexports.multicluster.x-k8s.io")
            && export.contains("bowline install --crds-only"),
        "{export}"
    );
    let (objects, _) = member.reset().await;
    assert_eq!(
        objects,
        ["Service/shop/cart"],
        "everything else keeps working"
    );

    member.server.install_bowline_crds();
    member.server.apply_json(cluster_id("west"));
    // Each kind finds its CRD on its own: the ClusterProperty may be listed before the last
    // kind is found, so both are awaited in either order. The property arrives as a change,
    // or inside a whole listing if a watch failed on the way.
    let property = |o: &Object| o.key().kind == ObjectKind::ClusterProperty;
    let (mut complete, mut listed) = (false, false);
    while !(complete && listed) {
        let body = member
            .until("no kind missing, and the ClusterProperty", |b| match b {
                EventBody::Missing(m) => !complete && m.is_empty(),
                EventBody::Changes { changes, .. } => changes
                    .iter()
                    .any(|c| matches!(c, Change::Apply(o) if property(o))),
                EventBody::Reset { objects, .. } => objects.iter().any(property),
                _ => false,
            })
            .await;
        match body {
            EventBody::Missing(_) => complete = true,
            _ => listed = true,
        }
    }
}

#[tokio::test]
async fn a_refused_credential_is_reported_and_a_rotated_one_used_without_a_restart() {
    let server = FakeApiServer::start().await;
    server.install_bowline_crds();
    server.set_token(Some("first".into()));
    server.apply_json(service("cart"));
    let mut member = start(server, "first").await;
    member.reset().await;

    // The token expires and the watches are cut: reconnecting, the server refuses it.
    member.server.set_token(Some("second".into()));
    member.server.set_reachable(false).await;
    member.server.apply_json(service("cart-v2"));
    member.server.set_reachable(true).await;
    let body = member
        .until(
            "the refusal",
            |b| matches!(b, EventBody::SourceError(m) if m.contains("401")),
        )
        .await;
    let EventBody::SourceError(message) = body else {
        unreachable!()
    };
    assert!(
        message.contains(&member.kubeconfig.display().to_string()),
        "names the credentials to rotate: {message}"
    );
    let refused = member.server.requests().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        member.server.requests().len() <= refused + 11,
        "a refused credential is not retried in a loop"
    );

    // The kubeconfig is rewritten with the new token.
    std::fs::write(&member.kubeconfig, member.server.kubeconfig_yaml("second")).unwrap();
    let (objects, _) = member.reset().await;
    assert_eq!(objects, ["Service/shop/cart", "Service/shop/cart-v2"]);
}
