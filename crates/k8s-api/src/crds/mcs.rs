//! `multicluster.x-k8s.io` ServiceExport and ServiceImport (kubernetes-sigs/mcs-api v0.5),
//! served as `v1alpha1` and `v1beta1` with one schema; `v1beta1` is the storage version.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::SessionAffinityConfig;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::list_map;

/// ServiceExport status.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct ServiceExportStatus {
    /// `Valid`, `Ready` and `Conflict` conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = conditions)]
    pub conditions: Option<Vec<Condition>>,
    /// The clusters the service is exported to: an entry means the service is available
    /// for that cluster. Informational only (kubernetes/enhancements#6329).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = clusters)]
    pub clusters: Option<Vec<ClusterStatus>>,
}

/// A ServiceImport port (no targetPort, by design of the MCS API).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportPort {
    /// The name of this port; must match the EndpointSlice port name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The application protocol.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    /// The port exposed by the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub port: Option<i32>,
}

/// ServiceImport status.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceImportStatus {
    /// Whether imported EndpointSlices exist: `Present` or `Absent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Present", "Absent"]))]
    pub endpoint_slice_objects: Option<String>,
    /// The exporting clusters this service was derived from.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(transform = clusters)]
    pub clusters: Option<Vec<ClusterStatus>>,
    /// `Ready` condition.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(transform = conditions)]
    pub conditions: Option<Vec<Condition>>,
}

/// One entry of `status.clusters`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct ClusterStatus {
    /// A cluster's id (an RFC 1123 DNS label): on a ServiceImport an exporting cluster, on
    /// a ServiceExport one it is exported to.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub cluster: Option<String>,
}

/// `status.clusters` is a map list keyed by `cluster`.
fn clusters(schema: &mut schemars::Schema) {
    list_map(schema, "cluster");
}

/// `metav1.Condition` as mcs-api's CRDs validate it (k8s-openapi's schema has the fields and
/// required keys; the bounds, patterns and the `status` enum come from the Go markers).
fn conditions(schema: &mut schemars::Schema) {
    list_map(schema, "type");
    let Some(props) = schema
        .get_mut("items")
        .and_then(|items| items.get_mut("properties"))
        .and_then(|p| p.as_object_mut())
    else {
        return;
    };
    let rules = [
        ("message", json!({"maxLength": 32768})),
        ("observedGeneration", json!({"minimum": 0})),
        (
            "reason",
            json!({"maxLength": 1024, "minLength": 1,
                   "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"}),
        ),
        ("status", json!({"enum": ["True", "False", "Unknown"]})),
        (
            "type",
            json!({"maxLength": 316,
                   "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"}),
        ),
    ];
    for (field, extra) in rules {
        if let (Some(target), Some(extra)) = (
            props.get_mut(field).and_then(|f| f.as_object_mut()),
            extra.as_object(),
        ) {
            target.extend(extra.clone());
        }
    }
}

/// `spec.ports` is an atomic list.
fn atomic(schema: &mut schemars::Schema) {
    schema.insert("x-kubernetes-list-type".into(), json!("atomic"));
}

/// Declares the ServiceExport and ServiceImport spec types of one version.
macro_rules! mcs_version {
    ($version:tt) => {
        /// ServiceExport spec: the Service of the same name and namespace is exported.
        #[derive(
            CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema,
        )]
        #[kube(
            group = "multicluster.x-k8s.io",
            version = $version,
            kind = "ServiceExport",
            doc = "ServiceExport declares that the Service with the same name and namespace as this export should be consumable from other clusters.",
            namespaced,
            status = "ServiceExportStatus",
            shortname = "svcex",
            shortname = "svcexport",
            category = "multicluster",
            printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
        )]
        #[serde(rename_all = "camelCase")]
        pub struct ServiceExportSpec {
            /// Labels to put on the ServiceImport (optional for implementations).
            #[serde(skip_serializing_if = "Option::is_none")]
            pub exported_labels: Option<BTreeMap<String, String>>,
            /// Annotations to put on the ServiceImport (optional for implementations).
            #[serde(skip_serializing_if = "Option::is_none")]
            pub exported_annotations: Option<BTreeMap<String, String>>,
        }

        /// ServiceImport spec: a service imported from the clusters of a ClusterSet.
        #[derive(
            CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema,
        )]
        #[kube(
            group = "multicluster.x-k8s.io",
            version = $version,
            kind = "ServiceImport",
            doc = "ServiceImport describes a service imported from clusters in a ClusterSet.",
            namespaced,
            status = "ServiceImportStatus",
            shortname = "svcim",
            shortname = "svcimport",
            category = "multicluster",
            printcolumn(name = "Type", type_ = "string", description = "The type of this ServiceImport", json_path = ".spec.type"),
            printcolumn(name = "IP", type_ = "string", description = "The VIP for this ServiceImport", json_path = ".spec.ips"),
            printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
        )]
        #[serde(rename_all = "camelCase")]
        pub struct ServiceImportSpec {
            /// Ports (always sent, `[]` for none).
            #[serde(skip_serializing_if = "Option::is_none")]
            #[schemars(required, transform = atomic)]
            pub ports: Option<Vec<ImportPort>>,
            /// The VIPs, when type is ClusterSetIP.
            #[serde(skip_serializing_if = "Option::is_none")]
            #[schemars(length(max = 2))]
            pub ips: Option<Vec<String>>,
            /// `ClusterSetIP` or `Headless`.
            #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
            #[schemars(required, extend("enum" = ["ClusterSetIP", "Headless"]))]
            pub type_: Option<String>,
            /// `None` (default) or `ClientIP`; ignored for Headless.
            #[serde(skip_serializing_if = "Option::is_none")]
            pub session_affinity: Option<String>,
            /// Session affinity configuration.
            #[serde(skip_serializing_if = "Option::is_none")]
            pub session_affinity_config: Option<SessionAffinityConfig>,
            /// Address families of the VIPs.
            #[serde(skip_serializing_if = "Option::is_none")]
            #[schemars(length(max = 2))]
            pub ip_families: Option<Vec<String>>,
            /// `Cluster` or `Local`, as on a Service.
            #[serde(skip_serializing_if = "Option::is_none")]
            pub internal_traffic_policy: Option<String>,
            /// Traffic distribution preference (e.g. `PreferClose`), as on a Service.
            #[serde(skip_serializing_if = "Option::is_none")]
            pub traffic_distribution: Option<String>,
        }
    };
}

/// `multicluster.x-k8s.io/v1alpha1` (served).
pub mod v1alpha1 {
    use super::*;
    use kube::CustomResource;
    mcs_version!("v1alpha1");
}

/// `multicluster.x-k8s.io/v1beta1` (served and stored).
pub mod v1beta1 {
    use super::*;
    use kube::CustomResource;
    mcs_version!("v1beta1");
}

pub use v1beta1::{ServiceExportSpec, ServiceImportSpec};
