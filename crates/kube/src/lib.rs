//! Kubernetes API members: a member reached through a kubeconfig (or in-cluster) is watched
//! kind by kind with kube-runtime's watcher, and its events become the same source events a
//! manifest directory produces.
