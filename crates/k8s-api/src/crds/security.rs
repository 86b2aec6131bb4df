//! `security.istio.io` PeerAuthentication (istio/api `security/v1beta1`), served as `v1` and
//! `v1beta1` with one schema; `v1` is the storage version. What Bowline reads: the selector,
//! the mode and the port-level modes.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::istio::IstioStatus;

/// `spec.selector`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    /// Labels the selected workloads carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 4096))]
    pub match_labels: Option<BTreeMap<String, String>>,
}

/// `spec.mtls` and the values of `spec.portLevelMtls`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct Mtls {
    /// `UNSET`, `DISABLE`, `PERMISSIVE` or `STRICT`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]))]
    pub mode: Option<String>,
}

/// PeerAuthentication spec.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerAuthenticationSpec {
    /// The workloads it applies to; none: the whole namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<Selector>,
    /// The mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtls: Option<Mtls>,
    /// Per workload port (keys are port numbers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_level_mtls: Option<BTreeMap<String, Mtls>>,
}

/// Declares the PeerAuthentication type of one version.
macro_rules! security_version {
    ($version:tt) => {
        /// PeerAuthentication: the mutual TLS mode of workloads' inbound traffic.
        #[derive(
            CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema,
        )]
        #[kube(
            group = "security.istio.io",
            version = $version,
            kind = "PeerAuthentication",
            root = "PeerAuthentication",
            doc = "Peer authentication configuration for workloads.",
            namespaced,
            status = "IstioStatus",
            shortname = "pa",
            category = "istio-io",
            category = "security-istio-io",
            printcolumn(name = "Mode", type_ = "string", description = "Defines the mTLS mode used for peer authentication.", json_path = ".spec.mtls.mode"),
            printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
        )]
        #[serde(transparent)]
        pub struct PeerAuthenticationVersionSpec(pub PeerAuthenticationSpec);
    };
}

/// `security.istio.io/v1` (served and stored).
pub mod v1 {
    use kube::CustomResource;

    use super::*;
    security_version!("v1");
}

/// `security.istio.io/v1beta1` (served).
pub mod v1beta1 {
    use kube::CustomResource;

    use super::*;
    security_version!("v1beta1");
}
