//! The desired state of every member, computed from the ClusterSet view: level-triggered,
//! deterministic, and free of IO. Writers make members match it.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    sync::Arc,
};

use bowline_model::{
    ClusterId, Endpoint, IpFamily, Labels, MemberName, ServiceKey, ServiceType, Strng,
    export::{AUTO_EXPORT, Decision, ExportPolicy, MANAGED_BY_LABEL},
    objects::{ImportType, ServiceExport},
};
use bowline_registry::{MemberService, ServiceView};
use serde::Serialize;
use serde_json::Value;

use crate::{
    alloc::Allocator,
    merge::{Constituent, Merged, merge},
    render::{self, Condition, SlicePort},
};

/// What Bowline writes into a member, by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum WriteKind {
    /// A ServiceImport (whole object).
    ServiceImport,
    /// An imported EndpointSlice (whole object).
    EndpointSlice,
    /// An auto-export ServiceExport (whole object).
    ServiceExport,
    /// The status of a user's ServiceExport.
    ServiceExportStatus,
    /// An auto-registered WorkloadEntry (with its status). Written one at a time with
    /// [`Writer::put`](crate::writer::Writer::put), never part of a reconciled set.
    WorkloadEntry,
}

/// Identity of a written object within a member.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct WriteKey {
    /// Kind.
    pub kind: WriteKind,
    /// Namespace.
    pub namespace: Strng,
    /// Name.
    pub name: Strng,
}

impl WriteKey {
    /// Builds a key.
    pub fn new(kind: WriteKind, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// Everything written to one member. Objects are shared: an imported EndpointSlice is the
/// same in every importing member, and unchanged objects keep their identity between
/// reconciles, which lets writers skip them cheaply.
pub type WriteSet = BTreeMap<WriteKey, Arc<Value>>;

/// An admitted member as the controller needs it.
#[derive(Clone, Debug)]
pub struct MemberInput {
    /// Configured name.
    pub name: MemberName,
    /// Cluster id.
    pub id: ClusterId,
    /// Its namespaces and their labels (imports go where the namespace exists).
    pub namespaces: BTreeMap<Strng, Labels>,
    /// Families it can use (empty: unknown, treated as both).
    pub families: BTreeSet<IpFamily>,
}

/// The controller's input: admitted members and every service view.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Admitted members.
    pub members: Vec<MemberInput>,
    /// Service views.
    pub services: Vec<Arc<ServiceView>>,
    /// Some member's first listing is still missing: the services it exports may not be in
    /// `services` yet, so the ClusterSetIPs of imports not seen are kept, not freed (after a
    /// restart they were read back from what members hold).
    pub pending: bool,
}

/// Controller configuration.
#[derive(Clone, Debug)]
pub struct McsConfig {
    /// Auto-export policy.
    pub policy: ExportPolicy,
    /// ClusterSetIP pools.
    pub pools: Vec<ipnet::IpNet>,
}

/// How one member's name stands with respect to the ClusterSet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportInfo {
    /// The policy's decision and why.
    pub decision: Decision,
    /// Why, in words.
    pub why: String,
    /// True when the member's endpoints are part of the ClusterSet service.
    pub exported: bool,
    /// Conditions written to the ServiceExport, if there is one.
    pub conditions: Vec<Condition>,
}

/// An imported service: the merged definition, its addresses and its sources.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Import {
    /// Namespace and name.
    pub key: ServiceKey,
    /// Merged definition and conflicts.
    pub merged: Merged,
    /// ClusterSetIPs, in `ip_families` order (empty when headless).
    pub ips: Vec<IpAddr>,
    /// Families of the import.
    pub ip_families: Vec<IpFamily>,
    /// Families whose pools are exhausted.
    pub exhausted: Vec<IpFamily>,
    /// Exporting members, oldest export first.
    pub clusters: Vec<ClusterId>,
    /// For each exporting member, the import port names it serves.
    pub served_ports: BTreeMap<ClusterId, Vec<String>>,
    /// Each exporting member's endpoints (shared with the registry's views).
    #[serde(skip)]
    pub sources: BTreeMap<ClusterId, Arc<[Endpoint]>>,
}

/// The result of a reconcile.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// What every admitted member must hold.
    pub writes: BTreeMap<MemberName, WriteSet>,
    /// Imported services.
    pub imports: BTreeMap<ServiceKey, Arc<Import>>,
    /// Per service and member: exported or not, and why.
    pub exports: BTreeMap<ServiceKey, BTreeMap<ClusterId, ExportInfo>>,
}

/// The MCS controller: keeps ClusterSetIP allocations, the last written state, and each
/// name's last result, reused while its view and the members' inputs are unchanged.
#[derive(Debug)]
pub struct Controller {
    config: McsConfig,
    allocator: Allocator,
    previous: BTreeMap<MemberName, WriteSet>,
    memo: HashMap<ServiceKey, Memo>,
    recomputed: u64,
}

/// One name's result, and what it was computed from.
#[derive(Debug)]
struct Memo {
    view: Arc<ServiceView>,
    fingerprint: u64,
    /// False when the result depends on something outside its inputs (an exhausted pool may
    /// free up): such a name is recomputed every time.
    reusable: bool,
    writes: Vec<(MemberName, WriteKey, Arc<Value>)>,
    import: Option<Arc<Import>>,
    exports: Option<BTreeMap<ClusterId, ExportInfo>>,
}

impl Memo {
    fn from_outcome(view: Arc<ServiceView>, fingerprint: u64, part: Outcome) -> Self {
        let import = part.imports.into_values().next();
        let reusable = import.as_ref().is_none_or(|i| i.exhausted.is_empty());
        let writes = part
            .writes
            .into_iter()
            .flat_map(|(member, set)| set.into_iter().map(move |(k, v)| (member.clone(), k, v)))
            .collect();
        Self {
            view,
            fingerprint,
            reusable,
            writes,
            import,
            exports: part.exports.into_values().next(),
        }
    }

    fn remove_from(&self, key: &ServiceKey, outcome: &mut Outcome) {
        for (member, write_key, _) in &self.writes {
            if let Some(set) = outcome.writes.get_mut(member) {
                set.remove(write_key);
            }
        }
        outcome.imports.remove(key);
        outcome.exports.remove(key);
    }

    fn merge_into(&self, key: &ServiceKey, outcome: &mut Outcome) {
        for (member, write_key, object) in &self.writes {
            outcome
                .writes
                .entry(member.clone())
                .or_default()
                .insert(write_key.clone(), object.clone());
        }
        if let Some(import) = &self.import {
            outcome.imports.insert(key.clone(), import.clone());
        }
        if let Some(exports) = &self.exports {
            outcome.exports.insert(key.clone(), exports.clone());
        }
    }
}

/// What the members contribute to every name of `namespace` besides the name's own view:
/// who they are, whether they have the namespace and its labels, and their families.
fn members_fingerprint(members: &[MemberInput], namespace: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for m in members {
        m.name.hash(&mut h);
        m.id.hash(&mut h);
        m.namespaces.get(namespace).hash(&mut h);
        m.families.hash(&mut h);
    }
    h.finish()
}

/// An export of one member before validation.
struct Candidate<'a> {
    member: &'a MemberInput,
    contribution: &'a MemberService,
    decision: Decision,
    user_export: Option<&'a ServiceExport>,
    created: jiff::Timestamp,
}

impl Controller {
    /// A controller resuming from what members already hold (read back by their writers):
    /// ClusterSetIPs of written ServiceImports are kept, first claim first.
    pub fn new(config: McsConfig, existing: BTreeMap<MemberName, WriteSet>) -> Self {
        let allocator = Allocator::new(config.pools.clone());
        let mut controller = Self {
            config,
            allocator,
            previous: BTreeMap::new(),
            memo: HashMap::new(),
            recomputed: 0,
        };
        for (member, objects) in existing {
            controller.adopt(member, objects, false);
        }
        controller
    }

    /// Resumes from what one member holds, read back after the controller started: its
    /// conditions keep their transition times, and the ClusterSetIPs of its ServiceImports
    /// are kept where still free (`takeover` false: a member read late must not move
    /// addresses already served) or replace this controller's own (`takeover` true: a new
    /// leader follows what the previous one wrote).
    pub fn adopt(&mut self, member: MemberName, objects: WriteSet, takeover: bool) {
        for (key, object) in objects
            .iter()
            .filter(|(k, _)| k.kind == WriteKind::ServiceImport)
        {
            let skey = ServiceKey::new(key.namespace.clone(), key.name.clone());
            let ips = object
                .pointer("/spec/ips")
                .and_then(Value::as_array)
                .into_iter()
                .flatten();
            for ip in ips.filter_map(|v| v.as_str()?.parse::<IpAddr>().ok()) {
                if takeover {
                    self.allocator.claim(&skey, ip);
                } else {
                    self.allocator.adopt(&skey, ip);
                }
            }
        }
        self.memo.clear();
        self.previous.insert(member, objects);
    }

    /// Addresses allocated.
    pub fn allocated(&self) -> usize {
        self.allocator.allocated()
    }

    /// Computes what every admitted member must hold.
    pub fn reconcile(&mut self, snapshot: &Snapshot, now: jiff::Timestamp) -> Outcome {
        let now_text = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let by_id: HashMap<&ClusterId, &MemberInput> =
            snapshot.members.iter().map(|m| (&m.id, m)).collect();
        let mut outcome = Outcome::default();
        for member in &snapshot.members {
            outcome.writes.insert(member.name.clone(), WriteSet::new());
        }
        let mut fingerprints: HashMap<&str, u64> = HashMap::new();
        let mut memo = HashMap::with_capacity(self.memo.len());
        for view in &snapshot.services {
            let fingerprint = *fingerprints
                .entry(&view.key.namespace)
                .or_insert_with(|| members_fingerprint(&snapshot.members, &view.key.namespace));
            let reusable = self.memo.remove(&view.key).filter(|m: &Memo| {
                Arc::ptr_eq(&m.view, view) && m.fingerprint == fingerprint && m.reusable
            });
            let part = match reusable {
                Some(part) => part,
                None => {
                    self.recomputed += 1;
                    let mut fresh = Outcome::default();
                    self.reconcile_service(view, &by_id, snapshot, now, &now_text, &mut fresh);
                    Memo::from_outcome(view.clone(), fingerprint, fresh)
                }
            };
            part.merge_into(&view.key, &mut outcome);
            memo.insert(view.key.clone(), part);
        }
        let before = self.allocator.allocated();
        if !snapshot.pending {
            self.allocator
                .retain(|key| outcome.imports.contains_key(key));
        }
        if self.allocator.allocated() < before {
            // Addresses were freed: imports that found a pool exhausted try again now.
            let starved: Vec<Arc<ServiceView>> = memo
                .values()
                .filter(|m| !m.reusable)
                .map(|m| m.view.clone())
                .collect();
            for view in starved {
                let old = memo.remove(&view.key).expect("starved names are memoized");
                old.remove_from(&view.key, &mut outcome);
                let mut fresh = Outcome::default();
                self.reconcile_service(&view, &by_id, snapshot, now, &now_text, &mut fresh);
                let part = Memo::from_outcome(view.clone(), old.fingerprint, fresh);
                part.merge_into(&view.key, &mut outcome);
                memo.insert(view.key.clone(), part);
            }
        }
        self.memo = memo;
        self.previous = outcome.writes.clone();
        outcome
    }

    /// Names whose outcome was computed rather than reused, since this controller started.
    pub fn recomputed(&self) -> u64 {
        self.recomputed
    }

    fn previous(
        &self,
        member: &MemberName,
        kind: WriteKind,
        ns: &str,
        name: &str,
    ) -> Option<&Value> {
        self.previous
            .get(member)?
            .get(&WriteKey::new(kind, ns, name))
            .map(|v| &**v)
    }

    fn candidates<'a>(
        &self,
        view: &'a ServiceView,
        by_id: &HashMap<&ClusterId, &'a MemberInput>,
        now: jiff::Timestamp,
    ) -> Vec<Candidate<'a>> {
        let key = &view.key;
        let mut out = Vec::new();
        for (id, contribution) in &view.members {
            let Some(member) = by_id.get(id).copied() else {
                continue;
            };
            let user_export = contribution.export.as_deref().filter(|e| {
                e.meta.labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(AUTO_EXPORT)
            });
            let decision = self.config.policy.decide(
                &key.namespace,
                &key.name,
                contribution.service.as_deref(),
                member.namespaces.get(&key.namespace),
                user_export.is_some(),
            );
            let kind = if user_export.is_some() {
                WriteKind::ServiceExportStatus
            } else {
                WriteKind::ServiceExport
            };
            let remembered = self
                .previous(&member.name, kind, &key.namespace, &key.name)
                .and_then(|o| {
                    o.pointer("/metadata/creationTimestamp")?
                        .as_str()?
                        .parse()
                        .ok()
                });
            let created = user_export
                .and_then(|e| e.meta.created)
                .or(remembered)
                .unwrap_or(now);
            out.push(Candidate {
                member,
                contribution,
                decision,
                user_export,
                created,
            });
        }
        out
    }

    fn reconcile_service(
        &mut self,
        view: &Arc<ServiceView>,
        by_id: &HashMap<&ClusterId, &MemberInput>,
        snapshot: &Snapshot,
        now: jiff::Timestamp,
        now_text: &str,
        outcome: &mut Outcome,
    ) {
        let key = &view.key;
        let candidates = self.candidates(view, by_id, now);
        let invalid = |c: &Candidate<'_>| -> Option<(&'static str, String)> {
            match (&c.decision, c.contribution.service.as_deref()) {
                (Decision::ClusterLocal { pattern }, _) => Some((
                    "ClusterLocal",
                    format!(
                        "{key} is cluster-local (export.clusterLocal {pattern:?}) and is never exported"
                    ),
                )),
                (_, None) => Some((
                    "NoService",
                    format!("no Service {key} in member {}", c.member.id),
                )),
                (_, Some(s)) if s.service_type == ServiceType::ExternalName => Some((
                    "InvalidServiceType",
                    format!("Service {key} is of type ExternalName, which cannot be exported"),
                )),
                _ => None,
            }
        };
        let mut valid: Vec<&Candidate<'_>> = candidates
            .iter()
            .filter(|c| c.decision.exports() && invalid(c).is_none())
            .collect();
        valid.sort_by(|a, b| (a.created, &a.member.id).cmp(&(b.created, &b.member.id)));
        let constituents: Vec<Constituent<'_>> = valid
            .iter()
            .map(|c| {
                let empty = &EMPTY;
                Constituent {
                    cluster: &c.member.id,
                    service: c
                        .contribution
                        .service
                        .as_deref()
                        .expect("valid exports have a Service"),
                    endpoints: &c.contribution.endpoints,
                    created: c.created,
                    exported_labels: c.user_export.map_or(empty, |e| &e.exported_labels),
                    exported_annotations: c.user_export.map_or(empty, |e| &e.exported_annotations),
                }
            })
            .collect();
        let sources: BTreeMap<ClusterId, Arc<[Endpoint]>> = valid
            .iter()
            .map(|c| (c.member.id.clone(), c.contribution.endpoints.clone()))
            .collect();
        let import = (!constituents.is_empty()).then(|| self.import(key, &constituents, sources));
        let importers = snapshot
            .members
            .iter()
            .filter(|m| m.namespaces.contains_key(&key.namespace))
            .count();

        let exports = outcome.exports.entry(key.clone()).or_default();
        for c in &candidates {
            let why = c.decision.to_string();
            let has_export_object = c.user_export.is_some() || c.decision.exports();
            let problem = invalid(c);
            let exported = c.decision.exports() && problem.is_none();
            let mut conditions = Vec::new();
            if has_export_object {
                let kind = if c.user_export.is_some() {
                    WriteKind::ServiceExportStatus
                } else {
                    WriteKind::ServiceExport
                };
                let previous = self.previous(&c.member.name, kind, &key.namespace, &key.name);
                let cond = |t: &str, ok: bool, reason: &str, message: String| {
                    Condition::new(t, ok, reason, message, previous, now_text)
                };
                match (&problem, &import) {
                    (Some((reason, message)), _) => {
                        conditions.push(cond("Valid", false, reason, message.clone()));
                        conditions.push(cond(
                            "Ready",
                            false,
                            "Failed",
                            format!("not exported: {message}"),
                        ));
                    }
                    (None, Some(import)) => {
                        conditions.push(cond(
                            "Valid",
                            true,
                            "Valid",
                            format!("Service {key} is exported ({why})"),
                        ));
                        conditions.push(cond(
                            "Ready",
                            true,
                            "Exported",
                            format!("exported: ServiceImport {key} is in the {importers} member(s) that have namespace {}", key.namespace),
                        ));
                        let conflicts = &import.merged.conflicts;
                        let message = if conflicts.is_empty() {
                            format!("no conflicts among the {} export(s)", import.clusters.len())
                        } else {
                            conflicts
                                .iter()
                                .map(|(_, m)| m.as_str())
                                .collect::<Vec<_>>()
                                .join("; ")
                        };
                        conditions.push(cond(
                            "Conflict",
                            !conflicts.is_empty(),
                            &import.merged.conflict_reason(),
                            message,
                        ));
                    }
                    (None, None) => unreachable!("a valid export always makes an import"),
                }
                let object = render::service_export(
                    key,
                    c.user_export.is_none(),
                    &c.created.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    &conditions,
                );
                outcome
                    .writes
                    .entry(c.member.name.clone())
                    .or_default()
                    .insert(
                        WriteKey::new(kind, &key.namespace, &key.name),
                        Arc::new(object),
                    );
            }
            exports.insert(
                c.member.id.clone(),
                ExportInfo {
                    decision: c.decision.clone(),
                    why,
                    exported,
                    conditions,
                },
            );
        }
        if exports.is_empty() {
            outcome.exports.remove(key);
        }

        let Some(import) = import else { return };
        let slices = imported_slices(&import, &constituents);
        for member in snapshot
            .members
            .iter()
            .filter(|m| m.namespaces.contains_key(&key.namespace))
        {
            self.write_import(member, &import, &slices, now_text, outcome);
        }
        outcome.imports.insert(key.clone(), Arc::new(import));
    }

    fn import(
        &mut self,
        key: &ServiceKey,
        constituents: &[Constituent<'_>],
        sources: BTreeMap<ClusterId, Arc<[Endpoint]>>,
    ) -> Import {
        let merged = merge(constituents);
        let mut ips = Vec::new();
        let mut ip_families = Vec::new();
        let mut exhausted = Vec::new();
        for family in &merged.ip_families {
            if merged.import_type == ImportType::Headless {
                ip_families.push(*family);
                continue;
            }
            match self.allocator.ensure(key, *family) {
                Some(ip) => {
                    ips.push(ip);
                    ip_families.push(*family);
                }
                None => exhausted.push(*family),
            }
        }
        if ip_families.is_empty() {
            ip_families.clone_from(&merged.ip_families);
        }
        let served_ports = constituents
            .iter()
            .map(|c| {
                (
                    c.cluster.clone(),
                    slice_ports(&merged, c).into_iter().map(|p| p.0).collect(),
                )
            })
            .collect();
        Import {
            key: key.clone(),
            clusters: constituents.iter().map(|c| c.cluster.clone()).collect(),
            merged,
            ips,
            ip_families,
            exhausted,
            served_ports,
            sources,
        }
    }

    fn write_import(
        &self,
        member: &MemberInput,
        import: &Import,
        slices: &[(WriteKey, Arc<Value>)],
        now: &str,
        outcome: &mut Outcome,
    ) {
        let key = &import.key;
        let previous = self.previous(
            &member.name,
            WriteKind::ServiceImport,
            &key.namespace,
            &key.name,
        );
        let usable = member.families.is_empty()
            || import
                .ip_families
                .iter()
                .any(|f| member.families.contains(f));
        let ready = if !usable {
            Condition::new(
                "Ready",
                false,
                "IPFamilyNotSupported",
                format!(
                    "member {} uses only {:?}; the import offers {:?}",
                    member.id, member.families, import.ip_families
                ),
                previous,
                now,
            )
        } else if !import.exhausted.is_empty() {
            Condition::new(
                "Ready",
                false,
                "ClusterSetIPExhausted",
                format!(
                    "no free ClusterSetIP for {:?} in clusterSetIPs {:?}; the import has no address of that family until one is freed or a pool is added",
                    import.exhausted, self.config.pools
                ),
                previous,
                now,
            )
        } else {
            Condition::new(
                "Ready",
                true,
                "Ready",
                "the ServiceImport is ready".into(),
                previous,
                now,
            )
        };
        let mut clusters = import.clusters.clone();
        clusters.sort();
        let writes = outcome.writes.entry(member.name.clone()).or_default();
        writes.insert(
            WriteKey::new(WriteKind::ServiceImport, &key.namespace, &key.name),
            Arc::new(render::service_import(
                key,
                &import.merged,
                &import.ips,
                &import.ip_families,
                &clusters,
                &ready,
            )),
        );
        writes.extend(slices.iter().cloned());
    }
}

/// The imported EndpointSlices of an import, the same in every importing member: one per
/// source member and family, with the ports that source serves.
fn imported_slices(
    import: &Import,
    constituents: &[Constituent<'_>],
) -> Vec<(WriteKey, Arc<Value>)> {
    let key = &import.key;
    let mut out = Vec::new();
    for source in constituents {
        let ports = slice_ports(&import.merged, source);
        if ports.is_empty() {
            continue;
        }
        for family in &import.ip_families {
            let endpoints: Vec<&Endpoint> = source
                .endpoints
                .iter()
                .filter(|e| e.addresses.iter().any(|a| IpFamily::of(a) == *family))
                .collect();
            if endpoints.is_empty() {
                continue;
            }
            let name = render::slice_name(key, source.cluster, *family, 0);
            let slice =
                render::endpoint_slice(key, &name, source.cluster, *family, &ports, &endpoints);
            out.push((
                WriteKey::new(WriteKind::EndpointSlice, &key.namespace, &name),
                Arc::new(slice),
            ));
        }
    }
    out
}

static EMPTY: Labels = Labels::new();

/// The import ports a source serves: those its own Service defines exactly as the merged
/// import does (same name, protocol and number), at the port its endpoints listen on.
fn slice_ports(merged: &Merged, source: &Constituent<'_>) -> Vec<SlicePort> {
    merged
        .ports
        .iter()
        .filter(|p| {
            source
                .service
                .ports
                .iter()
                .any(|s| s.name == p.name && s.protocol == p.protocol && s.port == p.port)
        })
        .filter_map(|p| {
            let target = source
                .endpoints
                .iter()
                .flat_map(|e| e.ports.iter())
                .find(|ep| ep.name == p.name && ep.protocol == p.protocol)?;
            Some((
                p.name.clone(),
                target.port,
                p.protocol,
                p.app_protocol.clone(),
            ))
        })
        .collect()
}

impl Snapshot {
    /// Takes the controller's input from the registry: admitted members, in configuration
    /// order, and every service view.
    pub fn from_registry(registry: &bowline_registry::Registry) -> Self {
        let members = registry
            .members()
            .into_iter()
            .filter_map(|m| {
                let id = m.admission.id()?.clone();
                Some(MemberInput {
                    namespaces: registry.namespaces(&m.name),
                    families: registry.families(&m.name),
                    name: m.name,
                    id,
                })
            })
            .collect();
        Self {
            members,
            services: registry.services(),
            pending: registry.members().iter().any(|m| !m.synced),
        }
    }
}
