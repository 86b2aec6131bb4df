//! The published views: per-service snapshots, gateways and member status.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use bowline_model::{
    ClusterId, Endpoint, MemberName, Network, ObjectKind, RejectReason, ServiceKey, Strng,
    cluster::IdSource,
    objects::{Service, ServiceExport, ServiceImport},
};
use serde::Serialize;

/// A ServiceEntry host outside the Kubernetes zones (`vm.example.com`), served to the proxies
/// of the member that holds the ServiceEntries naming it: not exported (MCS is about Services)
/// and not in DNS (Bowline answers only `cluster.local` and `clusterset.local`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostService {
    /// The host.
    pub host: String,
    /// The member's id.
    pub cluster: ClusterId,
    /// Ports and addresses, from the oldest ServiceEntry naming the host.
    pub service: Arc<Service>,
    /// The ServiceEntries naming the host, oldest first.
    pub service_entries: Vec<Strng>,
    /// Their endpoints: selected WorkloadEntries and inline endpoints.
    pub endpoints: Arc<[Endpoint]>,
}

/// What one member contributes to a service: its Service, export, import and endpoints.
// `Eq` lets `Arc<MemberService>` comparisons short-cut on pointer equality.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberService {
    /// The member's id.
    pub cluster: ClusterId,
    /// The member's Service of that name, if it has one; else, when ServiceEntries name the
    /// service (`<svc>.<ns>.svc.cluster.local`), the Service the oldest of them stands in for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Arc<Service>>,
    /// The ServiceEntries naming this service in the member, oldest first: the first stands in
    /// for the Service when there is none; all add their endpoints.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub service_entries: Vec<Strng>,
    /// The member's ServiceExport of that name, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<Arc<ServiceExport>>,
    /// The member's ServiceImport of that name, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<Arc<ServiceImport>>,
    /// Endpoints in this member, sorted; a dual-stack pod is one endpoint with two addresses.
    pub endpoints: Arc<[Endpoint]>,
    /// Endpoints of other clusters that an MCS provider imported into this member
    /// (EndpointSlices labelled `multicluster.kubernetes.io/service-name`), each carrying its
    /// `multicluster.kubernetes.io/source-cluster` as its cluster. Read in MCS consumer mode.
    #[serde(skip_serializing_if = "<[Endpoint]>::is_empty")]
    pub imported: Arc<[Endpoint]>,
}

/// A service across the ClusterSet: what every admitted member has of `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceView {
    /// Namespace and name.
    pub key: ServiceKey,
    /// Contributions by member id; members sharing nothing of this name are absent.
    pub members: BTreeMap<ClusterId, Arc<MemberService>>,
}

impl ServiceView {
    /// Every endpoint of every member, in member order.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.members.values().flat_map(|m| m.endpoints.iter())
    }
}

/// An east-west gateway: how other networks reach endpoints of `network`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Gateway {
    /// The network it serves.
    pub network: Network,
    /// The member its Service lives in.
    pub cluster: ClusterId,
    /// A reachable address (load-balancer ingress or external IP).
    pub address: IpAddr,
    /// The mTLS port (15443 unless `networking.istio.io/gatewayPort`).
    pub port: u16,
    /// The gateway Service.
    pub service: ServiceKey,
}

/// Gateways by network, each list sorted.
pub type Gateways = BTreeMap<Network, Vec<Gateway>>;

/// Whether a member takes part in the ClusterSet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum Admission {
    /// Its first sync has not completed.
    Pending,
    /// It is a member under `id`.
    Admitted {
        /// Its id.
        id: ClusterId,
        /// Where the id came from.
        from: IdSource,
    },
    /// It is not admitted, for `reason`.
    Refused {
        /// Why, for metrics.
        reason: RejectReason,
        /// Why, in words.
        message: String,
    },
}

impl Admission {
    /// The id, when admitted.
    pub fn id(&self) -> Option<&ClusterId> {
        match self {
            Self::Admitted { id, .. } => Some(id),
            _ => None,
        }
    }
}

/// A member as `/debug/members` and the metrics show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Configured name.
    pub name: MemberName,
    /// Admission and id.
    pub admission: Admission,
    /// The id sources disagree (the first wins): what each says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_disagreement: Option<String>,
    /// Default network of its endpoints.
    pub network: Network,
    /// True once its first full listing arrived.
    pub synced: bool,
    /// The source's last error, when it is currently failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_error: Option<String>,
    /// True while the source is failing: the objects served are the last known ones.
    pub stale: bool,
    /// Since when it has been stale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_since: Option<jiff::Timestamp>,
    /// True once stale for longer than `staleEndpointTTL`: its endpoints are withdrawn.
    pub withdrawn: bool,
    /// Kinds it cannot serve (CRD not installed), with what to do.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub missing: BTreeMap<ObjectKind, String>,
    /// Objects held, by kind.
    pub objects: BTreeMap<ObjectKind, usize>,
    /// Endpoints it contributes to the view.
    pub endpoints: usize,
    /// Objects of this member that were refused.
    pub rejected: usize,
}
