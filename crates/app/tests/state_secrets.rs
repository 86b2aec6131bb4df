//! With `leaderElection`, Bowline's root CA lives in the Secret `bowline-ca` of the
//! leader-election member (against the fake API server): two replicas starting together
//! serve certificates of one root (one creates the Secret, the other loads it), a restart
//! loads it, a corrupt key stops the start naming the Secret and key, and the data
//! directory is not used.

use std::{fs, path::Path};

use bowline_app::{Listeners, config::Config};
use bowline_fake_kube::FakeApiServer;
use bowline_kube::secrets::CA_SECRET;
use bowline_vm::ca::{DISCOVERY_HOST, RootCa, now};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

const NS: &str = "bowline-system";

fn config(dir: &Path, identity: &str) -> Config {
    let path = dir.join(format!("{identity}.yaml"));
    fs::write(
        &path,
        format!(
            "clusterSet: set\nmembers:\n- {{kubeconfig: east.kubeconfig, name: east, id: east}}\n\
             leaderElection: {{member: east, leaseDuration: 1s, identity: {identity}}}\n\
             vm: {{controller: {identity}}}\ndataDir: state\n"
        ),
    )
    .unwrap();
    Config::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Whether a TLS client trusting only `root` completes a handshake with `addr`.
async fn trusts(addr: std::net::SocketAddr, root: &str) -> bool {
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(root))
                .domain_name(DISCOVERY_HOST),
        )
        .unwrap()
        .connect()
        .await
        .is_ok()
}

fn secret_key(server: &FakeApiServer, key: &str) -> String {
    use base64::Engine;
    let secret = server
        .get("v1", "Secret", Some(NS), CA_SECRET)
        .expect("the CA Secret exists");
    let encoded = secret["data"][key].as_str().expect("key present");
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_root_in_the_secret_restarts_load_it_and_corruption_stops_the_start() {
    let server = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("east.kubeconfig"),
        server.kubeconfig_yaml("t"),
    )
    .unwrap();
    let (a_config, b_config) = (config(dir.path(), "a"), config(dir.path(), "b"));

    // Two replicas starting together.
    let (a_listeners, b_listeners) = (
        Listeners::loopback().await.unwrap(),
        Listeners::loopback().await.unwrap(),
    );
    let (a, b) = tokio::join!(
        bowline_app::start(&a_config, a_listeners),
        bowline_app::start(&b_config, b_listeners)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let root = secret_key(&server, "tls.crt");
    assert_eq!(
        server.get("v1", "Secret", Some(NS), CA_SECRET).unwrap()["type"],
        "kubernetes.io/tls"
    );
    let creates = server
        .requests()
        .into_iter()
        .filter(|r| r.verb == "create" && r.resource == "secrets")
        .count();
    assert!((1..=2).contains(&creates), "{creates} creates");
    for (name, replica) in [("a", &a), ("b", &b)] {
        assert!(
            trusts(replica.xds_tls_addr, &root).await,
            "replica {name} serves a certificate of the Secret's root"
        );
    }
    // A client trusting another root is refused: the check above can fail.
    let stranger = RootCa::generate(now()).unwrap();
    assert!(!trusts(a.xds_tls_addr, stranger.cert_pem()).await);
    assert!(
        !dir.path().join("state").exists(),
        "the data directory is not used for the CA"
    );
    let version =
        server.get("v1", "Secret", Some(NS), CA_SECRET).unwrap()["metadata"]["resourceVersion"]
            .clone();
    a.stop().await;
    b.stop().await;

    // A restart loads the Secret as it is.
    let a = bowline_app::start(&a_config, Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    assert!(trusts(a.xds_tls_addr, &root).await);
    assert_eq!(
        server.get("v1", "Secret", Some(NS), CA_SECRET).unwrap()["metadata"]["resourceVersion"],
        version
    );
    a.stop().await;

    // A corrupt key stops the start, naming the Secret and the key; the Secret is kept.
    let mut secret = server.get("v1", "Secret", Some(NS), CA_SECRET).unwrap();
    secret["data"]["tls.key"] = "Z2FyYmFnZQ==".into(); // "garbage"
    server.apply_json(secret);
    let err = match bowline_app::start(&a_config, Listeners::loopback().await.unwrap()).await {
        Ok(_) => panic!("started with a corrupt key"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("Secret bowline-system/bowline-ca key tls.key: not a PEM private key"),
        "{err}"
    );
    assert_eq!(secret_key(&server, "tls.key"), "garbage");
    assert_eq!(secret_key(&server, "tls.crt"), root);
}
