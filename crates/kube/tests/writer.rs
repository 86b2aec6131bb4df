//! The server-side-apply writer against the fake API server: what is applied, what is left
//! alone, tampering restored, garbage removed, conflicts and throttling retried.

use std::{sync::Arc, time::Duration};

use bowline_fake_kube::FakeApiServer;
use bowline_kube::{Credentials, KubeWriter, WriteOptions};
use bowline_mcs::{WriteKey, WriteKind, WriteSet, writer::Writer};
use serde_json::{Value, json};

fn import(ports: &[u16]) -> Value {
    json!({
        "apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport",
        "metadata": {"name": "cart", "namespace": "shop",
                     "labels": {"bowline.io/managed-by": "mcs-controller"}},
        "spec": {"type": "ClusterSetIP", "ips": ["241.0.0.1"],
                 "ports": ports.iter().map(|p| json!({"name": format!("p{p}"), "protocol": "TCP", "port": p})).collect::<Vec<_>>()},
        "status": {"clusters": [{"cluster": "east"}]},
    })
}

fn imported_slice(name: &str) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "shop",
                     "labels": {"bowline.io/managed-by": "mcs-controller",
                                "multicluster.kubernetes.io/service-name": "cart",
                                "multicluster.kubernetes.io/source-cluster": "east"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.1.0.1"], "conditions": {"ready": true}}],
        "ports": [{"name": "p80", "port": 8080, "protocol": "TCP"}],
    })
}

fn export_status(reason: &str) -> Value {
    json!({
        "apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceExport",
        "metadata": {"name": "cart", "namespace": "shop"},
        "status": {"conditions": [{"type": "Valid", "status": "True", "reason": reason,
                                   "message": "", "lastTransitionTime": "2026-11-30T00:00:00Z"}]},
    })
}

fn desired(objects: &[(WriteKind, &str, Value)]) -> WriteSet {
    objects
        .iter()
        .map(|(kind, name, v)| (WriteKey::new(*kind, "shop", name), Arc::new(v.into())))
        .collect()
}

fn writer(server: &FakeApiServer) -> KubeWriter {
    KubeWriter::new(
        Credentials::Client(server.client()),
        tokio::runtime::Handle::current(),
        WriteOptions {
            sweep: Duration::ZERO,
            attempts: 5,
            backoff: Duration::from_millis(10),
        },
        tokio_util::sync::CancellationToken::new(),
    )
}

/// Runs `f` on a blocking thread, as the MCS loop does.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

fn writes(server: &FakeApiServer) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.verb == "patch" || r.verb == "delete")
        .map(|r| {
            format!(
                "{} {}{} {}",
                r.verb,
                r.resource,
                r.subresource.map(|s| format!("/{s}")).unwrap_or_default(),
                r.name.unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_what_differs_restores_tampering_and_removes_garbage() {
    let server = FakeApiServer::start().await;
    server.install_bowline_crds();
    // The user's ServiceExport, whose status is Bowline's; and garbage of an earlier run.
    server.apply_json(json!({
        "apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
        "metadata": {"name": "cart", "namespace": "shop"},
    }));
    server.apply_json(imported_slice("imported-cart-gone-ipv4"));
    let want = desired(&[
        (WriteKind::ServiceImport, "cart", import(&[80])),
        (
            WriteKind::EndpointSlice,
            "imported-cart-east-ipv4",
            imported_slice("imported-cart-east-ipv4"),
        ),
        (
            WriteKind::ServiceExportStatus,
            "cart",
            export_status("Exported"),
        ),
    ]);

    let mut w = writer(&server);
    let (mut w, existing) = blocking(move || {
        let existing = w.read().unwrap();
        (w, existing)
    })
    .await;
    assert!(
        existing.contains_key(&WriteKey::new(
            WriteKind::ServiceExportStatus,
            "shop",
            "cart"
        )),
        "what the controller resumes from is read back: {existing:?}"
    );
    assert!(
        existing.keys().all(|k| k.kind != WriteKind::EndpointSlice),
        "imported slices are derived afresh, not read back"
    );
    server.clear_requests();
    let want2 = want.clone();
    let (mut w, report) = blocking(move || {
        let report = w.reconcile(&want2).unwrap();
        (w, report)
    })
    .await;
    assert_eq!((report.written, report.deleted), (3, 1));
    let mut done = writes(&server);
    done.sort();
    assert_eq!(
        done,
        [
            "delete endpointslices imported-cart-gone-ipv4",
            "patch endpointslices imported-cart-east-ipv4",
            "patch serviceexports/status cart",
            "patch serviceimports cart",
            "patch serviceimports/status cart",
        ]
    );
    assert!(
        server
            .requests()
            .iter()
            .filter(|r| r.verb == "patch")
            .all(|r| r.field_manager.as_deref() == Some("bowline")),
        "every write is a server-side apply by the field manager bowline"
    );
    let stored = server
        .get(
            "multicluster.x-k8s.io/v1beta1",
            "ServiceImport",
            Some("shop"),
            "cart",
        )
        .unwrap();
    assert_eq!(stored["spec"]["ips"], json!(["241.0.0.1"]));
    assert_eq!(stored["status"]["clusters"], json!([{"cluster": "east"}]));
    let export = server
        .get(
            "multicluster.x-k8s.io/v1beta1",
            "ServiceExport",
            Some("shop"),
            "cart",
        )
        .unwrap();
    assert_eq!(export["status"]["conditions"][0]["reason"], "Exported");

    // Nothing changed: nothing is written.
    server.clear_requests();
    let want2 = want.clone();
    let (mut w, report) = blocking(move || {
        let report = w.reconcile(&want2).unwrap();
        (w, report)
    })
    .await;
    assert_eq!((report.written, report.deleted), (0, 0));
    assert_eq!(writes(&server), Vec::<String>::new());

    // Someone edits the ServiceImport: it is restored.
    let mut edited = stored.clone();
    edited["spec"]["ips"] = json!(["241.0.0.99"]);
    server.apply_json(edited);
    let want2 = want.clone();
    let (mut w, report) = blocking(move || {
        let report = w.reconcile(&want2).unwrap();
        (w, report)
    })
    .await;
    assert_eq!(report.written, 1);
    let stored = server
        .get(
            "multicluster.x-k8s.io/v1beta1",
            "ServiceImport",
            Some("shop"),
            "cart",
        )
        .unwrap();
    assert_eq!(stored["spec"]["ips"], json!(["241.0.0.1"]));

    // No longer desired: Bowline's objects go, the user's ServiceExport stays. One of them
    // is deleted by someone else first: whether or not its watch event has arrived, it is not
    // counted as deleted by Bowline (a 404 is nothing done).
    assert!(server.delete(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        Some("shop"),
        "imported-cart-east-ipv4"
    ));
    let report = blocking(move || w.reconcile(&WriteSet::new()).unwrap()).await;
    assert_eq!(report.deleted, 1);
    assert!(
        server
            .get(
                "multicluster.x-k8s.io/v1beta1",
                "ServiceExport",
                Some("shop"),
                "cart"
            )
            .is_some()
    );
    assert!(
        server
            .list("discovery.k8s.io/v1", "EndpointSlice")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_holding_many_objects_is_listed_a_page_at_a_time_and_not_rewritten() {
    let server = FakeApiServer::start().await;
    server.install_bowline_crds();
    let names: Vec<String> = (0..600)
        .map(|i| format!("imported-cart-{i}-ipv4"))
        .collect();
    for name in &names {
        server.apply_json(imported_slice(name));
    }
    // Desired: all but the last, as they are.
    let want = desired(
        &names[..599]
            .iter()
            .map(|n| (WriteKind::EndpointSlice, n.as_str(), imported_slice(n)))
            .collect::<Vec<_>>(),
    );

    let mut w = writer(&server);
    let mut w = blocking(move || {
        w.read().unwrap();
        w
    })
    .await;
    let lists: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.verb == "list" && r.resource == "endpointslices")
        .collect();
    assert!(lists.len() >= 3, "{lists:?}");
    assert!(
        lists.iter().all(|r| r.limit.is_some_and(|l| l <= 250)),
        "{lists:?}"
    );

    server.clear_requests();
    // Every page was read: none of the 599 is rewritten, the stray one is deleted.
    let report = blocking(move || w.reconcile(&want).unwrap()).await;
    assert_eq!((report.written, report.deleted), (0, 1));
    assert_eq!(
        writes(&server),
        [format!("delete endpointslices {}", names[599])]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_and_throttling_are_retried() {
    let server = FakeApiServer::start().await;
    server.install_bowline_crds();
    server.fail_next("patch", "serviceimports", 409, 2);
    let want = desired(&[(WriteKind::ServiceImport, "cart", import(&[80]))]);
    let mut w = writer(&server);
    let report = blocking(move || {
        w.read().unwrap();
        w.reconcile(&want).unwrap()
    })
    .await;
    assert_eq!(report.written, 1);
    let patches = server
        .requests()
        .iter()
        .filter(|r| r.verb == "patch" && r.subresource.is_none())
        .count();
    assert_eq!(patches, 3, "two conflicts, then the apply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_export_is_not_rewritten_for_its_server_set_creation_time() {
    let server = FakeApiServer::start().await;
    server.install_bowline_crds();
    let want = desired(&[(
        WriteKind::ServiceExport,
        "cart",
        json!({
            "apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceExport",
            "metadata": {"name": "cart", "namespace": "shop",
                         "creationTimestamp": "2020-01-01T00:00:00Z",
                         "labels": {"bowline.io/managed-by": "auto-export"}},
            "spec": {},
            "status": {"conditions": []},
        }),
    )]);
    let mut w = writer(&server);
    let reports = blocking(move || {
        w.read().unwrap();
        [w.reconcile(&want).unwrap(), w.reconcile(&want).unwrap()]
    })
    .await;
    assert_eq!(reports[0].written, 1);
    assert_eq!(
        reports[1].written, 0,
        "the API server's creationTimestamp is not a difference"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_credential_is_used_for_the_next_write() {
    let server = FakeApiServer::start().await;
    server.install_bowline_crds();
    server.set_token(Some("first".into()));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig_yaml("first")).unwrap();
    let mut w = KubeWriter::new(
        Credentials::Kubeconfig {
            path: kubeconfig.clone(),
            context: None,
        },
        tokio::runtime::Handle::current(),
        WriteOptions::default(),
        tokio_util::sync::CancellationToken::new(),
    );
    let want = desired(&[(WriteKind::ServiceImport, "cart", import(&[80]))]);
    let want2 = want.clone();
    let mut w = blocking(move || {
        w.read().unwrap();
        w.reconcile(&want2).unwrap();
        w
    })
    .await;

    // The token is rotated on the server: the writer's requests are refused, and say so.
    server.set_token(Some("second".into()));
    let want2 = desired(&[(WriteKind::ServiceImport, "cart", import(&[80, 81]))]);
    let want3 = want2.clone();
    let (mut w, refused) = blocking(move || {
        let refused = w.reconcile(&want3).unwrap_err().to_string();
        (w, refused)
    })
    .await;
    assert!(
        refused.contains("401") || refused.contains("Unauthorized"),
        "{refused}"
    );

    // The kubeconfig is rewritten: the next write uses it, no new writer needed.
    std::fs::write(&kubeconfig, server.kubeconfig_yaml("second")).unwrap();
    let report = blocking(move || w.reconcile(&want2).unwrap()).await;
    assert_eq!(report.written, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_entry_is_put_with_its_status_updated_and_removed() {
    let server = FakeApiServer::start().await;
    server.install_bowline_crds();
    const NAME: &str = "legacy-192.0.2.5";
    let live = |server: &FakeApiServer| {
        server.get(
            "networking.istio.io/v1",
            "WorkloadEntry",
            Some("demo"),
            NAME,
        )
    };
    let entry = |annotations: Value, healthy: &str| {
        Arc::new(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
            "metadata": {"name": NAME, "namespace": "demo", "annotations": annotations},
            "spec": {"address": "192.0.2.5", "labels": {"app": "legacy"}},
            "status": {"conditions": [{"type": "Healthy", "status": healthy}]},
        }))
    };
    let key = WriteKey::new(WriteKind::WorkloadEntry, "demo", NAME);
    let connected = entry(json!({"istio.io/connectedAt": "t1"}), "True");
    let disconnected = entry(json!({"istio.io/disconnectedAt": "t2"}), "False");

    let mut w = writer(&server);
    let (mut w, k) = blocking(move || {
        assert!(w.put(&key, &connected).unwrap());
        (w, key)
    })
    .await;
    let created = live(&server).expect("created");
    assert_eq!(
        created["metadata"]["annotations"]["istio.io/connectedAt"],
        "t1"
    );
    assert_eq!(created["status"]["conditions"][0]["status"], "True");

    let (mut w, k) = blocking(move || {
        w.put(&k, &disconnected).unwrap();
        (w, k)
    })
    .await;
    let updated = live(&server).unwrap();
    assert_eq!(
        updated["metadata"]["annotations"],
        json!({"istio.io/disconnectedAt": "t2"}),
        "an annotation Bowline no longer sets is removed (server-side apply)"
    );
    assert_eq!(updated["status"]["conditions"][0]["status"], "False");

    // Written and deleted over a version only while the object is at that version.
    let version = updated["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut stale = (*entry(json!({"istio.io/disconnectedAt": "t3"}), "False")).clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    let (mut w, k) = blocking(move || {
        assert_eq!(w.get(&k).unwrap().unwrap()["spec"]["address"], "192.0.2.5");
        assert!(w.put(&k, &Arc::new(stale)).is_err(), "a stale version");
        assert!(w.remove(&k, Some("1")).is_err(), "a stale version");
        (w, k)
    })
    .await;
    assert!(live(&server).is_some());

    let removed = blocking(move || {
        (
            w.remove(&k, Some(&version)).unwrap(),
            w.remove(&k, None).unwrap(),
            w.get(&k).unwrap(),
        )
    })
    .await;
    assert_eq!(removed, (true, false, None), "removed once, gone after");
    assert!(live(&server).is_none());
}

/// Bowline's objects edited or deleted behind its back are seen by its label-selected watches,
/// long before the next sweep: the next check restores them without listing the member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_edited_or_deleted_behind_bowlines_back_are_seen_by_its_watches() {
    let server = FakeApiServer::start().await;
    server.install_bowline_crds();
    let want = desired(&[
        (WriteKind::ServiceImport, "cart", import(&[80])),
        (
            WriteKind::EndpointSlice,
            "imported-cart-east-ipv4",
            imported_slice("imported-cart-east-ipv4"),
        ),
    ]);
    let mut w = KubeWriter::new(
        Credentials::Client(server.client()),
        tokio::runtime::Handle::current(),
        WriteOptions {
            sweep: Duration::from_secs(3600),
            attempts: 5,
            backoff: Duration::from_millis(10),
        },
        tokio_util::sync::CancellationToken::new(),
    );
    let want2 = want.clone();
    let mut w = blocking(move || {
        w.read().unwrap();
        w.reconcile(&want2).unwrap();
        // Its own writes are not taken for tampering.
        std::thread::sleep(Duration::from_millis(300));
        assert!(!w.needs_check(), "Bowline's own writes need no check");
        w
    })
    .await;

    server.clear_requests();
    assert!(server.delete(
        "multicluster.x-k8s.io/v1beta1",
        "ServiceImport",
        Some("shop"),
        "cart"
    ));
    let mut slice = server
        .get(
            "discovery.k8s.io/v1",
            "EndpointSlice",
            Some("shop"),
            "imported-cart-east-ipv4",
        )
        .unwrap();
    slice["endpoints"][0]["addresses"] = json!(["10.9.9.9"]);
    server.apply_json(slice);
    // A labelled object Bowline did not write is garbage.
    server.apply_json(imported_slice("imported-cart-stray-ipv4"));

    // The three changes arrive as separate events, maybe between checks: each check the
    // watches call for restores what they saw, until all three are undone.
    let want2 = want.clone();
    let (written, deleted) = blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let (mut written, mut deleted) = (0, 0);
        while (written, deleted) != (2, 1) {
            assert!(
                std::time::Instant::now() < deadline,
                "the changes were not all seen: {written} written, {deleted} deleted"
            );
            if w.needs_check() {
                let report = w.reconcile(&want2).unwrap();
                written += report.written;
                deleted += report.deleted;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (written, deleted)
    })
    .await;
    assert_eq!((written, deleted), (2, 1));
    let slice = server
        .get(
            "discovery.k8s.io/v1",
            "EndpointSlice",
            Some("shop"),
            "imported-cart-east-ipv4",
        )
        .unwrap();
    assert_eq!(slice["endpoints"][0]["addresses"], json!(["10.1.0.1"]));
    assert!(
        server
            .get(
                "multicluster.x-k8s.io/v1beta1",
                "ServiceImport",
                Some("shop"),
                "cart"
            )
            .is_some()
    );
    assert!(
        !server.requests().iter().any(|r| r.verb == "list"),
        "restored without listing the member"
    );
}
