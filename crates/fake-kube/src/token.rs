//! The `serviceaccounts/token` subresource (create only): a TokenRequest is answered with a
//! token the server accepts from then on, besides the one [`set_token`] requires.
//!
//! Simplified: issued tokens never expire and are not revoked when their ServiceAccount is
//! deleted; audiences and bound objects are echoed, not checked.
//!
//! [`set_token`]: crate::FakeApiServer::set_token

use serde_json::{Value, json};

use crate::resources::ResourceDef;
use crate::server::Shared;
use crate::status::ApiError;
use crate::time::{now_rfc3339, rfc3339_in};

/// What the real server grants when `spec.expirationSeconds` is not set.
const DEFAULT_SECONDS: i64 = 3600;
/// The shortest validity the real server accepts.
const MIN_SECONDS: i64 = 600;

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
        Value::Array(audiences) => Value::Array(audiences.clone()),
        _ => json!([]),
    };
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
