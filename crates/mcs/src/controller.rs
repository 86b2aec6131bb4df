//! The desired state of every member, computed from the ClusterSet view: level-triggered,
//! deterministic, and free of IO. Writers make members match it.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
};

use bowline_model::{
    ClusterId, Endpoint, IpFamily, Labels, MemberName, ServiceKey, ServiceType, Strng,
    export::{AUTO_EXPORT, Decision, ExportPolicy, MANAGED_BY_LABEL},
    objects::{ImportType, ServiceExport},
    scope::{ExportTo, Scope},
};
use bowline_registry::{MemberService, ServiceView};
use serde::Serialize;
use serde_json::Value;

use crate::{
    alloc::Allocator,
    merge::{Constituent, Merged, merge},
    render::{self, Condition, ImportedSlice, SlicePort},
    rendered::Rendered,
    writes::{MemberWrites, Objects},
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
pub type WriteSet = BTreeMap<WriteKey, Arc<Rendered>>;

/// An admitted member as the controller needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInput {
    /// Configured name.
    pub name: MemberName,
    /// Cluster id.
    pub id: ClusterId,
    /// Its namespaces and their labels (imports go where the namespace exists).
    pub namespaces: BTreeMap<Strng, Labels>,
    /// Families it can use (empty: unknown, treated as both).
    pub families: BTreeSet<IpFamily>,
    /// Its namespaces' export-scope annotations, for those that have any.
    pub scopes: BTreeMap<Strng, Labels>,
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
    /// Where the export goes when something limits it (every member otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// The members its endpoints reach, when the export is scoped (empty otherwise: every
    /// member when exported).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<ClusterId>,
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
    /// `None`: every member imports this. Otherwise an export is scoped, and only the members
    /// named here import the name: `None` for those that see every export (this import),
    /// or the import of just the exports that reach them. Shown as each consumer's sources.
    #[serde(
        serialize_with = "consumers_json",
        skip_serializing_if = "Option::is_none"
    )]
    pub consumers: Option<Consumers>,
}

/// The members a scoped import reaches, each with the import it sees (`None`: the whole).
pub type Consumers = BTreeMap<ClusterId, Option<Arc<Import>>>;

fn consumers_json<S: serde::Serializer>(
    consumers: &Option<Consumers>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let Some(consumers) = consumers else {
        return s.serialize_none();
    };
    let mut map = s.serialize_map(Some(consumers.len()))?;
    for (id, own) in consumers {
        map.serialize_entry(
            id,
            &serde_json::json!({"sources": own.as_ref().map(|i| &i.clusters)}),
        )?;
    }
    map.end()
}

impl Import {
    /// How member `member` sees this import: `None` when no export reaches it, `Some(None)`
    /// when it sees all of it, else its own.
    fn seen_by(&self, member: &str) -> Option<Option<&Arc<Import>>> {
        match &self.consumers {
            None => Some(None),
            Some(consumers) => consumers.get(member).map(Option::as_ref),
        }
    }

    /// The import as the member with id `member` sees it: `None` when no export reaches it.
    pub fn for_member(&self, member: &str) -> Option<&Import> {
        Some(self.seen_by(member)?.map_or(self, |own| own))
    }

    /// `whole` as member `member` sees it, shared: `whole` itself or the member's own.
    pub fn shared_for(whole: &Arc<Import>, member: &str) -> Option<Arc<Import>> {
        Some(whole.seen_by(member)?.unwrap_or(whole).clone())
    }
}

/// The result of a reconcile. Cloning it is cheap: every part is shared.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// What every admitted member must hold.
    pub writes: BTreeMap<MemberName, MemberWrites>,
    /// Imported services.
    pub imports: BTreeMap<ServiceKey, Arc<Import>>,
    /// Per service and member: exported or not, and why.
    pub exports: BTreeMap<ServiceKey, Arc<BTreeMap<ClusterId, ExportInfo>>>,
}

/// One name's part of an outcome while it is computed: flat write sets per member.
#[derive(Default)]
struct Part {
    writes: BTreeMap<MemberName, WriteSet>,
    import: Option<Import>,
    exports: BTreeMap<ClusterId, ExportInfo>,
}

/// The MCS controller: keeps ClusterSetIP allocations, the last outcome, and each name's
/// last result, reused while its view and the members' inputs are unchanged. The outcome is
/// patched name by name: a reconcile costs one pointer comparison per unchanged name.
#[derive(Debug)]
pub struct Controller {
    config: McsConfig,
    allocator: Allocator,
    /// The last outcome; what each member held before this reconcile.
    outcome: Outcome,
    /// What members held when read back, for those adopted since the last reconcile: their
    /// previous state (condition times, creation times) instead of `outcome`'s.
    adopted: BTreeMap<MemberName, WriteSet>,
    /// What members held when read back, kept while members are still being listed (and
    /// nothing is written): a name whose exporters are not all listed yet, its import
    /// missing or different meanwhile, still finds the state it had before a restart.
    awaiting: BTreeMap<MemberName, WriteSet>,
    /// When the first of `awaiting` was read back: it is kept at most [`FIRST_SYNC_GRACE`]
    /// from then, when the writers stop waiting and members hold what is written instead.
    awaiting_since: Option<jiff::Timestamp>,
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
    writes: BTreeMap<MemberName, Objects>,
    import: Option<Arc<Import>>,
    exports: Option<Arc<BTreeMap<ClusterId, ExportInfo>>>,
}

impl Memo {
    /// The memo of a fresh part; whatever equals the previous result keeps its `Arc`, so that
    /// writers and the xDS and DNS caches see only what really changed.
    fn new(view: Arc<ServiceView>, fingerprint: u64, part: Part, old: Option<&Memo>) -> Self {
        let reusable = part.import.as_ref().is_none_or(|i| {
            let scoped = i.consumers.iter().flat_map(|c| c.values().flatten());
            i.exhausted.is_empty() && scoped.into_iter().all(|own| own.exhausted.is_empty())
        });
        let import = part.import.map(|mut fresh| {
            let old = old.and_then(|o| o.import.as_ref());
            // Consumers' own imports equal to the last ones keep their `Arc`s too (servers
            // per member compare them).
            if let (Some(consumers), Some(before)) = (
                fresh.consumers.as_mut(),
                old.and_then(|o| o.consumers.as_ref()),
            ) {
                for (id, own) in consumers.iter_mut() {
                    if let (Some(own), Some(Some(kept))) = (own.as_mut(), before.get(id))
                        && **own == **kept
                    {
                        *own = kept.clone();
                    }
                }
            }
            match old {
                Some(old) if **old == fresh => old.clone(),
                _ => Arc::new(fresh),
            }
        });
        let exports =
            (!part.exports.is_empty()).then(|| match old.and_then(|o| o.exports.as_ref()) {
                Some(old) if **old == part.exports => old.clone(),
                _ => Arc::new(part.exports),
            });
        let mut part_writes = part.writes;
        share_equal(&mut part_writes);
        let writes = part_writes
            .into_iter()
            .filter(|(_, set)| !set.is_empty())
            .map(|(member, set)| {
                let before = old.and_then(|o| o.writes.get(&member));
                let objects = reuse(set, before);
                (member, objects)
            })
            .collect();
        Self {
            view,
            fingerprint,
            reusable,
            writes,
            import,
            exports,
        }
    }
}

/// Makes equal objects of one name one allocation across members: a ServiceImport, and an
/// export's status, is usually the same text in every member (at 10 × 1,000 × 10, 20,000
/// texts of about 800 bytes, 16 MB, where 2,000 are distinct). Imported EndpointSlices are
/// built once per name and shared already.
fn share_equal(writes: &mut BTreeMap<MemberName, WriteSet>) {
    // Only copies of one object (one key) can be equal: each member's is compared with the
    // distinct copies of its own key, not with every object of the name.
    let mut seen: BTreeMap<WriteKey, Vec<Arc<Rendered>>> = BTreeMap::new();
    for (key, object) in writes
        .values_mut()
        .flat_map(|set| set.iter_mut())
        .filter(|(key, _)| key.kind != WriteKind::EndpointSlice)
    {
        let copies = seen.entry(key.clone()).or_default();
        match copies
            .iter()
            .find(|s| Arc::ptr_eq(s, object) || ***s == **object)
        {
            Some(same) => *object = same.clone(),
            None => copies.push(object.clone()),
        }
    }
}

/// A member's objects of one name, keeping the `Arc`s of those equal to `before` (and
/// `before` itself when nothing differs).
fn reuse(set: WriteSet, before: Option<&Objects>) -> Objects {
    let Some(before) = before else {
        return set.into_iter().collect();
    };
    let mut same = before.len() == set.len();
    let objects: Vec<(WriteKey, Arc<Rendered>)> = set
        .into_iter()
        .map(
            |(key, object)| match before.binary_search_by(|(k, _)| k.cmp(&key)) {
                Ok(i) if before[i].1 == object => (key, before[i].1.clone()),
                _ => {
                    same = false;
                    (key, object)
                }
            },
        )
        .collect();
    if same { before.clone() } else { objects.into() }
}

/// Makes `outcome` hold `key`'s part as `memo` says (none: the name is gone), replacing what
/// `old` put there. Members not in `outcome` (they left) are not brought back.
fn patch(outcome: &mut Outcome, key: &ServiceKey, old: Option<&Memo>, memo: Option<&Memo>) {
    let members: BTreeSet<&MemberName> = old
        .into_iter()
        .chain(memo)
        .flat_map(|m| m.writes.keys())
        .collect();
    for member in members {
        let objects = memo.and_then(|m| m.writes.get(member)).map(Arc::clone);
        if let Some(writes) = outcome.writes.get_mut(member) {
            let unchanged = match (&objects, writes.names().get(key)) {
                (Some(new), Some(held)) => Arc::ptr_eq(new, held),
                (None, None) => true,
                _ => false,
            };
            if !unchanged {
                writes.set(key, objects);
            }
        }
    }
    match memo.and_then(|m| m.import.clone()) {
        Some(import) => outcome.imports.insert(key.clone(), import),
        None => outcome.imports.remove(key),
    };
    match memo.and_then(|m| m.exports.clone()) {
        Some(exports) => outcome.exports.insert(key.clone(), exports),
        None => outcome.exports.remove(key),
    };
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
        m.scopes.get(namespace).hash(&mut h);
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
    /// Where the export goes: `Ok(None)` every member; otherwise the ids it reaches (its
    /// own included), or why the scope is not valid (reason, message).
    targets: Result<Option<BTreeSet<ClusterId>>, (&'static str, String)>,
    scope: Option<Scope>,
}

/// How long, from their start, writers wait for every member's first listing before they
/// write what is known; until then what was read back stands for what members hold.
pub const FIRST_SYNC_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

impl Controller {
    /// A controller resuming from what members already hold (read back by their writers):
    /// ClusterSetIPs of written ServiceImports are kept, first claim first.
    pub fn new(config: McsConfig, existing: BTreeMap<MemberName, WriteSet>) -> Self {
        let allocator = Allocator::new(config.pools.clone());
        let mut controller = Self {
            config,
            allocator,
            outcome: Outcome::default(),
            adopted: BTreeMap::new(),
            awaiting: BTreeMap::new(),
            awaiting_since: None,
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
            let object = object.to_value();
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
        self.adopted.insert(member, objects);
    }

    /// Addresses allocated.
    pub fn allocated(&self) -> usize {
        self.allocator.allocated()
    }

    /// Computes what every admitted member must hold: only the names whose view or
    /// members' inputs changed are recomputed, and the last outcome is patched with them.
    pub fn reconcile(&mut self, snapshot: &Snapshot, now: jiff::Timestamp) -> Outcome {
        let now_text = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let by_id: HashMap<&ClusterId, &MemberInput> =
            snapshot.members.iter().map(|m| (&m.id, m)).collect();
        let admitted: BTreeSet<&MemberName> = snapshot.members.iter().map(|m| &m.name).collect();
        // What departed members held is kept until their names are recomputed below (their
        // conditions' previous state); they are dropped from the outcome at the end.
        for member in &snapshot.members {
            self.outcome.writes.entry(member.name.clone()).or_default();
        }
        let mut fingerprints: HashMap<&str, u64> = HashMap::new();
        let mut seen = HashSet::with_capacity(snapshot.services.len());
        for view in &snapshot.services {
            seen.insert(&view.key);
            let fingerprint = *fingerprints
                .entry(&view.key.namespace)
                .or_insert_with(|| members_fingerprint(&snapshot.members, &view.key.namespace));
            let reusable = self.memo.get(&view.key).is_some_and(|m| {
                Arc::ptr_eq(&m.view, view) && m.fingerprint == fingerprint && m.reusable
            });
            if !reusable {
                self.recompute(view, fingerprint, &by_id, snapshot, now, &now_text);
            }
        }
        let gone: Vec<ServiceKey> = self
            .memo
            .keys()
            .filter(|k| !seen.contains(k))
            .cloned()
            .collect();
        for key in gone {
            let old = self.memo.remove(&key);
            patch(&mut self.outcome, &key, old.as_ref(), None);
        }
        let before = self.allocator.allocated();
        if !snapshot.pending {
            let imports = &self.outcome.imports;
            self.allocator.retain(|key| imports.contains_key(key));
        }
        if self.allocator.allocated() < before {
            // Addresses were freed: imports that found a pool exhausted try again now.
            let starved: Vec<(Arc<ServiceView>, u64)> = self
                .memo
                .values()
                .filter(|m| !m.reusable)
                .map(|m| (m.view.clone(), m.fingerprint))
                .collect();
            for (view, fingerprint) in starved {
                self.recompute(&view, fingerprint, &by_id, snapshot, now, &now_text);
            }
        }
        self.outcome
            .writes
            .retain(|member, _| admitted.contains(member));
        self.settle_adopted(snapshot.pending, now);
        self.outcome.clone()
    }

    /// After a reconcile: what was read back stays the previous state while members are
    /// still being listed and nothing is written, and is forgotten once all are listed or
    /// the writers stop waiting for them ([`FIRST_SYNC_GRACE`]): from then on members hold
    /// what the outcome has, which is then the previous state.
    fn settle_adopted(&mut self, pending: bool, now: jiff::Timestamp) {
        for (member, read) in std::mem::take(&mut self.adopted) {
            self.awaiting_since.get_or_insert(now);
            // A member read again (a follower's `follow`) holds only what it holds now.
            self.awaiting.insert(member, read);
        }
        let waited = self
            .awaiting_since
            .is_some_and(|since| now.duration_since(since).unsigned_abs() >= FIRST_SYNC_GRACE);
        if !pending || waited {
            self.awaiting.clear();
            self.awaiting_since = None;
        }
    }

    /// Computes one name afresh and patches the outcome with it.
    fn recompute(
        &mut self,
        view: &Arc<ServiceView>,
        fingerprint: u64,
        by_id: &HashMap<&ClusterId, &MemberInput>,
        snapshot: &Snapshot,
        now: jiff::Timestamp,
        now_text: &str,
    ) {
        self.recomputed += 1;
        let mut part = Part::default();
        self.reconcile_service(view, by_id, snapshot, now, now_text, &mut part);
        let old = self.memo.remove(&view.key);
        let memo = Memo::new(view.clone(), fingerprint, part, old.as_ref());
        patch(&mut self.outcome, &view.key, old.as_ref(), Some(&memo));
        self.memo.insert(view.key.clone(), memo);
    }

    /// Names whose outcome was computed rather than reused, since this controller started.
    pub fn recomputed(&self) -> u64 {
        self.recomputed
    }

    /// What `member` held of an object before this reconcile: as read back when it was
    /// adopted (until every member is listed, or the writers stopped waiting), else as the
    /// last outcome had it.
    fn previous(
        &self,
        member: &MemberName,
        kind: WriteKind,
        ns: &str,
        name: &str,
    ) -> Option<Value> {
        let key = WriteKey::new(kind, ns, name);
        let read = self.adopted.get(member).or(self.awaiting.get(member));
        read.and_then(|r| r.get(&key))
            .or_else(|| self.outcome.writes.get(member)?.get(&key))
            .map(|v| v.to_value())
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
            let scope = self.config.policy.scope.scope(
                &key.namespace,
                user_export.map(|e| &e.meta.annotations),
                contribution.service.as_deref().map(|s| &s.meta.annotations),
                member.scopes.get(&key.namespace),
            );
            let targets = match &scope {
                Err(message) => Err(("InvalidExportScope", message.clone())),
                Ok(None) => Ok(None),
                Ok(Some(scope)) => self.targets(scope, member, by_id).map(Some),
            };
            out.push(Candidate {
                member,
                contribution,
                decision,
                user_export,
                created,
                targets,
                scope: scope.ok().flatten(),
            });
        }
        out
    }

    /// The member ids `scope` names, with `member`'s own: every id must be an admitted
    /// member's and a selector must select one.
    fn targets(
        &self,
        scope: &Scope,
        member: &MemberInput,
        by_id: &HashMap<&ClusterId, &MemberInput>,
    ) -> Result<BTreeSet<ClusterId>, (&'static str, String)> {
        let known = || {
            let mut ids: Vec<&str> = by_id.keys().map(|id| id.as_str()).collect();
            ids.sort_unstable();
            ids.join(", ")
        };
        let mut out = BTreeSet::from([member.id.clone()]);
        match &scope.to {
            ExportTo::Members(ids) => {
                for id in ids {
                    let found = by_id.keys().find(|k| k.as_str() == id);
                    let Some(found) = found else {
                        return Err((
                            "UnknownMember",
                            format!(
                                "{scope} names {id:?}, which is no admitted member's cluster id (members: {})",
                                known()
                            ),
                        ));
                    };
                    out.insert((*found).clone());
                }
            }
            ExportTo::Selector(selector) => {
                let labels = &self.config.policy.scope.member_labels;
                let empty = Labels::new();
                let selected: Vec<&ClusterId> = by_id
                    .values()
                    .filter(|m| selector.matches(labels.get(m.name.as_str()).unwrap_or(&empty)))
                    .map(|m| &m.id)
                    .collect();
                if selected.is_empty() {
                    let mut described: Vec<String> = by_id
                        .values()
                        .map(|m| match labels.get(m.name.as_str()) {
                            Some(l) if !l.is_empty() => format!(
                                "{} {{{}}}",
                                m.id,
                                l.iter()
                                    .map(|(k, v)| format!("{k}={v}"))
                                    .collect::<Vec<_>>()
                                    .join(",")
                            ),
                            _ => format!("{} (no labels)", m.id),
                        })
                        .collect();
                    described.sort();
                    return Err((
                        "NoMatchingMember",
                        format!(
                            "{scope} selects no admitted member (members' labels from bowline.yaml: {})",
                            described.join("; ")
                        ),
                    ));
                }
                out.extend(selected.into_iter().cloned());
            }
        }
        Ok(out)
    }

    fn reconcile_service(
        &mut self,
        view: &Arc<ServiceView>,
        by_id: &HashMap<&ClusterId, &MemberInput>,
        snapshot: &Snapshot,
        now: jiff::Timestamp,
        now_text: &str,
        outcome: &mut Part,
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
                _ => c.targets.as_ref().err().cloned(),
            }
        };
        let mut valid: Vec<&Candidate<'_>> = candidates
            .iter()
            .filter(|c| c.decision.exports() && invalid(c).is_none())
            .collect();
        valid.sort_by(|a, b| (a.created, &a.member.id).cmp(&(b.created, &b.member.id)));
        let constituents: Vec<Constituent<'_>> = valid.iter().map(|c| constituent(c)).collect();
        let mut import =
            (!constituents.is_empty()).then(|| self.import(key, &constituents, sources(&valid)));
        // Who sees which exports: with no scope anywhere, every member sees all of them.
        let sees = |m: &MemberInput| -> Vec<usize> {
            let reaches = |c: &Candidate<'_>| match &c.targets {
                Ok(Some(targets)) => targets.contains(&m.id),
                _ => true,
            };
            (0..valid.len()).filter(|&i| reaches(valid[i])).collect()
        };
        let scoped = valid.iter().any(|c| matches!(c.targets, Ok(Some(_))));
        let mut groups: BTreeMap<Vec<usize>, Option<Arc<Import>>> = BTreeMap::new();
        let mut seen_by: BTreeMap<ClusterId, Vec<usize>> = BTreeMap::new();
        if scoped && import.is_some() {
            for m in &snapshot.members {
                let seen = sees(m);
                if seen.is_empty() {
                    continue;
                }
                if !groups.contains_key(&seen) {
                    let own = (seen.len() < valid.len()).then(|| {
                        let subset: Vec<&Candidate<'_>> = seen.iter().map(|&i| valid[i]).collect();
                        let parts: Vec<Constituent<'_>> =
                            subset.iter().map(|c| constituent(c)).collect();
                        Arc::new(self.import(key, &parts, sources(&subset)))
                    });
                    groups.insert(seen.clone(), own);
                }
                seen_by.insert(m.id.clone(), seen);
            }
            if let Some(import) = import.as_mut() {
                import.consumers = Some(
                    seen_by
                        .iter()
                        .map(|(id, seen)| (id.clone(), groups[seen].clone()))
                        .collect(),
                );
            }
        }
        let consumers_of = |index: usize| -> Vec<&MemberInput> {
            let members = snapshot.members.iter();
            match scoped {
                false => members.collect(),
                true => members
                    .filter(|m| seen_by.get(&m.id).is_some_and(|s| s.contains(&index)))
                    .collect(),
            }
        };

        let exports = &mut outcome.exports;
        for c in &candidates {
            let has_export_object = c.user_export.is_some() || c.decision.exports();
            let problem = invalid(c);
            let decided = c.decision.to_string();
            let why = match (&problem, c.decision.exports()) {
                (Some((_, message)), true) => format!(
                    "not exported: {message} ({})",
                    decided.trim_start_matches("exported: ")
                ),
                _ => decided,
            };
            let exported = c.decision.exports() && problem.is_none();
            let index = valid.iter().position(|v| std::ptr::eq(*v, c));
            let consumers = index.map(consumers_of).unwrap_or_default();
            let mut conditions = Vec::new();
            let mut written = Vec::new();
            if has_export_object {
                let kind = if c.user_export.is_some() {
                    WriteKind::ServiceExportStatus
                } else {
                    WriteKind::ServiceExport
                };
                let previous = self.previous(&c.member.name, kind, &key.namespace, &key.name);
                let cond = |t: &str, ok: bool, reason: &str, message: String| {
                    Condition::new(t, ok, reason, message, previous.as_ref(), now_text)
                };
                match (&problem, &import, index) {
                    (Some((reason, message)), _, _) => {
                        conditions.push(cond("Valid", false, reason, message.clone()));
                        conditions.push(cond(
                            "Ready",
                            false,
                            "Failed",
                            format!("not exported: {message}"),
                        ));
                    }
                    (None, Some(import), Some(index)) => {
                        let scope = c
                            .scope
                            .as_ref()
                            .map(|s| format!(", to the members of {s}"))
                            .unwrap_or_default();
                        conditions.push(cond(
                            "Valid",
                            true,
                            "Valid",
                            format!("Service {key} is exported ({why}{scope})"),
                        ));
                        let (with, without): (Vec<&MemberInput>, Vec<&MemberInput>) = consumers
                            .iter()
                            .partition(|m| m.namespaces.contains_key(&key.namespace));
                        written = with.iter().map(|m| m.id.clone()).collect();
                        written.sort();
                        conditions.push(cond(
                            "Ready",
                            true,
                            "Exported",
                            ready_message(key, &consumers, &written, &without),
                        ));
                        // The conflicts this export takes part in: among the exports that
                        // reach each member it reaches.
                        let mut conflicts: Vec<&(crate::merge::ConflictReason, String)> =
                            match scoped {
                                false => import.merged.conflicts.iter().collect(),
                                true => groups
                                    .iter()
                                    .filter(|(seen, _)| seen.contains(&index))
                                    .flat_map(|(_, own)| {
                                        own.as_deref().unwrap_or(import).merged.conflicts.iter()
                                    })
                                    .collect(),
                            };
                        if scoped {
                            conflicts.sort();
                            conflicts.dedup();
                        }
                        let among = match scoped {
                            false => import.clusters.len(),
                            true => groups
                                .keys()
                                .filter(|seen| seen.contains(&index))
                                .flatten()
                                .collect::<BTreeSet<_>>()
                                .len(),
                        };
                        let message = if conflicts.is_empty() {
                            format!("no conflicts among the {among} export(s)")
                        } else {
                            conflicts
                                .iter()
                                .map(|(_, m)| m.as_str())
                                .collect::<Vec<_>>()
                                .join("; ")
                        };
                        let reason = match scoped {
                            false => import.merged.conflict_reason(),
                            true => {
                                let mut reasons: Vec<String> =
                                    conflicts.iter().map(|(r, _)| r.to_string()).collect();
                                reasons.dedup();
                                match reasons.is_empty() {
                                    true => "NoConflicts".to_string(),
                                    false => reasons.join(","),
                                }
                            }
                        };
                        conditions.push(cond("Conflict", !conflicts.is_empty(), &reason, message));
                    }
                    _ => unreachable!("a valid export always makes an import"),
                }
                let object = render::service_export(
                    key,
                    c.user_export.is_none(),
                    &c.created.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    &conditions,
                    &written,
                );
                outcome
                    .writes
                    .entry(c.member.name.clone())
                    .or_default()
                    .insert(
                        WriteKey::new(kind, &key.namespace, &key.name),
                        Arc::new(object.into()),
                    );
            }
            exports.insert(
                c.member.id.clone(),
                ExportInfo {
                    decision: c.decision.clone(),
                    why,
                    exported,
                    conditions,
                    scope: c.scope.clone(),
                    consumers: match exported && c.scope.is_some() {
                        true => consumers.iter().map(|m| m.id.clone()).collect(),
                        false => Vec::new(),
                    },
                },
            );
        }
        let Some(import) = import else { return };
        let whole = imported_slices(&import, &constituents);
        let mut own_slices: BTreeMap<&[usize], Vec<(WriteKey, Arc<Rendered>)>> = BTreeMap::new();
        for (seen, own) in &groups {
            if let Some(own) = own {
                let parts: Vec<Constituent<'_>> =
                    seen.iter().map(|&i| constituents[i].clone()).collect();
                own_slices.insert(seen, imported_slices(own, &parts));
            }
        }
        for member in snapshot
            .members
            .iter()
            .filter(|m| m.namespaces.contains_key(&key.namespace))
        {
            let (seen_import, slices) = match seen_by.get(&member.id) {
                _ if !scoped => (&import, &whole),
                None => continue,
                Some(seen) => match &groups[seen] {
                    None => (&import, &whole),
                    Some(own) => (&**own, &own_slices[seen.as_slice()]),
                },
            };
            self.write_import(member, seen_import, slices, now_text, outcome);
        }
        outcome.import = Some(import);
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
            consumers: None,
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
        slices: &[(WriteKey, Arc<Rendered>)],
        now: &str,
        outcome: &mut Part,
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
                previous.as_ref(),
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
                previous.as_ref(),
                now,
            )
        } else {
            Condition::new(
                "Ready",
                true,
                "Ready",
                "the ServiceImport is ready".into(),
                previous.as_ref(),
                now,
            )
        };
        let mut clusters = import.clusters.clone();
        clusters.sort();
        let writes = outcome.writes.entry(member.name.clone()).or_default();
        writes.insert(
            WriteKey::new(WriteKind::ServiceImport, &key.namespace, &key.name),
            Arc::new(
                render::service_import(
                    key,
                    &import.merged,
                    &import.ips,
                    &import.ip_families,
                    &clusters,
                    &ready,
                )
                .into(),
            ),
        );
        writes.extend(slices.iter().cloned());
    }
}

/// A valid export as the merge takes it.
fn constituent<'a>(c: &Candidate<'a>) -> Constituent<'a> {
    Constituent {
        cluster: &c.member.id,
        service: c
            .contribution
            .service
            .as_deref()
            .expect("valid exports have a Service"),
        endpoints: &c.contribution.endpoints,
        created: c.created,
        exported_labels: c.user_export.map_or(&EMPTY, |e| &e.exported_labels),
        exported_annotations: c.user_export.map_or(&EMPTY, |e| &e.exported_annotations),
    }
}

/// The endpoints of each of `valid`.
fn sources(valid: &[&Candidate<'_>]) -> BTreeMap<ClusterId, Arc<[Endpoint]>> {
    valid
        .iter()
        .map(|c| (c.member.id.clone(), c.contribution.endpoints.clone()))
        .collect()
}

/// The `Ready` message of a valid export: who it reaches, and where the ServiceImport is.
fn ready_message(
    key: &ServiceKey,
    consumers: &[&MemberInput],
    written: &[ClusterId],
    without: &[&MemberInput],
) -> String {
    let ids = |ms: &mut dyn Iterator<Item = &ClusterId>| {
        let mut v: Vec<&str> = ms.map(ClusterId::as_str).collect();
        v.sort_unstable();
        v.join(", ")
    };
    let to = ids(&mut consumers.iter().map(|m| &m.id));
    let mut message = format!("exported to {to}");
    if written.is_empty() {
        message.push_str(&format!(
            "; none of them has namespace {}, so no ServiceImport is written",
            key.namespace
        ));
    } else {
        message.push_str(&format!(
            "; ServiceImport {key} is in {}",
            ids(&mut written.iter())
        ));
    }
    if !without.is_empty() && !written.is_empty() {
        message.push_str(&format!(
            " ({} lack namespace {})",
            ids(&mut without.iter().map(|m| &m.id)),
            key.namespace
        ));
    }
    message
}

/// The imported EndpointSlices of an import, the same in every importing member: one per
/// source member and family, with the ports that source serves.
fn imported_slices(
    import: &Import,
    constituents: &[Constituent<'_>],
) -> Vec<(WriteKey, Arc<Rendered>)> {
    let key = &import.key;
    let mut out = Vec::new();
    for source in constituents {
        let ports = slice_ports(&import.merged, source);
        if ports.is_empty() {
            continue;
        }
        for family in &import.ip_families {
            let name = render::slice_name(key, source.cluster, *family, 0);
            let slice = ImportedSlice::new(
                key,
                &name,
                source.cluster,
                *family,
                ports.clone(),
                source.endpoints.clone(),
            );
            if slice.is_empty() {
                continue;
            }
            out.push((
                WriteKey::new(WriteKind::EndpointSlice, &key.namespace, &name),
                Arc::new(slice.into()),
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
                    scopes: registry.namespace_scopes(&m.name),
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
