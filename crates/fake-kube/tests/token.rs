//! The `serviceaccounts/token` subresource: TokenRequests for existing ServiceAccounts are
//! answered with a token the server then accepts, capped by the maximum expiration.

use std::time::Duration;

use bowline_fake_kube::FakeApiServer;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

fn request(seconds: i64) -> TokenRequest {
    TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(seconds),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    }
}

fn status_code(error: kube::Error) -> u16 {
    match error {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other}"),
    }
}

async fn server_with_account() -> FakeApiServer {
    let server = FakeApiServer::start().await;
    server.apply_json(json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": { "name": "reader", "namespace": "ops" },
    }));
    server.set_token(Some("admin".into()));
    server
}

#[tokio::test]
async fn an_issued_token_is_accepted_while_a_token_is_required() {
    let server = server_with_account().await;
    let accounts: Api<ServiceAccount> = Api::namespaced(server.client(), "ops");
    let before = k8s_openapi::jiff::Timestamp::now();
    let answer = accounts
        .create_token_request("reader", &PostParams::default(), &request(7200))
        .await
        .unwrap();
    let status = answer.status.expect("the answer has a status");
    assert_eq!(status.token, "sa-ops-reader-1");
    assert_eq!(answer.spec.expiration_seconds, Some(7200));
    let lifetime = status.expiration_timestamp.0.duration_since(before);
    assert!(
        (7199..=7202).contains(&lifetime.as_secs()),
        "expires in {lifetime:?}"
    );
    let record = server.requests().pop().unwrap();
    assert_eq!(
        (record.verb.as_str(), record.resource.as_str()),
        ("create", "serviceaccounts")
    );
    assert_eq!(record.subresource.as_deref(), Some("token"));

    let with_issued =
        kube::Client::try_from(server.config_with_token(Some(&status.token))).unwrap();
    let maps: Api<ConfigMap> = Api::default_namespaced(with_issued);
    maps.list(&ListParams::default()).await.unwrap();

    let with_other =
        kube::Client::try_from(server.config_with_token(Some("sa-ops-reader-2"))).unwrap();
    let maps: Api<ConfigMap> = Api::default_namespaced(with_other);
    let refused = maps.list(&ListParams::default()).await.unwrap_err();
    assert_eq!(status_code(refused), 401);

    let second = accounts
        .create_token_request("reader", &PostParams::default(), &request(7200))
        .await
        .unwrap();
    assert_eq!(second.status.unwrap().token, "sa-ops-reader-2");
}

#[tokio::test]
async fn a_missing_account_is_404_and_a_short_validity_422() {
    let server = server_with_account().await;
    let accounts: Api<ServiceAccount> = Api::namespaced(server.client(), "ops");
    let missing = accounts
        .create_token_request("nobody", &PostParams::default(), &request(3600))
        .await
        .unwrap_err();
    assert_eq!(status_code(missing), 404);
    let short = accounts
        .create_token_request("reader", &PostParams::default(), &request(60))
        .await
        .unwrap_err();
    assert_eq!(status_code(short), 422);
}

#[tokio::test]
async fn the_maximum_expiration_shortens_the_validity() {
    let server = server_with_account().await;
    server.set_max_token_expiration(Some(Duration::from_secs(3600)));
    let accounts: Api<ServiceAccount> = Api::namespaced(server.client(), "ops");
    let answer = accounts
        .create_token_request("reader", &PostParams::default(), &request(86_400))
        .await
        .unwrap();
    assert_eq!(answer.spec.expiration_seconds, Some(3600));
    let lifetime = answer
        .status
        .unwrap()
        .expiration_timestamp
        .0
        .duration_since(k8s_openapi::jiff::Timestamp::now());
    assert!(lifetime.as_secs() <= 3600, "expires in {lifetime:?}");
}

/// A TokenReview authenticates an issued token for one of its audiences, naming its
/// ServiceAccount; an unknown, expired or foreign-audience token is not authenticated.
#[tokio::test]
async fn token_reviews_check_issuance_expiry_and_audience() {
    use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
    let server = server_with_account().await;
    let token = server
        .service_account_token("ops", "reader", &["istio-ca"], 3600)
        .unwrap();
    let reviews: Api<TokenReview> = Api::all(server.client());
    let review = |token: &str, audience: Option<&str>| {
        let reviews = reviews.clone();
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: audience.map(|a| vec![a.to_owned()]),
            },
            ..TokenReview::default()
        };
        async move {
            reviews
                .create(&PostParams::default(), &review)
                .await
                .unwrap()
                .status
                .unwrap()
        }
    };
    let passed = review(&token, Some("istio-ca")).await;
    assert_eq!(passed.authenticated, Some(true));
    assert_eq!(
        passed.user.unwrap().username.as_deref(),
        Some("system:serviceaccount:ops:reader")
    );
    assert_eq!(passed.audiences, Some(vec!["istio-ca".to_owned()]));
    for (token, audience) in [
        (token.as_str(), None),
        (token.as_str(), Some("other")),
        ("forged", Some("istio-ca")),
    ] {
        let failed = review(token, audience).await;
        assert_eq!(failed.authenticated, Some(false), "{token} {audience:?}");
        assert!(failed.error.is_some());
    }
    server.expire_token(&token);
    let expired = review(&token, Some("istio-ca")).await;
    assert_eq!(expired.authenticated, Some(false));
    assert!(expired.error.unwrap().contains("expired"));
}
