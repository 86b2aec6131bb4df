//! The admin routes over snapshots of a registry built in memory.

use std::{sync::Arc, time::Duration};

use axum::{body::Body, http::Request};
use bowline_admin::{AdminState, ClusterSetCollector, Readiness, router};
use bowline_model::{Network, RejectReason, Rejection, SourceEvent, labels};
use bowline_registry::{MemberConfig, Registry};
use bowline_test_support::*;
use bowline_views::{ClusterSet, Input, Views};
use http_body_util::BodyExt;
use tokio::sync::watch;
use tower::ServiceExt;

/// A registry, the views stage publishing its snapshots, and the admin state reading them.
struct Harness {
    registry: Registry,
    views: Views,
    snapshots: watch::Sender<Arc<ClusterSet>>,
    state: AdminState,
}

impl std::ops::Deref for Harness {
    type Target = AdminState;

    fn deref(&self) -> &AdminState {
        &self.state
    }
}

impl Harness {
    /// Applies events and publishes the next snapshot.
    fn apply(&mut self, events: impl IntoIterator<Item = SourceEvent>) {
        self.registry.apply_all(events);
        let snapshot = self
            .views
            .next(Input::read(&self.registry), Default::default());
        self.snapshots.send_replace(snapshot);
    }
}

fn state(timeout: Duration) -> Harness {
    let registry = Registry::new(
        "demo",
        ["east", "west"].map(|m| MemberConfig {
            name: member(m),
            id: None,
            network: Network::new(format!("net-{m}")),
        }),
    );
    let mut views = Views::default();
    let (snapshots, receiver) =
        watch::channel(views.next(Input::read(&registry), Default::default()));
    let mut metrics = prometheus_client::registry::Registry::default();
    metrics.register_collector(Box::new(ClusterSetCollector(receiver.clone())));
    let state = AdminState {
        snapshots: receiver,
        metrics: Arc::new(metrics),
        readiness: Readiness::new(timeout),
        views: Default::default(),
    };
    Harness {
        registry,
        views,
        snapshots,
        state,
    }
}

async fn get(state: &AdminState, path: &str) -> (u16, String) {
    let response = router(state.clone())
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test(start_paused = true)]
async fn readiness_waits_for_every_member_then_reports_stragglers() {
    let mut state = state(Duration::from_secs(30));
    assert_eq!(get(&state, "/healthz").await, (200, "ok\n".into()));
    let (code, body) = get(&state, "/readyz").await;
    assert_eq!(
        (code, body.as_str()),
        (503, "waiting for the first sync of: east, west\n")
    );
    state.apply([reset("east", vec![cluster_id("east")])]);
    assert_eq!(
        get(&state, "/readyz").await,
        (503, "waiting for the first sync of: west\n".into())
    );
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(
        get(&state, "/readyz").await,
        (
            200,
            "ready; members not synced after the 30s sync timeout: west\n".into()
        )
    );
    state.apply([reset("west", vec![cluster_id("west")])]);
    assert_eq!(get(&state, "/readyz").await, (200, "ready\n".into()));
}

#[tokio::test]
async fn debug_views_and_metrics() {
    let mut state = state(Duration::from_secs(30));
    let rejected = Rejection {
        member: member("west"),
        origin: "bad.yaml:3 (document 1)".into(),
        object: None,
        reason: RejectReason::ParseError,
        message: "invalid YAML".into(),
    };
    state.apply([
        reset(
            "east",
            vec![
                cluster_id("east"),
                node(
                    "n1",
                    &[(labels::REGION, "us-east"), (labels::ZONE, "us-east-1a")],
                ),
                service("demo", "echo")
                    .cluster_ips(&["10.96.0.10"])
                    .port("http", 80)
                    .build(),
                slice("demo", "echo-v4", "echo")
                    .port("http", 8080)
                    .endpoint(ep("10.1.1.10").pod("echo-a").node("n1"))
                    .build(),
            ],
        ),
        reset_with("west", vec![cluster_id("west")], vec![rejected]),
    ]);

    let (code, body) = get(&state, "/debug/services/demo/echo").await;
    assert_eq!(code, 200);
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ep = &view["members"]["east"]["endpoints"][0];
    assert_eq!(ep["cluster"], "east");
    assert_eq!(ep["network"], "net-east");
    assert_eq!(ep["locality"]["region"], "us-east");
    assert_eq!(ep["locality"]["zone"], "us-east-1a");
    assert_eq!(ep["addresses"], serde_json::json!(["10.1.1.10"]));

    assert_eq!(get(&state, "/debug/services/demo/nope").await.0, 404);
    let (_, body) = get(&state, "/debug/services").await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let (_, body) = get(&state, "/debug/rejected").await;
    let rejected: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rejected[0]["origin"], "bad.yaml:3 (document 1)");
    assert_eq!(rejected[0]["reason"], "ParseError");

    let (_, body) = get(&state, "/debug/members").await;
    let members: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(members[0]["admission"]["id"], "east");
    assert_eq!(members[1]["rejected"], 1);

    let (code, metrics) = get(&state, "/metrics").await;
    assert_eq!(code, 200);
    for line in [
        "bowline_members{state=\"admitted\"} 2",
        "bowline_member_endpoints{member=\"east\",cluster=\"east\"} 1",
        "bowline_member_objects{member=\"east\",cluster=\"east\",kind=\"Service\"} 1",
        "bowline_rejected_objects{member=\"west\",cluster=\"west\",reason=\"ParseError\"} 1",
        "bowline_services 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
    // The status page and its assets are served by the binary; what it draws is one view.
    let (code, page) = get(&state, "/").await;
    assert_eq!(code, 200);
    assert!(
        page.contains("<script src=\"/ui/app.js\"></script>"),
        "{page}"
    );
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no external asset"
    );
    assert_eq!(get(&state, "/ui/app.js").await.0, 200);
    assert_eq!(get(&state, "/ui/style.css").await.0, 200);
    let (code, body) = get(&state, "/debug/overview").await;
    assert_eq!(code, 200);
    let overview: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(overview["clusterSet"], "demo");
    assert_eq!(
        overview["networks"],
        serde_json::json!([
            {"name": "net-east", "members": ["east"], "gateways": []},
            {"name": "net-west", "members": ["west"], "gateways": []},
        ])
    );
    assert_eq!(overview["members"][0]["state"], "admitted");
    assert_eq!(overview["members"][1]["rejected"], 1);
    assert_eq!(overview["services"][0]["key"], "demo/echo");
    assert_eq!(overview["rejected"], 1);
}

/// With `listen.adminDebug: loopback` (the default, and what `bowline install` writes) a
/// caller from another host gets health, readiness and metrics, but not the debug views.
#[tokio::test]
async fn the_debug_views_are_served_to_loopback_callers_unless_opened() {
    use axum::extract::connect_info::MockConnectInfo;
    use bowline_admin::{DebugAccess, guarded};
    let state = state(Duration::from_secs(30));
    let call = |access: DebugAccess, peer: &str, path: &str| {
        let app = guarded(state.state.clone(), Arc::from([]), access).layer(MockConnectInfo(
            peer.parse::<std::net::SocketAddr>().unwrap(),
        ));
        let request = Request::get(path).body(Body::empty()).unwrap();
        async move { app.oneshot(request).await.unwrap().status().as_u16() }
    };
    for peer in ["127.0.0.1:5000", "[::1]:5000", "[::ffff:127.0.0.1]:5000"] {
        assert_eq!(
            call(DebugAccess::Loopback, peer, "/debug/services").await,
            200,
            "{peer}"
        );
    }
    let remote = "10.0.0.7:5000";
    for path in ["/debug/services", "/debug/members", "/"] {
        assert_eq!(
            call(DebugAccess::Loopback, remote, path).await,
            403,
            "{path}"
        );
        assert_eq!(call(DebugAccess::Any, remote, path).await, 200, "{path}");
    }
    for path in ["/healthz", "/metrics"] {
        assert_eq!(
            call(DebugAccess::Loopback, remote, path).await,
            200,
            "{path}"
        );
    }
}
