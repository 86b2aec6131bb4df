//! Cluster ids from the names of KEP-2149's earlier text: the ClusterProperty
//! `id.k8s.io` and Open Cluster Management's ClusterClaim `id.k8s.io` give a member its id
//! after `cluster.clusterset.k8s.io`, in manifest and in Kubernetes members; when the sources
//! disagree the first wins and the member's status names them.

use std::fs;

mod common;

use bowline_app::config::Config;
use bowline_model::cluster::IdSource;
use bowline_registry::Admission;
use bowline_test_support::eventually_async;

fn admitted(running: &bowline_app::Running, member: &str) -> Option<(String, IdSource)> {
    let members = running.registry.read().members();
    match &members
        .iter()
        .find(|m| m.name.as_str() == member)?
        .admission
    {
        Admission::Admitted { id, from } => Some((id.to_string(), *from)),
        _ => None,
    }
}

const CLAIM: &str = "apiVersion: cluster.open-cluster-management.io/v1alpha1\nkind: ClusterClaim\nmetadata: {name: id.k8s.io}\nspec: {value: ocm-east}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_member_takes_its_id_from_an_ocm_cluster_claim_and_reports_disagreement() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("east")).unwrap();
    fs::write(dir.path().join("east/claim.yaml"), CLAIM).unwrap();
    fs::write(
        dir.path().join("bowline.yaml"),
        "clusterSet: set\nmembers: [{manifests: east, id: configured}]\n",
    )
    .unwrap();
    let config = Config::load(&dir.path().join("bowline.yaml")).unwrap();
    let running = bowline_app::start(&config, bowline_app::Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    eventually_async("east admitted from its claim", || {
        admitted(&running, "east") == Some(("ocm-east".into(), IdSource::ClusterClaim))
    })
    .await;
    let status = running.registry.read().members()[0].clone();
    assert_eq!(
        status.id_disagreement.as_deref(),
        Some(
            "the id sources disagree: ClusterClaim id.k8s.io says \"ocm-east\", the configured id says \"configured\"; the first wins"
        )
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_member_takes_its_id_from_an_ocm_cluster_claim() {
    let server = bowline_fake_kube::FakeApiServer::start().await;
    server.install_bowline_crds();
    server.install_crd(
        bowline_fake_kube::ResourceDef::custom(
            "cluster.open-cluster-management.io",
            &["v1alpha1"],
            "clusterclaims",
            "ClusterClaim",
        )
        .cluster_scoped(),
    );
    server.apply_json(serde_json::json!({
        "apiVersion": "cluster.open-cluster-management.io/v1alpha1", "kind": "ClusterClaim",
        "metadata": {"name": "id.k8s.io"}, "spec": {"value": "ocm-east"}}));
    server.apply_json(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "kube-system", "uid": "6c1b5d3e-1111-4a4a-9c9c-000000000001"}}));
    let dir = tempfile::tempdir().unwrap();
    let config = common::kubernetes_member(&server, dir.path(), "");
    let running = bowline_app::start(&config, bowline_app::Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    eventually_async(
        "east admitted from its claim, not the kube-system UID",
        || admitted(&running, "east") == Some(("ocm-east".into(), IdSource::ClusterClaim)),
    )
    .await;
    // The ClusterProperty, when it comes, wins: the member moves to that id.
    server.apply_json(serde_json::json!({
        "apiVersion": "about.k8s.io/v1beta1", "kind": "ClusterProperty",
        "metadata": {"name": "cluster.clusterset.k8s.io"}, "spec": {"value": "east"}}));
    eventually_async("the ClusterProperty wins", || {
        admitted(&running, "east") == Some(("east".into(), IdSource::ClusterProperty))
    })
    .await;
    assert!(
        running.registry.read().members()[0]
            .id_disagreement
            .as_deref()
            .is_some_and(|d| d.contains("ClusterClaim id.k8s.io says \"ocm-east\"")),
        "the disagreement is named"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_member_without_ocm_is_not_reported_missing_a_crd() {
    let server = bowline_fake_kube::FakeApiServer::start().await;
    server.install_bowline_crds();
    server.apply_json(serde_json::json!({
        "apiVersion": "about.k8s.io/v1beta1", "kind": "ClusterProperty",
        "metadata": {"name": "cluster.clusterset.k8s.io"}, "spec": {"value": "east"}}));
    let dir = tempfile::tempdir().unwrap();
    let config = common::kubernetes_member(&server, dir.path(), "");
    let running = bowline_app::start(&config, bowline_app::Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    eventually_async("east synced and admitted", || {
        running.registry.read().members()[0].synced && admitted(&running, "east").is_some()
    })
    .await;
    assert!(
        running.registry.read().members()[0].missing.is_empty(),
        "{:?}",
        running.registry.read().members()[0].missing
    );
    running.stop().await;
}
