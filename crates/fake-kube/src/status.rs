//! Failures as the API server reports them: `metav1.Status` objects with a reason and code.

use serde_json::{Value, json};

use crate::resources::ResourceDef;

/// A failed request, rendered as a `Status` object with the HTTP code as status.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ApiError {
    /// HTTP status code, also `Status.code`.
    pub code: u16,
    /// `Status.reason`, e.g. `NotFound`.
    pub reason: &'static str,
    /// Human-readable `Status.message`.
    pub message: String,
    /// `Status.details`, `{}` when absent.
    pub details: Value,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: json!({}),
        }
    }

    fn about(mut self, def: &ResourceDef, name: &str) -> Self {
        let mut details = json!({ "name": name, "kind": def.plural });
        if !def.group.is_empty() {
            details["group"] = json!(def.group);
        }
        self.details = details;
        self
    }

    /// The object does not exist.
    pub fn not_found(def: &ResourceDef, name: &str) -> Self {
        let message = format!("{} \"{name}\" not found", def.qualified_plural());
        Self::new(404, "NotFound", message).about(def, name)
    }

    /// A create named an object that exists.
    pub fn already_exists(def: &ResourceDef, name: &str) -> Self {
        let message = format!("{} \"{name}\" already exists", def.qualified_plural());
        Self::new(409, "AlreadyExists", message).about(def, name)
    }

    /// A write's `resourceVersion` precondition does not match the stored object.
    pub fn conflict(def: &ResourceDef, name: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
             please apply your changes to the latest version and try again",
            def.qualified_plural()
        );
        Self::new(409, "Conflict", message).about(def, name)
    }

    /// The request path names no served resource (e.g. a CRD that is not installed).
    pub fn no_such_resource() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// A malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// An object that fails validation.
    pub fn invalid(def: &ResourceDef, name: &str, field: &str, message: &str) -> Self {
        let qualified_kind = if def.group.is_empty() {
            def.kind.clone()
        } else {
            format!("{}.{}", def.kind, def.group)
        };
        let text = format!("{qualified_kind} \"{name}\" is invalid: {field}: {message}");
        let mut error = Self::new(422, "Invalid", text).about(def, name);
        error.details["kind"] = json!(def.kind);
        error.details["causes"] =
            json!([{ "reason": "FieldValueInvalid", "message": message, "field": field }]);
        error
    }

    /// A watch or continue token older than the retained history (the etcd compaction case).
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        })
    }
}

/// The reason the API server gives for a status code, for injected failures.
pub(crate) fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}
