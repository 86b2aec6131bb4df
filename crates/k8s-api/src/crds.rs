//! Wire shapes of the CRDs Bowline reads, with upstream field names (camelCase JSON).
//!
//! Unknown fields are ignored, as the API server's pruning would; every field is optional on
//! the wire so that the conversion can name what is missing.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// `multicluster.x-k8s.io` ServiceExport.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ServiceExport {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec (optional).
    #[serde(default)]
    pub spec: Option<ServiceExportSpec>,
}

/// ServiceExport spec.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceExportSpec {
    /// Labels to put on the ServiceImport.
    #[serde(default)]
    pub exported_labels: Option<BTreeMap<String, String>>,
    /// Annotations to put on the ServiceImport.
    #[serde(default)]
    pub exported_annotations: Option<BTreeMap<String, String>>,
}

/// `multicluster.x-k8s.io` ServiceImport.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ServiceImport {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: Option<ServiceImportSpec>,
    /// Status.
    #[serde(default)]
    pub status: Option<ServiceImportStatus>,
}

/// ServiceImport spec.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceImportSpec {
    /// `ClusterSetIP` or `Headless`.
    #[serde(rename = "type", default)]
    pub type_: Option<String>,
    /// Ports.
    #[serde(default)]
    pub ports: Option<Vec<ImportPort>>,
    /// ClusterSetIPs.
    #[serde(default)]
    pub ips: Option<Vec<String>>,
    /// Address families.
    #[serde(default)]
    pub ip_families: Option<Vec<String>>,
    /// `None` or `ClientIP`.
    #[serde(default)]
    pub session_affinity: Option<String>,
}

/// A ServiceImport port (no targetPort, by design of the MCS API).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportPort {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Protocol.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Application protocol.
    #[serde(default)]
    pub app_protocol: Option<String>,
    /// Port.
    #[serde(default)]
    pub port: Option<i32>,
}

/// ServiceImport status.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ServiceImportStatus {
    /// Exporting members.
    #[serde(default)]
    pub clusters: Option<Vec<ClusterStatus>>,
}

/// One entry of `status.clusters`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ClusterStatus {
    /// Member id.
    #[serde(default)]
    pub cluster: String,
}

/// `about.k8s.io` ClusterProperty.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ClusterProperty {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: Option<ClusterPropertySpec>,
}

/// ClusterProperty spec.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ClusterPropertySpec {
    /// The value.
    #[serde(default)]
    pub value: Option<String>,
}

/// `networking.istio.io` WorkloadEntry.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct WorkloadEntry {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: Option<WorkloadEntrySpec>,
}

/// WorkloadEntry spec (also a WorkloadGroup template and a ServiceEntry endpoint).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEntrySpec {
    /// IP, host name or `unix://` path.
    #[serde(default)]
    pub address: Option<String>,
    /// Named ports.
    #[serde(default)]
    pub ports: Option<BTreeMap<String, u32>>,
    /// Workload labels.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Network.
    #[serde(default)]
    pub network: Option<String>,
    /// Locality `region/zone/subzone`.
    #[serde(default)]
    pub locality: Option<String>,
    /// Load-balancing weight.
    #[serde(default)]
    pub weight: Option<u32>,
    /// Service account.
    #[serde(default)]
    pub service_account: Option<String>,
}

/// `networking.istio.io` WorkloadGroup.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct WorkloadGroup {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: Option<WorkloadGroupSpec>,
}

/// WorkloadGroup spec.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct WorkloadGroupSpec {
    /// Labels and annotations for the entries.
    #[serde(default)]
    pub metadata: Option<GroupMetadata>,
    /// Entry template (required).
    #[serde(default)]
    pub template: Option<WorkloadEntrySpec>,
    /// Readiness probe.
    #[serde(default)]
    pub probe: Option<Probe>,
}

/// `WorkloadGroup.spec.metadata`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct GroupMetadata {
    /// Labels.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations.
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Istio `ReadinessProbe`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    /// Initial delay.
    #[serde(default)]
    pub initial_delay_seconds: Option<i32>,
    /// Timeout (default 1).
    #[serde(default)]
    pub timeout_seconds: Option<i32>,
    /// Period (default 10).
    #[serde(default)]
    pub period_seconds: Option<i32>,
    /// Success threshold (default 1).
    #[serde(default)]
    pub success_threshold: Option<i32>,
    /// Failure threshold (default 1).
    #[serde(default)]
    pub failure_threshold: Option<i32>,
    /// HTTP GET check.
    #[serde(default)]
    pub http_get: Option<HttpGet>,
    /// TCP check.
    #[serde(default)]
    pub tcp_socket: Option<HostPort>,
    /// Command check.
    #[serde(default)]
    pub exec: Option<Exec>,
    /// gRPC check.
    #[serde(default)]
    pub grpc: Option<Grpc>,
}

/// `httpGet` probe.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct HttpGet {
    /// Path.
    #[serde(default)]
    pub path: Option<String>,
    /// Port (required).
    #[serde(default)]
    pub port: Option<u32>,
    /// Host.
    #[serde(default)]
    pub host: Option<String>,
    /// Scheme.
    #[serde(default)]
    pub scheme: Option<String>,
}

/// `tcpSocket` probe.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct HostPort {
    /// Host.
    #[serde(default)]
    pub host: Option<String>,
    /// Port (required).
    #[serde(default)]
    pub port: Option<u32>,
}

/// `exec` probe.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Exec {
    /// Command.
    #[serde(default)]
    pub command: Option<Vec<String>>,
}

/// `grpc` probe.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Grpc {
    /// Port.
    #[serde(default)]
    pub port: Option<u32>,
    /// Service.
    #[serde(default)]
    pub service: Option<String>,
}

/// `networking.istio.io` ServiceEntry.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ServiceEntry {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: Option<ServiceEntrySpec>,
}

/// ServiceEntry spec.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntrySpec {
    /// Hosts (required).
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
    /// Virtual IPs.
    #[serde(default)]
    pub addresses: Option<Vec<String>>,
    /// Ports.
    #[serde(default)]
    pub ports: Option<Vec<ServiceEntryPort>>,
    /// `MESH_EXTERNAL` or `MESH_INTERNAL`.
    #[serde(default)]
    pub location: Option<String>,
    /// `NONE`, `STATIC`, `DNS`, `DNS_ROUND_ROBIN`.
    #[serde(default)]
    pub resolution: Option<String>,
    /// Inline endpoints.
    #[serde(default)]
    pub endpoints: Option<Vec<WorkloadEntrySpec>>,
    /// Selector of WorkloadEntries and Pods.
    #[serde(default)]
    pub workload_selector: Option<WorkloadSelector>,
}

/// A ServiceEntry port.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntryPort {
    /// Number (required).
    #[serde(default)]
    pub number: Option<u32>,
    /// Protocol.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Name (required).
    #[serde(default)]
    pub name: Option<String>,
    /// Target port.
    #[serde(default)]
    pub target_port: Option<u32>,
}

/// `workloadSelector`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct WorkloadSelector {
    /// Labels to match.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}
