//! Kubernetes API members: a member reached through a kubeconfig (or in-cluster) is watched
//! kind by kind with kube-runtime's watcher, and its events become the same source events a
//! manifest directory produces; [`writer`] applies the MCS objects with server-side apply and
//! [`lease`] elects the one replica that writes.
//!
//! [`rbac::PERMISSIONS`] lists every API permission Bowline uses; [`install`] renders the
//! manifests of an in-cluster installation (CRDs, RBAC from that table, Deployment...);
//! [`member`] prepares a cluster to be another Bowline's member and prints its kubeconfig;
//! [`secrets`] keeps the root CA and the VM token store in Secrets of Bowline's namespace;
//! [`review`] asks a member whose a service-account token is.

pub mod credentials;
pub mod heartbeat;
pub mod install;
pub mod join;
pub mod kinds;
pub mod lease;
mod listed;
pub mod member;
pub mod rbac;
pub mod review;
pub mod secrets;
pub mod source;
pub mod writer;

pub use credentials::Credentials;
pub use source::{KubeMember, WatchOptions};
pub use writer::{KubeWriter, WriteOptions};
