//! `bowline member kubeconfig` against the fake API server: the member's objects are applied
//! (and applied again unchanged), the requests made are the documented ones, and the printed
//! kubeconfig reaches the cluster with the issued token, for a client and for a Kubernetes
//! member source.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bowline_fake_kube::FakeApiServer;
use bowline_kube::member::{
    MemberError, MemberKubeconfig, MemberKubeconfigOptions, member_kubeconfig,
};
use bowline_kube::rbac::{self, Scope};
use bowline_kube::{Credentials, KubeMember, WatchOptions};
use bowline_model::{EventBody, MemberName};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams};
use kube::config::Kubeconfig;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const NS: &str = "bowline-system";
const NAME: &str = "bowline-member";
const RBAC: &str = "rbac.authorization.k8s.io/v1";

/// A fake cluster that requires the admin's token, and the admin's kubeconfig for it.
struct Cluster {
    server: FakeApiServer,
    dir: tempfile::TempDir,
    admin: PathBuf,
}

async fn cluster() -> Cluster {
    let server = FakeApiServer::start().await;
    server.set_token(Some("admin-token".into()));
    let dir = tempfile::tempdir().unwrap();
    let admin = dir.path().join("admin.kubeconfig");
    std::fs::write(&admin, server.kubeconfig_yaml("admin-token")).unwrap();
    Cluster { server, dir, admin }
}

fn options(admin: &Path) -> MemberKubeconfigOptions {
    MemberKubeconfigOptions {
        kubeconfig: admin.to_owned(),
        // The context `FakeApiServer::kubeconfig_yaml` writes.
        context: "fake".into(),
        namespace: NS.into(),
        name: NAME.into(),
        duration: Duration::from_secs(8760 * 3600),
        server: None,
    }
}

impl Cluster {
    /// The objects the command applies, as stored.
    fn objects(&self) -> Vec<Option<Value>> {
        let s = &self.server;
        vec![
            s.get("v1", "Namespace", None, NS),
            s.get("v1", "ServiceAccount", Some(NS), NAME),
            s.get(RBAC, "ClusterRole", None, NAME),
            s.get(RBAC, "ClusterRoleBinding", None, NAME),
        ]
    }

    /// Writes `printed` next to the admin's kubeconfig.
    fn write(&self, printed: &MemberKubeconfig) -> PathBuf {
        let path = self.dir.path().join("member.kubeconfig");
        std::fs::write(&path, &printed.yaml).unwrap();
        path
    }
}

#[tokio::test]
async fn applies_the_service_account_and_cluster_role_and_nothing_else() {
    let cluster = cluster().await;
    member_kubeconfig(&options(&cluster.admin)).await.unwrap();

    let [namespace, account, role, binding] = &cluster.objects()[..] else {
        unreachable!()
    };
    assert!(namespace.is_some(), "no Namespace {NS}");
    assert!(account.is_some(), "no ServiceAccount {NS}/{NAME}");
    let role = role.as_ref().expect("a ClusterRole");
    assert_eq!(
        role["rules"],
        serde_json::to_value(rbac::rules(Scope::Cluster)).unwrap(),
        "the cluster-scoped rows of PERMISSIONS, nothing more"
    );
    let binding = binding.as_ref().expect("a ClusterRoleBinding");
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME})
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": NAME, "namespace": NS}])
    );
    // Leader election runs in the cluster Bowline runs in: no Lease Role for a member.
    assert_eq!(cluster.server.list(RBAC, "Role"), Vec::<Value>::new());
    assert_eq!(
        cluster.server.list(RBAC, "RoleBinding"),
        Vec::<Value>::new()
    );
    for record in cluster.server.requests() {
        if record.verb == "patch" {
            assert_eq!(record.field_manager.as_deref(), Some("bowline"));
        }
    }
}

#[tokio::test]
async fn running_twice_changes_no_object_and_issues_a_second_valid_token() {
    let cluster = cluster().await;
    let first = member_kubeconfig(&options(&cluster.admin)).await.unwrap();
    let objects = cluster.objects();
    let version = cluster.server.resource_version();

    let second = member_kubeconfig(&options(&cluster.admin)).await.unwrap();
    assert_eq!(cluster.objects(), objects);
    assert_eq!(
        cluster.server.resource_version(),
        version,
        "nothing written"
    );
    assert_ne!(first.yaml, second.yaml, "a new token");
    for printed in [first, second] {
        let client = Credentials::Kubeconfig {
            path: cluster.write(&printed),
            context: None,
        }
        .client()
        .await
        .unwrap();
        Api::<Service>::all(client)
            .list(&ListParams::default())
            .await
            .expect("both tokens are valid");
    }
}

#[tokio::test]
async fn makes_exactly_the_documented_requests() {
    let cluster = cluster().await;
    member_kubeconfig(&options(&cluster.admin)).await.unwrap();
    let requests: Vec<String> = cluster
        .server
        .requests()
        .iter()
        .map(|r| {
            let resource = match &r.subresource {
                Some(sub) => format!("{}/{sub}", r.resource),
                None => r.resource.clone(),
            };
            let group = if r.group.is_empty() { "core" } else { &r.group };
            let name = r.name.as_deref().unwrap_or_default();
            match &r.namespace {
                Some(ns) => format!("{} {group} {resource} {ns}/{name}", r.verb),
                None => format!("{} {group} {resource} {name}", r.verb),
            }
        })
        .collect();
    // As listed in docs/operations.md, "Deploying across clusters".
    assert_eq!(
        requests,
        [
            "patch core namespaces bowline-system",
            "patch core serviceaccounts bowline-system/bowline-member",
            "patch rbac.authorization.k8s.io clusterroles bowline-member",
            "patch rbac.authorization.k8s.io clusterrolebindings bowline-member",
            "create core serviceaccounts/token bowline-system/bowline-member",
        ]
    );
}

#[tokio::test]
async fn the_printed_kubeconfig_reaches_the_cluster_with_the_issued_token() {
    let cluster = cluster().await;
    let printed = member_kubeconfig(&options(&cluster.admin)).await.unwrap();

    let parsed = Kubeconfig::from_yaml(&printed.yaml).expect("a valid kubeconfig");
    assert_eq!(parsed.current_context.as_deref(), Some("fake"));
    assert_eq!(parsed.contexts.len(), 1);
    assert_eq!(parsed.contexts[0].name, "fake");
    let server = parsed.clusters[0].cluster.as_ref().unwrap().server.clone();
    assert_eq!(server.as_deref(), Some(cluster.server.url().as_str()));
    assert_eq!(printed.server, cluster.server.url());
    assert_eq!(printed.granted_seconds, Some(8760 * 3600));
    let lifetime = printed.expires_at.duration_since(jiff::Timestamp::now());
    assert!(lifetime.as_secs() > 8759 * 3600, "expires in {lifetime:?}");

    cluster.server.clear_requests();
    let client = Credentials::Kubeconfig {
        path: cluster.write(&printed),
        context: Some("fake".into()),
    }
    .client()
    .await
    .unwrap();
    Api::<Service>::all(client)
        .list(&ListParams::default())
        .await
        .expect("the issued token is accepted");
    let record = cluster.server.requests().pop().unwrap();
    assert_eq!(
        record.token.as_deref(),
        Some("sa-bowline-system-bowline-member-1")
    );
}

#[tokio::test]
async fn a_kubernetes_member_reads_the_cluster_through_the_printed_kubeconfig() {
    let cluster = cluster().await;
    cluster.server.install_bowline_crds();
    cluster.server.apply_json(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "cart", "namespace": "shop"},
        "spec": {"clusterIP": "10.0.0.7", "ports": [{"name": "http", "port": 80}]},
    }));
    let printed = member_kubeconfig(&options(&cluster.admin)).await.unwrap();
    let (events, mut received) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let member = KubeMember {
        member: MemberName::new("east"),
        credentials: Credentials::Kubeconfig {
            path: cluster.write(&printed),
            context: None,
        },
        options: WatchOptions::default(),
    };
    tokio::spawn(member.run(events, stop.clone()));
    let listing = async {
        loop {
            let event = received.recv().await.expect("the source runs");
            if let EventBody::Reset { objects, .. } = event.body {
                return objects;
            }
        }
    };
    let objects = tokio::time::timeout(Duration::from_secs(20), listing)
        .await
        .expect("a full listing");
    stop.cancel();
    let mut names: Vec<String> = objects
        .iter()
        .map(|o| {
            let key = o.key();
            format!("{}/{}/{}", key.kind, key.namespace, key.name)
        })
        .collect();
    names.sort();
    // The Namespace the command created, and the Service.
    assert_eq!(names, ["Namespace//bowline-system", "Service/shop/cart"]);
}

#[tokio::test]
async fn the_cluster_may_shorten_the_validity() {
    let cluster = cluster().await;
    cluster
        .server
        .set_max_token_expiration(Some(Duration::from_secs(3600)));
    let printed = member_kubeconfig(&options(&cluster.admin)).await.unwrap();
    assert_eq!(printed.granted_seconds, Some(3600));
    let lifetime = printed.expires_at.duration_since(jiff::Timestamp::now());
    assert!(lifetime.as_secs() <= 3600, "expires in {lifetime:?}");
}

#[tokio::test]
async fn refusals_name_what_to_fix_before_writing_anything() {
    let cluster = cluster().await;
    let short = MemberKubeconfigOptions {
        duration: Duration::from_secs(60),
        ..options(&cluster.admin)
    };
    let error = member_kubeconfig(&short).await.unwrap_err();
    assert!(matches!(error, MemberError::Duration { .. }), "{error}");

    let unknown = MemberKubeconfigOptions {
        context: "west".into(),
        ..options(&cluster.admin)
    };
    let error = member_kubeconfig(&unknown).await.unwrap_err().to_string();
    assert!(
        error.contains("context \"west\"") && error.contains("admin.kubeconfig"),
        "{error}"
    );
    assert_eq!(cluster.server.requests(), [], "nothing was asked");
}

#[tokio::test]
async fn the_server_flag_replaces_the_printed_server() {
    let cluster = cluster().await;
    let with_overridden_server = MemberKubeconfigOptions {
        server: Some("https://east.example:6443".into()),
        ..options(&cluster.admin)
    };
    let printed = member_kubeconfig(&with_overridden_server).await.unwrap();
    assert_eq!(printed.server, "https://east.example:6443");
    assert!(printed.yaml.contains("server: https://east.example:6443"));
}
