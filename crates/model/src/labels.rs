//! Well-known label and annotation keys Bowline reads or writes.

/// Network of a pod, namespace or east-west gateway Service (Istio).
pub const NETWORK: &str = "topology.istio.io/network";
/// A workload's TLS mode (Istio): `istio` when its proxy terminates Istio mutual TLS,
/// `disabled` otherwise.
pub const TLS_MODE: &str = "security.istio.io/tlsMode";
/// The [`TLS_MODE`] of a workload with a proxy.
pub const TLS_MODE_ISTIO: &str = "istio";
/// Port of an east-west gateway Service when not 15443 (Istio).
pub const GATEWAY_PORT: &str = "networking.istio.io/gatewayPort";
/// Default mTLS port of an east-west gateway.
pub const DEFAULT_GATEWAY_PORT: u16 = 15443;
/// Region of a Node.
pub const REGION: &str = "topology.kubernetes.io/region";
/// Zone of a Node.
pub const ZONE: &str = "topology.kubernetes.io/zone";
/// Subzone of a Node (Istio).
pub const SUBZONE: &str = "topology.istio.io/subzone";
/// Locality of a pod as `region.zone.subzone` (Istio); wins over the Node's labels.
pub const POD_LOCALITY: &str = "topology.istio.io/locality";
/// The Service an EndpointSlice belongs to.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The controller that manages an EndpointSlice.
pub const ENDPOINTSLICE_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// The exported Service an imported EndpointSlice belongs to (MCS).
pub const MCS_SERVICE_NAME: &str = "multicluster.kubernetes.io/service-name";
/// The member an imported EndpointSlice comes from (MCS).
pub const MCS_SOURCE_CLUSTER: &str = "multicluster.kubernetes.io/source-cluster";
/// Namespace holding a member's UID-based identity.
pub const KUBE_SYSTEM: &str = "kube-system";
