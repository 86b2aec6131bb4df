//! TokenReviews: whether a member's API server accepts a service-account token for one of
//! some audiences, and whose it is. How Bowline's CA learns a Kubernetes workload's identity.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};

/// What a member says of a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reviewed {
    /// A service account's token, for one of the audiences asked.
    ServiceAccount {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// Authenticated, but not a service account (`username` names it).
    OtherUser(String),
    /// Not accepted, with the API server's reason.
    Refused(String),
}

/// Asks `client`'s API server to review `token` for `audiences`.
pub async fn review(
    client: kube::Client,
    token: &str,
    audiences: &[String],
) -> kube::Result<Reviewed> {
    let request = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_owned()),
            audiences: Some(audiences.to_vec()),
        },
        ..TokenReview::default()
    };
    let api: Api<TokenReview> = Api::all(client);
    let status = api
        .create(&PostParams::default(), &request)
        .await?
        .status
        .unwrap_or_default();
    if status.authenticated != Some(true) {
        let reason = status.error.unwrap_or_else(|| "not authenticated".into());
        return Ok(Reviewed::Refused(reason));
    }
    let username = status.user.and_then(|u| u.username).unwrap_or_default();
    let account = username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .filter(|(ns, sa)| !ns.is_empty() && !sa.is_empty() && !sa.contains(':'));
    Ok(match account {
        Some((namespace, name)) => Reviewed::ServiceAccount {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        },
        None => Reviewed::OtherUser(username),
    })
}
