//! The resource kinds the fake server serves: built-in kinds and installed CRDs.

/// One served resource: what a `CustomResourceDefinition` (or a built-in kind) declares.
///
/// All versions are served from the same storage; only `apiVersion` differs on output, as for a
/// CRD without a conversion webhook whose versions share one schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceDef {
    /// API group, empty for the core group.
    pub group: String,
    /// Served versions, e.g. `["v1alpha1", "v1beta1"]`.
    pub versions: Vec<String>,
    /// Lower-case plural used in paths, e.g. `serviceimports`.
    pub plural: String,
    /// Kind, e.g. `ServiceImport`.
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Whether the `status` subresource is enabled: main-resource writes then ignore `status`,
    /// and `/status` writes change only `status`.
    pub status_subresource: bool,
    /// Whether this is a built-in kind rather than a CRD. CRDs require
    /// `metadata.resourceVersion` on update and refuse strategic merge patches.
    pub built_in: bool,
}

impl ResourceDef {
    /// A namespaced custom resource without status subresource.
    pub fn custom(group: &str, versions: &[&str], plural: &str, kind: &str) -> Self {
        Self {
            group: group.to_owned(),
            versions: versions.iter().map(|v| (*v).to_owned()).collect(),
            plural: plural.to_owned(),
            kind: kind.to_owned(),
            namespaced: true,
            status_subresource: false,
            built_in: false,
        }
    }

    /// Makes the resource cluster-scoped.
    #[must_use]
    pub fn cluster_scoped(mut self) -> Self {
        self.namespaced = false;
        self
    }

    /// Enables the `status` subresource.
    #[must_use]
    pub fn with_status(mut self) -> Self {
        self.status_subresource = true;
        self
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_owned()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    /// `plural.group`, or `plural` for the core group, as error messages name resources.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether `version` is served.
    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    fn built_in(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        Self {
            built_in: true,
            namespaced,
            ..Self::custom(group, &[version], plural, kind)
        }
    }
}

/// The built-in kinds: core/v1 kinds Bowline reads, EndpointSlice, Lease and the RBAC kinds
/// `bowline member kubeconfig` applies.
///
/// Pods, Services, Nodes and Namespaces have a status subresource, as in the real API.
pub(crate) fn built_ins() -> Vec<ResourceDef> {
    let core = |plural: &str, kind: &str, namespaced: bool| {
        ResourceDef::built_in("", "v1", plural, kind, namespaced)
    };
    let rbac = |plural: &str, kind: &str, namespaced: bool| {
        ResourceDef::built_in("rbac.authorization.k8s.io", "v1", plural, kind, namespaced)
    };
    vec![
        core("namespaces", "Namespace", false).with_status(),
        core("nodes", "Node", false).with_status(),
        core("pods", "Pod", true).with_status(),
        core("services", "Service", true).with_status(),
        core("endpoints", "Endpoints", true),
        core("configmaps", "ConfigMap", true),
        core("secrets", "Secret", true),
        core("serviceaccounts", "ServiceAccount", true),
        core("events", "Event", true),
        ResourceDef::built_in(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "EndpointSlice",
            true,
        ),
        ResourceDef::built_in("coordination.k8s.io", "v1", "leases", "Lease", true),
        ResourceDef::built_in(
            "authentication.k8s.io",
            "v1",
            "tokenreviews",
            "TokenReview",
            false,
        ),
        ResourceDef::built_in("apps", "v1", "deployments", "Deployment", true).with_status(),
        ResourceDef::built_in(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
        )
        .with_status(),
        rbac("clusterroles", "ClusterRole", false),
        rbac("clusterrolebindings", "ClusterRoleBinding", false),
        rbac("roles", "Role", true),
        rbac("rolebindings", "RoleBinding", true),
    ]
}
