//! Merging the constituent Services of one exported name into one import (KEP-1645 §2.5):
//! the oldest export wins every property, ports are a union merged by name then by
//! protocol and port, and every disagreement becomes a conflict reason with a message.

use std::{collections::BTreeSet, fmt, sync::Arc};

use bowline_model::{
    ClusterId, Endpoint, IpFamily, Labels, ServicePort, ServiceType,
    objects::{ImportType, Service},
};
use serde::Serialize;

/// One valid export of the name: a member's Service and its (user or auto) ServiceExport.
#[derive(Clone, Debug)]
pub struct Constituent<'a> {
    /// The exporting member.
    pub cluster: &'a ClusterId,
    /// Its Service.
    pub service: &'a Service,
    /// Its endpoints (shared with the registry's view).
    pub endpoints: &'a Arc<[Endpoint]>,
    /// When its ServiceExport was created (auto exports: when Bowline first wrote it).
    pub created: jiff::Timestamp,
    /// `spec.exportedLabels` of its ServiceExport.
    pub exported_labels: &'a Labels,
    /// `spec.exportedAnnotations` of its ServiceExport.
    pub exported_annotations: &'a Labels,
}

impl Constituent<'_> {
    /// Families this constituent serves: the Service's `ipFamilies`, else those of its
    /// endpoints' addresses, else IPv4.
    pub fn families(&self) -> Vec<IpFamily> {
        if !self.service.ip_families.is_empty() {
            return self.service.ip_families.clone();
        }
        let seen: BTreeSet<IpFamily> = self
            .endpoints
            .iter()
            .flat_map(|e| e.addresses.iter().map(IpFamily::of))
            .collect();
        if seen.is_empty() {
            vec![IpFamily::IPv4]
        } else {
            seen.into_iter().collect()
        }
    }

    fn import_type(&self) -> ImportType {
        match self.service.service_type {
            ServiceType::Headless => ImportType::Headless,
            _ => ImportType::ClusterSetIP,
        }
    }

    fn ports(&self) -> BTreeSet<ImportPort> {
        self.service.ports.iter().map(ImportPort::from).collect()
    }
}

/// A ServiceImport port: a Service port without its target.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportPort {
    /// Name (may be empty for a single unnamed port).
    pub name: String,
    /// Protocol.
    pub protocol: bowline_model::Protocol,
    /// Port.
    pub port: u16,
    /// Application protocol.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

impl From<&ServicePort> for ImportPort {
    fn from(p: &ServicePort) -> Self {
        Self {
            name: p.name.clone(),
            protocol: p.protocol,
            port: p.port,
            app_protocol: p.app_protocol.clone(),
        }
    }
}

impl fmt::Display for ImportPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {}/{}",
            self.name,
            self.protocol.as_str(),
            self.port
        )
    }
}

/// The conflict reasons of the MCS API, in the order they are reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum ConflictReason {
    /// Ports differ.
    PortConflict,
    /// ClusterIP vs headless.
    TypeConflict,
    /// `sessionAffinity` differs.
    SessionAffinityConflict,
    /// `sessionAffinityConfig` differs.
    SessionAffinityConfigConflict,
    /// Exported labels differ.
    LabelsConflict,
    /// Exported annotations differ.
    AnnotationsConflict,
    /// `internalTrafficPolicy` differs.
    InternalTrafficPolicyConflict,
    /// `trafficDistribution` differs.
    TrafficDistributionConflict,
    /// IP families differ so that some backends are unreachable over some family.
    IPFamilyConflict,
}

impl fmt::Display for ConflictReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The merged definition of an exported name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Merged {
    /// The winning (oldest) export's member.
    pub winner: ClusterId,
    /// ClusterSetIP or Headless.
    pub import_type: ImportType,
    /// The union of ports.
    pub ports: Vec<ImportPort>,
    /// Families, the winner's first.
    pub ip_families: Vec<IpFamily>,
    /// `sessionAffinity`.
    pub session_affinity: String,
    /// `sessionAffinityConfig.clientIP.timeoutSeconds`.
    pub session_affinity_timeout: Option<i32>,
    /// `internalTrafficPolicy`.
    pub internal_traffic_policy: Option<String>,
    /// `trafficDistribution`.
    pub traffic_distribution: Option<String>,
    /// Labels for the ServiceImport (the winner's exported labels).
    pub labels: Labels,
    /// Annotations for the ServiceImport (the winner's exported annotations).
    pub annotations: Labels,
    /// Every disagreement, with a message naming the field, the winner and why.
    pub conflicts: Vec<(ConflictReason, String)>,
}

impl Merged {
    /// `Conflict` condition reason: comma-joined reasons, or `NoConflicts`.
    pub fn conflict_reason(&self) -> String {
        if self.conflicts.is_empty() {
            "NoConflicts".into()
        } else {
            self.conflicts
                .iter()
                .map(|(r, _)| r.to_string())
                .collect::<Vec<_>>()
                .join(",")
        }
    }
}

/// Merges constituents sorted oldest export first (ties broken by cluster id).
pub fn merge(constituents: &[Constituent<'_>]) -> Merged {
    let winner = &constituents[0];
    let why = format!(
        "from {}'s ServiceExport, the oldest (created {})",
        winner.cluster,
        winner.created.strftime("%Y-%m-%dT%H:%M:%SZ")
    );
    let total = constituents.len();
    let mut conflicts = Vec::new();
    let ports = merge_ports(constituents, &why, &mut conflicts);
    let mut oldest_wins =
        |reason: ConflictReason, field: &str, value_of: &dyn Fn(&Constituent<'_>) -> String| {
            let winning = value_of(winner);
            let disagree: Vec<&str> = constituents
                .iter()
                .filter(|c| value_of(c) != winning)
                .map(|c| c.cluster.as_str())
                .collect();
            if !disagree.is_empty() {
                conflicts.push((
                reason,
                format!(
                    "conflicting {field}: using {winning} {why}; {}/{total} members disagree ({})",
                    disagree.len(),
                    disagree.join(", ")
                ),
            ));
            }
        };
    let show = |v: Option<&str>| v.map_or_else(|| "unset".to_string(), |v| format!("{v:?}"));
    oldest_wins(ConflictReason::TypeConflict, "type", &|c| {
        format!("{:?}", format!("{:?}", c.import_type()))
    });
    oldest_wins(
        ConflictReason::SessionAffinityConflict,
        "sessionAffinity",
        &|c| format!("{:?}", c.service.session_affinity),
    );
    oldest_wins(
        ConflictReason::SessionAffinityConfigConflict,
        "sessionAffinityConfig",
        &|c| {
            c.service
                .session_affinity_timeout
                .map_or_else(|| "unset".into(), |t| format!("timeoutSeconds {t}"))
        },
    );
    oldest_wins(ConflictReason::LabelsConflict, "exported labels", &|c| {
        format!("{:?}", c.exported_labels)
    });
    oldest_wins(
        ConflictReason::AnnotationsConflict,
        "exported annotations",
        &|c| format!("{:?}", c.exported_annotations),
    );
    oldest_wins(
        ConflictReason::InternalTrafficPolicyConflict,
        "internalTrafficPolicy",
        &|c| show(c.service.internal_traffic_policy.as_deref()),
    );
    oldest_wins(
        ConflictReason::TrafficDistributionConflict,
        "trafficDistribution",
        &|c| show(c.service.traffic_distribution.as_deref()),
    );
    let ip_families = merge_families(constituents, &mut conflicts);
    conflicts.sort_by_key(|(r, _)| *r);
    Merged {
        winner: winner.cluster.clone(),
        import_type: winner.import_type(),
        ports,
        ip_families,
        session_affinity: winner.service.session_affinity.clone(),
        session_affinity_timeout: winner.service.session_affinity_timeout,
        internal_traffic_policy: winner.service.internal_traffic_policy.clone(),
        traffic_distribution: winner.service.traffic_distribution.clone(),
        labels: winner.exported_labels.clone(),
        annotations: winner.exported_annotations.clone(),
        conflicts,
    }
}

/// Union of ports, oldest first: a port joins unless its name or its (protocol, port) is
/// already taken by an older definition, in which case the older one stays.
fn merge_ports(
    constituents: &[Constituent<'_>],
    why: &str,
    conflicts: &mut Vec<(ConflictReason, String)>,
) -> Vec<ImportPort> {
    let mut merged: Vec<ImportPort> = Vec::new();
    let mut collisions = Vec::new();
    for c in constituents {
        for port in &c.service.ports {
            let port = ImportPort::from(port);
            let same_name = merged.iter().find(|m| m.name == port.name);
            let same_number = merged
                .iter()
                .find(|m| m.protocol == port.protocol && m.port == port.port);
            match same_name.or(same_number) {
                Some(existing) if *existing == port => {}
                Some(existing) => {
                    collisions.push(format!("{port} in {} collides with {existing}", c.cluster))
                }
                None => merged.push(port),
            }
        }
    }
    let union: BTreeSet<ImportPort> = merged.iter().cloned().collect();
    let differ: Vec<&str> = constituents
        .iter()
        .filter(|c| c.ports() != union)
        .map(|c| c.cluster.as_str())
        .collect();
    if !differ.is_empty() {
        let detail = if collisions.is_empty() {
            String::new()
        } else {
            format!("; {}", collisions.join("; "))
        };
        conflicts.push((
            ConflictReason::PortConflict,
            format!(
                "conflicting ports: the import has the union of ports, merged by name then protocol and port, colliding definitions taken {why}; {}/{} members differ ({}){detail}; traffic to a port only reaches members that serve it",
                differ.len(),
                constituents.len(),
                differ.join(", ")
            ),
        ));
    }
    merged.sort_by(|a, b| a.name.cmp(&b.name).then(a.port.cmp(&b.port)));
    merged
}

/// Families: the union, the winner's order first. A member lacking a family the import offers
/// cannot be reached over it, which is an `IPFamilyConflict`.
fn merge_families(
    constituents: &[Constituent<'_>],
    conflicts: &mut Vec<(ConflictReason, String)>,
) -> Vec<IpFamily> {
    let mut families: Vec<IpFamily> = Vec::new();
    for c in constituents {
        for f in c.families() {
            if !families.contains(&f) {
                families.push(f);
            }
        }
    }
    let lacking: Vec<String> = constituents
        .iter()
        .filter_map(|c| {
            let own = c.families();
            let missing: Vec<String> = families
                .iter()
                .filter(|f| !own.contains(f))
                .map(|f| format!("{f:?}"))
                .collect();
            (!missing.is_empty()).then(|| format!("{} has no {}", c.cluster, missing.join(" or ")))
        })
        .collect();
    if !lacking.is_empty() {
        conflicts.push((
            ConflictReason::IPFamilyConflict,
            format!(
                "conflicting ipFamilies: the import offers {families:?} (the union, oldest export's primary family first) but {}; clients using such a family reach only the members that have it",
                lacking.join(", ")
            ),
        ));
    }
    families
}
