//! Endpoints of the ClusterSet view: one per workload, with its member, network and locality.

use std::{fmt, net::IpAddr, sync::Arc};

use serde::Serialize;

use crate::{ClusterId, Protocol};

/// IP address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum IpFamily {
    /// IPv4.
    IPv4,
    /// IPv6.
    IPv6,
}

impl IpFamily {
    /// The family of an address.
    pub fn of(addr: &IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::IPv4,
            IpAddr::V6(_) => Self::IPv6,
        }
    }

    /// Parses Kubernetes' family names (`IPv4`, `IPv6`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "IPv4" => Some(Self::IPv4),
            "IPv6" => Some(Self::IPv6),
            _ => None,
        }
    }
}

/// A network name (Istio's `topology.istio.io/network`); empty means "reachable from everywhere".
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Network(Arc<str>);

impl Network {
    /// Wraps a network name.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self(name.into())
    }

    /// The network name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for the unnamed network.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Where an endpoint runs: region, zone and subzone (each possibly empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Locality {
    /// Region, from `topology.kubernetes.io/region`.
    pub region: Arc<str>,
    /// Zone, from `topology.kubernetes.io/zone` or the EndpointSlice's zone.
    pub zone: Arc<str>,
    /// Subzone, from `topology.istio.io/subzone`.
    pub subzone: Arc<str>,
}

impl Locality {
    /// Parses Istio's `region/zone/subzone` form (missing parts are empty).
    pub fn parse_slashed(s: &str) -> Self {
        let mut parts = s.splitn(3, '/').map(str::trim);
        Self {
            region: parts.next().unwrap_or_default().into(),
            zone: parts.next().unwrap_or_default().into(),
            subzone: parts.next().unwrap_or_default().into(),
        }
    }
}

impl fmt::Display for Locality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.region, self.zone, self.subzone)
    }
}

/// The workload behind an endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct WorkloadRef {
    /// Kind: `Pod`, `WorkloadEntry`, or `ServiceEntry` for a ServiceEntry's inline endpoint
    /// (named `<serviceentry>-<index>`).
    pub kind: Arc<str>,
    /// Name of the workload in the service's namespace.
    pub name: Arc<str>,
}

/// A port an endpoint serves.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct EndpointPort {
    /// Port name, matching the Service port's name.
    pub name: String,
    /// Port number on the endpoint.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// Application protocol, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

/// One endpoint of a service in the ClusterSet view. A dual-stack pod is one endpoint with two
/// addresses, the first of the service's primary family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Member the endpoint runs in.
    pub cluster: ClusterId,
    /// Network of the endpoint.
    pub network: Network,
    /// Locality of the endpoint, shared by the endpoints of a node (one pointer, not three
    /// strings, per endpoint).
    pub locality: Arc<Locality>,
    /// Addresses, primary first; at most one per family.
    pub addresses: Arc<[IpAddr]>,
    /// Ports served.
    pub ports: Arc<[EndpointPort]>,
    /// Hostname (StatefulSet-style), when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<Arc<str>>,
    /// Node the endpoint runs on, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<Arc<str>>,
    /// The workload behind the endpoint, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadRef>,
    /// Ready to receive traffic.
    pub ready: bool,
    /// Serving (may be terminating but still serving).
    pub serving: bool,
    /// Terminating.
    pub terminating: bool,
    /// Load-balancing weight relative to the other endpoints: 1 for a pod, a WorkloadEntry's
    /// `weight` (0 read as 1).
    #[serde(skip_serializing_if = "is_one")]
    pub weight: u32,
    /// The workload's service account, in the service's namespace: a WorkloadEntry's (or
    /// inline ServiceEntry endpoint's) `serviceAccount`. `None` when unknown, which is always the
    /// case for pods (their `spec.serviceAccountName` is not read: Pods are watched as metadata).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<Arc<str>>,
    /// The workload has a proxy that terminates Istio mutual TLS (`tlsMode: istio`): a pod
    /// labelled `security.istio.io/tlsMode: istio` (what sidecar injection sets), a
    /// WorkloadEntry with that label or, without the label, with a `serviceAccount`. Only such
    /// endpoints are reached through east-west gateways, and proxies originate mTLS to them.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mtls: bool,
}

fn is_one(weight: &u32) -> bool {
    *weight == 1
}
