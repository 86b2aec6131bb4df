//! The `serviceaccounts/token` subresource (create only): a TokenRequest is answered with a
//! token the server accepts from then on, besides the one [`set_token`] requires; and
//! `tokenreviews` (create only), which checks such a token as the real server does: known,
//! not expired, and for one of the audiences asked (the API server's own,
//! [`API_AUDIENCE`], when none are).
//!
//! Simplified: issued tokens still authenticate requests after they expire and are not
//! revoked when their ServiceAccount is deleted; bound objects are echoed, not checked.
//!
//! [`set_token`]: crate::FakeApiServer::set_token

use serde_json::{Value, json};

use crate::resources::ResourceDef;
use crate::server::{Shared, TokenClaims};
use crate::status::ApiError;
use crate::time::{now_rfc3339, rfc3339_in};

/// What the real server grants when `spec.expirationSeconds` is not set.
const DEFAULT_SECONDS: i64 = 3600;
/// The shortest validity the real server accepts.
const MIN_SECONDS: i64 = 600;
/// The audience of tokens issued without one, and of reviews that name none (the real
/// server's `--api-audiences`, by default its issuer).
pub const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// Whether `def` is `authentication.k8s.io` `tokenreviews`.
pub(crate) fn reviews(def: &ResourceDef) -> bool {
    def.built_in && def.group == "authentication.k8s.io" && def.plural == "tokenreviews"
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Answers a TokenReview: 201 with `status.authenticated`, and for a token that passes its
/// user (`system:serviceaccount:<ns>:<name>`, groups) and the audiences it matched; for one
/// that does not, `status.error` saying why.
pub(crate) fn review(shared: &Shared, request: &Value) -> Result<(u16, Value), ApiError> {
    if request["kind"].as_str().is_some_and(|k| k != "TokenReview") {
        return Err(ApiError::bad_request(format!(
            "the body of a tokenreviews request must be a TokenReview, not {}",
            request["kind"]
        )));
    }
    let token = request["spec"]["token"].as_str().unwrap_or_default();
    let wanted: Vec<String> = match request["spec"]["audiences"].as_array() {
        Some(list) if !list.is_empty() => list
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
        _ => vec![API_AUDIENCE.to_owned()],
    };
    let claims = shared.controls.lock().token_claims.get(token).cloned();
    let status = match claims {
        None => {
            json!({"authenticated": false, "error": "[invalid bearer token, square/go-jose: error in cryptographic primitive]"})
        }
        Some(c) if c.expires <= unix_now() => {
            json!({"authenticated": false, "error": "[invalid bearer token, service account token has expired]"})
        }
        Some(c) => {
            let matched: Vec<&String> = wanted.iter().filter(|a| c.audiences.contains(a)).collect();
            if matched.is_empty() {
                json!({"authenticated": false, "error": "[invalid bearer token, token audiences [..] is invalid for the target audiences]"})
            } else {
                json!({
                    "authenticated": true,
                    "audiences": matched,
                    "user": {
                        "username": format!("system:serviceaccount:{}:{}", c.namespace, c.name),
                        "uid": format!("uid-{}-{}", c.namespace, c.name),
                        "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{}", c.namespace), "system:authenticated"],
                    },
                })
            }
        }
    };
    let response = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "metadata": {"creationTimestamp": now_rfc3339()},
        "spec": request["spec"],
        "status": status,
    });
    Ok((201, response))
}

/// Whether `def` is the resource whose `token` subresource this module serves.
pub(crate) fn serves(def: &ResourceDef) -> bool {
    def.built_in && def.group.is_empty() && def.plural == "serviceaccounts"
}

/// Answers a TokenRequest for ServiceAccount `namespace/name`: 201 with `status.token` and
/// `status.expirationTimestamp`, 404 if the ServiceAccount does not exist, 422 for a validity
/// under 10 minutes. The validity is capped by `max_token_seconds`.
pub(crate) fn issue(
    shared: &Shared,
    def: &ResourceDef,
    namespace: &str,
    name: &str,
    request: &Value,
) -> Result<(u16, Value), ApiError> {
    if request["kind"]
        .as_str()
        .is_some_and(|k| k != "TokenRequest")
    {
        return Err(ApiError::bad_request(format!(
            "the body of a serviceaccounts/token request must be a TokenRequest, not {}",
            request["kind"]
        )));
    }
    let requested = request["spec"]["expirationSeconds"]
        .as_i64()
        .unwrap_or(DEFAULT_SECONDS);
    if requested < MIN_SECONDS {
        return Err(ApiError::new(
            422,
            "Invalid",
            format!(
                "TokenRequest.authentication.k8s.io \"{name}\" is invalid: spec.expirationSeconds: \
                 Invalid value: {requested}: may not specify a duration less than 10 minutes"
            ),
        ));
    }
    shared.store.lock().get(def, Some(namespace), name)?;
    let mut controls = shared.controls.lock();
    controls.tokens_issued += 1;
    let token = format!("sa-{namespace}-{name}-{}", controls.tokens_issued);
    controls.issued_tokens.insert(token.clone());
    let granted = controls
        .max_token_seconds
        .map_or(requested, |max| requested.min(max));
    drop(controls);
    let audiences = match &request["spec"]["audiences"] {
        Value::Array(audiences) if !audiences.is_empty() => Value::Array(audiences.clone()),
        _ => json!([API_AUDIENCE]),
    };
    shared.controls.lock().token_claims.insert(
        token.clone(),
        TokenClaims {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            audiences: audiences
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect(),
            expires: unix_now().saturating_add(u64::try_from(granted).unwrap_or(0)),
        },
    );
    let mut spec = json!({ "audiences": audiences, "expirationSeconds": granted });
    if let Some(bound) = request["spec"].get("boundObjectRef") {
        spec["boundObjectRef"] = bound.clone();
    }
    let response = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": now_rfc3339(),
        },
        "spec": spec,
        "status": {
            "token": token,
            "expirationTimestamp": rfc3339_in(u64::try_from(granted).unwrap_or(0)),
        },
    });
    Ok((201, response))
}
