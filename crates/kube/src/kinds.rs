//! The Kubernetes resources behind each kind Bowline reads, and where they come from.

use bowline_model::ObjectKind;
use kube::core::ApiResource;

/// How one kind is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindApi {
    /// The model kind.
    pub kind: ObjectKind,
    /// API group (empty for the core group).
    pub group: &'static str,
    /// Versions to try, preferred first; the first one served is watched.
    pub versions: &'static [&'static str],
    /// Resource (plural) name.
    pub plural: &'static str,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// The CRD that must be installed, for kinds that are not built in.
    pub crd: Option<&'static str>,
    /// Only metadata is needed (Pods: their labels); watched as `PartialObjectMetadata`.
    pub metadata_only: bool,
    /// Another project's kind, read when its CRD is installed: a missing CRD is no problem to
    /// report (the kind reads as empty).
    pub optional: bool,
}

const MCS: &[&str] = &["v1beta1", "v1alpha1"];
const ABOUT: &[&str] = &["v1beta1", "v1alpha1"];
const ISTIO: &[&str] = &["v1", "v1beta1", "v1alpha3"];
const SECURITY: &[&str] = &["v1", "v1beta1"];
const OCM: &[&str] = &["v1alpha1"];

/// Every kind Bowline reads from a Kubernetes member.
pub const KINDS: [KindApi; 13] = [
    builtin(ObjectKind::Namespace, "", "namespaces", false),
    builtin(ObjectKind::Node, "", "nodes", false),
    KindApi {
        metadata_only: true,
        ..builtin(ObjectKind::Pod, "", "pods", true)
    },
    builtin(ObjectKind::Service, "", "services", true),
    builtin(
        ObjectKind::EndpointSlice,
        "discovery.k8s.io",
        "endpointslices",
        true,
    ),
    custom(
        ObjectKind::ServiceExport,
        "multicluster.x-k8s.io",
        MCS,
        "serviceexports",
        true,
        "serviceexports.multicluster.x-k8s.io",
    ),
    custom(
        ObjectKind::ServiceImport,
        "multicluster.x-k8s.io",
        MCS,
        "serviceimports",
        true,
        "serviceimports.multicluster.x-k8s.io",
    ),
    custom(
        ObjectKind::ClusterProperty,
        "about.k8s.io",
        ABOUT,
        "clusterproperties",
        false,
        "clusterproperties.about.k8s.io",
    ),
    custom(
        ObjectKind::WorkloadEntry,
        "networking.istio.io",
        ISTIO,
        "workloadentries",
        true,
        "workloadentries.networking.istio.io",
    ),
    custom(
        ObjectKind::WorkloadGroup,
        "networking.istio.io",
        ISTIO,
        "workloadgroups",
        true,
        "workloadgroups.networking.istio.io",
    ),
    custom(
        ObjectKind::ServiceEntry,
        "networking.istio.io",
        ISTIO,
        "serviceentries",
        true,
        "serviceentries.networking.istio.io",
    ),
    custom(
        ObjectKind::PeerAuthentication,
        "security.istio.io",
        SECURITY,
        "peerauthentications",
        true,
        "peerauthentications.security.istio.io",
    ),
    KindApi {
        optional: true,
        ..custom(
            ObjectKind::ClusterClaim,
            "cluster.open-cluster-management.io",
            OCM,
            "clusterclaims",
            false,
            "clusterclaims.cluster.open-cluster-management.io",
        )
    },
];

/// A built-in kind (read at `v1` of its group).
const fn builtin(
    kind: ObjectKind,
    group: &'static str,
    plural: &'static str,
    namespaced: bool,
) -> KindApi {
    KindApi {
        kind,
        group,
        versions: &["v1"],
        plural,
        namespaced,
        crd: None,
        metadata_only: false,
        optional: false,
    }
}

const fn custom(
    kind: ObjectKind,
    group: &'static str,
    versions: &'static [&'static str],
    plural: &'static str,
    namespaced: bool,
    crd: &'static str,
) -> KindApi {
    KindApi {
        kind,
        group,
        versions,
        plural,
        namespaced,
        crd: Some(crd),
        metadata_only: false,
        optional: false,
    }
}

impl KindApi {
    /// The kind's API description at `version`.
    pub fn resource(&self, version: &str) -> ApiResource {
        let api_version = if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        };
        ApiResource {
            group: self.group.into(),
            version: version.into(),
            api_version,
            kind: self.kind.as_str().into(),
            plural: self.plural.into(),
        }
    }

    /// The entry for `kind`.
    pub fn of(kind: ObjectKind) -> &'static KindApi {
        KINDS
            .iter()
            .find(|k| k.kind == kind)
            .expect("every kind has an API")
    }
}

/// One object of `kind` named `name` (in `namespace` for a namespaced kind), as JSON with its
/// `apiVersion` and `kind`, from the first of the kind's versions that has it (ready for
/// `bowline_k8s_api::decode`); `None` when no served version has it.
pub async fn get(
    client: &kube::Client,
    kind: ObjectKind,
    namespace: Option<&str>,
    name: &str,
) -> kube::Result<Option<serde_json::Value>> {
    use kube::{Api, api::DynamicObject};
    let api = KindApi::of(kind);
    for version in api.versions {
        let resource = api.resource(version);
        let dynamic: Api<DynamicObject> = match namespace {
            Some(ns) if api.namespaced => Api::namespaced_with(client.clone(), ns, &resource),
            _ => Api::all_with(client.clone(), &resource),
        };
        // A version not served answers 404 like an absent object: try the next one.
        if let Some(object) = dynamic.get_opt(name).await? {
            let mut value = serde_json::to_value(object).map_err(kube::Error::SerdeError)?;
            value["apiVersion"] = resource.api_version.into();
            value["kind"] = resource.kind.into();
            return Ok(Some(value));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_api_whose_versions_are_read() {
        for kind in ObjectKind::ALL {
            let api = KindApi::of(kind);
            for version in api.versions {
                let api_version = api.resource(version).api_version;
                assert!(
                    bowline_k8s_api::supported_versions(kind).contains(&api_version.as_str()),
                    "{kind} is watched at {api_version}, which decode does not read"
                );
            }
        }
        assert_eq!(KINDS.len(), ObjectKind::ALL.len());
    }
}
