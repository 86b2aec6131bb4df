//! `bowline member join` between two fake API servers: the member's cluster gets its
//! ServiceAccount and token, Bowline's cluster (as `bowline install` left it) gets the
//! kubeconfig in the members' Secret, the member in bowline.yaml and a restart; running it
//! again rotates the token only; a name already used by another member is refused.

use std::time::Duration;

use base64::Engine as _;
use bowline_fake_kube::FakeApiServer;
use bowline_kube::install::{InstallOptions, MEMBERS_DIR, MEMBERS_SECRET, manifests};
use bowline_kube::join::{JoinOptions, member_join};
use bowline_kube::member::MemberKubeconfigOptions;
use serde_json::Value;

const NS: &str = "bowline-system";

struct Clusters {
    member: FakeApiServer,
    hub: FakeApiServer,
    _dir: tempfile::TempDir,
    options: JoinOptions,
}

async fn clusters() -> Clusters {
    let member = FakeApiServer::start().await;
    member.set_token(Some("admin-token".into()));
    let hub = FakeApiServer::start().await;
    // What `bowline install` put into Bowline's cluster, as far as joining reads it.
    for doc in manifests(&InstallOptions::default()) {
        if matches!(doc["kind"].as_str(), Some("ConfigMap" | "Deployment")) {
            hub.apply_json(doc);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (member_config, hub_config) = (dir.path().join("east"), dir.path().join("hub"));
    std::fs::write(&member_config, member.kubeconfig_yaml("admin-token")).unwrap();
    std::fs::write(&hub_config, hub.kubeconfig_yaml("hub-token")).unwrap();
    let options = JoinOptions {
        member: MemberKubeconfigOptions {
            kubeconfig: member_config,
            context: "fake".into(),
            namespace: NS.into(),
            name: "bowline-member".into(),
            duration: Duration::from_secs(3600),
            server: None,
        },
        name: "east".into(),
        network: Some("net-east".into()),
        bowline_kubeconfig: hub_config,
        bowline_context: None,
        bowline_namespace: NS.into(),
    };
    Clusters {
        member,
        hub,
        _dir: dir,
        options,
    }
}

impl Clusters {
    fn config(&self) -> (Value, String) {
        let map = self
            .hub
            .get("v1", "ConfigMap", Some(NS), "bowline")
            .unwrap();
        let text = map["data"]["bowline.yaml"].as_str().unwrap().to_string();
        (
            serde_saphyr::from_str(&text).unwrap(),
            map["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    }

    fn kubeconfig(&self) -> String {
        let secret = self
            .hub
            .get("v1", "Secret", Some(NS), MEMBERS_SECRET)
            .expect("the members' Secret");
        let data = secret["data"]["east.kubeconfig"].as_str().unwrap();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap(),
        )
        .unwrap()
    }

    fn restarted_at(&self) -> Option<String> {
        let deployment = self.hub.get("apps/v1", "Deployment", Some(NS), "bowline")?;
        deployment["spec"]["template"]["metadata"]["annotations"]["bowline.io/restartedAt"]
            .as_str()
            .map(String::from)
    }
}

#[tokio::test]
async fn a_member_joins_a_bowline_on_kubernetes_and_joining_again_rotates_its_token() {
    let clusters = clusters().await;
    let joined = member_join(&clusters.options).await.unwrap();
    assert!(joined.added && joined.restarted, "{joined:?}");
    assert_eq!(joined.key, "east.kubeconfig");
    assert!(
        joined
            .warnings
            .iter()
            .all(|w| !w.contains("does not mount")),
        "`bowline install` mounts the members' Secret: {:?}",
        joined.warnings
    );

    // The member's side: its ServiceAccount, as `member kubeconfig` makes it.
    assert!(
        clusters
            .member
            .get("v1", "ServiceAccount", Some(NS), "bowline-member")
            .is_some()
    );
    // Bowline's side: the kubeconfig, the member in bowline.yaml, a restart.
    let first = clusters.kubeconfig();
    assert!(first.contains("token: "), "{first}");
    let (config, version) = clusters.config();
    let members = config["members"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{config}");
    assert_eq!(
        members[0]["name"], "local",
        "the inCluster member stays first"
    );
    assert_eq!(
        members[1],
        serde_json::json!({"name": "east", "kubeconfig": format!("{MEMBERS_DIR}/east.kubeconfig"), "network": "net-east"})
    );
    assert_eq!(
        config["leaderElection"]["member"], "local",
        "the rest is kept"
    );
    let restarted = clusters
        .restarted_at()
        .expect("the pod template is annotated");

    // Again: a new token in the Secret; bowline.yaml and the Deployment as they were.
    let again = member_join(&clusters.options).await.unwrap();
    assert!(!again.added && !again.restarted, "{again:?}");
    assert_ne!(clusters.kubeconfig(), first, "the token is rotated");
    assert_eq!(
        clusters.config().1,
        version,
        "bowline.yaml is not rewritten"
    );
    assert_eq!(clusters.restarted_at(), Some(restarted));
}

#[tokio::test]
async fn a_name_another_member_has_is_refused() {
    let mut clusters = clusters().await;
    clusters.options.name = "local".into();
    let err = member_join(&clusters.options)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a member \"local\" is there already")
            && err.contains("choose another --name"),
        "{err}"
    );
    clusters.options.name = "East_1".into();
    let err = member_join(&clusters.options)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--name \"East_1\""), "{err}");
}
