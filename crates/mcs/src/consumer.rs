//! MCS consumer mode: another provider writes ServiceImports and imported EndpointSlices;
//! Bowline writes nothing and reads them as the ClusterSet view.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use bowline_model::{ClusterId, Endpoint, Labels, ServiceKey};
use bowline_registry::ServiceView;

use crate::{
    Import, Outcome, Snapshot,
    merge::{ImportPort, Merged},
};

/// The ClusterSet view as the provider wrote it. For each name, the ServiceImport of the
/// first member (in configuration order) that has one is taken, with the endpoints the
/// provider imported into that member, grouped by source cluster. Nothing is written.
pub fn consume(snapshot: &Snapshot) -> Outcome {
    Consumer::default().consume(snapshot)
}

/// [`consume`] across snapshots: each name's import is reused while its service view (the
/// same `Arc`) and the members are unchanged, so a change costs one pointer comparison per
/// unchanged name.
#[derive(Debug, Default)]
pub struct Consumer {
    members: Vec<ClusterId>,
    last: BTreeMap<ServiceKey, (Arc<ServiceView>, Option<Arc<Import>>)>,
}

impl Consumer {
    /// The view of `snapshot`, equal to [`consume`]'s.
    pub fn consume(&mut self, snapshot: &Snapshot) -> Outcome {
        let members: Vec<ClusterId> = snapshot.members.iter().map(|m| m.id.clone()).collect();
        if members != self.members {
            self.last.clear();
            self.members = members;
        }
        let mut outcome = Outcome::default();
        let mut last = BTreeMap::new();
        for view in &snapshot.services {
            let import = match self.last.remove(&view.key) {
                Some((was, import)) if Arc::ptr_eq(&was, view) => import,
                _ => import_of(snapshot, view).map(Arc::new),
            };
            if let Some(import) = &import {
                outcome.imports.insert(view.key.clone(), import.clone());
            }
            last.insert(view.key.clone(), (view.clone(), import));
        }
        self.last = last;
        outcome
    }
}

/// The provider's import of `view`, if a member holds one.
fn import_of(snapshot: &Snapshot, view: &ServiceView) -> Option<Import> {
    let (contribution, import) = snapshot
        .members
        .iter()
        .filter_map(|m| view.members.get(&m.id))
        .find_map(|contribution| Some((contribution, contribution.import.as_deref()?)))?;
    let mut sources: BTreeMap<ClusterId, Vec<Endpoint>> = BTreeMap::new();
    for ep in contribution.imported.iter() {
        sources
            .entry(ep.cluster.clone())
            .or_default()
            .push(ep.clone());
    }
    let ports: Vec<ImportPort> = import.ports.iter().map(ImportPort::from).collect();
    let served_ports = sources
        .iter()
        .map(|(cluster, eps)| {
            let names: BTreeSet<&str> = eps
                .iter()
                .flat_map(|e| e.ports.iter().map(|p| p.name.as_str()))
                .collect();
            let served = ports
                .iter()
                .filter(|p| names.contains(p.name.as_str()))
                .map(|p| p.name.clone())
                .collect();
            (cluster.clone(), served)
        })
        .collect();
    let clusters: Vec<ClusterId> = import
        .clusters
        .iter()
        .filter_map(|c| ClusterId::new(c).ok())
        .collect();
    let merged = Merged {
        winner: clusters
            .first()
            .cloned()
            .unwrap_or_else(|| contribution.cluster.clone()),
        import_type: import.import_type,
        ports,
        ip_families: import.ip_families.clone(),
        session_affinity: import.session_affinity.clone(),
        session_affinity_timeout: None,
        internal_traffic_policy: None,
        traffic_distribution: None,
        labels: Labels::new(),
        annotations: Labels::new(),
        conflicts: Vec::new(),
    };
    Some(Import {
        key: view.key.clone(),
        merged,
        ips: import.ips.clone(),
        ip_families: import.ip_families.clone(),
        exhausted: Vec::new(),
        clusters,
        served_ports,
        sources: sources
            .into_iter()
            .map(|(c, eps)| (c, eps.into()))
            .collect(),
        consumers: None,
    })
}
