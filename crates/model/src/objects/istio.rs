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

/// A mutual TLS mode of Istio's `PeerAuthentication` (`spec.mtls.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// Inherit from the parent policy (namespace, then mesh); PERMISSIVE at the top.
    #[default]
    Unset,
    /// Plaintext only.
    Disable,
    /// mTLS and plaintext.
    Permissive,
    /// mTLS only.
    Strict,
}

/// A PeerAuthentication (`security.istio.io`): which inbound traffic a workload's proxy
/// accepts. In the mesh's root namespace without a selector it is the mesh's policy; in a
/// namespace without a selector that namespace's; with a selector the selected workloads'.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerAuthentication {
    /// Metadata.
    pub meta: Meta,
    /// `spec.selector.matchLabels`: `None` for the whole namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<Labels>,
    /// `spec.mtls.mode`.
    pub mode: MtlsMode,
    /// `spec.portLevelMtls`: per workload port (only with a selector).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub port_level: BTreeMap<u32, MtlsMode>,
}

/// The mode of inbound `port` of a workload with `labels` in `namespace`, by Istio's
/// precedence over `policies` (one member's): the oldest policy selecting the workload (its
/// port-level mode first), else the oldest of the namespace, else the oldest of the
/// `root_namespace` (the mesh's); what is unset inherits, and PERMISSIVE is the default.
pub fn effective_mtls(
    policies: &[PeerAuthentication],
    root_namespace: &str,
    namespace: &str,
    labels: &Labels,
    port: u32,
) -> MtlsMode {
    fn oldest<'a>(
        list: impl Iterator<Item = &'a PeerAuthentication>,
    ) -> Option<&'a PeerAuthentication> {
        list.min_by(|a, b| (a.meta.created, &a.meta.name).cmp(&(b.meta.created, &b.meta.name)))
    }
    let workload = oldest(
        policies
            .iter()
            .filter(|p| &*p.meta.namespace == namespace)
            .filter(|p| {
                p.selector.as_ref().is_some_and(|s| {
                    !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v))
                })
            }),
    );
    let whole = |ns: &str| {
        oldest(
            policies
                .iter()
                .filter(|p| &*p.meta.namespace == ns)
                .filter(|p| p.selector.as_ref().is_none_or(Labels::is_empty)),
        )
    };
    let candidates = [
        workload.and_then(|p| p.port_level.get(&port).copied()),
        workload.map(|p| p.mode),
        whole(namespace).map(|p| p.mode),
        whole(root_namespace).map(|p| p.mode),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|m| *m != MtlsMode::Unset)
        .unwrap_or(MtlsMode::Permissive)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(
        ns: &str,
        name: &str,
        selector: Option<&[(&str, &str)]>,
        mode: MtlsMode,
    ) -> PeerAuthentication {
        PeerAuthentication {
            meta: Meta::named(ns, name),
            selector: selector.map(|s| {
                s.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            mode,
            port_level: BTreeMap::new(),
        }
    }

    #[test]
    fn workload_over_namespace_over_mesh_and_unset_inherits() {
        let labels: Labels = [("app".to_string(), "echo".to_string())].into();
        let mode = |policies: &[PeerAuthentication], port| {
            effective_mtls(policies, "istio-system", "shop", &labels, port)
        };
        assert_eq!(mode(&[], 80), MtlsMode::Permissive);
        let mesh = policy("istio-system", "default", None, MtlsMode::Strict);
        assert_eq!(mode(std::slice::from_ref(&mesh), 80), MtlsMode::Strict);
        let ns = policy("shop", "default", None, MtlsMode::Permissive);
        assert_eq!(mode(&[mesh.clone(), ns.clone()], 80), MtlsMode::Permissive);
        let mut workload = policy("shop", "echo", Some(&[("app", "echo")]), MtlsMode::Unset);
        workload.port_level.insert(9000, MtlsMode::Disable);
        let all = [mesh.clone(), ns.clone(), workload.clone()];
        assert_eq!(
            mode(&all, 80),
            MtlsMode::Permissive,
            "unset inherits the namespace's"
        );
        assert_eq!(mode(&all, 9000), MtlsMode::Disable, "the port's own mode");
        let other = policy(
            "shop",
            "other",
            Some(&[("app", "other")]),
            MtlsMode::Disable,
        );
        assert_eq!(
            mode(&[mesh.clone(), other], 80),
            MtlsMode::Strict,
            "selects another workload"
        );
        let elsewhere = policy("web", "default", None, MtlsMode::Disable);
        assert_eq!(
            mode(&[mesh, elsewhere], 80),
            MtlsMode::Strict,
            "another namespace's"
        );
    }
}
