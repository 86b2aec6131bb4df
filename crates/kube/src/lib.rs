//! Kubernetes API members: a member reached through a kubeconfig (or in-cluster) is watched
//! kind by kind with kube-runtime's watcher, and its events become the same source events a
//! manifest directory produces.
//!
//! [`rbac::PERMISSIONS`] lists every API permission Bowline uses; [`install`] renders the
//! manifests of an in-cluster installation (CRDs, RBAC from that table, Deployment...).

pub mod install;
pub mod rbac;
