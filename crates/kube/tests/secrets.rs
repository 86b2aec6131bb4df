//! Bowline's own Secrets against the fake API server: of two replicas creating the CA Secret
//! together one creates it and the other reads that one; a key rewritten over a stale
//! resourceVersion reads again and keeps the other writer's change.

use bowline_fake_kube::FakeApiServer;
use bowline_kube::secrets::{CA_SECRET, PART_OF, SecretRef, TOKENS_KEY, TOKENS_SECRET};
use serde_json::json;

const NS: &str = "bowline-system";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_creators_one_creates_and_the_other_reads_it() {
    let server = FakeApiServer::start().await;
    let secret = |n: &str| {
        let n = n.to_string();
        let s = SecretRef::new(server.client(), NS, CA_SECRET);
        async move {
            s.get_or_create("kubernetes.io/tls", || {
                Ok::<_, String>([("tls.crt".into(), format!("cert {n}"))].into())
            })
            .await
            .unwrap()
            .unwrap()
        }
    };
    let (a, b) = tokio::join!(secret("a"), secret("b"));
    assert_eq!(a.0.data, b.0.data, "both hold the one stored");
    assert!(a.1 ^ b.1, "exactly one created it: {} {}", a.1, b.1);
    let stored = server
        .get("v1", "Secret", Some(NS), CA_SECRET)
        .expect("created");
    assert_eq!(stored["type"], "kubernetes.io/tls");
    assert_eq!(stored["metadata"]["labels"][PART_OF.0], PART_OF.1);
    // A later start reads it and creates nothing.
    let (again, created) = secret("c").await;
    assert!(!created);
    assert_eq!(again.data, a.0.data);
}

/// The race made certain: the other replica creates it between this one's read and create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_loses_the_race_reads_the_winner() {
    let server = FakeApiServer::start().await;
    let secret = SecretRef::new(server.client(), NS, CA_SECRET);
    let (data, created) = secret
        .get_or_create("kubernetes.io/tls", || {
            server.apply_json(json!({
                "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": CA_SECRET, "namespace": NS},
                "data": {"tls.crt": base64("theirs")},
            }));
            Ok::<_, String>([("tls.crt".into(), "mine".into())].into())
        })
        .await
        .unwrap()
        .unwrap();
    assert!(!created);
    assert_eq!(data.data["tls.crt"], b"theirs");
    // It did try to create (and was answered 409, or it would say it created).
    let creates = server
        .requests()
        .into_iter()
        .filter(|r| r.verb == "create" && r.resource == "secrets")
        .count();
    assert_eq!(creates, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_write_reads_again_and_keeps_the_other_change() {
    let server = FakeApiServer::start().await;
    let tokens = SecretRef::new(server.client(), NS, TOKENS_SECRET);
    tokens
        .update_key(TOKENS_KEY, |text| {
            assert_eq!(text, None);
            Ok::<_, String>("first".into())
        })
        .await
        .unwrap()
        .unwrap();
    let mut seen = Vec::new();
    tokens
        .update_key(TOKENS_KEY, |text| {
            let text = text.unwrap_or_default().to_string();
            if seen.is_empty() {
                // Another writer stores its change between this read and this write.
                let mut other = server.get("v1", "Secret", Some(NS), TOKENS_SECRET).unwrap();
                other["data"][TOKENS_KEY] = json!(base64("first+other"));
                other["data"]["extra"] = json!(base64("kept"));
                server.restore_json(other);
            }
            seen.push(text.clone());
            Ok::<_, String>(format!("{text}+mine"))
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen, ["first", "first+other"], "read again after the 409");
    let stored = tokens.read().await.unwrap().unwrap();
    assert_eq!(stored.data[TOKENS_KEY], b"first+other+mine");
    assert_eq!(stored.data["extra"], b"kept");
    let object = server.get("v1", "Secret", Some(NS), TOKENS_SECRET).unwrap();
    assert_eq!(object["type"], "Opaque");
    assert_eq!(object["metadata"]["labels"][PART_OF.0], PART_OF.1);
}

fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}
