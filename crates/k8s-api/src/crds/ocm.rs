//! Open Cluster Management's `cluster.open-cluster-management.io/v1alpha1` ClusterClaim:
//! cluster-scoped, `spec.value`. Bowline reads the `id.k8s.io` claim (KEP-2149's earlier
//! text, which OCM and Red Hat ACM write) and never writes, nor installs, this CRD.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// ClusterClaim spec.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "cluster.open-cluster-management.io",
    version = "v1alpha1",
    kind = "ClusterClaim",
    doc = "ClusterClaim represents cluster information that a managed cluster claims.",
    plural = "clusterclaims"
)]
pub struct ClusterClaimSpec {
    /// The claimed value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}
