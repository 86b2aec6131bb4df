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

use std::net::IpAddr;

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
        let instance_ips = string(meta, "INSTANCE_IPS")
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
        Self {
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

    /// The view the EDS rule needs.
    pub fn view(&self) -> ProxyView {
        ProxyView {
            network: self.network.clone(),
            families: ProxyFamilies::of(&self.instance_ips),
            local_only: self.gateway_port.is_some(),
        }
    }
}
