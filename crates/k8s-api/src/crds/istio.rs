//! `networking.istio.io` WorkloadEntry, WorkloadGroup and ServiceEntry (istio/api), served as
//! `v1`, `v1beta1` and `v1alpha3` with one schema; `v1` is the storage version.
//!
//! Istio's CEL rules (`x-kubernetes-validations`: UDS addresses, "Address is required", port
//! ranges...) are not repeated here; [`crate::decode`] enforces the ones Bowline relies on.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::list_map;

/// WorkloadEntry spec; also a WorkloadGroup template and a ServiceEntry endpoint.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEntrySpec {
    /// IP, host name or `unix://` path, without the port.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub address: Option<String>,
    /// Ports by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 128))]
    pub ports: Option<BTreeMap<String, u32>>,
    /// Workload labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 256))]
    pub labels: Option<BTreeMap<String, String>>,
    /// The L3 network of the endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub network: Option<String>,
    /// Locality `region/zone/subzone`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub locality: Option<String>,
    /// Load-balancing weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Service account of the workload.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub service_account: Option<String>,
}

/// WorkloadGroup spec.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct WorkloadGroupSpec {
    /// Labels and annotations for the generated WorkloadEntries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<GroupMetadata>,
    /// WorkloadEntry template.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub template: Option<WorkloadEntrySpec>,
    /// Readiness probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
}

/// `WorkloadGroup.spec.metadata`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct GroupMetadata {
    /// Labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 256))]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 256))]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Istio `ReadinessProbe`: at most one of `httpGet`, `tcpSocket`, `exec` and `grpc`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [
    {"not": {"anyOf": [
        {"required": ["httpGet"]}, {"required": ["tcpSocket"]},
        {"required": ["exec"]}, {"required": ["grpc"]}
    ]}},
    {"required": ["httpGet"]}, {"required": ["tcpSocket"]},
    {"required": ["exec"]}, {"required": ["grpc"]}
]))]
pub struct Probe {
    /// Seconds before the first probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub initial_delay_seconds: Option<i32>,
    /// Probe timeout (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub timeout_seconds: Option<i32>,
    /// Probe period (default 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub period_seconds: Option<i32>,
    /// Successes to become ready (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub success_threshold: Option<i32>,
    /// Failures to become unready (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub failure_threshold: Option<i32>,
    /// HTTP GET check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGet>,
    /// TCP connect check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<HostPort>,
    /// Command check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<Exec>,
    /// gRPC health check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<Grpc>,
}

/// `httpGet` probe.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpGet {
    /// Path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Port.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub port: Option<u32>,
    /// Host (default: the workload's address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `HTTP` or `HTTPS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Request headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_headers: Option<Vec<HttpHeader>>,
}

/// One `httpGet.httpHeaders` entry.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct HttpHeader {
    /// Header name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(pattern("^[-_A-Za-z0-9]+$"))]
    pub name: Option<String>,
    /// Header value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `tcpSocket` probe.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct HostPort {
    /// Host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Port.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub port: Option<u32>,
}

/// `exec` probe.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct Exec {
    /// Command to run.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required, inner(length(min = 1)))]
    pub command: Option<Vec<String>>,
}

/// `grpc` probe.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct Grpc {
    /// Port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Service name for the gRPC health check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// ServiceEntry spec.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntrySpec {
    /// Host names.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(min = 1, max = 256))]
    pub hosts: Option<Vec<String>>,
    /// Virtual IPs or CIDRs.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), inner(length(max = 64)))]
    pub addresses: Option<Vec<String>>,
    /// Ports.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), transform = ports_by_name)]
    pub ports: Option<Vec<ServiceEntryPort>>,
    /// `MESH_EXTERNAL` or `MESH_INTERNAL`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["MESH_EXTERNAL", "MESH_INTERNAL"]))]
    pub location: Option<String>,
    /// How the hosts resolve.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"]))]
    pub resolution: Option<String>,
    /// Inline endpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub endpoints: Option<Vec<WorkloadEntrySpec>>,
    /// Selector of WorkloadEntries and Pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    /// Namespaces the service is exported to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export_to: Option<Vec<String>>,
    /// Subject alternate names checked on the server certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_alt_names: Option<Vec<String>>,
}

fn ports_by_name(schema: &mut schemars::Schema) {
    list_map(schema, "name");
}

/// A ServiceEntry port.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntryPort {
    /// Port number.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub number: Option<u32>,
    /// Protocol.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub protocol: Option<String>,
    /// Port name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(max = 256))]
    pub name: Option<String>,
    /// Port on the endpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
}

/// `workloadSelector`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct WorkloadSelector {
    /// Labels to match.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 256))]
    pub labels: Option<BTreeMap<String, String>>,
}

/// Istio's common status (`IstioStatus`); unknown fields are kept, as upstream's CRDs do.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct IstioStatus {
    /// Current state of the resource (e.g. `Healthy` on an auto-registered WorkloadEntry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<IstioCondition>>,
    /// The generation the status was computed for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<IntOrString>,
    /// Analyzer messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_messages: Option<Vec<ValidationMessage>>,
}

/// An `IstioStatus` condition.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioCondition {
    /// Condition type.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Condition status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Last probe time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
    /// Last transition time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// CamelCase reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The generation the condition refers to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<IntOrString>,
}

/// An analyzer message in `IstioStatus`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationMessage {
    /// Message type.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<ValidationMessageType>,
    /// Severity.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["UNKNOWN", "ERROR", "WARNING", "INFO"]))]
    pub level: Option<String>,
    /// Link to the documentation of the message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documentation_url: Option<String>,
}

/// The type of an analyzer message.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct ValidationMessageType {
    /// Human-readable name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `IST0000`-style code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// Declares the WorkloadEntry, WorkloadGroup and ServiceEntry spec types of one version.
macro_rules! istio_version {
    ($version:tt) => {
        /// WorkloadEntry: a VM or other non-Kubernetes workload.
        #[derive(
            CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema,
        )]
        #[kube(
            group = "networking.istio.io",
            version = $version,
            kind = "WorkloadEntry",
            root = "WorkloadEntry",
            doc = "Configuration affecting VMs onboarded into the mesh.",
            plural = "workloadentries",
            namespaced,
            status = "IstioStatus",
            shortname = "we",
            category = "istio-io",
            category = "networking-istio-io",
            printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
            printcolumn(name = "Address", type_ = "string", description = "Address associated with the network endpoint.", json_path = ".spec.address")
        )]
        #[serde(transparent)]
        pub struct WorkloadEntryVersionSpec(pub WorkloadEntrySpec);

        /// WorkloadGroup: the template of auto-registered WorkloadEntries.
        #[derive(
            CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema,
        )]
        #[kube(
            group = "networking.istio.io",
            version = $version,
            kind = "WorkloadGroup",
            root = "WorkloadGroup",
            doc = "Describes a collection of workload instances.",
            namespaced,
            status = "IstioStatus",
            shortname = "wg",
            category = "istio-io",
            category = "networking-istio-io",
            printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
        )]
        #[serde(transparent)]
        pub struct WorkloadGroupVersionSpec(pub WorkloadGroupSpec);

        /// ServiceEntry: a service added to the mesh's registry.
        #[derive(
            CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema,
        )]
        #[kube(
            group = "networking.istio.io",
            version = $version,
            kind = "ServiceEntry",
            root = "ServiceEntry",
            doc = "Configuration affecting service registry.",
            plural = "serviceentries",
            namespaced,
            status = "IstioStatus",
            shortname = "se",
            category = "istio-io",
            category = "networking-istio-io",
            printcolumn(name = "Hosts", type_ = "string", description = "The hosts associated with the ServiceEntry", json_path = ".spec.hosts"),
            printcolumn(name = "Location", type_ = "string", description = "Whether the service is external to the mesh or part of the mesh (MESH_EXTERNAL or MESH_INTERNAL)", json_path = ".spec.location"),
            printcolumn(name = "Resolution", type_ = "string", description = "Service resolution mode for the hosts (NONE, STATIC, or DNS)", json_path = ".spec.resolution"),
            printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
        )]
        #[serde(transparent)]
        pub struct ServiceEntryVersionSpec(pub ServiceEntrySpec);
    };
}

/// `networking.istio.io/v1` (served and stored).
pub mod v1 {
    use kube::CustomResource;

    use super::*;
    istio_version!("v1");
}

/// `networking.istio.io/v1beta1` (served).
pub mod v1beta1 {
    use kube::CustomResource;

    use super::*;
    istio_version!("v1beta1");
}

/// `networking.istio.io/v1alpha3` (served).
pub mod v1alpha3 {
    use kube::CustomResource;

    use super::*;
    istio_version!("v1alpha3");
}
