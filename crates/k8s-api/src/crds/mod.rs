//! The CRDs Bowline reads and writes, as `#[derive(CustomResource)]` types with the upstream
//! field names, and their CustomResourceDefinitions.
//!
//! One spec type per served version lives in a version module (`mcs::v1beta1::ServiceImportSpec`
//! ...); every served version of a kind has the same schema upstream, so each is declared once,
//! in a macro, and stamped into its version modules. Field structs are shared.
//!
//! The same types decode manifests and watched objects, so they stay lenient: every spec field
//! is an `Option` (the conversion names what is missing), while `#[schemars(required)]` and
//! friends give the schema the upstream rules (required fields, enums, lengths). [`definitions`]
//! merges the versions of each kind and brings the generated schema in line with the upstream
//! CRDs (see [`normalize`]).

pub mod about;
pub mod istio;
pub mod mcs;
pub mod ocm;
pub mod security;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::core::crd::merge_crds;
use serde_json::{Value, json};

/// The annotation kube-apiserver requires on CRDs of protected groups.
pub const APPROVAL: &str = "api-approved.kubernetes.io";
/// Where the ClusterProperty API (about.k8s.io) was approved: KEP-2149.
pub const ABOUT_API_APPROVAL: &str =
    "https://github.com/kubernetes/enhancements/tree/master/keps/sig-multicluster/2149-clusterid";

/// The types [`crate::decode`] reads. All served versions of a kind share one schema, so one
/// version's type reads them all.
pub use about::v1beta1::{ClusterProperty, ClusterPropertySpec};
pub use istio::v1::{ServiceEntry, WorkloadEntry, WorkloadGroup};
pub use istio::{
    Exec, GroupMetadata, Grpc, HostPort, HttpGet, HttpHeader, IstioCondition, IstioStatus, Probe,
    ServiceEntryPort, ServiceEntrySpec, ValidationMessage, ValidationMessageType,
    WorkloadEntrySpec, WorkloadGroupSpec, WorkloadSelector,
};
pub use mcs::v1beta1::{ServiceExport, ServiceImport};
pub use mcs::{
    ClusterStatus, ImportPort, ServiceExportSpec, ServiceExportStatus, ServiceImportSpec,
    ServiceImportStatus,
};
pub use ocm::ClusterClaim;
pub use security::v1::PeerAuthentication;
pub use security::{Mtls, PeerAuthenticationSpec, Selector};

/// One kind's CRD: the single-version CRDs of its served versions, the storage version, and
/// the versions whose schema requires `spec` at the root (as upstream's do).
struct Kind {
    versions: Vec<CustomResourceDefinition>,
    storage: &'static str,
    spec_required: &'static [&'static str],
}

fn kinds() -> Vec<Kind> {
    vec![
        // mcs-api v0.5: v1alpha1 and v1beta1 served, v1beta1 stored (`+kubebuilder:storageversion`).
        Kind {
            versions: vec![
                mcs::v1alpha1::ServiceExport::crd(),
                mcs::v1beta1::ServiceExport::crd(),
            ],
            storage: "v1beta1",
            spec_required: &[],
        },
        Kind {
            versions: vec![
                mcs::v1alpha1::ServiceImport::crd(),
                mcs::v1beta1::ServiceImport::crd(),
            ],
            storage: "v1beta1",
            spec_required: &[],
        },
        // about-api: v1alpha1 (spec required, no status) and v1beta1 (stored, status {}).
        Kind {
            versions: vec![
                about::v1alpha1::ClusterProperty::crd(),
                about::v1beta1::ClusterProperty::crd(),
            ],
            storage: "v1beta1",
            spec_required: &["v1alpha1"],
        },
        // istio/api: v1, v1beta1 and v1alpha3 served, v1 stored; spec required in all.
        istio_kind([
            istio::v1::WorkloadEntry::crd(),
            istio::v1beta1::WorkloadEntry::crd(),
            istio::v1alpha3::WorkloadEntry::crd(),
        ]),
        istio_kind([
            istio::v1::WorkloadGroup::crd(),
            istio::v1beta1::WorkloadGroup::crd(),
            istio::v1alpha3::WorkloadGroup::crd(),
        ]),
        istio_kind([
            istio::v1::ServiceEntry::crd(),
            istio::v1beta1::ServiceEntry::crd(),
            istio::v1alpha3::ServiceEntry::crd(),
        ]),
        // istio/api: v1 and v1beta1 served, v1 stored; spec optional.
        Kind {
            versions: vec![
                security::v1::PeerAuthentication::crd(),
                security::v1beta1::PeerAuthentication::crd(),
            ],
            storage: "v1",
            spec_required: &[],
        },
    ]
}

fn istio_kind(versions: [CustomResourceDefinition; 3]) -> Kind {
    Kind {
        versions: versions.into(),
        storage: "v1",
        spec_required: &["v1", "v1beta1", "v1alpha3"],
    }
}

/// The CustomResourceDefinitions of every CRD kind Bowline reads, each serving all its versions
/// with exactly one storage version (the one upstream stores).
pub fn definitions() -> Vec<CustomResourceDefinition> {
    kinds()
        .into_iter()
        .map(|kind| {
            // The inputs are the derived CRDs above: same group, kind and scope, one version
            // each, storage version present. A failure is a programming error, caught by the
            // crate's tests.
            let mut crd = merge_crds(kind.versions, kind.storage)
                .expect("the versions of one kind merge into one CRD");
            crd.spec.versions.sort_by_key(|v| v.name != kind.storage);
            // kube-apiserver refuses a CRD of a group under k8s.io or kubernetes.io without
            // the API-review approval annotation (about.k8s.io: KEP-2149's ClusterProperty).
            let group = crd.spec.group.as_str();
            let protected = ["k8s.io", "kubernetes.io"]
                .iter()
                .any(|p| group == *p || group.ends_with(&format!(".{p}")));
            if protected {
                crd.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(APPROVAL.to_string(), ABOUT_API_APPROVAL.to_string());
            }
            for version in &mut crd.spec.versions {
                let Some(schema) = version
                    .schema
                    .as_mut()
                    .and_then(|s| s.open_api_v3_schema.as_mut())
                else {
                    continue;
                };
                let mut value = serde_json::to_value(&*schema).unwrap_or_default();
                normalize(&mut value);
                if let Some(root) = value.as_object_mut() {
                    // kube-derive titles the root with the kind; upstream has no title.
                    root.remove("title");
                }
                if !kind.spec_required.contains(&version.name.as_str()) {
                    unrequire_spec(&mut value);
                }
                if let Ok(fixed) = serde_json::from_value(value) {
                    *schema = fixed;
                }
            }
            crd
        })
        .collect()
}

/// Brings a schema generated by kube-derive in line with the upstream CRDs:
/// - `nullable: true` (added for every `Option`) is removed: upstream fields are not nullable,
///   so the API server prunes explicit nulls as it does for the upstream CRDs;
/// - unsigned integers lose schemars' `format: uint32`/`uint16` (not Kubernetes formats) and
///   get upstream's bounds instead.
pub fn normalize(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            map.remove("nullable");
            let bound = match map.get("format").and_then(Value::as_str) {
                Some("uint32") => Some(u64::from(u32::MAX)),
                Some("uint16") => Some(u64::from(u16::MAX)),
                _ => None,
            };
            if let Some(max) = bound {
                map.remove("format");
                map.insert("minimum".into(), json!(0));
                map.insert("maximum".into(), json!(max));
            }
            map.values_mut().for_each(normalize);
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

/// Drops `spec` from the root's `required` (kube-derive requires it; MCS and about-api v1beta1
/// do not, and most ServiceExports have no spec).
fn unrequire_spec(schema: &mut Value) {
    let Some(root) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(required)) = root.get_mut("required") {
        required.retain(|r| r != "spec");
        if required.is_empty() {
            root.remove("required");
        }
    }
}

/// Adds `x-kubernetes-list-type: map` keyed by `key` to an array schema.
pub(crate) fn list_map(schema: &mut schemars::Schema, key: &str) {
    schema.insert("x-kubernetes-list-type".into(), json!("map"));
    schema.insert("x-kubernetes-list-map-keys".into(), json!([key]));
}
