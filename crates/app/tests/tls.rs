//! The xDS TLS listener of a running control plane: its root CA created in the data
//! directory on first start and loaded on the next, and ADS answered over TLS to a client
//! trusting that root.

use std::fs;

use bowline_app::{Listeners, config::Config};
use bowline_vm::ca::DISCOVERY_HOST;
use envoy_types::pb::envoy::{
    config::core::v3::Node,
    service::discovery::v3::{
        DiscoveryRequest, DiscoveryResponse,
        aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
    },
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";

/// One empty member, its state in `state/` of the returned directory.
fn one_member() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("east")).unwrap();
    let config = Config::parse(
        &dir.path().join("bowline.yaml"),
        "clusterSet: prod\nmembers:\n- {manifests: east, id: east}\ndataDir: state\n",
    )
    .unwrap();
    (dir, config)
}

/// The first LDS response over TLS from a client trusting `root` (PEM), presenting a VM token
/// (the TLS port serves only callers with a credential).
async fn first_listener_response(
    running: &bowline_app::Running,
    config: &Config,
    root: &str,
) -> Result<DiscoveryResponse, String> {
    let (token, _) = bowline_vm::tokens::TokenStore::open(&config.data_dir)
        .issue(
            "g",
            "n",
            std::time::Duration::from_secs(600),
            jiff::Timestamp::now(),
        )
        .unwrap();
    let channel = Channel::from_shared(format!("https://{}", running.xds_tls_addr))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(root))
                .domain_name(DISCOVERY_HOST),
        )
        .unwrap()
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let request = DiscoveryRequest {
        node: Some(Node {
            id: "vm-1".into(),
            ..Default::default()
        }),
        type_url: LISTENER.into(),
        ..Default::default()
    };
    let mut request = tonic::Request::new(tokio_stream::iter([request]));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let mut responses = AggregatedDiscoveryServiceClient::new(channel)
        .stream_aggregated_resources(request)
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    responses
        .message()
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no response".to_string())
}

#[tokio::test]
async fn the_tls_listener_serves_ads_with_a_certificate_from_the_persisted_root() {
    let (dir, config) = one_member();
    let running = bowline_app::start(&config, Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    let root = fs::read_to_string(dir.path().join("state/ca/root-cert.pem")).unwrap();
    let response = first_listener_response(&running, &config, &root)
        .await
        .unwrap();
    assert_eq!(response.type_url, LISTENER);
    running.stop().await;

    // The next start loads the same root.
    let running = bowline_app::start(&config, Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join("state/ca/root-cert.pem")).unwrap(),
        root
    );
    running.stop().await;

    // A corrupt root stops the start, naming the file.
    fs::write(dir.path().join("state/ca/root-key.pem"), "garbage").unwrap();
    let err = match bowline_app::start(&config, Listeners::loopback().await.unwrap()).await {
        Ok(_) => panic!("started with a corrupt key"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains(&format!(
            "{}: not a PEM private key",
            dir.path().join("state/ca/root-key.pem").display()
        )),
        "{err}"
    );
}

/// CA files removed while running are written again from the running server's CA, so what
/// `bowline vm bundle` hands out next (a copy of `root-cert.pem`) still verifies the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_ca_files_removed_while_running_are_restored_from_the_served_root() {
    let (dir, config) = one_member();
    let running = bowline_app::start(&config, Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    let ca = dir.path().join("state/ca");
    let root = fs::read_to_string(ca.join("root-cert.pem")).unwrap();
    let key = fs::read_to_string(ca.join("root-key.pem")).unwrap();
    fs::remove_dir_all(&ca).unwrap();
    let deadline = std::time::Instant::now() + 3 * bowline_app::state::CA_CHECK;
    while !(ca.join("root-cert.pem").exists() && ca.join("root-key.pem").exists()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the CA files were not restored"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let restored = fs::read_to_string(ca.join("root-cert.pem")).unwrap();
    assert_eq!(restored, root);
    assert_eq!(fs::read_to_string(ca.join("root-key.pem")).unwrap(), key);
    first_listener_response(&running, &config, &restored)
        .await
        .unwrap();
    running.stop().await;
}
