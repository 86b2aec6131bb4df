//! VM auto-registration through the running control plane: a proxy connecting over ADS with
//! `AUTO_REGISTER_GROUP` gets its WorkloadEntry written into the member's `.bowline/`, read
//! back as an endpoint once healthy, kept across a Bowline restart, and deleted after the
//! grace period once it disconnects.

mod common;
use common::ca_certificate;
use std::{fs, path::Path, time::Duration};

use bowline_app::config::Config;
use bowline_model::ServiceKey;
use bowline_test_support::{ads, eventually_async};
use envoy_types::pb::{
    envoy::{
        config::core::v3::Node,
        service::discovery::v3::{
            DiscoveryRequest, DiscoveryResponse,
            aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
        },
    },
    google::rpc::Status as RpcStatus,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const MEMBER: &str = r#"
apiVersion: about.k8s.io/v1alpha1
kind: ClusterProperty
metadata: {name: cluster.clusterset.k8s.io}
spec: {value: east}
---
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: demo}
spec:
  clusterIP: 10.96.0.9
  selector: {app: legacy}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: legacy, namespace: demo}
spec:
  metadata:
    labels: {app: legacy}
  template:
    serviceAccount: legacy
    ports: {http: 8080}
  probe:
    httpGet: {port: 8080, path: /ready}
"#;

const ENTRY: &str = ".bowline/workloadentries/demo/legacy-127.0.0.50.yaml";

fn config(dir: &Path) -> Config {
    fs::write(
        dir.join("bowline.yaml"),
        "clusterSet: set\nmembers: [{manifests: east}]\nvm: {gracePeriod: 2s, controller: bowline-test}\n",
    )
    .unwrap();
    Config::load(&dir.join("bowline.yaml")).unwrap()
}

/// Bowline on one member holding `MEMBER`, its configuration extended by `extra`, started
/// and synced; with the root certificate its TLS port serves.
async fn start_member(dir: &Path, extra: &str) -> (Config, bowline_app::Running, String) {
    fs::create_dir_all(dir.join("east")).unwrap();
    fs::write(dir.join("east/objects.yaml"), MEMBER).unwrap();
    let mut config = config(dir);
    if !extra.is_empty() {
        let text = fs::read_to_string(dir.join("bowline.yaml")).unwrap() + extra;
        fs::write(dir.join("bowline.yaml"), text).unwrap();
        config = Config::load(&dir.join("bowline.yaml")).unwrap();
    }
    let running = bowline_app::start(&config, bowline_app::Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    eventually_async("the member is read", || {
        running.registry.read().members()[0].synced
    })
    .await;
    let root = fs::read_to_string(config.data_dir.join("ca/root-cert.pem")).unwrap();
    (config, running, root)
}

fn node(group: &str) -> Node {
    let node = ads::node("vm-1", "envoy")
        .meta(
            "AUTO_REGISTER_GROUP",
            if group.is_empty() { "legacy" } else { group },
        )
        .meta("CLUSTER_ID", "east")
        .meta("INSTANCE_IPS", "127.0.0.50");
    match group.is_empty() {
        true => node.build(),
        false => node.meta("NAMESPACE", "demo").build(),
    }
}

struct Proxy {
    tx: mpsc::Sender<DiscoveryRequest>,
    /// Kept open: dropping it ends the stream.
    _rx: tonic::Streaming<DiscoveryResponse>,
}

impl Proxy {
    async fn connect(addr: std::net::SocketAddr, group: &str) -> Result<Self, tonic::Status> {
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self::over(channel, group, None).await
    }

    /// Over TLS, trusting `root`, presenting `token`.
    async fn tls(
        addr: std::net::SocketAddr,
        root: &str,
        group: &str,
        token: Option<&str>,
    ) -> Result<Self, tonic::Status> {
        Self::over(tls_channel(addr, root).await, group, token).await
    }

    async fn over(
        channel: tonic::transport::Channel,
        group: &str,
        token: Option<&str>,
    ) -> Result<Self, tonic::Status> {
        Self::with_node(channel, node(group), token).await
    }

    async fn with_node(
        channel: tonic::transport::Channel,
        node: Node,
        token: Option<&str>,
    ) -> Result<Self, tonic::Status> {
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let (tx, rx) = mpsc::channel(8);
        tx.send(DiscoveryRequest {
            node: Some(node),
            type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        let mut rx = client
            .stream_aggregated_resources(request)
            .await?
            .into_inner();
        // The first answer (or the refusal).
        tokio::time::timeout(Duration::from_secs(10), rx.message())
            .await
            .expect("an answer")?;
        Ok(Self { tx, _rx: rx })
    }

    async fn health(&self, error: Option<&str>) {
        self.tx
            .send(DiscoveryRequest {
                type_url: "type.googleapis.com/istio.v1.HealthInformation".into(),
                error_detail: error.map(|m| RpcStatus {
                    code: 13,
                    message: m.into(),
                    details: vec![],
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }
}

/// The ready endpoints of demo/legacy: those traffic reaches (a VM failing its health check
/// is an endpoint that is not ready).
fn endpoints(running: &bowline_app::Running) -> Vec<String> {
    all_endpoints(running)
        .into_iter()
        .filter(|e| e.ready)
        .map(|e| format!("{e:?}"))
        .collect()
}

fn all_endpoints(running: &bowline_app::Running) -> Vec<bowline_model::Endpoint> {
    running
        .registry
        .read()
        .service(&ServiceKey::new("demo", "legacy"))
        .map(|view| view.endpoints().cloned().collect())
        .unwrap_or_default()
}

fn entry(dir: &Path) -> Option<serde_json::Value> {
    let text = fs::read_to_string(dir.join("east").join(ENTRY)).ok()?;
    serde_saphyr::from_str(&text).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_registers_serves_when_healthy_survives_a_restart_and_goes_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let (config, running, _) = start_member(dir.path(), "").await;

    let proxy = Proxy::connect(running.xds_addr, "legacy").await.unwrap();
    eventually_async("the entry is written", || entry(dir.path()).is_some()).await;
    let written = entry(dir.path()).unwrap();
    let annotations = &written["metadata"]["annotations"];
    assert_eq!(annotations["istio.io/autoRegistrationGroup"], "legacy");
    assert_eq!(annotations["istio.io/workloadController"], "bowline-test");
    assert_eq!(annotations["proxy.istio.io/health-checks-enabled"], "true");
    assert_eq!(written["spec"]["address"], "127.0.0.50");
    assert_eq!(written["spec"]["labels"]["app"], "legacy");
    eventually_async("the entry is an endpoint", || {
        all_endpoints(&running).len() == 1
    })
    .await;
    assert!(
        endpoints(&running).is_empty(),
        "a probed group's entry is no ready endpoint before it reports healthy"
    );

    proxy.health(None).await;
    eventually_async("healthy: an endpoint", || {
        endpoints(&running).iter().any(|e| e.contains("127.0.0.50"))
    })
    .await;
    assert_eq!(
        entry(dir.path()).unwrap()["status"]["conditions"][0]["status"],
        "True"
    );
    proxy.health(Some("HTTP GET /ready: 503")).await;
    eventually_async("unhealthy: no endpoint", || endpoints(&running).is_empty()).await;
    assert_eq!(
        entry(dir.path()).unwrap()["status"]["conditions"][0]["message"],
        "HTTP GET /ready: 503"
    );
    proxy.health(None).await;
    eventually_async("healthy again", || !endpoints(&running).is_empty()).await;

    // A restart: the entry is on disk, read back, and kept when the proxy reconnects.
    drop(proxy);
    running.stop().await;
    let running = bowline_app::start(&config, bowline_app::Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    eventually_async("the entry is read back after the restart", || {
        !endpoints(&running).is_empty()
    })
    .await;
    let proxy = Proxy::connect(running.xds_addr, "legacy").await.unwrap();
    eventually_async("reconnected: connectedAt again", || {
        entry(dir.path()).is_some_and(|e| {
            e["metadata"]["annotations"]
                .get("istio.io/connectedAt")
                .is_some()
                && e["metadata"]["annotations"]
                    .get("istio.io/disconnectedAt")
                    .is_none()
        })
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        entry(dir.path()).is_some(),
        "kept past the grace period while connected"
    );

    // Disconnect: marked, then deleted after the grace period.
    drop(proxy);
    eventually_async("marked disconnected", || {
        entry(dir.path()).is_some_and(|e| {
            e["metadata"]["annotations"]
                .get("istio.io/disconnectedAt")
                .is_some()
        })
    })
    .await;
    eventually_async("deleted after the grace period", || {
        entry(dir.path()).is_none()
    })
    .await;
    eventually_async("no endpoint left", || all_endpoints(&running).is_empty()).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_group_registers_and_a_proxy_without_namespace_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("east")).unwrap();
    let without_group: String = MEMBER
        .split("---")
        .filter(|doc| !doc.contains("kind: WorkloadGroup"))
        .collect::<Vec<_>>()
        .join("---");
    fs::write(dir.path().join("east/objects.yaml"), &without_group).unwrap();
    let config = config(dir.path());
    let running = bowline_app::start(&config, bowline_app::Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    eventually_async("the member is read", || {
        running.registry.read().members()[0].synced
    })
    .await;

    let proxy = Proxy::connect(running.xds_addr, "legacy").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(entry(dir.path()).is_none(), "no group yet");
    fs::write(dir.path().join("east/objects.yaml"), MEMBER).unwrap();
    eventually_async("registered once the group appears", || {
        entry(dir.path()).is_some()
    })
    .await;
    drop(proxy);

    // "" stands for a node without NAMESPACE.
    let refused = Proxy::connect(running.xds_addr, "")
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("without NAMESPACE"),
        "{}",
        refused.message()
    );
    running.stop().await;
}

/// Two replicas over one Kubernetes member: the entry is applied into the API server and read
/// back as an endpoint; a reconnect to the other replica moves it there; each replica renews
/// a heartbeat Lease; a disconnect deletes it after the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kubernetes_the_entry_is_applied_read_back_and_moves_between_replicas() {
    use bowline_fake_kube::{FakeApiServer, ResourceDef};

    let server = FakeApiServer::start().await;
    let istio = &["v1", "v1beta1", "v1alpha3"];
    for (plural, kind) in [
        ("workloadentries", "WorkloadEntry"),
        ("workloadgroups", "WorkloadGroup"),
    ] {
        server.install_crd(
            ResourceDef::custom("networking.istio.io", istio, plural, kind).with_status(),
        );
    }
    for document in MEMBER
        .split("---")
        .filter(|d| !d.contains("ClusterProperty"))
    {
        let value: serde_json::Value = serde_saphyr::from_str(document).unwrap();
        server.apply_json(value);
    }
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("east.kubeconfig"),
        server.kubeconfig_yaml("t"),
    )
    .unwrap();
    let config = |identity: &str| {
        let path = dir.path().join(format!("{identity}.yaml"));
        fs::write(
            &path,
            format!(
                "clusterSet: set\nmembers:\n- {{kubeconfig: east.kubeconfig, name: east, id: east}}\n\
                 leaderElection: {{member: east, leaseDuration: 1s, identity: {identity}}}\n\
                 vm: {{gracePeriod: 1s, controller: {identity}}}\n"
            ),
        )
        .unwrap();
        Config::load(&path).unwrap_or_else(|e| panic!("{e}"))
    };
    let live = |server: &FakeApiServer| {
        server.get(
            "networking.istio.io/v1",
            "WorkloadEntry",
            Some("demo"),
            "legacy-127.0.0.50",
        )
    };
    let controller = |server: &FakeApiServer| {
        live(server).and_then(|e| {
            e["metadata"]["annotations"]["istio.io/workloadController"]
                .as_str()
                .map(str::to_string)
        })
    };
    let a = bowline_app::start(
        &config("a"),
        bowline_app::Listeners::loopback().await.unwrap(),
    )
    .await
    .unwrap();
    let b = bowline_app::start(
        &config("b"),
        bowline_app::Listeners::loopback().await.unwrap(),
    )
    .await
    .unwrap();
    eventually_async("both replicas read the member", || {
        a.registry.read().members()[0].synced && b.registry.read().members()[0].synced
    })
    .await;

    let to_a = Proxy::connect(a.xds_addr, "legacy").await.unwrap();
    eventually_async("applied by a", || {
        controller(&server).as_deref() == Some("a")
    })
    .await;
    to_a.health(None).await;
    eventually_async("read back by b as a healthy endpoint", || {
        endpoints(&b).iter().any(|e| e.contains("127.0.0.50"))
    })
    .await;
    for replica in ["a", "b"] {
        eventually_async("a heartbeat Lease per replica", || {
            server
                .get(
                    "coordination.k8s.io/v1",
                    "Lease",
                    Some("bowline-system"),
                    &format!("bowline-vm-{replica}"),
                )
                .is_some()
        })
        .await;
    }

    // The proxy moves to b (its stream to a is still open for a while).
    let to_b = Proxy::connect(b.xds_addr, "legacy").await.unwrap();
    eventually_async("b controls it", || {
        controller(&server).as_deref() == Some("b")
    })
    .await;
    drop(to_a);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        controller(&server).as_deref(),
        Some("b"),
        "a leaves the entry of a proxy connected to b alone"
    );
    assert!(
        live(&server).unwrap()["metadata"]["annotations"]
            .get("istio.io/disconnectedAt")
            .is_none()
    );

    drop(to_b);
    eventually_async("deleted after the grace period", || live(&server).is_none()).await;
    a.stop().await;
    b.stop().await;
}

/// On the TLS port a proxy registers with a token of its group and namespace; a token of
/// another group, or none that verifies, is refused with a status naming the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_token_registers_only_its_own_group() {
    let dir = tempfile::tempdir().unwrap();
    let (config, running, root) = start_member(dir.path(), "").await;
    let store = bowline_vm::tokens::TokenStore::open(&config.data_dir);
    let now = jiff::Timestamp::now();
    let hour = Duration::from_secs(3600);
    let (other_group, _) = store.issue("other", "demo", hour, now).unwrap();
    let (other_namespace, _) = store.issue("legacy", "prod", hour, now).unwrap();
    let (legacy, _) = store.issue("legacy", "demo", hour, now).unwrap();

    for (token, what) in [
        (other_group.as_str(), "WorkloadGroup"),
        (other_namespace.as_str(), "namespace"),
    ] {
        let refused = Proxy::tls(running.xds_tls_addr, &root, "legacy", Some(token))
            .await
            .err()
            .unwrap_or_else(|| panic!("a token of another {what} registered"));
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
        assert!(
            refused.message().contains("legacy"),
            "{}",
            refused.message()
        );
    }
    let refused = Proxy::tls(running.xds_tls_addr, &root, "legacy", Some("bwl.0.garbage"))
        .await
        .err()
        .expect("an unknown token registered");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        entry(dir.path()).is_none(),
        "nothing registered by refused proxies"
    );

    let proxy = Proxy::tls(running.xds_tls_addr, &root, "legacy", Some(&legacy))
        .await
        .unwrap();
    eventually_async("registered with its own token", || {
        entry(dir.path()).is_some()
    })
    .await;
    drop(proxy);
    running.stop().await;
}

/// One token opens at most `limits.streamsPerIdentity` streams at once: the next is
/// refused with `RESOURCE_EXHAUSTED` naming the limit; another token is not held back, and a
/// closed stream frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_per_token_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (config, running, root) =
        start_member(dir.path(), "limits: {streamsPerIdentity: 2}\n").await;
    let store = bowline_vm::tokens::TokenStore::open(&config.data_dir);
    let now = jiff::Timestamp::now();
    let hour = Duration::from_secs(3600);
    let (token, _) = store.issue("legacy", "demo", hour, now).unwrap();
    let (other, _) = store.issue("legacy", "demo", hour, now).unwrap();
    let addr = running.xds_tls_addr;

    let first = Proxy::tls(addr, &root, "legacy", Some(&token))
        .await
        .unwrap();
    let _second = Proxy::tls(addr, &root, "legacy", Some(&token))
        .await
        .unwrap();
    let refused = Proxy::tls(addr, &root, "legacy", Some(&token))
        .await
        .err()
        .expect("a third stream with one token");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("limits.streamsPerIdentity"),
        "{}",
        refused.message()
    );
    let _another = Proxy::tls(addr, &root, "legacy", Some(&other))
        .await
        .unwrap();

    drop(first);
    let mut again = None;
    for _ in 0..50 {
        if let Ok(proxy) = Proxy::tls(addr, &root, "legacy", Some(&token)).await {
            again = Some(proxy);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "a closed stream frees its place");
    running.stop().await;
}

/// With `leaderElection`, tokens live in the Secret `bowline-vm-tokens` of the
/// leader-election member: tokens issued as `bowline vm token` does with that configuration
/// (two at once: neither record is lost) are accepted by a running Bowline, which reads the
/// Secret again when an unknown token is presented; nothing is kept in the data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kubernetes_tokens_issued_into_the_secret_register_over_tls() {
    use base64::Engine;
    use bowline_app::state::StateStore;
    use bowline_fake_kube::{FakeApiServer, ResourceDef};

    let server = FakeApiServer::start().await;
    let istio = &["v1", "v1beta1", "v1alpha3"];
    for (plural, kind) in [
        ("workloadentries", "WorkloadEntry"),
        ("workloadgroups", "WorkloadGroup"),
    ] {
        server.install_crd(
            ResourceDef::custom("networking.istio.io", istio, plural, kind).with_status(),
        );
    }
    for document in MEMBER
        .split("---")
        .filter(|d| !d.contains("ClusterProperty"))
    {
        let value: serde_json::Value = serde_saphyr::from_str(document).unwrap();
        server.apply_json(value);
    }
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("east.kubeconfig"),
        server.kubeconfig_yaml("t"),
    )
    .unwrap();
    let path = dir.path().join("bowline.yaml");
    fs::write(
        &path,
        "clusterSet: set\nmembers:\n- {kubeconfig: east.kubeconfig, name: east, id: east}\n\
         leaderElection: {member: east, leaseDuration: 1s, identity: a}\n\
         vm: {gracePeriod: 1s, controller: a}\ndataDir: state\n",
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    let running = bowline_app::start(&config, bowline_app::Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    let secret = |name: &str, key: &str| {
        let secret = server.get("v1", "Secret", Some("bowline-system"), name)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(secret["data"][key].as_str()?)
            .ok()?;
        String::from_utf8(bytes).ok()
    };
    let root = secret("bowline-ca", "tls.crt").expect("the CA Secret");

    // Issued after the start, two at once, as `bowline vm token` does.
    let store = StateStore::of(&config);
    let now = jiff::Timestamp::now();
    let hour = Duration::from_secs(3600);
    let (legacy, other) = tokio::join!(
        store.issue_token("legacy", "demo", hour, now),
        store.issue_token("other", "demo", hour, now)
    );
    let ((legacy, legacy_record), (other, other_record)) = (legacy.unwrap(), other.unwrap());
    let stored = secret("bowline-vm-tokens", "vm-tokens.json").expect("the token Secret");
    let records = bowline_vm::tokens::parse_store(&stored).unwrap();
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert!(
        ids.contains(&legacy_record.id.as_str()) && ids.contains(&other_record.id.as_str()),
        "both records kept: {ids:?}"
    );
    assert!(
        !stored.contains(legacy.rsplit('.').next().unwrap()),
        "no secret stored"
    );

    // A token of another group is known (so refused for its scope, not as unknown) once
    // the Secret is read again; the proxy retries as Envoy does.
    let mut refusal = None;
    for _ in 0..40 {
        match Proxy::tls(running.xds_tls_addr, &root, "legacy", Some(&other)).await {
            Ok(_) => panic!("a token of another group registered"),
            Err(status) if status.code() == tonic::Code::Unauthenticated => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(status) => {
                refusal = Some(status);
                break;
            }
        }
    }
    let refusal = refusal.expect("the token became known");
    assert_eq!(refusal.code(), tonic::Code::PermissionDenied, "{refusal:?}");

    let proxy = Proxy::tls(running.xds_tls_addr, &root, "legacy", Some(&legacy))
        .await
        .expect("registered with the token from the Secret");
    eventually_async("the entry is applied", || {
        server
            .get(
                "networking.istio.io/v1",
                "WorkloadEntry",
                Some("demo"),
                "legacy-127.0.0.50",
            )
            .is_some()
    })
    .await;
    assert!(
        !dir.path().join("state").exists(),
        "the data directory is not used"
    );
    drop(proxy);
    running.stop().await;
}

/// A ServiceEntry host outside the Kubernetes zones selecting an auto-registered VM is listed
/// in `/debug/hosts` with that VM once it is healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_entry_host_selects_a_registered_vm() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("east")).unwrap();
    let entry = "\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
                 metadata: {name: legacy-ext, namespace: demo}\n\
                 spec:\n  hosts: [legacy.example.com]\n  ports: [{name: http, number: 80, protocol: HTTP}]\n  \
                 workloadSelector: {labels: {app: legacy}}\n";
    fs::write(
        dir.path().join("east/objects.yaml"),
        format!("{MEMBER}{entry}"),
    )
    .unwrap();
    let config = config(dir.path());
    let running = bowline_app::start(&config, bowline_app::Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    eventually_async("the member is read", || {
        running.registry.read().members()[0].synced
    })
    .await;
    let proxy = Proxy::connect(running.xds_addr, "legacy").await.unwrap();
    proxy.health(None).await;
    let hosts = |running: &bowline_app::Running| running.registry.read().host_services();
    eventually_async("the VM is an endpoint of legacy.example.com", || {
        hosts(&running).iter().any(|h| {
            h.host == "legacy.example.com"
                && h.endpoints
                    .iter()
                    .any(|e| e.addresses[0].to_string() == "127.0.0.50" && e.ports[0].port == 8080)
        })
    })
    .await;
    let addr = running.admin_addr.to_string();
    let (code, body) = tokio::task::spawn_blocking(move || {
        bowline_test_support::http_get(&addr, "/debug/hosts").unwrap()
    })
    .await
    .unwrap();
    assert_eq!(code, 200);
    assert!(
        body.contains("legacy.example.com") && body.contains("127.0.0.50"),
        "{body}"
    );
    drop(proxy);
    running.stop().await;
}

/// A client of the TLS xDS port trusting `root`.
async fn tls_channel(addr: std::net::SocketAddr, root: &str) -> tonic::transport::Channel {
    use tonic::transport::{Certificate, Channel, ClientTlsConfig};
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(root))
                .domain_name(bowline_vm::ca::DISCOVERY_HOST),
        )
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A PEM CSR for a new key, asking for `uri` (or no name).
fn csr_for(uri: Option<&str>) -> String {
    csr_and_key(uri).0
}

/// A PEM CSR asking for `uri` (or no name), and its new key, PEM.
fn csr_and_key(uri: Option<&str>) -> (String, String) {
    let mut params = rcgen::CertificateParams::default();
    if let Some(uri) = uri {
        params.subject_alt_names = vec![rcgen::SanType::URI(uri.to_string().try_into().unwrap())];
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    (csr, key.serialize_pem())
}

/// `CreateCertificate` with `csr`, presenting `token` and naming `cluster` in `ClusterID`:
/// the chain, or the status.
async fn create_certificate(
    channel: &tonic::transport::Channel,
    csr: String,
    token: Option<String>,
    cluster: Option<&str>,
) -> Result<Vec<String>, tonic::Status> {
    use bowline_app::ca_api::{IstioCertificateRequest, IstioCertificateResponse};
    let mut client = tonic::client::Grpc::new(channel.clone());
    client.ready().await.unwrap();
    let mut request = tonic::Request::new(IstioCertificateRequest {
        csr,
        validity_duration: 3600,
        metadata: None,
    });
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    if let Some(cluster) = cluster {
        request
            .metadata_mut()
            .insert("clusterid", cluster.parse().unwrap());
    }
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/istio.v1.auth.IstioCertificateService/CreateCertificate",
    );
    client
        .unary::<_, IstioCertificateResponse, _>(request, path, tonic_prost::ProstCodec::default())
        .await
        .map(|r| r.into_inner().cert_chain)
}

/// The URI SAN of the first certificate of `chain`, checked to verify to `root`.
fn spiffe_of(chain: &[String], root: &str) -> String {
    let (_, leaf) = x509_parser::pem::parse_x509_pem(chain[0].as_bytes()).unwrap();
    let leaf = leaf.parse_x509().unwrap();
    let (_, root_pem) = x509_parser::pem::parse_x509_pem(root.as_bytes()).unwrap();
    leaf.verify_signature(Some(root_pem.parse_x509().unwrap().public_key()))
        .unwrap();
    let sans = leaf.subject_alternative_name().unwrap().unwrap();
    match sans.value.general_names.as_slice() {
        [x509_parser::extensions::GeneralName::URI(uri)] => uri.to_string(),
        other => panic!("SANs {other:?}"),
    }
}

/// `CreateCertificate` on the TLS port: a VM token gets a certificate for its group's service
/// account (`spiffe://cluster.local/ns/demo/sa/legacy`) that verifies to Bowline's root; a
/// CSR for another identity, no token and a bad CSR get the status that names the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_token_gets_a_certificate_for_its_groups_service_account_only() {
    let dir = tempfile::tempdir().unwrap();
    let (config, running, root) = start_member(dir.path(), "").await;
    let token = common::vm_token(&config, "legacy", "demo");
    let channel = tls_channel(running.xds_tls_addr, &root).await;
    let create =
        |csr: String, token: Option<String>| create_certificate(&channel, csr, token, None);
    let identity = "spiffe://cluster.local/ns/demo/sa/legacy";
    let (csr, key) = csr_and_key(Some(identity));
    let chain = create(csr, Some(token.clone())).await.unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1], root, "the chain ends with Bowline's root");
    assert_eq!(spiffe_of(&chain, &root), identity);

    let other = create(
        csr_for(Some("spiffe://cluster.local/ns/demo/sa/admin")),
        Some(token.clone()),
    )
    .await
    .unwrap_err();
    assert_eq!(other.code(), tonic::Code::PermissionDenied, "{other:?}");
    assert!(other.message().contains(identity), "{}", other.message());
    let anonymous = create(csr_for(None), None).await.unwrap_err();
    assert_eq!(
        anonymous.code(),
        tonic::Code::Unauthenticated,
        "{anonymous:?}"
    );
    let garbage = create("garbage".into(), Some(token)).await.unwrap_err();
    assert_eq!(garbage.code(), tonic::Code::InvalidArgument, "{garbage:?}");

    // Renewal: the issued certificate, as the TLS client's, is the credential.
    let renewing = {
        use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
        Channel::from_shared(format!("https://{}", running.xds_tls_addr))
            .unwrap()
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&root))
                    .identity(Identity::from_pem(&chain[0], &key))
                    .domain_name(bowline_vm::ca::DISCOVERY_HOST),
            )
            .unwrap()
            .connect()
            .await
            .unwrap()
    };
    let renewed = create_certificate(&renewing, csr_for(Some(identity)), None, None)
        .await
        .unwrap();
    assert_eq!(spiffe_of(&renewed, &root), identity);
    let widened = create_certificate(
        &renewing,
        csr_for(Some("spiffe://cluster.local/ns/demo/sa/admin")),
        None,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(widened.code(), tonic::Code::PermissionDenied, "{widened:?}");

    // Counted: two issued, each refusal by its status; the earliest expiry an hour out.
    let admin = running.admin_addr.to_string();
    let (_, metrics) = tokio::task::spawn_blocking(move || {
        bowline_test_support::http_get(&admin, "/metrics").unwrap()
    })
    .await
    .unwrap();
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} in {metrics}"))
    };
    assert_eq!(value("bowline_ca_certificates_issued_total"), 2.0);
    for (reason, count) in [
        ("permission_denied", 2.0),
        ("unauthenticated", 1.0),
        ("invalid_argument", 1.0),
    ] {
        let series = format!("bowline_ca_certificates_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(value(&series), count, "{reason}");
    }
    let in_an_hour = jiff::Timestamp::now().as_second() as f64 + 3600.0;
    let earliest = value("bowline_ca_earliest_expiry_seconds");
    assert!(
        (in_an_hour - 10.0..=in_an_hour + 1.0).contains(&earliest),
        "{earliest}"
    );
    let admin = running.admin_addr.to_string();
    let (code, identities) = tokio::task::spawn_blocking(move || {
        bowline_test_support::http_get(&admin, "/debug/identities").unwrap()
    })
    .await
    .unwrap();
    assert_eq!(code, 200, "{identities}");
    let identities: serde_json::Value = serde_json::from_str(&identities).unwrap();
    assert_eq!(identities[identity]["count"], 2, "{identities}");
    assert!(
        identities[identity]["expiresAt"].is_string(),
        "{identities}"
    );
    assert_eq!(identities.as_object().unwrap().len(), 1, "{identities}");
    running.stop().await;
}

/// A registering proxy's `LABELS` may refine its group's labels, but not make its VM an
/// endpoint of a Service the group's template does not select (#15: a token for
/// `demo/legacy` said `app: echo` and took part of `demo/echo`'s traffic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_label_that_would_select_another_service_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("east")).unwrap();
    fs::write(
        dir.path().join("east/echo.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: echo, namespace: demo}\n\
         spec:\n  selector: {app: echo}\n  ports: [{name: http, port: 80}]\n",
    )
    .unwrap();
    let (_config, running, _) = start_member(dir.path(), "").await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", running.xds_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let labelled = |pairs: &[(&str, &str)]| {
        ads::node("vm-1", "envoy")
            .meta("AUTO_REGISTER_GROUP", "legacy")
            .meta("NAMESPACE", "demo")
            .meta("CLUSTER_ID", "east")
            .meta("INSTANCE_IPS", "127.0.0.50")
            .labels(pairs)
            .build()
    };
    let refused = Proxy::with_node(channel.clone(), labelled(&[("app", "echo")]), None)
        .await
        .err()
        .expect("a label selecting demo/echo registered");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("app=echo") && refused.message().contains("Service demo/echo"),
        "{}",
        refused.message()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(entry(dir.path()).is_none(), "nothing registered");

    let _proxy = Proxy::with_node(channel, labelled(&[("version", "v9")]), None)
        .await
        .unwrap();
    eventually_async("a label that selects nothing new is kept", || {
        entry(dir.path()).is_some_and(|e| e["spec"]["labels"]["version"] == "v9")
    })
    .await;
    running.stop().await;
}

/// A Kubernetes service-account token, reviewed in the member its `ClusterID` names, gets a
/// certificate for that service account; one for another audience, an expired one, and a
/// CSR for another identity are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_token_reviewed_by_its_member_gets_that_identity() {
    let server = bowline_fake_kube::FakeApiServer::start().await;
    server.install_bowline_crds();
    for object in [
        serde_json::json!({"apiVersion": "about.k8s.io/v1beta1", "kind": "ClusterProperty",
            "metadata": {"name": "cluster.clusterset.k8s.io"}, "spec": {"value": "east"}}),
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "cart", "namespace": "shop"}}),
    ] {
        server.apply_json(object);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = common::kubernetes_member(&server, dir.path(), "");
    let running = bowline_app::start(&config, bowline_app::Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    eventually_async("east admitted", || {
        running.registry.read().members()[0]
            .admission
            .id()
            .is_some()
    })
    .await;
    let root = fs::read_to_string(config.data_dir.join("ca/root-cert.pem")).unwrap();
    let channel = tls_channel(running.xds_tls_addr, &root).await;
    let identity = "spiffe://cluster.local/ns/shop/sa/cart";
    let token = server
        .service_account_token("shop", "cart", &["istio-ca"], 3600)
        .unwrap();

    let chain = create_certificate(
        &channel,
        csr_for(Some(identity)),
        Some(token.clone()),
        Some("east"),
    )
    .await
    .unwrap();
    assert_eq!(spiffe_of(&chain, &root), identity);
    // One Kubernetes member: ClusterID may be left out.
    create_certificate(&channel, csr_for(None), Some(token.clone()), None)
        .await
        .unwrap();

    let other = create_certificate(
        &channel,
        csr_for(Some("spiffe://cluster.local/ns/shop/sa/admin")),
        Some(token.clone()),
        Some("east"),
    )
    .await
    .unwrap_err();
    assert_eq!(other.code(), tonic::Code::PermissionDenied, "{other:?}");
    let foreign = server
        .service_account_token("shop", "cart", &["https://example.com"], 3600)
        .unwrap();
    let refused = create_certificate(&channel, csr_for(None), Some(foreign), Some("east"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(
        refused.message().contains("istio-ca"),
        "{}",
        refused.message()
    );
    let unknown = create_certificate(&channel, csr_for(None), Some(token.clone()), Some("west"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::Unauthenticated, "{unknown:?}");
    // xDS over TLS with the same token: the node may claim that namespace and member only.
    let sidecar = |namespace: &str, cluster: &str| {
        ads::node("cart-0", "envoy")
            .meta("NAMESPACE", namespace)
            .meta("CLUSTER_ID", cluster)
            .build()
    };
    Proxy::with_node(channel.clone(), sidecar("shop", "east"), Some(&token))
        .await
        .expect("a reviewed service account's sidecar is served");
    for (node, claim) in [
        (sidecar("bank", "east"), "namespace \"bank\""),
        (sidecar("shop", "west"), "cluster \"west\""),
    ] {
        let lying = Proxy::with_node(channel.clone(), node, Some(&token))
            .await
            .err()
            .unwrap_or_else(|| panic!("a sidecar claiming {claim} was served"));
        assert_eq!(lying.code(), tonic::Code::PermissionDenied, "{lying:?}");
        assert!(lying.message().contains(claim), "{}", lying.message());
    }
    server.expire_token(&token);
    let expired = create_certificate(&channel, csr_for(None), Some(token), Some("east"))
        .await
        .unwrap_err();
    assert_eq!(expired.code(), tonic::Code::Unauthenticated, "{expired:?}");
    assert!(
        expired.message().contains("expired"),
        "{}",
        expired.message()
    );
    running.stop().await;
}

/// xDS over TLS needs a credential; a client certificate from Bowline's CA is one: it bounds
/// the namespace the node may claim, and registers a VM into a group whose workloads it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_over_tls_needs_a_credential_and_a_certificate_bounds_what_the_node_claims() {
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
    let dir = tempfile::tempdir().unwrap();
    let (config, running, root) = start_member(dir.path(), "").await;
    let token = common::vm_token(&config, "legacy", "demo");
    let sidecar = |namespace: &str| {
        ads::node("legacy-0", "envoy")
            .meta("NAMESPACE", namespace)
            .meta("CLUSTER_ID", "east")
            .build()
    };
    let anonymous = Proxy::with_node(
        tls_channel(running.xds_tls_addr, &root).await,
        sidecar("demo"),
        None,
    )
    .await
    .err()
    .expect("an anonymous TLS stream was served");
    assert_eq!(
        anonymous.code(),
        tonic::Code::Unauthenticated,
        "{anonymous:?}"
    );
    assert!(
        anonymous
            .message()
            .contains("client certificate from Bowline's CA"),
        "{}",
        anonymous.message()
    );

    // The certificate of demo/legacy, as the agent gets it.
    let channel = tls_channel(running.xds_tls_addr, &root).await;
    let (csr, key) = csr_and_key(None);
    let chain = create_certificate(&channel, csr, Some(token), None)
        .await
        .unwrap();
    let certified = || async {
        Channel::from_shared(format!("https://{}", running.xds_tls_addr))
            .unwrap()
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&root))
                    .identity(Identity::from_pem(&chain[0], &key))
                    .domain_name(bowline_vm::ca::DISCOVERY_HOST),
            )
            .unwrap()
            .connect()
            .await
            .unwrap()
    };
    Proxy::with_node(certified().await, sidecar("demo"), None)
        .await
        .expect("a certified sidecar is served");
    let lying = Proxy::with_node(certified().await, sidecar("prod"), None)
        .await
        .err()
        .expect("a sidecar claiming another namespace was served");
    assert_eq!(lying.code(), tonic::Code::PermissionDenied, "{lying:?}");
    assert!(
        lying.message().contains("namespace \"prod\"")
            && lying
                .message()
                .contains("spiffe://cluster.local/ns/demo/sa/legacy"),
        "{}",
        lying.message()
    );
    // The certificate registers into the group whose template names its service account.
    let vm = Proxy::with_node(certified().await, node("legacy"), None)
        .await
        .expect("the group's own workload registers");
    eventually_async("registered with its certificate", || {
        entry(dir.path()).is_some()
    })
    .await;
    drop(vm);
    running.stop().await;
}

/// With `ca.plugin`, Bowline signs with the user's intermediate: the TLS port and every
/// workload chain verify to the user's root (Istio's `cacerts` layout), the data directory
/// gets no root of Bowline's own, and renewal with a chain through the intermediate works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_ca_signs_chains_that_verify_to_the_users_root() {
    let dir = tempfile::tempdir().unwrap();
    let (root, root_issuer) = ca_certificate("user root", None);
    let (signing, signing_issuer) = ca_certificate("bowline east", Some(&root_issuer));
    let cacerts = dir.path().join("cacerts");
    fs::create_dir_all(&cacerts).unwrap();
    for (file, text) in [
        ("ca-cert.pem", signing.clone()),
        ("ca-key.pem", signing_issuer.key().serialize_pem()),
        ("root-cert.pem", root.clone()),
        ("cert-chain.pem", format!("{signing}{root}")),
    ] {
        fs::write(cacerts.join(file), text).unwrap();
    }
    fs::create_dir_all(dir.path().join("east")).unwrap();
    fs::write(dir.path().join("east/objects.yaml"), MEMBER).unwrap();
    fs::write(
        dir.path().join("bowline.yaml"),
        "clusterSet: set\nmembers: [{manifests: east}]\nca: {plugin: {dir: cacerts}}\n",
    )
    .unwrap();
    let config = Config::load(&dir.path().join("bowline.yaml")).unwrap();
    let running = bowline_app::start(&config, bowline_app::Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    assert!(
        !config.data_dir.join("ca/root-cert.pem").exists(),
        "no root of Bowline's own"
    );
    eventually_async("the member is read", || {
        running.registry.read().members()[0].synced
    })
    .await;
    let token = common::vm_token(&config, "legacy", "demo");
    // The serving certificate verifies to the user's root through the intermediate.
    let channel = tls_channel(running.xds_tls_addr, &root).await;
    let identity = "spiffe://cluster.local/ns/demo/sa/legacy";
    let (csr, key) = csr_and_key(Some(identity));
    let chain = create_certificate(&channel, csr, Some(token), None)
        .await
        .unwrap();
    assert_eq!(chain.len(), 3, "leaf, intermediate, root: {chain:?}");
    let der = |pem: &str| {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents
    };
    assert_eq!(der(&chain[1]), der(&signing));
    assert_eq!(der(&chain[2]), der(&root));
    assert_eq!(
        spiffe_of(&chain, &signing),
        identity,
        "signed by the intermediate"
    );

    // Renewal presents the leaf and the intermediate; Bowline checks them up to the root.
    let renewing = {
        use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
        Channel::from_shared(format!("https://{}", running.xds_tls_addr))
            .unwrap()
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&root))
                    .identity(Identity::from_pem(
                        format!("{}{}", chain[0], chain[1]),
                        &key,
                    ))
                    .domain_name(bowline_vm::ca::DISCOVERY_HOST),
            )
            .unwrap()
            .connect()
            .await
            .unwrap()
    };
    let renewed = create_certificate(&renewing, csr_for(Some(identity)), None, None)
        .await
        .unwrap();
    assert_eq!(spiffe_of(&renewed, &signing), identity);
    running.stop().await;

    // A plug-in CA that does not chain to its root stops the start, naming the file.
    let (other_root, _) = ca_certificate("someone else", None);
    fs::write(cacerts.join("root-cert.pem"), other_root).unwrap();
    let Err(err) =
        bowline_app::start(&config, bowline_app::Listeners::loopback().await.unwrap()).await
    else {
        panic!("started with a plug-in CA that does not chain to its root");
    };
    let err = format!("{err:#}");
    assert!(
        err.contains("is not signed by") && err.contains("cacerts/root-cert.pem"),
        "{err}"
    );
}

/// A VM token revoked (its record deleted from the store) gets no more certificates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_vm_token_gets_no_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (config, running, root) = start_member(dir.path(), "").await;
    let store = bowline_vm::tokens::TokenStore::open(&config.data_dir);
    let (token, record) = store
        .issue(
            "legacy",
            "demo",
            Duration::from_secs(3600),
            jiff::Timestamp::now(),
        )
        .unwrap();
    let channel = tls_channel(running.xds_tls_addr, &root).await;
    create_certificate(&channel, csr_for(None), Some(token.clone()), None)
        .await
        .expect("a valid token gets a certificate");
    // Revoke: delete its record, as docs/operations.md says.
    let kept: Vec<_> = store
        .records()
        .unwrap()
        .into_iter()
        .filter(|r| r.id != record.id)
        .collect();
    fs::write(
        store.path().unwrap(),
        bowline_vm::tokens::render_store(kept),
    )
    .unwrap();
    // The store is read again when an unknown token shows up, at most once a second.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let refused = loop {
        match create_certificate(&channel, csr_for(None), Some(token.clone()), None).await {
            Err(status) => break status,
            Ok(_) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the revoked token still gets certificates"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(
        refused.message().contains("unknown"),
        "{}",
        refused.message()
    );
    running.stop().await;
}
