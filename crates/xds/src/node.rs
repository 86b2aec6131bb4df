//! What a connecting proxy says about itself in its xDS `Node`: member, network, addresses,
//! and whether it is Envoy or a proxyless gRPC library.
//!
//! Metadata keys understood (Istio's): `CLUSTER_ID` (member id), `NETWORK`, `INSTANCE_IPS`
//! (comma-separated), `NAMESPACE`, `LABELS` (a struct of strings), `AUTO_REGISTER_GROUP` (a
//! VM registering into that WorkloadGroup). A node whose
//! `user_agent_name` starts with `envoy` is Envoy; any other (`gRPC Python`, `grpc-node-js`,
//! `grpc-go`...) is a proxyless gRPC client. Bowline's own key `BOWLINE_LISTEN_ADDRESS` sets
//! the address Envoy's outbound listeners bind (default `127.0.0.1`); `BOWLINE_GATEWAY=eastwest`
//! makes an Envoy the east-west gateway of its network, listening on `BOWLINE_GATEWAY_PORT`
//! (default 15443).
//!
//! Mutual TLS: an Envoy whose bootstrap has the node agent's SDS cluster (`sds-grpc`) says so
//! with `BOWLINE_SDS=true`, or is Istio's (`ISTIO_VERSION` is set: Istio's agent always
//! bootstraps `sds-grpc`); a proxyless gRPC application says so (`BOWLINE_SDS=true`, what
//! `bowline agent`'s bootstrap sets) when its bootstrap has the certificate provider
//! `default`, and then reaches every service with mTLS and serves its xDS server listeners
//! with mTLS (gRFC A29). Such an Envoy sidecar originates Istio mTLS to endpoints with a proxy and
//! gets inbound listeners for the ports of its `POD_PORTS` (Istio's JSON list of container
//! ports, `[{"name":"http","containerPort":8080,"protocol":"TCP"}]`), bound at
//! `BOWLINE_INBOUND_ADDRESS` (default: its first `INSTANCE_IPS`) and forwarding to the
//! application at `BOWLINE_APP_ADDRESS` (default `127.0.0.1`) on the same port.

use std::{net::IpAddr, sync::Arc};

use bowline_model::{Labels, Network};
use envoy_types::pb::{
    envoy::config::core::v3::Node,
    google::protobuf::{Struct, value::Kind},
};
use serde::Serialize;

use crate::eds::{ProxyFamilies, ProxyView};

/// The kind of data plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum ProxyKind {
    /// Envoy: real socket listeners.
    Envoy,
    /// A proxyless gRPC client or server: `api_listener`s.
    Grpc,
}

/// A proxy, from its `Node`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyInfo {
    /// `node.id`.
    pub id: String,
    /// Envoy or gRPC.
    pub kind: ProxyKind,
    /// `CLUSTER_ID`: the member it runs in, when known.
    pub member: Option<String>,
    /// `NETWORK`.
    pub network: Network,
    /// `INSTANCE_IPS`.
    pub instance_ips: Vec<IpAddr>,
    /// `NAMESPACE`.
    pub namespace: Option<String>,
    /// `LABELS`.
    pub labels: Labels,
    /// `node.user_agent_name`.
    pub user_agent: String,
    /// `BOWLINE_LISTEN_ADDRESS`: where Envoy's outbound listeners bind.
    pub listen_address: IpAddr,
    /// `BOWLINE_GATEWAY=eastwest` (with `BOWLINE_GATEWAY_PORT`): the port this Envoy serves
    /// as its network's east-west gateway.
    pub gateway_port: Option<u16>,
    /// `AUTO_REGISTER_GROUP`: the WorkloadGroup a VM's proxy registers into.
    pub auto_register_group: Option<String>,
    /// `node.locality` as `region/zone/subzone`, when set.
    pub locality: Option<String>,
    /// The proxy has the node agent's certificates (`BOWLINE_SDS=true`, or an Istio agent's
    /// Envoy): an Envoy through its `sds-grpc` cluster, a proxyless gRPC application through
    /// the certificate provider `default` of its bootstrap.
    pub sds: bool,
    /// The mesh's settings (set by the server, not the proxy).
    #[serde(skip)]
    pub mesh: Arc<crate::security::Mesh>,
    /// Inbound listeners, from `POD_PORTS`, when the proxy has SDS and an inbound address.
    pub inbound: Option<Arc<Inbound>>,
}

/// A sidecar's inbound side: the workload's ports, where to listen and where the application is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inbound {
    /// Where the inbound listeners bind.
    pub address: IpAddr,
    /// Where the application listens (on the same ports).
    pub app_address: IpAddr,
    /// The ports, with their names (the name tells HTTP from TCP).
    pub ports: Vec<(u16, String)>,
    /// The workload's namespace and labels (`NAMESPACE`, `LABELS`): which PeerAuthentications
    /// apply.
    pub namespace: String,
    /// Its labels.
    pub labels: Labels,
}

/// The default trust domain (Istio's).
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// `POD_PORTS`: `[{"name": ..., "containerPort": ..., "protocol": "TCP"}]`; TCP ports only.
fn pod_ports(text: &str) -> Vec<(u16, String)> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Port {
        #[serde(default)]
        name: String,
        container_port: u16,
        #[serde(default)]
        protocol: Option<String>,
    }
    let mut ports: Vec<(u16, String)> = serde_json::from_str::<Vec<Port>>(text)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.protocol.as_deref().is_none_or(|p| p == "TCP") && p.container_port != 0)
        .map(|p| (p.container_port, p.name))
        .collect();
    ports.sort();
    ports.dedup_by_key(|p| p.0);
    ports
}

fn string(s: &Struct, key: &str) -> Option<String> {
    match s.fields.get(key)?.kind.as_ref()? {
        Kind::StringValue(v) if !v.is_empty() => Some(v.clone()),
        _ => None,
    }
}

impl ProxyInfo {
    /// Reads a node.
    pub fn from_node(node: &Node) -> Self {
        let empty = Struct::default();
        let meta = node.metadata.as_ref().unwrap_or(&empty);
        let instance_ips: Vec<IpAddr> = string(meta, "INSTANCE_IPS")
            .map(|ips| {
                ips.split(',')
                    .filter_map(|ip| ip.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let labels = match meta.fields.get("LABELS").and_then(|v| v.kind.as_ref()) {
            Some(Kind::StructValue(s)) => s
                .fields
                .keys()
                .filter_map(|k| Some((k.clone(), string(s, k)?)))
                .collect(),
            _ => Labels::new(),
        };
        let kind = if node
            .user_agent_name
            .to_ascii_lowercase()
            .starts_with("envoy")
        {
            ProxyKind::Envoy
        } else {
            ProxyKind::Grpc
        };
        let sds = string(meta, "BOWLINE_SDS").as_deref() == Some("true")
            || (kind == ProxyKind::Envoy && string(meta, "ISTIO_VERSION").is_some());
        let ip = |key: &str| string(meta, key).and_then(|a| a.parse::<IpAddr>().ok());
        let inbound = string(meta, "POD_PORTS")
            .map(|text| pod_ports(&text))
            .filter(|ports| sds && !ports.is_empty())
            .and_then(|ports| {
                Some(Arc::new(Inbound {
                    address: ip("BOWLINE_INBOUND_ADDRESS").or(instance_ips.first().copied())?,
                    app_address: ip("BOWLINE_APP_ADDRESS")
                        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
                    ports,
                    namespace: string(meta, "NAMESPACE").unwrap_or_default(),
                    labels: labels.clone(),
                }))
            });
        Self {
            sds,
            inbound,
            mesh: Arc::default(),
            id: node.id.clone(),
            kind,
            member: string(meta, "CLUSTER_ID"),
            network: Network::new(string(meta, "NETWORK").unwrap_or_default()),
            instance_ips,
            namespace: string(meta, "NAMESPACE"),
            labels,
            user_agent: node.user_agent_name.clone(),
            listen_address: string(meta, "BOWLINE_LISTEN_ADDRESS")
                .and_then(|a| a.parse().ok())
                .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
            gateway_port: (string(meta, "BOWLINE_GATEWAY").as_deref() == Some("eastwest")).then(
                || {
                    string(meta, "BOWLINE_GATEWAY_PORT")
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(bowline_model::labels::DEFAULT_GATEWAY_PORT)
                },
            ),
            auto_register_group: string(meta, "AUTO_REGISTER_GROUP"),
            locality: node
                .locality
                .as_ref()
                .map(|l| {
                    [&l.region, &l.zone, &l.sub_zone]
                        .map(String::as_str)
                        .join("/")
                        .trim_end_matches('/')
                        .to_string()
                })
                .filter(|l| !l.is_empty()),
        }
    }

    /// A proxy that is not connected, as `bowline explain` asks about one: an Envoy sidecar
    /// of `member` in `network` with `instance_ips`, originating mTLS when `mtls`.
    pub fn asked(member: Option<&str>, network: &str, instance_ips: &[IpAddr], mtls: bool) -> Self {
        use envoy_types::pb::google::protobuf::Value;
        let text = |s: String| Value {
            kind: Some(Kind::StringValue(s)),
        };
        let mut fields = std::collections::HashMap::new();
        if let Some(member) = member {
            fields.insert("CLUSTER_ID".to_string(), text(member.to_string()));
        }
        fields.insert("NETWORK".to_string(), text(network.to_string()));
        let ips: Vec<String> = instance_ips.iter().map(IpAddr::to_string).collect();
        fields.insert("INSTANCE_IPS".to_string(), text(ips.join(",")));
        if mtls {
            fields.insert("BOWLINE_SDS".to_string(), text("true".into()));
        }
        let node = Node {
            id: "explain~asked".into(),
            user_agent_name: "envoy".into(),
            metadata: Some(Struct { fields }),
            ..Default::default()
        };
        Self::from_node(&node)
    }

    /// The view the EDS rule needs.
    pub fn view(&self) -> ProxyView {
        ProxyView {
            network: self.network.clone(),
            families: ProxyFamilies::of(&self.instance_ips),
            local_only: self.gateway_port.is_some(),
            mtls: self.sds,
        }
    }
}
