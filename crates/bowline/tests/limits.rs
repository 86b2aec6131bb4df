//! The release binary under a client holding idle connections: with the
//! open-files limit at 160, more idle connections than each listener allows are held on
//! every TCP listener (together more than the descriptors the process has). Meanwhile the
//! admin server answers, DNS over UDP answers, a manifest edit reaches the registry, and a
//! well-behaved xDS client gets its resources; once the idle connections time out,
//! everything is as before. The idle connections would be held for 20 s (their handshake
//! timeout): without the limits, the process would run out of descriptors and nothing new
//! (an admin request, an xDS stream, a manifest file) would be served until then.

use std::{
    fs,
    io::Read,
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use bowline_test_support::{eventually, http_get};
use envoy_types::pb::envoy::{
    config::core::v3::Node,
    service::discovery::v3::{
        DiscoveryRequest, aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
    },
};

mod common;

const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// Idle connections held on each TCP listener, against a limit of 20.
const HELD: usize = 50;

/// Whether a well-behaved ADS client gets listeners within a few seconds.
fn xds_answers(xds: SocketAddr) -> bool {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let attempt = async {
            let channel = tonic::transport::Channel::from_shared(format!("http://{xds}"))
                .ok()?
                .connect()
                .await
                .ok()?;
            let request = DiscoveryRequest {
                node: Some(Node {
                    id: "well-behaved".into(),
                    ..Default::default()
                }),
                type_url: LISTENER.into(),
                ..Default::default()
            };
            let mut responses = AggregatedDiscoveryServiceClient::new(channel)
                .stream_aggregated_resources(tokio_stream::iter([request]))
                .await
                .ok()?
                .into_inner();
            let response = responses.message().await.ok()??;
            Some(response.type_url == LISTENER)
        };
        tokio::time::timeout(Duration::from_secs(5), attempt)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
    })
}

fn counter(metrics: &str, name: &str, listener: &str, reason: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with(name)
                && l.contains(&format!("listener=\"{listener}\""))
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn idle_connections_beyond_every_listeners_limit_stop_nothing() {
    let dir = tempfile::tempdir().unwrap();
    bowline_app::demo::write_to(dir.path()).unwrap();
    let config = common::demo_config(
        dir.path(),
        "limits:\n\
         \x20 xds: {maxConnections: 20, handshakeTimeout: 20s, idleTimeout: 20s}\n\
         \x20 xdsTls: {maxConnections: 20, handshakeTimeout: 20s, idleTimeout: 20s}\n\
         \x20 dns: {maxConnections: 20, handshakeTimeout: 20s, idleTimeout: 20s}\n\
         \x20 admin: {maxConnections: 20, handshakeTimeout: 20s, idleTimeout: 20s}\n",
    );
    let bowline = common::start(&config, Some(160));
    eventually("/readyz", || {
        (http_get(&bowline.admin, "/readyz").ok()?.0 == 200).then_some(())
    });

    // Connections that never send a byte, more than each listener allows.
    let admin: SocketAddr = bowline.admin.parse().unwrap();
    let mut held = Vec::new();
    for addr in [bowline.xds, bowline.xds_tls, bowline.dns, admin] {
        for _ in 0..HELD {
            held.push(TcpStream::connect(addr).expect("the kernel accepts the connection"));
        }
    }

    let (code, body) = http_get(&bowline.admin, "/healthz").expect("/healthz answers");
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        common::dns_rcode(bowline.dns, "echo.demo.svc.clusterset.local"),
        Some(0),
        "DNS over UDP answers"
    );
    fs::write(
        dir.path().join("members/east/added.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: added, namespace: demo}\n\
         spec: {ports: [{name: http, port: 80}]}\n",
    )
    .unwrap();
    eventually("the edit in /debug/services", || {
        let (code, body) = http_get(&bowline.admin, "/debug/services/demo/added").ok()?;
        (code == 200).then_some(body)
    });
    assert!(
        xds_answers(bowline.xds),
        "a well-behaved xDS client is served"
    );

    // The idle connections are ended by their timeouts (or evicted for the new ones).
    for stream in &mut held {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        // What the server sent first (HTTP/2 SETTINGS), then the end.
        let ended = stream.read_to_end(&mut Vec::new()).map_err(|e| e.kind());
        assert!(
            matches!(ended, Ok(_) | Err(std::io::ErrorKind::ConnectionReset)),
            "an idle connection is closed by Bowline: {ended:?}"
        );
    }
    let (code, metrics) = http_get(&bowline.admin, "/metrics").unwrap();
    assert_eq!(code, 200);
    for listener in ["xds", "xds-tls", "dns-tcp", "admin"] {
        let ended = counter(
            &metrics,
            "bowline_listener_refused_total",
            listener,
            "limit",
        ) + counter(
            &metrics,
            "bowline_listener_refused_total",
            listener,
            "evicted",
        ) + counter(
            &metrics,
            "bowline_listener_refused_total",
            listener,
            "handshake_timeout",
        );
        assert!(ended >= HELD as f64, "{listener}: {ended} ended\n{metrics}");
    }
    for listener in ["xds", "xds-tls", "dns-tcp", "admin"] {
        assert_eq!(
            counter(
                &metrics,
                "bowline_listener_refused_total",
                listener,
                "descriptors"
            ),
            0.0,
            "{listener} stopped accepting well before the descriptors ran out"
        );
    }
    // As before: the same checks with nothing held.
    assert_eq!(http_get(&bowline.admin, "/healthz").unwrap().0, 200);
    assert_eq!(
        common::dns_rcode(bowline.dns, "echo.demo.svc.clusterset.local"),
        Some(0)
    );
    assert!(xds_answers(bowline.xds));
}
