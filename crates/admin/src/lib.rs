//! The admin server: `/healthz`, `/readyz`, `/metrics` and the `/debug/*` views of what the
//! control plane believes. It reads the views stage's latest ClusterSet snapshot, the same
//! one the xDS and DNS servers serve, and holds no lock.

mod metrics;
pub mod overview;
mod readiness;

use std::{borrow::Cow, collections::BTreeMap, sync::Arc};

use axum::{
    Json, Router,
    extract::{ConnectInfo, Path, State},
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use bowline_model::ServiceKey;
use bowline_views::ClusterSet;
use tokio::sync::watch;

pub use crate::{metrics::ClusterSetCollector, readiness::Readiness};

/// What the admin server reads.
#[derive(Clone)]
pub struct AdminState {
    /// The latest ClusterSet snapshot (with the MCS outcome: empty writes in consumer mode).
    pub snapshots: watch::Receiver<Arc<ClusterSet>>,
    /// Prometheus registry holding every metric of the process.
    pub metrics: Arc<prometheus_client::registry::Registry>,
    /// When the process is ready.
    pub readiness: Readiness,
    /// More debug views, registered by the composition root for servers the admin does not
    /// know (`/debug/<name>`): each renders its JSON when asked.
    pub views: BTreeMap<&'static str, DebugView>,
}

/// A debug view rendered on request from its query parameters; `Err` is a 404 with a reason.
pub type DebugView = Arc<
    dyn Fn(&std::collections::HashMap<String, String>) -> Result<serde_json::Value, String>
        + Send
        + Sync,
>;

/// Who may read the debug views (`/` and `/debug/*`), which show every member, service,
/// endpoint and refusal of the ClusterSet: `listen.adminDebug`. Health, readiness and
/// metrics are served to anyone who can connect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DebugAccess {
    /// Callers on the loopback interface only (`kubectl port-forward` is one).
    #[default]
    Loopback,
    /// Anyone who can connect.
    Any,
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(index))
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", include_str!("ui/app.js")) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css; charset=utf-8", include_str!("ui/style.css")) }),
        )
        .route("/debug/overview", get(overview_view))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/debug/members", get(members))
        .route("/debug/members/{id}/written", get(written))
        .route("/debug/imports", get(imports))
        .route("/debug/imports/{namespace}/{name}", get(import))
        .route("/debug/services", get(services))
        .route("/debug/services/{namespace}/{name}", get(service))
        .route("/debug/gateways", get(gateways))
        .route("/debug/rejected", get(rejected))
        .route("/debug/{view}", get(extra_view))
        .with_state(state)
}

/// The admin routes behind their guards: the `Host` check (see [`host_allowed`]) and the
/// debug views' callers (see [`peer_allowed`], from each request's [`ConnectInfo`]).
pub fn guarded(state: AdminState, hosts: Arc<[String]>, debug: DebugAccess) -> Router {
    router(state)
        .layer(axum::middleware::from_fn_with_state(debug, check_peer))
        .layer(axum::middleware::from_fn_with_state(hosts, check_host))
}

/// Serves the admin routes on the connections `guard` accepts until `shutdown`: HTTP/1.1,
/// each request's headers read within `header_timeout` (a client sending them slowly is cut
/// off), connections finishing their request in flight at shutdown.
pub async fn serve(
    mut guard: bowline_net::Guard,
    state: AdminState,
    header_timeout: std::time::Duration,
    hosts: Arc<[String]>,
    debug: DebugAccess,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let router = guarded(state, hosts, debug);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = guard.accept() => accepted,
        };
        let router = router.clone().layer(axum::Extension(ConnectInfo(peer)));
        let service = hyper_util::service::TowerToHyperService::new(router);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, "admin connection ended: {e}");
            }
        });
    }
}

/// Whether a request's `Host` may reach the admin server. A page on another site cannot
/// make a browser send a request with an IP address, `localhost` or an in-cluster service name
/// of its choice as `Host`, but it can rebind a name of its own to this address (DNS
/// rebinding): such names are refused unless listed (`listen.adminHosts`).
pub fn host_allowed(host: &str, extra: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // `[v6]:port` or `[v6]`
        Some(rest) => {
            return rest
                .split(']')
                .next()
                .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::IpAddr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        || name.ends_with(".svc")
        || name.ends_with(".svc.cluster.local")
        || extra
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(&name))
}

/// Refuses requests whose `Host` is not allowed (see [`host_allowed`]); a request without one
/// (HTTP/1.0) passes.
async fn check_host(
    State(hosts): State<Arc<[String]>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("(not text)"));
    match host {
        Some(host) if !host_allowed(host, &hosts) => (
            StatusCode::FORBIDDEN,
            format!(
                "Host {:?} is not allowed on the admin server (a guard against DNS rebinding): use an IP address or localhost, or list the name in listen.adminHosts\n",
                bowline_model::echo::capped(host, 128)
            ),
        )
            .into_response(),
        _ => next.run(request).await,
    }
}

/// Whether a request for `path` from `peer` is served under `access`.
pub fn peer_allowed(access: DebugAccess, path: &str, peer: std::net::IpAddr) -> bool {
    let debug = path == "/" || path.starts_with("/debug");
    !debug || access == DebugAccess::Any || peer.to_canonical().is_loopback()
}

/// Refuses the debug views to callers `listen.adminDebug` does not allow (see
/// [`peer_allowed`]); a request without a known peer is not from loopback.
async fn check_peer(
    State(access): State<DebugAccess>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::extract::connect_info::MockConnectInfo;
    let extensions = request.extensions();
    let peer = extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0)
        .or_else(|| {
            extensions
                .get::<MockConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0)
        })
        .map(|addr| addr.ip());
    // No peer known: none to trust.
    let peer = peer.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    if peer_allowed(access, request.uri().path(), peer) {
        return next.run(request).await;
    }
    (
        StatusCode::FORBIDDEN,
        "the debug views are served to loopback callers only (listen.adminDebug: loopback): use `kubectl port-forward`, or set listen.adminDebug: any\n",
    )
        .into_response()
}

impl AdminState {
    fn snapshot(&self) -> Arc<ClusterSet> {
        self.snapshots.borrow().clone()
    }
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let snapshot = state.snapshot();
    if snapshot.version == 0 {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response();
    }
    let report = state.readiness.check(&snapshot.members);
    if snapshot.starting {
        // Every member listed, the first MCS outcome not yet computed from them.
        let text = if report.ready {
            "starting\n".to_string()
        } else {
            report.text
        };
        return (StatusCode::SERVICE_UNAVAILABLE, text).into_response();
    }
    let code = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, report.text).into_response()
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.metrics) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}\n"),
        )
            .into_response(),
    }
}

async fn members(State(state): State<AdminState>) -> Response {
    Json(&*state.snapshot().members).into_response()
}

/// The objects Bowline writes into a member (by cluster id or configured name).
async fn written(State(state): State<AdminState>, Path(id): Path<String>) -> Response {
    let snapshot = state.snapshot();
    let member = snapshot
        .members
        .iter()
        .find(|m| m.admission.id().is_some_and(|i| i.as_str() == id) || m.name.as_str() == id);
    let Some(member) = member else {
        return (
            StatusCode::NOT_FOUND,
            format!("no member with id or name {id:?}\n"),
        )
            .into_response();
    };
    // The objects are JSON text (imported slices rendered now): the array is joined, not
    // parsed and encoded again.
    let objects: Vec<Cow<'_, str>> = snapshot
        .outcome
        .writes
        .get(&member.name)
        .into_iter()
        .flat_map(|w| w.iter().map(|(_, object)| object.json()))
        .collect();
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("[{}]", objects.join(",")),
    )
        .into_response()
}

async fn imports(State(state): State<AdminState>) -> Response {
    let snapshot = state.snapshot();
    Json(snapshot.imports().values().collect::<Vec<_>>()).into_response()
}

/// One import: its merged definition, conflicts, addresses, and each member's export
/// decision (whether its endpoints are part of the ClusterSet service, and why).
async fn import(
    State(state): State<AdminState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let key = ServiceKey::new(namespace, name);
    let snapshot = state.snapshot();
    let import = snapshot.imports().get(&key);
    let exports = snapshot.exports().get(&key);
    if import.is_none() && exports.is_none() {
        return (
            StatusCode::NOT_FOUND,
            format!("{key} is neither imported nor exported anywhere\n"),
        )
            .into_response();
    }
    let members: Vec<serde_json::Value> = snapshot
        .admitted
        .iter()
        .map(|m| member_import(&snapshot, &key, m))
        .collect();
    Json(serde_json::json!({"key": key, "import": import, "exports": exports, "members": members}))
        .into_response()
}

/// Whether member `m` imports `key`, from which exporters, whether a ServiceImport is
/// written into it, and why not.
fn member_import(
    snapshot: &ClusterSet,
    key: &ServiceKey,
    m: &bowline_views::MemberInput,
) -> serde_json::Value {
    let import = snapshot.imports().get(key);
    let seen = import.and_then(|i| i.for_member(m.id.as_str()));
    let has_namespace = m.namespaces.contains_key(&key.namespace);
    let why = match (import, seen) {
        (None, _) => {
            format!("no valid export of {key} (see exports: each member's decision and conditions)")
        }
        (Some(_), None) => {
            let exports = snapshot.exports().get(key);
            let scoped: Vec<String> = exports
                .iter()
                .flat_map(|e| e.iter())
                .filter(|(_, info)| info.exported)
                .map(|(id, info)| match &info.scope {
                    Some(scope) => format!(
                        "{id} exports to {} ({scope})",
                        bowline_model::cluster::join_ids(&info.consumers)
                    ),
                    None => format!("{id} exports to every member"),
                })
                .collect();
            format!("no export reaches member {}: {}", m.id, scoped.join("; "))
        }
        (Some(_), Some(_)) if !has_namespace => format!(
            "imported (proxies get the ClusterSet service), but member {} has no namespace {}, so no ServiceImport is written there",
            m.id, key.namespace
        ),
        (Some(_), Some(seen)) => format!(
            "imported from {}",
            bowline_model::cluster::join_ids(&seen.clusters)
        ),
    };
    serde_json::json!({
        "member": m.name,
        "id": m.id,
        "imports": seen.is_some(),
        "sources": seen.map(|s| &s.clusters),
        "serviceImport": seen.is_some() && has_namespace,
        "why": why,
    })
}

async fn services(State(state): State<AdminState>) -> Response {
    let snapshot = state.snapshot();
    Json(snapshot.services.values().collect::<Vec<_>>()).into_response()
}

async fn service(
    State(state): State<AdminState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let key = ServiceKey::new(namespace, name);
    let snapshot = state.snapshot();
    let Some(view) = snapshot.service(&key) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no member has a service {key}\n"),
        )
            .into_response();
    };
    // Whether each member's endpoints are part of the ClusterSet service, and why.
    let mut body = serde_json::to_value(&**view).unwrap_or_default();
    if let Some(exports) = snapshot.exports().get(&key) {
        body["clusterSet"] = serde_json::to_value(exports).unwrap_or_default();
    }
    Json(body).into_response()
}

async fn gateways(State(state): State<AdminState>) -> Response {
    let gateways = state.snapshot().gateways.clone();
    Json(gateways.values().flatten().cloned().collect::<Vec<_>>()).into_response()
}

async fn extra_view(
    State(state): State<AdminState>,
    Path(view): Path<String>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    match state.views.get(view.as_str()).map(|render| render(&query)) {
        Some(Ok(body)) => Json(body).into_response(),
        Some(Err(reason)) => (StatusCode::NOT_FOUND, format!("{reason}\n")).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no debug view {view:?}\n")).into_response(),
    }
}

async fn rejected(State(state): State<AdminState>) -> Response {
    Json(&*state.snapshot().rejections).into_response()
}

/// The status page: static HTML drawing `/debug/overview` (every asset is in the binary).
async fn index() -> Html<&'static str> {
    Html(include_str!("ui/index.html"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `/debug/overview`: see [`overview::overview`]; the proxies come from the xDS server's
/// `connections` view when it is registered.
async fn overview_view(State(state): State<AdminState>) -> Response {
    let snapshot = state.snapshot();
    let connections = state
        .views
        .get("connections")
        .and_then(|render| render(&Default::default()).ok());
    Json(overview::overview(&snapshot, connections)).into_response()
}

#[cfg(test)]
mod host_tests {
    use super::host_allowed;

    #[test]
    fn addresses_localhost_and_service_names_pass_other_names_only_when_listed() {
        for ok in [
            "127.0.0.1:15014",
            "10.0.0.7",
            "[::1]:15014",
            "[fd00::1]",
            "localhost:15014",
            "LOCALHOST",
            "bowline-admin.bowline-system.svc:15014",
            "bowline-admin.bowline-system.svc.cluster.local.",
        ] {
            assert!(host_allowed(ok, &[]), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:15014",
            "127.0.0.1.evil.example",
            "[not-v6]",
        ] {
            assert!(!host_allowed(refused, &[]), "{refused}");
        }
        let listed = ["bowline.internal.example".to_string()];
        assert!(host_allowed("Bowline.internal.example:15014", &listed));
    }
}
