//! Bowline's domain model: the pure types and rules every other crate shares.
//!
//! Nothing here does IO or knows Kubernetes' wire types, tokio or gRPC. Sources convert
//! Kubernetes objects into the [`objects`] types; the registry derives [`endpoint`]s and
//! service views from them; servers read those views.

pub mod cluster;
pub mod echo;
pub mod endpoint;
pub mod event;
pub mod export;
pub mod files;
pub mod label_map;
pub mod labels;
pub mod names;
pub mod objects;
pub mod rejection;
pub mod scope;
pub mod service;

pub use cluster::{ClusterId, ClusterIdError, MemberName};
pub use endpoint::{Endpoint, EndpointPort, IpFamily, Locality, Network, WorkloadRef};
pub use event::{Change, EventBody, SourceEvent};
pub use label_map::Labels;
pub use objects::{Object, ObjectKey, ObjectKind};
pub use rejection::{RejectReason, Rejection};
pub use service::{Protocol, ServiceKey, ServicePort, ServiceType, TargetPort};

/// Shared immutable string, cheap to clone: names that appear in many endpoints.
pub type Strng = std::sync::Arc<str>;
