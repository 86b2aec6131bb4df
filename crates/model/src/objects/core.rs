//! Core Kubernetes kinds: Namespace, Node, Pod, Service and EndpointSlice.

use std::{net::IpAddr, sync::Arc};

use serde::Serialize;

use super::Meta;
use crate::{EndpointPort, IpFamily, Labels, ServicePort, ServiceType};

/// A Namespace: its labels may set the network of its pods; `kube-system`'s UID may be the id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Namespace {
    /// Metadata (name, uid, labels).
    pub meta: Meta,
}

/// A Node: its labels give the locality of the endpoints on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Node {
    /// Metadata (name, labels).
    pub meta: Meta,
}

/// A Pod: only its labels are used (network, locality overrides), so a metadata-only watch is enough.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pod {
    /// Metadata (namespace, name, labels).
    pub meta: Meta,
}

/// A Service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Metadata.
    pub meta: Meta,
    /// ClusterIP, headless or ExternalName.
    pub service_type: ServiceType,
    /// Cluster IPs, primary first (empty when headless or ExternalName).
    #[serde(rename = "clusterIPs")]
    pub cluster_ips: Vec<IpAddr>,
    /// Address families, primary first.
    pub ip_families: Vec<IpFamily>,
    /// Ports.
    pub ports: Vec<ServicePort>,
    /// Pod selector, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<Labels>,
    /// `spec.externalName`, for ExternalName services.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_name: Option<String>,
    /// Addresses reachable from outside the member: load-balancer ingress IPs, then external IPs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_addresses: Vec<IpAddr>,
    /// Load-balancer ingress host names (not resolved).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_hostnames: Vec<String>,
    /// `spec.sessionAffinity` (`None` or `ClientIP`).
    pub session_affinity: String,
    /// `spec.sessionAffinityConfig.clientIP.timeoutSeconds`, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_affinity_timeout: Option<i32>,
    /// `spec.internalTrafficPolicy`, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_traffic_policy: Option<String>,
    /// `spec.trafficDistribution`, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic_distribution: Option<String>,
}

/// Address type of an EndpointSlice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum AddressType {
    /// IPv4 addresses.
    IPv4,
    /// IPv6 addresses.
    IPv6,
    /// Domain names (read, but carries no IP endpoints).
    FQDN,
}

/// An EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    /// Metadata.
    pub meta: Meta,
    /// The Service it belongs to (`kubernetes.io/service-name`), when labelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<Arc<str>>,
    /// Address type.
    pub address_type: AddressType,
    /// Endpoints (none for FQDN slices); shared by the copies of a slice (the source's index
    /// and the registry's store).
    pub endpoints: Arc<[SliceEndpoint]>,
    /// Ports served by every endpoint of the slice.
    pub ports: Arc<[EndpointPort]>,
}

/// One endpoint of an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SliceEndpoint {
    /// Addresses (all of the slice's family).
    pub addresses: Arc<[IpAddr]>,
    /// `conditions.ready` (absent means ready).
    pub ready: bool,
    /// `conditions.serving` (absent means the value of ready).
    pub serving: bool,
    /// `conditions.terminating` (absent means false).
    pub terminating: bool,
    /// Hostname, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<Arc<str>>,
    /// Node name, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<Arc<str>>,
    /// Zone, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<Arc<str>>,
    /// The workload behind it (`targetRef`), when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetRef>,
}

/// An EndpointSlice endpoint's `targetRef`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TargetRef {
    /// Kind (usually `Pod`).
    pub kind: Arc<str>,
    /// Namespace (the slice's when absent).
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
}
