//! Kubernetes API members: a member reached through a kubeconfig (or in-cluster) is watched
//! kind by kind with kube-runtime's watcher, and its events become the same source events a
//! manifest directory produces.

pub mod credentials;
pub mod kinds;
pub mod lease;
pub mod source;
pub mod writer;

pub use credentials::Credentials;
pub use source::{KubeMember, WatchOptions};
pub use writer::{KubeWriter, WriteOptions};
