//! The Kubernetes objects Bowline reads from a member, reduced to the fields it uses.
//!
//! Sources convert wire objects (manifests, API watches) into these; the registry never sees
//! anything else. Every object has an [`ObjectKey`].

mod core;
mod istio;
mod mcs;

use std::{fmt, sync::Arc};

use serde::Serialize;

pub use self::{core::*, istio::*, mcs::*};

/// The kinds of object Bowline reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ObjectKind {
    /// `v1` Namespace.
    Namespace,
    /// `v1` Node.
    Node,
    /// `v1` Pod.
    Pod,
    /// `v1` Service.
    Service,
    /// `discovery.k8s.io/v1` EndpointSlice.
    EndpointSlice,
    /// `multicluster.x-k8s.io` ServiceExport.
    ServiceExport,
    /// `multicluster.x-k8s.io` ServiceImport.
    ServiceImport,
    /// `about.k8s.io` ClusterProperty.
    ClusterProperty,
    /// `networking.istio.io` WorkloadEntry.
    WorkloadEntry,
    /// `networking.istio.io` WorkloadGroup.
    WorkloadGroup,
    /// `networking.istio.io` ServiceEntry.
    ServiceEntry,
    /// `security.istio.io` PeerAuthentication.
    PeerAuthentication,
    /// `cluster.open-cluster-management.io` ClusterClaim.
    ClusterClaim,
}

impl ObjectKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ObjectKind; 13] = [
        Self::Namespace,
        Self::Node,
        Self::Pod,
        Self::Service,
        Self::EndpointSlice,
        Self::ServiceExport,
        Self::ServiceImport,
        Self::ClusterProperty,
        Self::WorkloadEntry,
        Self::WorkloadGroup,
        Self::ServiceEntry,
        Self::PeerAuthentication,
        Self::ClusterClaim,
    ];

    /// The kind's name as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Namespace => "Namespace",
            Self::Node => "Node",
            Self::Pod => "Pod",
            Self::Service => "Service",
            Self::EndpointSlice => "EndpointSlice",
            Self::ServiceExport => "ServiceExport",
            Self::ServiceImport => "ServiceImport",
            Self::ClusterProperty => "ClusterProperty",
            Self::WorkloadEntry => "WorkloadEntry",
            Self::WorkloadGroup => "WorkloadGroup",
            Self::ServiceEntry => "ServiceEntry",
            Self::PeerAuthentication => "PeerAuthentication",
            Self::ClusterClaim => "ClusterClaim",
        }
    }

    /// True for cluster-scoped kinds.
    pub fn cluster_scoped(self) -> bool {
        matches!(self, Self::Namespace | Self::Node | Self::ClusterProperty)
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of an object within one member: kind, namespace (empty when cluster-scoped), name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjectKey {
    /// Kind.
    pub kind: ObjectKind,
    /// Namespace; empty for cluster-scoped kinds.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
}

impl ObjectKey {
    /// Builds a key.
    pub fn new(
        kind: ObjectKind,
        namespace: impl Into<Arc<str>>,
        name: impl Into<Arc<str>>,
    ) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Any object Bowline reads.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind")]
pub enum Object {
    /// A Namespace.
    Namespace(Namespace),
    /// A Node.
    Node(Node),
    /// A Pod.
    Pod(Pod),
    /// A Service (shared by its copies: the source's, and the registry's store).
    Service(Arc<Service>),
    /// An EndpointSlice (shared as a Service is).
    EndpointSlice(Arc<EndpointSlice>),
    /// A ServiceExport.
    ServiceExport(ServiceExport),
    /// A ServiceImport. This and the kinds below are boxed: few, and large (a WorkloadGroup
    /// is 432 bytes), they would make every object, and every entry of a source's index,
    /// that large.
    ServiceImport(Box<ServiceImport>),
    /// A ClusterProperty.
    ClusterProperty(ClusterProperty),
    /// A WorkloadEntry.
    WorkloadEntry(Box<WorkloadEntry>),
    /// A WorkloadGroup.
    WorkloadGroup(Box<WorkloadGroup>),
    /// A ServiceEntry.
    ServiceEntry(Box<ServiceEntry>),
    /// A PeerAuthentication.
    PeerAuthentication(Box<PeerAuthentication>),
    /// A ClusterClaim.
    ClusterClaim(ClusterClaim),
}

impl Object {
    /// The object's metadata.
    pub fn meta(&self) -> &Meta {
        match self {
            Self::Namespace(o) => &o.meta,
            Self::Node(o) => &o.meta,
            Self::Pod(o) => &o.meta,
            Self::Service(o) => &o.meta,
            Self::EndpointSlice(o) => &o.meta,
            Self::ServiceExport(o) => &o.meta,
            Self::ServiceImport(o) => &o.meta,
            Self::ClusterProperty(o) => &o.meta,
            Self::WorkloadEntry(o) => &o.meta,
            Self::WorkloadGroup(o) => &o.meta,
            Self::ServiceEntry(o) => &o.meta,
            Self::PeerAuthentication(o) => &o.meta,
            Self::ClusterClaim(o) => &o.meta,
        }
    }

    /// The object's kind.
    pub fn kind(&self) -> ObjectKind {
        match self {
            Self::Namespace(_) => ObjectKind::Namespace,
            Self::Node(_) => ObjectKind::Node,
            Self::Pod(_) => ObjectKind::Pod,
            Self::Service(_) => ObjectKind::Service,
            Self::EndpointSlice(_) => ObjectKind::EndpointSlice,
            Self::ServiceExport(_) => ObjectKind::ServiceExport,
            Self::ServiceImport(_) => ObjectKind::ServiceImport,
            Self::ClusterProperty(_) => ObjectKind::ClusterProperty,
            Self::WorkloadEntry(_) => ObjectKind::WorkloadEntry,
            Self::WorkloadGroup(_) => ObjectKind::WorkloadGroup,
            Self::ServiceEntry(_) => ObjectKind::ServiceEntry,
            Self::PeerAuthentication(_) => ObjectKind::PeerAuthentication,
            Self::ClusterClaim(_) => ObjectKind::ClusterClaim,
        }
    }

    /// The object's key.
    pub fn key(&self) -> ObjectKey {
        let meta = self.meta();
        ObjectKey::new(self.kind(), meta.namespace.clone(), meta.name.clone())
    }
}

/// The metadata Bowline keeps of every object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// Namespace; empty for cluster-scoped objects.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
    /// UID, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Labels.
    #[serde(skip_serializing_if = "crate::Labels::is_empty")]
    pub labels: crate::Labels,
    /// Annotations.
    #[serde(skip_serializing_if = "crate::Labels::is_empty")]
    pub annotations: crate::Labels,
    /// Creation time, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<jiff::Timestamp>,
}

impl Meta {
    /// Metadata with just a namespace and a name.
    pub fn named(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            ..Default::default()
        }
    }
}
