//! The ClusterRole and Role `bowline install` prints come from `rbac::PERMISSIONS`; this test
//! runs the source, the writer, leader election and the Secrets of Bowline's own state (root
//! CA, VM tokens) against the fake API server and checks
//! that every request they make is granted by that table, and that every grant is used.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use bowline_fake_kube::FakeApiServer;
use bowline_kube::{
    Credentials, KubeMember, KubeWriter, WatchOptions, WriteOptions,
    lease::{Leadership, LeaseConfig, campaign},
    rbac::{PERMISSIONS, Scope, allows},
    secrets::{self, SecretRef},
};
use bowline_mcs::{WriteKey, WriteKind, WriteSet, writer::Writer};
use bowline_model::{EventBody, MemberName};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const LEASE_NAMESPACE: &str = "bowline-system";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_granted_and_every_grant_is_used() {
    let server = FakeApiServer::start().await;
    server.install_bowline_crds();
    // Open Cluster Management's ClusterClaim, which Bowline reads where OCM is installed.
    server.install_crd(
        bowline_fake_kube::ResourceDef::custom(
            "cluster.open-cluster-management.io",
            &["v1alpha1"],
            "clusterclaims",
            "ClusterClaim",
        )
        .cluster_scoped(),
    );
    server.apply_json(json!({
        "apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceExport",
        "metadata": {"name": "cart", "namespace": "shop"},
    }));

    // The source, until its first listing.
    let (tx, mut events) = mpsc::channel(64);
    let stop = CancellationToken::new();
    tokio::spawn(
        KubeMember {
            member: MemberName::new("west"),
            credentials: Credentials::Client(server.client()),
            options: WatchOptions::default(),
        }
        .run(tx, stop.clone()),
    );
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = events.recv().await {
            if matches!(event.body, EventBody::Reset { .. }) {
                return;
            }
        }
    })
    .await
    .expect("listed");

    // The writer: every kind written, then removed.
    let object = |kind: &str, api: &str, name: &str, labels: serde_json::Value| {
        json!({"apiVersion": api, "kind": kind,
               "metadata": {"name": name, "namespace": "shop", "labels": labels},
               "status": {"conditions": []}})
    };
    let mcs = "multicluster.x-k8s.io/v1beta1";
    let ours = json!({"bowline.io/managed-by": "mcs-controller"});
    let desired: WriteSet = [
        (
            WriteKey::new(WriteKind::ServiceImport, "shop", "cart"),
            object("ServiceImport", mcs, "cart", ours.clone()),
        ),
        (
            WriteKey::new(WriteKind::EndpointSlice, "shop", "imported-cart"),
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                   "metadata": {"name": "imported-cart", "namespace": "shop", "labels": ours},
                   "addressType": "IPv4", "endpoints": []}),
        ),
        (
            WriteKey::new(WriteKind::ServiceExport, "shop", "auto"),
            object(
                "ServiceExport",
                mcs,
                "auto",
                json!({"bowline.io/managed-by": "auto-export"}),
            ),
        ),
        (
            WriteKey::new(WriteKind::ServiceExportStatus, "shop", "cart"),
            json!({"apiVersion": mcs, "kind": "ServiceExport",
                   "metadata": {"name": "cart", "namespace": "shop"},
                   "status": {"conditions": []}}),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k, Arc::new(v.into())))
    .collect();
    let mut writer = KubeWriter::new(
        Credentials::Client(server.client()),
        tokio::runtime::Handle::current(),
        WriteOptions::default(),
        CancellationToken::new(),
    );
    tokio::task::spawn_blocking(move || {
        writer.read().unwrap();
        writer.reconcile(&desired).unwrap();
        writer.reconcile(&WriteSet::new()).unwrap();
        // An auto-registered VM's entry, with its health, then its deletion.
        let entry = WriteKey::new(WriteKind::WorkloadEntry, "shop", "vm-192.0.2.5");
        let object = json!({"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
                            "metadata": {"name": "vm-192.0.2.5", "namespace": "shop"},
                            "spec": {"address": "192.0.2.5"},
                            "status": {"conditions": [{"type": "Healthy", "status": "True"}]}});
        writer.put(&entry, &Arc::new(object)).unwrap();
        assert!(writer.get(&entry).unwrap().is_some());
        assert!(writer.remove(&entry, None).unwrap());
    })
    .await
    .unwrap();

    // VM controller heartbeats: renew one's own, read everyone's.
    let mut heartbeats = bowline_kube::heartbeat::Heartbeats::new(
        server.client(),
        LEASE_NAMESPACE,
        "a",
        Duration::from_secs(30),
    );
    heartbeats.beat().await.unwrap();
    heartbeats.alive().await.unwrap();

    // Bowline's Secrets: the root CA read, then created on first start; the token store
    // read by the server, created then updated by `bowline vm token`.
    let ca = SecretRef::new(server.client(), LEASE_NAMESPACE, secrets::CA_SECRET);
    let (_, created) = ca
        .get_or_create("kubernetes.io/tls", || {
            Ok::<_, String>(
                [
                    ("tls.crt".into(), "c".into()),
                    ("tls.key".into(), "k".into()),
                ]
                .into(),
            )
        })
        .await
        .unwrap()
        .unwrap();
    assert!(created);
    let tokens = SecretRef::new(server.client(), LEASE_NAMESPACE, secrets::TOKENS_SECRET);
    assert!(tokens.read().await.unwrap().is_none());
    for _ in 0..2 {
        tokens
            .update_key(secrets::TOKENS_KEY, |_| {
                Ok::<_, String>("{\"tokens\": []}".into())
            })
            .await
            .unwrap()
            .unwrap();
    }

    // Workload certificates: a service-account token reviewed.
    server.apply_json(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                             "metadata": {"name": "cart", "namespace": "shop"}}));
    let token = server
        .service_account_token("shop", "cart", &["istio-ca"], 3600)
        .unwrap();
    assert_eq!(
        bowline_kube::review::review(server.client(), &token, &["istio-ca".into()])
            .await
            .unwrap(),
        bowline_kube::review::Reviewed::ServiceAccount {
            namespace: "shop".into(),
            name: "cart".into()
        }
    );

    // Leader election: take the lease, then release it.
    let (leader_tx, mut leadership) = watch::channel(Leadership::default());
    let lease_stop = CancellationToken::new();
    let election = tokio::spawn(campaign(
        Credentials::Client(server.client()),
        LeaseConfig {
            retry: Duration::from_millis(50),
            ..LeaseConfig::new(LEASE_NAMESPACE, "bowline", "a")
        },
        leader_tx,
        lease_stop.clone(),
    ));
    tokio::time::timeout(Duration::from_secs(5), leadership.wait_for(|l| l.leading))
        .await
        .expect("leading")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await; // renewed at least once
    lease_stop.cancel();
    election.await.unwrap();
    stop.cancel();

    let mut used = BTreeSet::new();
    for r in server.requests() {
        let resource = match &r.subresource {
            Some(sub) => format!("{}/{sub}", r.resource),
            None => r.resource.clone(),
        };
        let scope = match r.namespace.as_deref() {
            Some(LEASE_NAMESPACE) => Scope::OwnNamespace,
            _ => Scope::Cluster,
        };
        assert!(
            allows(&r.group, &resource, &r.verb, scope),
            "{} {}/{resource} in {:?} is not granted by rbac::PERMISSIONS",
            r.verb,
            r.group,
            r.namespace
        );
        used.insert((r.group.clone(), resource, r.verb.clone()));
    }
    for p in PERMISSIONS {
        for verb in p.verbs {
            assert!(
                used.contains(&(
                    p.group.to_string(),
                    p.resource.to_string(),
                    verb.to_string()
                )),
                "{verb} {}/{} is granted but never used",
                p.group,
                p.resource
            );
        }
    }
}
