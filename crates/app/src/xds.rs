//! The xDS server in the composition root: the listeners, the serving certificate, and its
//! debug views and metrics.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use bowline_vm::ca::{self, RootCa};

use bowline_xds::{
    status::Connections,
    transport::{Origin, TlsIdentity, serve_routes},
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};
use tokio::{sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::error;

/// Serves `ads` on `listener`, over TLS when `tls` is given; every stream knows which
/// listener it came from and where tokens are checked (`origin`).
pub(crate) fn spawn_server(
    tasks: &mut JoinSet<()>,
    listener: bowline_net::Guard,
    routes: tonic::service::Routes,
    origin: Origin,
    tls: Option<TlsIdentity>,
    shutdown: CancellationToken,
) {
    tasks.spawn(async move {
        let transport = origin.transport;
        let served = serve_routes(listener, routes, origin, tls, shutdown.cancelled_owned());
        if let Err(e) = served.await {
            error!(?transport, "xDS server stopped: {e}");
        }
    });
}

/// A serving certificate from Bowline's root CA (see [`crate::state`]) for the TLS listener
/// bound at `addr`: the discovery host name, `localhost`, the loopback addresses and
/// `addr`'s own address unless it is unspecified.
pub(crate) fn tls_identity(ca: &RootCa, addr: SocketAddr) -> anyhow::Result<TlsIdentity> {
    let mut ips: Vec<IpAddr> = vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
    if !addr.ip().is_unspecified() && !ips.contains(&addr.ip()) {
        ips.push(addr.ip());
    }
    let names = [ca::DISCOVERY_HOST.to_string(), "localhost".to_string()];
    let serving = ca.issue_serving(&names, &ips, ca::now())?;
    Ok(TlsIdentity {
        cert_pem: serving.cert_pem,
        key_pem: serving.key_pem,
        // Workloads renew their certificates with the ones Bowline issued.
        client_ca_pem: Some(ca.root_pem().to_string()),
    })
}

/// `/debug/connections` (every connected proxy: node, member, network, kind, subscriptions,
/// versions sent and ACKed, last NACK) and `/debug/config_dump?node=ID` (what that proxy is
/// was last sent).
pub(crate) fn debug_views(
    connections: &Connections,
    snapshots: watch::Receiver<Arc<bowline_views::ClusterSet>>,
    replica: String,
) -> std::collections::BTreeMap<&'static str, bowline_admin::DebugView> {
    let listed = connections.clone();
    let connections_view: bowline_admin::DebugView = Arc::new(move |_| {
        let mut list = serde_json::to_value(listed.list()).map_err(|e| e.to_string())?;
        // Which replica serves each stream (`bowline proxy-status` shows it).
        for connection in list.as_array_mut().into_iter().flatten() {
            connection["replica"] = serde_json::Value::from(replica.as_str());
        }
        Ok(list)
    });
    let listed = connections.clone();
    let explained = snapshots.clone();
    let dump_view: bowline_admin::DebugView = Arc::new(move |query| {
        let node = query
            .get("node")
            .ok_or("give the proxy's node id: /debug/config_dump?node=ID")?;
        let connection = listed.list().into_iter().find(|c| &c.proxy.id == node);
        let connection =
            connection.ok_or_else(|| format!("no proxy with node id {node:?} is connected"))?;
        // `now`: what it would be sent now, for what it subscribes to.
        match query.get("now").map(String::as_str) {
            Some("true") => Ok(bowline_xds::dump::fresh_dump(
                &connection,
                &explained.borrow().clone(),
            )),
            _ => Ok(bowline_xds::dump::sent_dump(&connection)),
        }
    });
    let listed = connections.clone();
    let explain_view: bowline_admin::DebugView = Arc::new(move |query| {
        let snapshot = snapshots.borrow().clone();
        let (key, port) = explain_target(query)?;
        match query.get("node") {
            Some(node) => {
                let connection = listed.list().into_iter().find(|c| &c.proxy.id == node);
                let connection = connection
                    .ok_or_else(|| format!("no proxy with node id {node:?} is connected"))?;
                Ok(bowline_xds::explain::explain(
                    &connection.proxy,
                    &snapshot,
                    &key,
                    port,
                    Some(&connection.sent),
                ))
            }
            None => {
                let ips = query
                    .get("ip")
                    .map(String::as_str)
                    .unwrap_or_default()
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|ip| {
                        ip.parse()
                            .map_err(|_| format!("ip: {ip:?} is not an IP address"))
                    })
                    .collect::<Result<Vec<std::net::IpAddr>, String>>()?;
                // Without addresses, the family alone says which the proxy uses.
                let ips = match (ips.is_empty(), query.get("family").map(String::as_str)) {
                    (false, _) | (true, None) => ips,
                    (true, Some("ipv4")) => vec![std::net::Ipv4Addr::new(192, 0, 2, 1).into()],
                    (true, Some("ipv6")) => vec!["2001:db8::1".parse().expect("an address")],
                    (true, Some("dual")) => vec![
                        std::net::Ipv4Addr::new(192, 0, 2, 1).into(),
                        "2001:db8::1".parse().expect("an address"),
                    ],
                    (true, Some(other)) => {
                        return Err(format!("family: {other:?} is not ipv4, ipv6 or dual"));
                    }
                };
                let proxy = bowline_xds::node::ProxyInfo::asked(
                    query.get("member").map(String::as_str),
                    query.get("network").map(String::as_str).unwrap_or_default(),
                    &ips,
                    query.get("mtls").map(String::as_str) != Some("false"),
                );
                Ok(bowline_xds::explain::explain(
                    &proxy, &snapshot, &key, port, None,
                ))
            }
        }
    });
    [
        ("connections", connections_view),
        ("config_dump", dump_view),
        ("explain", explain_view),
    ]
    .into_iter()
    .collect()
}

/// The service (and port) `/debug/explain` asks about: `service=<ns>/<name>`, or
/// `cluster=outbound|<port>||<name>.<ns>.svc.clusterset.local`.
fn explain_target(
    query: &std::collections::HashMap<String, String>,
) -> Result<(bowline_model::ServiceKey, Option<u16>), String> {
    let usage = "give service=<ns>/<name> or cluster=outbound|<port>||<name>.<ns>.svc.clusterset.local, and node=<connected proxy id> or member=, network=, ip= or family=ipv4|ipv6|dual (and mtls=false) for a proxy that is not connected";
    if let Some(service) = query.get("service") {
        let (ns, name) = service.split_once('/').ok_or(usage)?;
        return Ok((bowline_model::ServiceKey::new(ns, name), None));
    }
    let cluster = query.get("cluster").ok_or(usage)?;
    let (port, host) = cluster
        .strip_prefix("outbound|")
        .and_then(|rest| rest.split_once("||"))
        .ok_or(usage)?;
    let port: u16 = port.parse().map_err(|_| usage.to_string())?;
    let (name, ns) = host
        .strip_suffix(".svc.clusterset.local")
        .and_then(|h| h.split_once('.'))
        .ok_or("only ClusterSet services (<name>.<ns>.svc.clusterset.local) are explained")?;
    Ok((bowline_model::ServiceKey::new(ns, name), Some(port)))
}

/// Registers the xDS metrics: the connection table's, read at scrape time, and the push
/// latency histogram.
pub(crate) fn register_metrics(
    metrics: &mut prometheus_client::registry::Registry,
    connections: &Connections,
) {
    metrics.register_collector(Box::new(XdsCollector(connections.clone())));
    metrics.register(
        "bowline_xds_push_latency_seconds",
        "From publishing a new ClusterSet snapshot to a response for it being queued on a stream.",
        connections.push_latency(),
    );
}

/// xDS metrics, read at scrape time.
pub(crate) struct XdsCollector(pub Connections);

impl std::fmt::Debug for XdsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("XdsCollector")
    }
}

impl Collector for XdsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let connections = self.0.list();
        let family = encoder.encode_descriptor(
            "bowline_xds_connected_proxies",
            "Proxies connected to the xDS server.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(connections.len() as i64).encode(family)?;
        let family = encoder.encode_descriptor(
            "bowline_xds_nacks",
            "NACKs received from proxies.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.0.nacks()).encode(family)?;
        let family = encoder.encode_descriptor(
            "bowline_xds_pushes",
            "Responses pushed to proxies because the ClusterSet changed.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.0.pushes()).encode(family)?;
        Ok(())
    }
}
