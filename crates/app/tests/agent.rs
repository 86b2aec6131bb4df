//! `bowline agent` against a running Bowline: the certificate for the group's service
//! account reaches Envoy's side of the SDS socket (`default`, `ROOTCA`), the PEM files and the
//! gRPC bootstrap; it rotates at half of a short lifetime, pushed on the open SDS stream, and
//! renews with the certificate itself once the token is gone.

mod common;
use common::ca_certificate;
use std::{fs, path::Path, time::Duration};

use bowline_app::{
    agent::{AgentConfig, sds},
    config::Config,
};
use envoy_types::pb::envoy::{
    config::core::v3::data_source::Specifier,
    extensions::transport_sockets::tls::v3::{Secret, secret},
    service::{
        discovery::v3::{DiscoveryRequest, DiscoveryResponse},
        secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient,
    },
};
use prost::Message as _;
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
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: legacy, namespace: demo}
spec:
  metadata:
    labels: {app: legacy}
  template:
    serviceAccount: legacy
"#;

/// An SDS client on the agent's socket, as Envoy's `sds-grpc` cluster is.
async fn sds_client(socket: &Path) -> SecretDiscoveryServiceClient<tonic::transport::Channel> {
    let socket = socket.to_path_buf();
    let channel = tonic::transport::Endpoint::from_static("http://sds")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .unwrap();
    SecretDiscoveryServiceClient::new(channel)
}

/// One SDS stream asking for `names`: the sender of further requests and the responses.
async fn subscribe(
    client: &mut SecretDiscoveryServiceClient<tonic::transport::Channel>,
    names: &[&str],
) -> (
    mpsc::Sender<DiscoveryRequest>,
    tonic::Streaming<DiscoveryResponse>,
) {
    let (send, receive) = mpsc::channel(4);
    send.send(DiscoveryRequest {
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        type_url: sds::SECRET_TYPE.into(),
        ..DiscoveryRequest::default()
    })
    .await
    .unwrap();
    let responses = client
        .stream_secrets(ReceiverStream::new(receive))
        .await
        .unwrap()
        .into_inner();
    (send, responses)
}

async fn next(
    responses: &mut tonic::Streaming<DiscoveryResponse>,
    within: Duration,
) -> DiscoveryResponse {
    tokio::time::timeout(within, responses.message())
        .await
        .expect("an SDS response in time")
        .unwrap()
        .expect("the stream stays open")
}

fn secrets(response: &DiscoveryResponse) -> Vec<Secret> {
    response
        .resources
        .iter()
        .map(|any| {
            assert_eq!(any.type_url, sds::SECRET_TYPE);
            Secret::decode(any.value.as_slice()).unwrap()
        })
        .collect()
}

fn inline(source: &Option<envoy_types::pb::envoy::config::core::v3::DataSource>) -> String {
    match source.as_ref().and_then(|s| s.specifier.as_ref()) {
        Some(Specifier::InlineBytes(bytes)) => String::from_utf8(bytes.clone()).unwrap(),
        other => panic!("not inline bytes: {other:?}"),
    }
}

/// The `default` secret's chain and key.
fn certificate(response: &DiscoveryResponse) -> (String, String) {
    let [secret] = secrets(response).try_into().unwrap();
    assert_eq!(secret.name, sds::DEFAULT);
    let Some(secret::Type::TlsCertificate(tls)) = secret.r#type else {
        panic!("default is not a TLS certificate: {secret:?}");
    };
    (inline(&tls.certificate_chain), inline(&tls.private_key))
}

/// The leaf's URI SAN, checked to be signed by `root` and to be `key`'s certificate.
fn identity_of(chain: &str, key: &str, root: &str) -> String {
    use rcgen::PublicKeyData;
    let (_, leaf) = x509_parser::pem::parse_x509_pem(chain.as_bytes()).unwrap();
    let leaf = leaf.parse_x509().unwrap();
    let (_, root) = x509_parser::pem::parse_x509_pem(root.as_bytes()).unwrap();
    leaf.verify_signature(Some(root.parse_x509().unwrap().public_key()))
        .unwrap();
    let key = rcgen::KeyPair::from_pem(key).unwrap();
    assert_eq!(
        leaf.public_key().raw,
        key.subject_public_key_info().as_slice(),
        "the key is the certificate's"
    );
    let sans = leaf.subject_alternative_name().unwrap().unwrap();
    match sans.value.general_names.as_slice() {
        [x509_parser::extensions::GeneralName::URI(uri)] => uri.to_string(),
        other => panic!("SANs {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_serves_rotates_and_renews_the_workload_certificate() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info")
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    fs::create_dir_all(dir.join("east")).unwrap();
    fs::write(dir.join("east/objects.yaml"), MEMBER).unwrap();
    fs::write(
        dir.join("bowline.yaml"),
        "clusterSet: set\nmembers: [{manifests: east}]\n",
    )
    .unwrap();
    let config = Config::load(&dir.join("bowline.yaml")).unwrap();
    let running = bowline_app::start(&config, bowline_app::Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    let root = fs::read_to_string(config.data_dir.join("ca/root-cert.pem")).unwrap();
    let token = common::vm_token(&config, "legacy", "demo");
    let vm = dir.join("vm");
    fs::create_dir_all(&vm).unwrap();
    fs::write(vm.join("token"), &token).unwrap();
    fs::write(vm.join("root-cert.pem"), &root).unwrap();
    let port = running.xds_tls_addr.port();
    fs::write(
        vm.join("agent.yaml"),
        format!(
            "discovery: bowline.bowline-system.svc:{port}\naddress: 127.0.0.1:{port}\nrootCert: root-cert.pem\ntoken: token\nclusterId: east\nttl: 10s\nsdsSocket: run/sds.sock\ncertDir: certs\ngrpcBootstrap: {{path: grpc-bootstrap.json, nodeId: 'sidecar~127.0.0.60~vm-1.demo~demo.svc.cluster.local', metadata: {{CLUSTER_ID: east}}}}\n"
        ),
    )
    .unwrap();
    let agent_config = AgentConfig::load(&vm.join("agent.yaml")).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let agent = tokio::spawn(bowline_app::agent::run(agent_config, shutdown.clone()));

    let socket = vm.join("run/sds.sock");
    bowline_test_support::eventually_async("the SDS socket is there", || socket.exists()).await;
    let mut client = sds_client(&socket).await;
    let (ack, mut defaults) = subscribe(&mut client, &[sds::DEFAULT]).await;
    let (_roots_ack, mut roots) = subscribe(&mut client, &[sds::ROOTCA]).await;

    let identity = "spiffe://cluster.local/ns/demo/sa/legacy";
    let first = next(&mut defaults, Duration::from_secs(20)).await;
    let (chain, key) = certificate(&first);
    assert_eq!(identity_of(&chain, &key, &root), identity);
    let [root_secret] = secrets(&next(&mut roots, Duration::from_secs(5)).await)
        .try_into()
        .unwrap();
    let Some(secret::Type::ValidationContext(validation)) = root_secret.r#type else {
        panic!("ROOTCA is not a validation context");
    };
    assert_eq!(inline(&validation.trusted_ca), root);

    // The files hold the same certificate and key, and the bootstrap points at them.
    let certs = vm.join("certs");
    bowline_test_support::eventually_async("the files are written", || {
        fs::read_to_string(certs.join("cert-chain.pem"))
            .ok()
            .as_deref()
            == Some(chain.as_str())
    })
    .await;
    assert_eq!(fs::read_to_string(certs.join("key.pem")).unwrap(), key);
    assert_eq!(
        fs::read_to_string(certs.join("root-cert.pem")).unwrap(),
        root
    );
    let bootstrap: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(vm.join("grpc-bootstrap.json")).unwrap()).unwrap();
    let provider = &bootstrap["certificate_providers"]["default"];
    assert_eq!(provider["plugin_name"], "file_watcher");
    assert_eq!(
        provider["config"]["private_key_file"],
        certs.join("key.pem").display().to_string()
    );
    assert_eq!(
        bootstrap["xds_servers"][0]["channel_creds"][0]["type"],
        "tls"
    );
    assert_eq!(bootstrap["node"]["metadata"]["CLUSTER_ID"], "east");

    // An ACK gets no answer; the rotation at half of the 10 s does, on the same stream.
    ack.send(DiscoveryRequest {
        version_info: first.version_info.clone(),
        response_nonce: first.nonce.clone(),
        resource_names: vec![sds::DEFAULT.into()],
        type_url: sds::SECRET_TYPE.into(),
        ..DiscoveryRequest::default()
    })
    .await
    .unwrap();
    // Without the token, renewal goes on with the certificate itself.
    fs::remove_file(vm.join("token")).unwrap();
    let second = next(&mut defaults, Duration::from_secs(20)).await;
    assert_ne!(second.version_info, first.version_info);
    let (chain2, key2) = certificate(&second);
    assert_ne!(key2, key, "a new key at every renewal");
    assert_eq!(identity_of(&chain2, &key2, &root), identity);
    let third = next(&mut defaults, Duration::from_secs(20)).await;
    let (chain3, key3) = certificate(&third);
    assert_eq!(identity_of(&chain3, &key3, &root), identity);

    shutdown.cancel();
    agent.await.unwrap().unwrap();
    assert!(!socket.exists(), "the socket is removed at exit");
    running.stop().await;
}

/// On Kubernetes: Bowline signs with the plug-in CA of the Secret `istio-system/cacerts`, and
/// an agent holding a projected service-account token (`jwt:`) gets, over SDS, the
/// certificate of that service account, chained through the intermediate to the user's root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_a_service_account_token_gets_a_certificate_of_the_plugin_ca() {
    use base64::Engine as _;
    let (root, root_issuer) = ca_certificate("user root", None);
    let (signing, signing_issuer) = ca_certificate("bowline east", Some(&root_issuer));
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let server = bowline_fake_kube::FakeApiServer::start().await;
    server.install_bowline_crds();
    for object in [
        serde_json::json!({"apiVersion": "about.k8s.io/v1beta1", "kind": "ClusterProperty",
            "metadata": {"name": "cluster.clusterset.k8s.io"}, "spec": {"value": "east"}}),
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}),
        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "cart", "namespace": "shop"}}),
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "cacerts", "namespace": "istio-system"},
        "data": {
            "ca-cert.pem": b64(&signing),
            "ca-key.pem": b64(&signing_issuer.key().serialize_pem()),
            "root-cert.pem": b64(&root),
            "cert-chain.pem": b64(&format!("{signing}{root}")),
        }}),
    ] {
        server.apply_json(object);
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = common::kubernetes_member(
        &server,
        dir,
        "ca: {plugin: {secret: istio-system/cacerts}}\n",
    );
    let running = bowline_app::start(&config, bowline_app::Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    bowline_test_support::eventually_async("east admitted", || {
        running.registry.read().members()[0]
            .admission
            .id()
            .is_some()
    })
    .await;

    let pod = dir.join("pod");
    fs::create_dir_all(&pod).unwrap();
    let token = server
        .service_account_token("shop", "cart", &["istio-ca"], 3600)
        .unwrap();
    fs::write(pod.join("istio-token"), token).unwrap();
    fs::write(pod.join("root-cert.pem"), &root).unwrap();
    let port = running.xds_tls_addr.port();
    fs::write(
        pod.join("agent.yaml"),
        format!(
            "discovery: bowline.bowline-system.svc:{port}\naddress: 127.0.0.1:{port}\nrootCert: root-cert.pem\njwt: istio-token\nclusterId: east\nsdsSocket: sds.sock\ncertDir: ''\n"
        ),
    )
    .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let agent = tokio::spawn(bowline_app::agent::run(
        AgentConfig::load(&pod.join("agent.yaml")).unwrap(),
        shutdown.clone(),
    ));
    let socket = pod.join("sds.sock");
    bowline_test_support::eventually_async("the SDS socket is there", || socket.exists()).await;
    let mut client = sds_client(&socket).await;
    let (_ack, mut defaults) = subscribe(&mut client, &[sds::DEFAULT]).await;
    let (chain, key) = certificate(&next(&mut defaults, Duration::from_secs(20)).await);
    assert_eq!(
        identity_of(&chain, &key, &signing),
        "spiffe://cluster.local/ns/shop/sa/cart",
        "signed by the plug-in's intermediate"
    );
    let der = |pem: &str| {
        x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
            .map(|p| p.unwrap().contents)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        der(&chain)[1],
        der(&signing)[0],
        "the intermediate follows the leaf"
    );
    shutdown.cancel();
    agent.await.unwrap().unwrap();
    running.stop().await;
}
