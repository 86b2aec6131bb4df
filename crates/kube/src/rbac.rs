//! Every Kubernetes API permission Bowline uses, as one table: `bowline install` renders its
//! ClusterRole and Role from it, and the Kubernetes source and writers check their requests
//! against it, so the two cannot drift.

use k8s_openapi::api::rbac::v1::PolicyRule;

/// Where a permission is granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// In every namespace (and for cluster-scoped kinds): the ClusterRole.
    Cluster,
    /// Only in Bowline's own namespace: the Role (leader-election and heartbeat Leases, the
    /// CA and token Secrets).
    OwnNamespace,
}

/// One API permission: a resource (with its subresource, like `serviceexports/status`) of an
/// API group, and the verbs allowed on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permission {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// Plural resource name, with `/subresource` when it is one.
    pub resource: &'static str,
    /// Verbs (`list`, `watch`, `patch`...).
    pub verbs: &'static [&'static str],
    /// ClusterRole or namespaced Role.
    pub scope: Scope,
}

/// Read: list and watch (a watcher lists, then watches; no single `get`).
const READ: &[&str] = &["list", "watch"];
/// Read and write: server-side apply (`patch`), `delete`, and `list` to collect garbage by
/// label.
const READ_WRITE: &[&str] = &["list", "watch", "patch", "delete"];

const fn cluster(
    group: &'static str,
    resource: &'static str,
    verbs: &'static [&'static str],
) -> Permission {
    Permission {
        group,
        resource,
        verbs,
        scope: Scope::Cluster,
    }
}

/// Every permission Bowline needs.
pub const PERMISSIONS: &[Permission] = &[
    cluster("", "namespaces", READ),
    cluster("", "nodes", READ),
    cluster("", "services", READ),
    cluster("", "pods", READ),
    cluster("discovery.k8s.io", "endpointslices", READ_WRITE),
    cluster("multicluster.x-k8s.io", "serviceexports", READ_WRITE),
    cluster("multicluster.x-k8s.io", "serviceimports", READ_WRITE),
    cluster("multicluster.x-k8s.io", "serviceexports/status", &["patch"]),
    cluster("multicluster.x-k8s.io", "serviceimports/status", &["patch"]),
    cluster("about.k8s.io", "clusterproperties", READ),
    // Auto-registered VMs' entries, with their Healthy condition; `get` reads one again
    // before it is marked disconnected or deleted.
    cluster(
        "networking.istio.io",
        "workloadentries",
        &["get", "list", "watch", "patch", "delete"],
    ),
    cluster("networking.istio.io", "workloadentries/status", &["patch"]),
    cluster("networking.istio.io", "workloadgroups", READ),
    cluster("networking.istio.io", "serviceentries", READ),
    // The mTLS mode of sidecars' inbound listeners.
    cluster("security.istio.io", "peerauthentications", READ),
    // A member's id from Open Cluster Management's id.k8s.io claim, when OCM is installed.
    cluster("cluster.open-cluster-management.io", "clusterclaims", READ),
    // Workload certificates: a proxy's service-account token is reviewed in its member.
    cluster("authentication.k8s.io", "tokenreviews", &["create"]),
    Permission {
        group: "coordination.k8s.io",
        resource: "leases",
        // get/create/update: leader election; list/patch: VM controller heartbeats.
        verbs: &["get", "create", "update", "list", "patch"],
        scope: Scope::OwnNamespace,
    },
    Permission {
        group: "",
        resource: "secrets",
        // The root CA (`bowline-ca`: get, create on first start) and the VM token store
        // (`bowline-vm-tokens`: get; create and update by `bowline vm token` run in a pod).
        verbs: &["get", "create", "update"],
        scope: Scope::OwnNamespace,
    },
];

/// Whether the table allows `verb` on `group`/`resource` (with `/subresource`) in `scope`.
/// A namespaced request in Bowline's own namespace is also allowed by the ClusterRole.
pub fn allows(group: &str, resource: &str, verb: &str, scope: Scope) -> bool {
    PERMISSIONS.iter().any(|p| {
        p.group == group
            && p.resource == resource
            && p.verbs.contains(&verb)
            && (p.scope == scope || p.scope == Scope::Cluster)
    })
}

/// The RBAC rules of one scope, one rule per table row, in table order.
pub fn rules(scope: Scope) -> Vec<PolicyRule> {
    PERMISSIONS
        .iter()
        .filter(|p| p.scope == scope)
        .map(|p| PolicyRule {
            api_groups: Some(vec![p.group.to_owned()]),
            resources: Some(vec![p.resource.to_owned()]),
            verbs: p.verbs.iter().map(|v| (*v).to_owned()).collect(),
            ..PolicyRule::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_follows_the_table() {
        assert!(allows(
            "multicluster.x-k8s.io",
            "serviceimports",
            "patch",
            Scope::Cluster
        ));
        assert!(allows(
            "multicluster.x-k8s.io",
            "serviceexports/status",
            "patch",
            Scope::Cluster
        ));
        assert!(!allows("", "services", "patch", Scope::Cluster));
        assert!(!allows("", "services", "get", Scope::Cluster));
        assert!(!allows(
            "coordination.k8s.io",
            "leases",
            "update",
            Scope::Cluster
        ));
        assert!(allows(
            "coordination.k8s.io",
            "leases",
            "update",
            Scope::OwnNamespace
        ));
        assert!(allows("", "pods", "watch", Scope::OwnNamespace));
    }

    #[test]
    fn one_rule_per_row() {
        assert_eq!(
            rules(Scope::Cluster).len() + rules(Scope::OwnNamespace).len(),
            PERMISSIONS.len()
        );
    }
}
