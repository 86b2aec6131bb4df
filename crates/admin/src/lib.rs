//! The admin server: `/healthz`, `/readyz`, `/metrics` and the `/debug/*` views of what the
//! control plane believes. It reads registry snapshots and holds no lock across an await.

mod metrics;
mod readiness;

use std::{future::Future, sync::Arc};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use bowline_model::ServiceKey;
use bowline_registry::Shared;
use tokio::net::TcpListener;

pub use crate::{metrics::RegistryCollector, readiness::Readiness};

/// What the admin server reads.
#[derive(Clone)]
pub struct AdminState {
    /// The registry.
    pub registry: Shared,
    /// Prometheus registry holding every metric of the process.
    pub metrics: Arc<prometheus_client::registry::Registry>,
    /// When the process is ready.
    pub readiness: Readiness,
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/debug/members", get(members))
        .route("/debug/services", get(services))
        .route("/debug/services/{namespace}/{name}", get(service))
        .route("/debug/gateways", get(gateways))
        .route("/debug/rejected", get(rejected))
        .with_state(state)
}

/// Serves the admin routes on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let report = state.readiness.check(&state.registry.read().members());
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
    Json(state.registry.read().members()).into_response()
}

async fn services(State(state): State<AdminState>) -> Response {
    Json(state.registry.read().services()).into_response()
}

async fn service(
    State(state): State<AdminState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let key = ServiceKey::new(namespace, name);
    match state.registry.read().service(&key) {
        Some(view) => Json(view).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("no member has a service {key}\n"),
        )
            .into_response(),
    }
}

async fn gateways(State(state): State<AdminState>) -> Response {
    let gateways = state.registry.read().gateways();
    Json(gateways.values().flatten().cloned().collect::<Vec<_>>()).into_response()
}

async fn rejected(State(state): State<AdminState>) -> Response {
    Json(state.registry.read().rejections()).into_response()
}

async fn index(State(state): State<AdminState>) -> Html<String> {
    let (members, services, rejected, cluster_set) = {
        let reg = state.registry.read();
        (
            reg.members(),
            reg.services().len(),
            reg.rejections().len(),
            reg.cluster_set().to_string(),
        )
    };
    let rows: String = members
        .iter()
        .map(|m| {
            let id = m
                .admission
                .id()
                .map(|id| id.to_string())
                .unwrap_or_else(|| "-".into());
            let state = match &m.admission {
                bowline_registry::Admission::Admitted { .. } => "admitted".to_string(),
                bowline_registry::Admission::Pending => "pending".to_string(),
                bowline_registry::Admission::Refused { reason, .. } => {
                    format!("refused ({reason})")
                }
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(m.name.as_str()),
                escape(&id),
                escape(m.network.as_str()),
                state,
                m.endpoints,
                m.rejected
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><title>Bowline: {cs}</title></head><body>\
         <h1>Bowline ClusterSet {cs}</h1>\
         <table border=1 cellpadding=4><tr><th>member</th><th>cluster id</th><th>network</th><th>state</th><th>endpoints</th><th>rejected documents</th></tr>{rows}</table>\
         <p>{services} services, {rejected} rejected objects.</p>\
         <ul><li><a href=/readyz>/readyz</a></li><li><a href=/metrics>/metrics</a></li><li><a href=/debug/members>/debug/members</a></li>\
         <li><a href=/debug/services>/debug/services</a></li><li><a href=/debug/gateways>/debug/gateways</a></li><li><a href=/debug/rejected>/debug/rejected</a></li></ul>\
         </body></html>",
        cs = escape(&cluster_set)
    ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
