//! An in-process fake Kubernetes API server for tests, reachable through `kube::Client`.
