//! The HTTP API: path routing, authentication, injected failures and the REST verbs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, Uri, header};
use serde_json::{Value, json};

use crate::apply::{Writer, apply, conflict_message, record_update};
use crate::fields::{Scope, json_patch, merge_patch};
use crate::resources::ResourceDef;
use crate::selector::Selector;
use crate::server::{RequestRecord, Shared};
use crate::status::{ApiError, reason_for};
use crate::store::ObjectKey;
use crate::time::now_rfc3339;
use crate::token;
use crate::watch::{WatchRequest, render, watch_body};

/// The resource a path names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Target {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    subresource: Option<String>,
}

/// Parses `/api/v1/...` and `/apis/{group}/{version}/...` resource paths.
fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, mut rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let mut namespace = None;
    // `/api/v1/namespaces/{name}/status` is the Namespace's own subresource.
    let namespace_subresource = group.is_empty() && matches!(rest, [_, _, "status" | "finalize"]);
    if let ["namespaces", ns, inner @ ..] = rest
        && !inner.is_empty()
        && !namespace_subresource
    {
        namespace = Some((*ns).to_owned());
        rest = inner;
    }
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return None,
    };
    Some(Target {
        group: group.to_owned(),
        version: version.to_owned(),
        namespace,
        plural: plural.to_owned(),
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
    })
}

/// Everything a verb handler needs about the request.
struct Call {
    def: ResourceDef,
    target: Target,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
}

impl Call {
    fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    fn key(&self) -> ObjectKey {
        let name = self.target.name.as_deref().unwrap_or_default();
        ObjectKey::new(&self.def, self.target.namespace.as_deref(), name)
    }

    fn name(&self) -> &str {
        self.target.name.as_deref().unwrap_or_default()
    }

    fn accepts_metadata(&self, as_kind: &str) -> bool {
        let accept = self
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok());
        accept.is_some_and(|a| a.split(';').any(|p| p.trim() == format!("as={as_kind}")))
    }

    fn render(&self, object: &Value) -> Value {
        render(
            &self.def,
            &self.target.version,
            object,
            self.accepts_metadata("PartialObjectMetadata"),
        )
    }

    fn json_body(&self) -> Result<Value, ApiError> {
        let value: Value = serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
        if !value.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        Ok(value)
    }

    /// What a write may change: `/status` only status, the main resource all but status
    /// when the status subresource is enabled.
    fn scope(&self) -> Result<Scope, ApiError> {
        match self.target.subresource.as_deref() {
            None if self.def.status_subresource => Ok(Scope::MainOnly),
            None => Ok(Scope::All),
            Some("status") if self.def.status_subresource => Ok(Scope::StatusOnly),
            Some(_) => Err(ApiError::no_such_resource()),
        }
    }

    fn writer<'a>(
        &'a self,
        manager: &'a str,
        api_version: &'a str,
    ) -> Result<Writer<'a>, ApiError> {
        Ok(Writer {
            manager,
            api_version,
            subresource: self.target.subresource.as_deref().unwrap_or_default(),
            scope: self.scope()?,
        })
    }

    /// `fieldManager`, or what the real server derives from the User-Agent.
    fn manager(&self) -> String {
        if let Some(manager) = self.param("fieldManager") {
            return manager.to_owned();
        }
        let agent = self
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        agent
            .and_then(|a| a.split('/').next())
            .filter(|a| !a.is_empty())
            .unwrap_or("unknown")
            .to_owned()
    }
}

fn verb_of(method: &Method, target: &Target, query: &HashMap<String, String>) -> &'static str {
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    match *method {
        Method::GET if target.name.is_some() => "get",
        Method::GET if watch => "watch",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if target.name.is_some() => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::to_owned)
}

pub(crate) fn json_response(code: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(body).expect("JSON values serialize");
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error_response(error: &ApiError) -> Response {
    let mut response = json_response(error.code, &error.to_status());
    if error.code == 429 {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    }
    response
}

/// The one handler: every request comes through here.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !shared.is_reachable() {
        let error = ApiError::new(503, "ServiceUnavailable", "the server is unreachable");
        return error_response(&error);
    }
    let query = Query::<HashMap<String, String>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let target = parse_path(uri.path());
    let verb = match &target {
        Some(target) => verb_of(&method, target, &query),
        None => "unknown",
    };
    let bookmark_interval = match admit(&shared, &method, target.as_ref(), verb, &query, &headers) {
        Ok(interval) => interval,
        Err(refusal) => return refusal.into_response(),
    };
    if uri.path() == "/version" {
        let version = json!({ "major": "1", "minor": "33", "gitVersion": "v1.33.0-fake" });
        return json_response(200, &version);
    }
    let Some(target) = target else {
        return not_found_page();
    };
    let call = match resolve(&shared, target, query, headers, body) {
        Ok(call) => call,
        Err(refusal) => return refusal.into_response(),
    };
    let result = match verb {
        "get" => get(&shared, &call),
        "list" => list(&shared, &call),
        "watch" => return watch(&shared, call, bookmark_interval),
        "create" => create(&shared, &call),
        "update" => update(&shared, &call),
        "patch" => patch(&shared, &call),
        "delete" => delete(&shared, &call),
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported here"),
        )),
    };
    match result {
        Ok((code, body)) => json_response(code, &body),
        Err(error) => error_response(&error),
    }
}

/// A request answered before reaching a verb.
enum Refusal {
    /// A `Status` error.
    Status(ApiError),
    /// The fallback handler's plain-text 404.
    NotFoundPage,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Status(error) => error_response(&error),
            Self::NotFoundPage => not_found_page(),
        }
    }
}

/// Records the request, then checks its token and injected failures. Returns the bookmark
/// interval (read under the same lock) or the response refusing the request.
fn admit(
    shared: &Shared,
    method: &Method,
    target: Option<&Target>,
    verb: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Duration, Refusal> {
    let token = bearer_token(headers);
    let record = RequestRecord {
        verb: match target {
            Some(_) => verb.to_owned(),
            None => method.as_str().to_lowercase(),
        },
        group: target.map(|t| t.group.clone()).unwrap_or_default(),
        version: target.map(|t| t.version.clone()).unwrap_or_default(),
        resource: target.map(|t| t.plural.clone()).unwrap_or_default(),
        subresource: target.and_then(|t| t.subresource.clone()),
        namespace: target.and_then(|t| t.namespace.clone()),
        name: target.and_then(|t| t.name.clone()),
        field_manager: query.get("fieldManager").cloned(),
        label_selector: query.get("labelSelector").cloned(),
        limit: query.get("limit").and_then(|l| l.parse().ok()),
        token: token.clone(),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let mut controls = shared.controls.lock();
    controls.requests.push(record);
    if !controls.admits(token.as_deref()) {
        let error = ApiError::new(401, "Unauthorized", "Unauthorized");
        return Err(Refusal::Status(error));
    }
    if let Some(code) = take_injected(&mut controls.injected, verb, target) {
        let message = format!("injected failure for {verb}");
        return Err(Refusal::Status(ApiError::new(
            code,
            reason_for(code),
            message,
        )));
    }
    Ok(controls.bookmark_interval)
}

/// Finds the served resource the path names, or the 404 the real server would give.
fn resolve(
    shared: &Shared,
    target: Target,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Call, Refusal> {
    let store = shared.store.lock();
    let Some(def) = store.resource(&target.group, &target.version, &target.plural) else {
        // An unknown group/version is answered by the server's fallback handler, an
        // unknown resource within a served group/version by the API group.
        if store.serves_group_version(&target.group, &target.version) {
            return Err(Refusal::Status(ApiError::no_such_resource()));
        }
        return Err(Refusal::NotFoundPage);
    };
    // Namespaced objects are named only within a namespace; cluster-scoped ones never are.
    if target.namespace.is_some() != def.namespaced && (target.name.is_some() || !def.namespaced) {
        return Err(Refusal::Status(ApiError::no_such_resource()));
    }
    Ok(Call {
        def: def.clone(),
        target,
        query,
        headers,
        body,
    })
}

/// The plain-text 404 of the server's fallback handler (e.g. a CRD's group not installed).
fn not_found_page() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "404 page not found\n",
    )
        .into_response()
}

fn take_injected(
    injected: &mut Vec<crate::server::Injected>,
    verb: &str,
    target: Option<&Target>,
) -> Option<u16> {
    let resource = target.map(|t| t.plural.as_str()).unwrap_or_default();
    let index = injected.iter().position(|i| {
        (i.verb == verb || i.verb == "*") && (i.resource == resource || i.resource == "*")
    })?;
    let code = injected[index].code;
    injected[index].remaining -= 1;
    if injected[index].remaining == 0 {
        injected.remove(index);
    }
    Some(code)
}

type Answer = Result<(u16, Value), ApiError>;

fn get(shared: &Shared, call: &Call) -> Answer {
    if call.target.subresource.is_some() {
        call.scope()?;
    }
    let store = shared.store.lock();
    let object = store.get(&call.def, call.target.namespace.as_deref(), call.name())?;
    Ok((200, call.render(&object)))
}

fn list(shared: &Shared, call: &Call) -> Answer {
    let selector = Selector::parse(call.param("labelSelector"), call.param("fieldSelector"))?;
    let limit = match call.param("limit") {
        Some(limit) => Some(
            limit
                .parse()
                .map_err(|_| ApiError::bad_request("invalid limit"))?,
        ),
        None => None,
    };
    let metadata_only = call.accepts_metadata("PartialObjectMetadataList");
    let store = shared.store.lock();
    let page = store.list(
        &call.def,
        call.target.namespace.as_deref(),
        &|object| selector.matches(object),
        limit,
        call.param("continue").filter(|c| !c.is_empty()),
    )?;
    let mut metadata = json!({ "resourceVersion": page.resource_version.to_string() });
    if let Some(token) = page.continue_token {
        metadata["continue"] = json!(token);
    }
    let (api_version, kind) = if metadata_only {
        (
            "meta.k8s.io/v1".to_owned(),
            "PartialObjectMetadataList".to_owned(),
        )
    } else {
        (
            call.def.api_version(&call.target.version),
            format!("{}List", call.def.kind),
        )
    };
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|o| render(&call.def, &call.target.version, o, metadata_only))
        .collect();
    Ok((
        200,
        json!({ "apiVersion": api_version, "kind": kind, "metadata": metadata, "items": items }),
    ))
}

fn watch(shared: &Shared, call: Call, bookmark_interval: Duration) -> Response {
    let start = || -> Result<_, ApiError> {
        if call.param("sendInitialEvents") == Some("true") {
            return Err(ApiError::invalid(
                &call.def,
                "",
                "sendInitialEvents",
                "Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
            ));
        }
        let selector = Selector::parse(call.param("labelSelector"), call.param("fieldSelector"))?;
        let timeout = match call.param("timeoutSeconds") {
            Some(t) => {
                Some(Duration::from_secs(t.parse().map_err(|_| {
                    ApiError::bad_request("invalid timeoutSeconds")
                })?))
            }
            None => None,
        };
        let store = shared.store.lock();
        let (start, notices) = store.watch(&call.def, call.param("resourceVersion"))?;
        let request = WatchRequest {
            def: call.def.clone(),
            version: call.target.version.clone(),
            namespace: call.target.namespace.clone(),
            selector,
            metadata_only: call.accepts_metadata("PartialObjectMetadata"),
            bookmarks: call.param("allowWatchBookmarks") == Some("true"),
            bookmark_interval,
            timeout,
        };
        Ok(watch_body(
            request,
            start,
            notices,
            store.resource_version(),
        ))
    };
    match start() {
        Ok(body) => Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .expect("static headers are valid"),
        Err(error) => error_response(&error),
    }
}

fn create(shared: &Shared, call: &Call) -> Answer {
    if call.target.subresource.as_deref() == Some("token") && token::serves(&call.def) {
        let namespace = call.target.namespace.as_deref().unwrap_or_default();
        return token::issue(
            shared,
            &call.def,
            namespace,
            call.name(),
            &call.json_body()?,
        );
    }
    if token::reviews(&call.def) {
        return token::review(shared, &call.json_body()?);
    }
    if call.target.subresource.is_some() || call.target.name.is_some() {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "create names the collection",
        ));
    }
    let mut object = call.json_body()?;
    let manager = call.manager();
    let api_version = call.def.api_version(&call.target.version);
    let writer = call.writer(&manager, &api_version)?;
    without_status(&mut object, writer.scope);
    record_update(&json!({}), &mut object, &writer, &now_rfc3339());
    let mut store = shared.store.lock();
    crate::crd::admit(&mut store, &call.def, &object)?;
    let created = store.create(&call.def, call.target.namespace.as_deref(), object)?;
    Ok((201, call.render(&created)))
}

/// Creating through the main resource ignores `status` when the status subresource is on.
fn without_status(object: &mut Value, scope: Scope) {
    if scope == Scope::MainOnly
        && let Some(map) = object.as_object_mut()
    {
        map.remove("status");
    }
}

/// Checks the body names the object of the path.
fn check_name(call: &Call, object: &Value) -> Result<(), ApiError> {
    match object["metadata"]["name"].as_str() {
        Some(name) if name != call.name() => Err(ApiError::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({})",
            call.name()
        ))),
        _ => Ok(()),
    }
}

fn update(shared: &Shared, call: &Call) -> Answer {
    let mut object = call.json_body()?;
    check_name(call, &object)?;
    let manager = call.manager();
    let api_version = call.def.api_version(&call.target.version);
    let writer = call.writer(&manager, &api_version)?;
    let mut store = shared.store.lock();
    let old = store.get(&call.def, call.target.namespace.as_deref(), call.name())?;
    match object["metadata"]["resourceVersion"]
        .as_str()
        .filter(|rv| !rv.is_empty())
    {
        Some(rv) if Some(rv) != old["metadata"]["resourceVersion"].as_str() => {
            return Err(ApiError::conflict(&call.def, call.name()));
        }
        None if !call.def.built_in => {
            return Err(ApiError::invalid(
                &call.def,
                call.name(),
                "metadata.resourceVersion",
                "Invalid value: 0x0: must be specified for an update",
            ));
        }
        _ => {}
    }
    object["metadata"]["managedFields"] = old["metadata"]["managedFields"].clone();
    record_update(&old, &mut object, &writer, &now_rfc3339());
    crate::crd::admit(&mut store, &call.def, &object)?;
    let updated = store.replace(call.key(), old, object, writer.scope);
    Ok((200, call.render(&updated)))
}

fn patch(shared: &Shared, call: &Call) -> Answer {
    let content_type = call
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let content_type = content_type
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    if content_type == "application/apply-patch+yaml" {
        return server_side_apply(shared, call);
    }
    let patch: Value = serde_json::from_slice(&call.body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch body: {e}")))?;
    let manager = call.manager();
    let api_version = call.def.api_version(&call.target.version);
    let writer = call.writer(&manager, &api_version)?;
    let mut store = shared.store.lock();
    let old = store.get(&call.def, call.target.namespace.as_deref(), call.name())?;
    let mut object = old.clone();
    match content_type {
        "application/merge-patch+json" => merge_patch(&mut object, &patch),
        // Simplified: strategic merge patches are merged like JSON merge patches.
        "application/strategic-merge-patch+json" if call.def.built_in => {
            merge_patch(&mut object, &patch)
        }
        "application/json-patch+json" => json_patch(&mut object, &patch)
            .map_err(|e| ApiError::new(422, "Invalid", format!("the JSON patch failed: {e}")))?,
        other => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?})"
                ),
            ));
        }
    }
    if object["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"] {
        return Err(ApiError::conflict(&call.def, call.name()));
    }
    check_name(call, &object)?;
    record_update(&old, &mut object, &writer, &now_rfc3339());
    crate::crd::admit(&mut store, &call.def, &object)?;
    let patched = store.replace(call.key(), old, object, writer.scope);
    Ok((200, call.render(&patched)))
}

fn server_side_apply(shared: &Shared, call: &Call) -> Answer {
    let Some(manager) = call.param("fieldManager").filter(|m| !m.is_empty()) else {
        return Err(ApiError::bad_request(
            "PATCH request must specify fieldManager for apply",
        ));
    };
    let config = call.json_body()?;
    if config["kind"].as_str().is_none_or(str::is_empty)
        || config["apiVersion"].as_str().is_none_or(str::is_empty)
    {
        return Err(ApiError::bad_request(
            "apply configurations must set apiVersion and kind",
        ));
    }
    check_name(call, &config)?;
    let force = call.param("force") == Some("true");
    let api_version = call.def.api_version(&call.target.version);
    let writer = call.writer(manager, &api_version)?;
    let key = call.key();
    let mut store = shared.store.lock();
    let old = store.lookup(&key).cloned();
    let precondition = config["metadata"]["resourceVersion"]
        .as_str()
        .filter(|rv| !rv.is_empty());
    let current_rv = old
        .as_ref()
        .and_then(|o| o["metadata"]["resourceVersion"].as_str());
    if precondition.is_some() && precondition != current_rv {
        return Err(ApiError::conflict(&call.def, call.name()));
    }
    let now = now_rfc3339();
    let base = old.clone().unwrap_or_else(|| json!({}));
    let mut object =
        apply(&base, &config, &writer, force, &now).map_err(|conflicts| {
            let mut error = ApiError::new(409, "Conflict", conflict_message(&conflicts));
            let causes: Vec<Value> = conflicts
            .iter()
            .map(|c| json!({
                "type": "FieldManagerConflict",
                "message": format!("conflict with \"{}\" using {}", c.manager, c.api_version),
                "field": crate::fields::display_path(&c.path),
            }))
            .collect();
            error.details = json!({ "causes": causes });
            error
        })?;
    let Some(old) = old else {
        if writer.scope == Scope::StatusOnly {
            return Err(ApiError::not_found(&call.def, call.name()));
        }
        object["metadata"]["name"] = json!(call.name());
        without_status(&mut object, writer.scope);
        crate::crd::admit(&mut store, &call.def, &object)?;
        let created = store.create(&call.def, call.target.namespace.as_deref(), object)?;
        return Ok((201, call.render(&created)));
    };
    crate::crd::admit(&mut store, &call.def, &object)?;
    let applied = store.replace(key, old, object, writer.scope);
    Ok((200, call.render(&applied)))
}

fn delete(shared: &Shared, call: &Call) -> Answer {
    if call.target.subresource.is_some() {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "delete of a subresource",
        ));
    }
    let options: Value = if call.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&call.body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    let precondition = options["preconditions"]["resourceVersion"].as_str();
    let mut store = shared.store.lock();
    let deleted = store.delete(&call.def, call.key(), precondition)?;
    Ok((200, call.render(&deleted)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(
        group: &str,
        ns: Option<&str>,
        plural: &str,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> Target {
        Target {
            group: group.to_owned(),
            version: "v1".to_owned(),
            namespace: ns.map(str::to_owned),
            plural: plural.to_owned(),
            name: name.map(str::to_owned),
            subresource: sub.map(str::to_owned),
        }
    }

    #[test]
    fn paths() {
        let cases = [
            ("/api/v1/pods", target("", None, "pods", None, None)),
            (
                "/api/v1/namespaces/a/pods",
                target("", Some("a"), "pods", None, None),
            ),
            (
                "/api/v1/namespaces/a/pods/p/status",
                target("", Some("a"), "pods", Some("p"), Some("status")),
            ),
            (
                "/api/v1/namespaces/a",
                target("", None, "namespaces", Some("a"), None),
            ),
            (
                "/api/v1/namespaces/a/status",
                target("", None, "namespaces", Some("a"), Some("status")),
            ),
            (
                "/apis/g.io/v1/namespaces/a/things/t",
                target("g.io", Some("a"), "things", Some("t"), None),
            ),
            (
                "/apis/g.io/v1/things",
                target("g.io", None, "things", None, None),
            ),
        ];
        for (path, expected) in cases {
            assert_eq!(parse_path(path), Some(expected), "{path}");
        }
        assert_eq!(parse_path("/healthz"), None);
    }
}
