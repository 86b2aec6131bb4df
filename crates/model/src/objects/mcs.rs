//! Multi-Cluster Services and cluster identity kinds: ServiceExport, ServiceImport, ClusterProperty.

use std::net::IpAddr;

use serde::Serialize;

use super::Meta;
use crate::{IpFamily, Labels, ServicePort};

/// A ServiceExport (`multicluster.x-k8s.io`): exports the Service of the same name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceExport {
    /// Metadata (creation time decides conflicts).
    pub meta: Meta,
    /// `spec.exportedLabels`.
    #[serde(skip_serializing_if = "Labels::is_empty")]
    pub exported_labels: Labels,
    /// `spec.exportedAnnotations`.
    #[serde(skip_serializing_if = "Labels::is_empty")]
    pub exported_annotations: Labels,
}

/// Type of a ServiceImport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum ImportType {
    /// Has ClusterSetIPs.
    ClusterSetIP,
    /// Headless.
    Headless,
}

/// A ServiceImport (`multicluster.x-k8s.io`), as written by an MCS controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceImport {
    /// Metadata.
    pub meta: Meta,
    /// `type`.
    pub import_type: ImportType,
    /// ClusterSetIPs.
    pub ips: Vec<IpAddr>,
    /// Address families.
    pub ip_families: Vec<IpFamily>,
    /// Ports.
    pub ports: Vec<ServicePort>,
    /// Session affinity (`None` or `ClientIP`).
    pub session_affinity: String,
    /// Member ids listed in `status.clusters`.
    pub clusters: Vec<String>,
}

/// A ClusterClaim (`cluster.open-cluster-management.io`, Open Cluster Management): read
/// only for its `id.k8s.io` claim, an id source after the ClusterProperties.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterClaim {
    /// Metadata (the name is the claim).
    pub meta: Meta,
    /// `spec.value`.
    pub value: String,
}

/// A ClusterProperty (`about.k8s.io`, KEP-2149).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterProperty {
    /// Metadata (the name is the property).
    pub meta: Meta,
    /// `spec.value`.
    pub value: String,
}
