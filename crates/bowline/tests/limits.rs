//! The release binary under a client holding idle connections (issue #14): with the
//! open-files limit at 160, more idle connections than each listener allows are held on
//! every TCP listener (together more than the descriptors the process has). Meanwhile the
//! admin server answers, DNS over UDP answers, a manifest edit reaches the registry, and a
//! well-behaved xDS client gets its resources; once the idle connections time out,
//! everything is as before. The idle connections would be held for 20 s (their handshake
//! timeout): without the limits, the process would run out of descriptors and nothing new
//! (an admin request, an xDS stream, a manifest file) would be served until then.

use std::{
    fs,
    io::{BufRead, BufReader, Read},
    net::{SocketAddr, TcpStream, UdpSocket},
    process::{Child, Command, Stdio},
    time::Duration,
};

use bowline_test_support::{eventually, http_get};
use envoy_types::pb::envoy::{
    config::core::v3::Node,
    service::discovery::v3::{
        DiscoveryRequest, aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
    },
};

const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// Idle connections held on each TCP listener, against a limit of 20.
const HELD: usize = 50;

struct Bowline {
    child: Child,
    admin: String,
    xds: SocketAddr,
    xds_tls: SocketAddr,
    dns: SocketAddr,
}

impl Drop for Bowline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address after `label` in the startup line
/// `bowline: ClusterSet "demo", admin on http://A/, xDS on X (TLS on T), DNS on D`.
fn address_after(line: &str, label: &str) -> SocketAddr {
    let rest = &line[line
        .find(label)
        .unwrap_or_else(|| panic!("{label} in {line}"))
        + label.len()..];
    let end = rest.find([' ', ')', ',', '/']).unwrap_or(rest.len());
    rest[..end]
        .parse()
        .unwrap_or_else(|e| panic!("{label} in {line}: {e}"))
}

fn start(config: &std::path::Path) -> Bowline {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 160 && exec "$0" run --config "$1""#)
        .arg(env!("CARGO_BIN_EXE_bowline"))
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bowline starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("bowline: ClusterSet") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("bowline prints its addresses");
    Bowline {
        child,
        admin: address_after(&line, "admin on http://").to_string(),
        xds: address_after(&line, "xDS on "),
        xds_tls: address_after(&line, "TLS on "),
        dns: address_after(&line, "DNS on "),
    }
}

/// A DNS query for `name` (type A), id 7.
fn query(name: &str) -> Vec<u8> {
    let mut q = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// The response code of a UDP query for `name`.
fn udp_rcode(dns: SocketAddr, name: &str) -> Option<u8> {
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    socket.send_to(&query(name), dns).ok()?;
    let mut buf = [0u8; 1500];
    let (len, _) = socket.recv_from(&mut buf).ok()?;
    (len >= 12 && buf[..2] == [0, 7]).then_some(buf[3] & 0x0f)
}

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
    let config = dir.path().join("bowline.yaml");
    let mut text = fs::read_to_string(&config).unwrap();
    text = text.replace("listen:\n  admin: 127.0.0.1:15014\n", "");
    text.push_str(
        "listen: {admin: 127.0.0.1:0, xds: 127.0.0.1:0, xdsTls: 127.0.0.1:0, dns: 127.0.0.1:0}\n\
         limits:\n\
         \x20 xds: {maxConnections: 20, handshakeTimeout: 20s, idleTimeout: 20s}\n\
         \x20 xdsTls: {maxConnections: 20, handshakeTimeout: 20s, idleTimeout: 20s}\n\
         \x20 dns: {maxConnections: 20, handshakeTimeout: 20s, idleTimeout: 20s}\n\
         \x20 admin: {maxConnections: 20, handshakeTimeout: 20s, idleTimeout: 20s}\n",
    );
    fs::write(&config, text).unwrap();
    let bowline = start(&config);
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
        udp_rcode(bowline.dns, "echo.demo.svc.clusterset.local"),
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
        udp_rcode(bowline.dns, "echo.demo.svc.clusterset.local"),
        Some(0)
    );
    assert!(xds_answers(bowline.xds));
}
