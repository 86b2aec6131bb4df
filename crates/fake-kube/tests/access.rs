//! Tokens, reachability, injected failures, the request log and kubeconfig files.

use std::time::Duration;

use bowline_fake_kube::FakeApiServer;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

fn config_map(name: &str) -> serde_json::Value {
    json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name, "namespace": "default" } })
}

fn status_code(error: kube::Error) -> u16 {
    match error {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn wrong_token_gets_401_until_the_client_carries_the_new_one() {
    let server = FakeApiServer::start().await;
    server.set_token(Some("old".into()));
    let old: Api<ConfigMap> = Api::default_namespaced(server.client());
    old.list(&ListParams::default()).await.unwrap();

    server.set_token(Some("new".into()));
    let error = old.list(&ListParams::default()).await.unwrap_err();
    let kube::Error::Api(status) = error else {
        panic!("expected 401");
    };
    assert_eq!((status.code, status.reason.as_str()), (401, "Unauthorized"));

    let new: Api<ConfigMap> = Api::default_namespaced(server.client());
    new.list(&ListParams::default()).await.unwrap();
    let tokens: Vec<_> = server.requests().into_iter().map(|r| r.token).collect();
    assert_eq!(
        tokens,
        [Some("old".into()), Some("old".into()), Some("new".into())]
    );
}

#[tokio::test]
async fn kubeconfig_text_reaches_the_server_with_its_token() {
    let server = FakeApiServer::start().await;
    server.set_token(Some("t1".into()));
    let kubeconfig = Kubeconfig::from_yaml(&server.kubeconfig_yaml("t1")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    api.list(&ListParams::default()).await.unwrap();
}

#[tokio::test]
async fn unreachable_server_cuts_watches_and_refuses_requests_until_reachable() {
    let server = FakeApiServer::start().await;
    server.set_bookmark_interval(Duration::from_secs(60));
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let mut stream = api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    server.apply_json(config_map("a"));
    assert!(stream.next().await.unwrap().is_ok());

    server.set_reachable(false).await;
    assert!(!server.is_reachable());
    // The cut stream ends (or fails) instead of hanging.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the watch stream ends when the server goes away"
    );
    let error = api.list(&ListParams::default()).await.unwrap_err();
    assert!(
        !matches!(error, kube::Error::Api(_)),
        "a transport error, not an answer: {error}"
    );

    server.set_reachable(true).await;
    let list = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
}

#[tokio::test]
async fn injected_failures_answer_then_stop() {
    let server = FakeApiServer::start().await;
    server.apply_json(config_map("a"));
    let mut config = server.config();
    config.default_retry = false;
    let client = kube::Client::try_from(config).unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    server.fail_next("get", "configmaps", 429, 1);
    server.fail_next("patch", "*", 500, 2);

    let request = http::Request::get("/api/v1/namespaces/default/configmaps/a")
        .body(Vec::new())
        .unwrap();
    let response = client.send(request.map(Into::into)).await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    api.get("a").await.unwrap();

    let pp = PatchParams::apply("m");
    let patch = Patch::Apply(config_map("a"));
    assert_eq!(
        status_code(api.patch("a", &pp, &patch).await.unwrap_err()),
        500
    );
    assert_eq!(
        status_code(api.patch("a", &pp, &patch).await.unwrap_err()),
        500
    );
    api.patch("a", &pp, &patch).await.unwrap();
}

#[tokio::test]
async fn default_client_retries_503_transparently() {
    let server = FakeApiServer::start().await;
    server.apply_json(config_map("a"));
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    server.fail_next("get", "configmaps", 503, 2);
    api.get("a").await.unwrap();
    let gets = server.requests().iter().filter(|r| r.verb == "get").count();
    assert_eq!(gets, 3);
}

#[tokio::test]
async fn request_log_names_verb_resource_and_field_manager() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    api.patch(
        "a",
        &PatchParams::apply("bowline"),
        &Patch::Apply(config_map("a")),
    )
    .await
    .unwrap();
    api.get_status("a").await.unwrap_err();
    server.clear_requests();
    api.get("a").await.unwrap();
    api.patch(
        "a",
        &PatchParams::apply("bowline"),
        &Patch::Apply(config_map("a")),
    )
    .await
    .unwrap();
    let log: Vec<_> = server
        .requests()
        .into_iter()
        .map(|r| {
            (
                r.verb,
                r.resource,
                r.namespace.unwrap_or_default(),
                r.name.unwrap_or_default(),
                r.field_manager,
            )
        })
        .collect();
    assert_eq!(
        log,
        [
            (
                "get".into(),
                "configmaps".into(),
                "default".into(),
                "a".into(),
                None
            ),
            (
                "patch".into(),
                "configmaps".into(),
                "default".into(),
                "a".into(),
                Some("bowline".into())
            ),
        ]
    );
}
