//! `about.k8s.io` ClusterProperty (KEP-2149, kubernetes-sigs/about-api): cluster-scoped,
//! `v1alpha1` (spec required, no status) and `v1beta1` (stored, empty status subresource).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `about.k8s.io/v1alpha1` (served).
pub mod v1alpha1 {
    use kube::CustomResource;

    use super::*;

    /// ClusterProperty spec: a property-dependent string.
    #[derive(
        CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema,
    )]
    #[kube(
        group = "about.k8s.io",
        version = "v1alpha1",
        kind = "ClusterProperty",
        doc = "ClusterProperty stores identification related, cluster scoped information for multi-cluster tools.",
        plural = "clusterproperties",
        printcolumn(name = "value", type_ = "string", json_path = ".spec.value"),
        printcolumn(
            name = "age",
            type_ = "date",
            json_path = ".metadata.creationTimestamp"
        )
    )]
    pub struct ClusterPropertySpec {
        /// The value (upstream's CRD checks only that it is not empty).
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schemars(required, length(min = 1))]
        pub value: Option<String>,
    }
}

/// `about.k8s.io/v1beta1` (served and stored).
pub mod v1beta1 {
    use kube::CustomResource;

    use super::*;

    /// ClusterProperty spec: a property-dependent string.
    #[derive(
        CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema,
    )]
    #[kube(
        group = "about.k8s.io",
        version = "v1beta1",
        kind = "ClusterProperty",
        doc = "ClusterProperty stores identification related, cluster scoped information for multi-cluster tools.",
        plural = "clusterproperties",
        status = "ClusterPropertyStatus",
        printcolumn(name = "value", type_ = "string", json_path = ".spec.value"),
        printcolumn(
            name = "age",
            type_ = "date",
            json_path = ".metadata.creationTimestamp"
        )
    )]
    pub struct ClusterPropertySpec {
        /// The value (upstream's CRD checks only that it is not empty).
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schemars(required, length(min = 1))]
        pub value: Option<String>,
    }

    /// ClusterProperty status (empty upstream).
    #[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
    pub struct ClusterPropertyStatus {}
}
