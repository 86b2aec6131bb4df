//! Istio's VM kinds (`networking.istio.io`): WorkloadEntry, WorkloadGroup and ServiceEntry.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Meta;
use crate::Labels;

/// The spec of a WorkloadEntry, also used as a WorkloadGroup template and ServiceEntry endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec {
    /// Address: an IP (v4 or v6), a host name, or empty when `network` is set.
    pub address: String,
    /// Named ports.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u32>,
    /// Labels of the workload (what selectors match).
    #[serde(skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// Network.
    pub network: String,
    /// Locality, `region/zone/subzone`.
    pub locality: String,
    /// Load-balancing weight (0 means 1).
    pub weight: u32,
    /// Service account.
    pub service_account: String,
}

/// A WorkloadEntry: a VM (or other non-Kubernetes workload).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkloadEntry {
    /// Metadata.
    pub meta: Meta,
    /// Spec.
    pub spec: WorkloadSpec,
    /// The `Healthy` condition of its status: `Some(true)` when `True`, `Some(false)` when
    /// `False`, `None` when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
}

/// Annotation of a WorkloadEntry whose health is checked: it is an endpoint only while its
/// `Healthy` condition is `True`.
pub const HEALTH_CHECKS_ENABLED: &str = "proxy.istio.io/health-checks-enabled";

impl WorkloadEntry {
    /// Whether it may be an endpoint now: always, unless its health is checked
    /// ([`HEALTH_CHECKS_ENABLED`]) and it has not been reported healthy.
    pub fn serves(&self) -> bool {
        let checked = self
            .meta
            .annotations
            .get(HEALTH_CHECKS_ENABLED)
            .is_some_and(|v| v == "true");
        !checked || self.healthy == Some(true)
    }
}

/// A readiness probe of a WorkloadGroup, as the VM's agent runs it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessProbe {
    /// Seconds before the first probe.
    pub initial_delay_seconds: i32,
    /// Probe timeout.
    pub timeout_seconds: i32,
    /// Probe period.
    pub period_seconds: i32,
    /// Successes needed to become healthy.
    pub success_threshold: i32,
    /// Failures needed to become unhealthy.
    pub failure_threshold: i32,
    /// The check itself: `httpGet`, `tcpSocket`, `exec` or `grpc`, as written.
    pub check: ProbeCheck,
}

/// What a probe checks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ProbeCheck {
    /// No check given.
    #[default]
    None,
    /// HTTP GET on a path and port.
    HttpGet {
        /// Path.
        path: String,
        /// Port.
        port: u32,
        /// Host, when set.
        host: String,
        /// `HTTP` or `HTTPS`.
        scheme: String,
    },
    /// TCP connect.
    TcpSocket {
        /// Host, when set.
        host: String,
        /// Port.
        port: u32,
    },
    /// A command.
    Exec {
        /// Command and arguments.
        command: Vec<String>,
    },
    /// gRPC health check.
    Grpc {
        /// Port.
        port: u32,
        /// Service name.
        service: String,
    },
}

/// A WorkloadGroup: the template of auto-registered WorkloadEntries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadGroup {
    /// Metadata.
    pub meta: Meta,
    /// `spec.metadata.labels`.
    #[serde(skip_serializing_if = "Labels::is_empty")]
    pub entry_labels: Labels,
    /// `spec.metadata.annotations`.
    #[serde(skip_serializing_if = "Labels::is_empty")]
    pub entry_annotations: Labels,
    /// `spec.template`.
    pub template: WorkloadSpec,
    /// `spec.probe`, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ReadinessProbe>,
}

/// A port of a ServiceEntry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntryPort {
    /// Port number.
    pub number: u32,
    /// Protocol (`HTTP`, `TCP`, `GRPC`...).
    pub protocol: String,
    /// Name.
    pub name: String,
    /// Target port (0 when unset).
    pub target_port: u32,
}

/// A ServiceEntry: hosts served by WorkloadEntries, inline endpoints or external addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntry {
    /// Metadata.
    pub meta: Meta,
    /// Hosts.
    pub hosts: Vec<String>,
    /// Virtual addresses.
    pub addresses: Vec<String>,
    /// Ports.
    pub ports: Vec<ServiceEntryPort>,
    /// `MESH_EXTERNAL` or `MESH_INTERNAL`.
    pub location: String,
    /// `NONE`, `STATIC`, `DNS` or `DNS_ROUND_ROBIN`.
    pub resolution: String,
    /// Inline endpoints.
    pub endpoints: Vec<WorkloadSpec>,
    /// `workloadSelector.labels`, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<Labels>,
}
