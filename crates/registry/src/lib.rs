//! The registry: one deterministic state machine that merges every member's objects into the
//! ClusterSet view. It does no IO and knows neither Kubernetes' wire types nor gRPC.
//!
//! ```text
//!  SourceEvent{member, Reset | Changes}           (from manifest directories or API watches)
//!        │
//!        ▼
//!  Store per member ──► admission (ids unique, first admitted keeps its id)
//!        │                      │
//!        ▼                      ▼
//!  MemberService per (member, service)   recomputed only for what an event touched
//!        │
//!        ▼
//!  ServiceView per service ──► watch::Sender, woken only when the view changed
//!  Gateways per network    ──► watch::Sender
//! ```
//!
//! The same events applied in any order across members give the same view: every derived
//! value is a function of the stores, recomputed from scratch for the keys an event touches.

mod derive;
mod gateways;
mod hosts;
mod identity;
mod service_entry;
mod store;
mod topology;
mod view;
mod workloads;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use bowline_model::{
    Change, ClusterId, EventBody, MemberName, Network, Object, ObjectKind, RejectReason, Rejection,
    ServiceKey, SourceEvent, Strng, objects::PeerAuthentication,
};
use parking_lot::Mutex;
use tokio::sync::watch;
use tracing::warn;

use crate::{
    derive::Derived,
    store::{NsName, Store, Touched},
    topology::Localities,
    workloads::MemberContext,
};
pub use crate::{
    topology::{locality, network},
    view::{Admission, Gateway, Gateways, HostService, MemberService, MemberStatus, ServiceView},
};

/// A registry shared by the composition root, servers and admin.
///
/// The lock guards the whole state machine: it is taken for writing once per batch of source
/// events and for reading to take snapshots; it is never held across an `.await`.
pub type Shared = Arc<parking_lot::RwLock<Registry>>;

/// A configured member, as the registry needs it.
#[derive(Clone, Debug)]
pub struct MemberConfig {
    /// Unique configured name.
    pub name: MemberName,
    /// Configured id, used when the member has no `cluster.clusterset.k8s.io` ClusterProperty.
    pub id: Option<String>,
    /// Network of its endpoints unless a pod or namespace label says otherwise.
    pub network: Network,
}

/// What a batch of events changed, as published.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Services whose view changed (created, updated or removed).
    pub services: BTreeSet<ServiceKey>,
    /// Number of (member, service) contributions recomputed.
    pub recomputed: usize,
    /// The gateways changed.
    pub gateways: bool,
    /// The ServiceEntry hosts served under their own name changed.
    pub hosts: bool,
    /// A member's status (sync, admission, rejections) changed.
    pub members: bool,
    /// A member's PeerAuthentications changed.
    pub policies: bool,
}

/// Every admitted member's PeerAuthentications, by its id.
pub type Policies = BTreeMap<ClusterId, Arc<[PeerAuthentication]>>;

pub(crate) struct Member {
    pub config: MemberConfig,
    pub store: Store,
    pub synced: bool,
    pub source_error: Option<String>,
    /// Since when the source has been failing (the first error after it last read).
    pub stale_since: Option<jiff::Timestamp>,
    /// Kinds the member cannot serve (CRD missing), with what to do.
    pub missing: BTreeMap<ObjectKind, String>,
    /// Endpoints withdrawn after `staleEndpointTTL` of unreachability, until the next listing.
    pub withdrawn: bool,
    pub source_rejections: Vec<Rejection>,
    pub admission: Admission,
    /// Its id sources disagree (the first wins): what they say.
    pub id_disagreement: Option<String>,
    derived: BTreeMap<ServiceKey, Derived>,
    /// ServiceEntry hosts served under their own name.
    hosts: BTreeMap<String, Arc<HostService>>,
    /// The names whose endpoints refer to each pod and node. Most pods are in one name,
    /// held inline (at 100,000 endpoints a tree per pod took 37 MB, a vector per pod 3 MB).
    pod_refs: HashMap<NsName, Refs>,
    node_refs: HashMap<Strng, Refs>,
    /// The localities of its endpoints, one allocation each.
    localities: Mutex<Localities>,
}

/// The ClusterSet's state: members' objects in, service views and gateways out.
pub struct Registry {
    cluster_set: String,
    members: Vec<Member>,
    by_name: HashMap<MemberName, usize>,
    views: BTreeMap<ServiceKey, watch::Sender<Option<Arc<ServiceView>>>>,
    gateways: watch::Sender<Arc<Gateways>>,
    gateway_rejections: Vec<Rejection>,
    policies: Arc<Policies>,
    /// Counts applied batches: wakes controllers that derive from the whole state.
    generation: watch::Sender<u64>,
}

impl Registry {
    /// A registry for the ClusterSet `cluster_set` with the configured members, in order
    /// (the order breaks ties when two members claim one id at once).
    pub fn new(
        cluster_set: impl Into<String>,
        members: impl IntoIterator<Item = MemberConfig>,
    ) -> Self {
        let members: Vec<Member> = members
            .into_iter()
            .map(|config| Member {
                config,
                store: Store::default(),
                synced: false,
                source_error: None,
                stale_since: None,
                missing: BTreeMap::new(),
                withdrawn: false,
                source_rejections: Vec::new(),
                admission: Admission::Pending,
                id_disagreement: None,
                derived: BTreeMap::new(),
                hosts: BTreeMap::new(),
                pod_refs: HashMap::new(),
                node_refs: HashMap::new(),
                localities: Mutex::default(),
            })
            .collect();
        let by_name = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.config.name.clone(), i))
            .collect();
        Self {
            cluster_set: cluster_set.into(),
            members,
            by_name,
            views: BTreeMap::new(),
            gateways: watch::Sender::new(Arc::default()),
            gateway_rejections: Vec::new(),
            policies: Arc::default(),
            generation: watch::Sender::new(0),
        }
    }

    /// Applies one event.
    pub fn apply(&mut self, event: SourceEvent) -> Changes {
        self.apply_all([event])
    }

    /// Applies a batch of events together: views are recomputed and published once.
    pub fn apply_all(&mut self, events: impl IntoIterator<Item = SourceEvent>) -> Changes {
        let mut changes = Changes::default();
        let mut dirty: BTreeMap<usize, BTreeSet<ServiceKey>> = BTreeMap::new();
        for event in events {
            let Some(&i) = self.by_name.get(&event.member) else {
                warn!(member = %event.member, "event from an unknown member ignored");
                continue;
            };
            let keys = dirty.entry(i).or_default();
            let member = &mut self.members[i];
            match event.body {
                EventBody::Reset {
                    objects,
                    rejections,
                } => {
                    keys.extend(member.store.keys());
                    keys.extend(member.derived.keys().cloned());
                    member.store = Store::default();
                    let mut touched = Touched::default();
                    for object in objects {
                        member
                            .store
                            .apply(&object.key(), Some(object), &mut touched);
                    }
                    keys.extend(member.store.keys());
                    member.source_rejections = rejections;
                    member.synced = true;
                    member.source_error = None;
                    member.withdrawn = false;
                    changes.gateways = true;
                    changes.members = true;
                }
                EventBody::Changes {
                    changes: list,
                    rejections,
                } => {
                    let mut touched = Touched::default();
                    for change in list {
                        match change {
                            Change::Apply(object) => {
                                member
                                    .store
                                    .apply(&object.key(), Some(object), &mut touched)
                            }
                            Change::Delete(key) => member.store.apply(&key, None, &mut touched),
                        }
                    }
                    member.collect_dirty(touched, keys, &mut changes);
                    if let Some(rejections) = rejections {
                        changes.members |= member.source_rejections != rejections;
                        member.source_rejections = rejections;
                    }
                    changes.members |= member.source_error.take().is_some();
                    member.stale_since = None;
                }
                EventBody::SourceError(message) => {
                    warn!(member = %member.config.name, cluster = member.admission.id().map_or("-", |id| id.as_str()), "source failing, last known objects kept: {message}");
                    member.source_error = Some(message);
                    member.stale_since.get_or_insert_with(jiff::Timestamp::now);
                    changes.members = true;
                }
                EventBody::Missing(missing) => {
                    for kind in missing.keys() {
                        if !member.missing.contains_key(kind) {
                            warn!(member = %member.config.name, "{}", missing[kind]);
                        }
                    }
                    changes.members |= member.missing != missing;
                    member.missing = missing;
                }
                EventBody::Withdraw => {
                    if !member.withdrawn {
                        warn!(member = %member.config.name, cluster = member.admission.id().map_or("-", |id| id.as_str()), "member unreachable for longer than staleEndpointTTL: its endpoints are withdrawn until it is listed again");
                        member.withdrawn = true;
                        keys.extend(member.derived.keys().cloned());
                        changes.members = true;
                    }
                }
            }
        }
        for i in identity::reconcile(&mut self.members, &self.cluster_set) {
            let member = &self.members[i];
            let keys = dirty.entry(i).or_default();
            keys.extend(member.store.keys());
            keys.extend(member.derived.keys().cloned());
            changes.gateways = true;
            changes.members = true;
        }
        for &i in dirty.keys() {
            changes.hosts |= self.members[i].recompute_hosts();
        }
        let mut touched_views = BTreeSet::new();
        for (i, keys) in dirty {
            for key in keys {
                changes.recomputed += 1;
                if self.members[i].recompute(&key) {
                    touched_views.insert(key);
                }
            }
        }
        for key in touched_views {
            if self.publish(&key) {
                changes.services.insert(key);
            }
        }
        if changes.gateways {
            changes.gateways = self.publish_gateways();
        }
        // Resets and admission changes move policies too (they also mark gateways).
        if changes.policies || changes.gateways || changes.members {
            changes.policies = self.publish_policies();
        }
        self.generation.send_modify(|g| *g += 1);
        changes
    }

    /// The ServiceEntry hosts served under their own name, by member then host.
    pub fn host_services(&self) -> Vec<Arc<HostService>> {
        self.members
            .iter()
            .flat_map(|m| m.hosts.values().cloned())
            .collect()
    }

    /// Wakes on every applied batch, whatever it changed (namespaces and labels included).
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn publish(&mut self, key: &ServiceKey) -> bool {
        let members: BTreeMap<_, _> = self
            .members
            .iter()
            .filter_map(|m| Some((m.admission.id()?.clone(), m.derived.get(key)?.view.clone())))
            .collect();
        let next = (!members.is_empty()).then(|| {
            Arc::new(ServiceView {
                key: key.clone(),
                members,
            })
        });
        let sender = self
            .views
            .entry(key.clone())
            .or_insert_with(|| watch::Sender::new(None));
        let changed = sender.send_if_modified(|current| {
            let differs = *current != next;
            if differs {
                current.clone_from(&next);
            }
            differs
        });
        if next.is_none() && sender.receiver_count() == 0 {
            self.views.remove(key);
        }
        changed
    }

    fn publish_policies(&mut self) -> bool {
        let policies: Policies = self
            .members
            .iter()
            .filter_map(|m| {
                let id = m.admission.id()?.clone();
                let list: Arc<[PeerAuthentication]> =
                    m.store.peer_authentications.values().cloned().collect();
                Some((id, list))
            })
            .filter(|(_, list)| !list.is_empty())
            .collect();
        if *self.policies == policies {
            return false;
        }
        self.policies = Arc::new(policies);
        true
    }

    /// Every admitted member's PeerAuthentications.
    pub fn peer_authentications(&self) -> Arc<Policies> {
        self.policies.clone()
    }

    fn publish_gateways(&mut self) -> bool {
        let (gateways, rejections) = gateways::derive(&self.members);
        self.gateway_rejections = rejections;
        self.gateways.send_if_modified(|current| {
            let differs = **current != gateways;
            if differs {
                *current = Arc::new(gateways);
            }
            differs
        })
    }

    /// The ClusterSet's name.
    pub fn cluster_set(&self) -> &str {
        &self.cluster_set
    }

    /// The current view of a service, if any member has something of that name.
    pub fn service(&self, key: &ServiceKey) -> Option<Arc<ServiceView>> {
        self.views.get(key).and_then(|tx| tx.borrow().clone())
    }

    /// Every service view, ordered by key.
    pub fn services(&self) -> Vec<Arc<ServiceView>> {
        self.views
            .values()
            .filter_map(|tx| tx.borrow().clone())
            .collect()
    }

    /// Subscribes to one service's view; the receiver wakes only when that view changes.
    pub fn subscribe(&mut self, key: &ServiceKey) -> watch::Receiver<Option<Arc<ServiceView>>> {
        self.views
            .entry(key.clone())
            .or_insert_with(|| watch::Sender::new(None))
            .subscribe()
    }

    /// The current gateways.
    pub fn gateways(&self) -> Arc<Gateways> {
        self.gateways.borrow().clone()
    }

    /// Subscribes to the gateways.
    pub fn subscribe_gateways(&self) -> watch::Receiver<Arc<Gateways>> {
        self.gateways.subscribe()
    }

    /// Every member's status, in configuration order.
    pub fn members(&self) -> Vec<MemberStatus> {
        self.members
            .iter()
            .map(|m| MemberStatus {
                name: m.config.name.clone(),
                admission: m.admission.clone(),
                id_disagreement: m.id_disagreement.clone(),
                network: m.config.network.clone(),
                synced: m.synced,
                source_error: m.source_error.clone(),
                stale: m.source_error.is_some(),
                stale_since: m.stale_since.filter(|_| m.source_error.is_some()),
                withdrawn: m.withdrawn,
                missing: m.missing.clone(),
                objects: m.store.counts(),
                endpoints: m.derived.values().map(|d| d.view.endpoints.len()).sum(),
                rejected: m.source_rejections.len()
                    + service_entry::rejections(&m.config.name, &m.store).len(),
            })
            .collect()
    }

    /// Everything refused: documents the sources skipped, ServiceEntry hosts Bowline does not
    /// serve, members not admitted, and gateway Services that cannot be used.
    pub fn rejections(&self) -> Vec<Rejection> {
        let mut all: Vec<Rejection> = self
            .members
            .iter()
            .flat_map(|m| {
                let entries = service_entry::rejections(&m.config.name, &m.store);
                m.source_rejections.iter().cloned().chain(entries)
            })
            .collect();
        for member in &self.members {
            if let Admission::Refused { reason, message } = &member.admission {
                let object = matches!(
                    reason,
                    RejectReason::InvalidClusterId
                        | RejectReason::DuplicateClusterId
                        | RejectReason::ConflictingClusterProperty
                )
                .then(identity::id_property_key)
                .filter(|key| member.store.properties.contains_key(&key.name));
                all.push(Rejection {
                    member: member.config.name.clone(),
                    origin: String::new(),
                    object,
                    reason: *reason,
                    message: message.clone(),
                });
            }
        }
        all.extend(self.gateway_rejections.iter().cloned());
        all
    }

    /// A member's namespaces and their labels.
    pub fn namespaces(&self, member: &MemberName) -> BTreeMap<Strng, bowline_model::Labels> {
        let Some(&i) = self.by_name.get(member) else {
            return BTreeMap::new();
        };
        self.members[i]
            .store
            .namespaces
            .iter()
            .map(|(name, ns)| (name.clone(), ns.meta.labels.clone()))
            .collect()
    }

    /// A member's namespaces that carry an export-scope annotation, with those annotations
    /// only ([`bowline_model::scope`]).
    pub fn namespace_scopes(&self, member: &MemberName) -> BTreeMap<Strng, bowline_model::Labels> {
        use bowline_model::scope::{EXPORT_TO, EXPORT_TO_SELECTOR};
        let Some(&i) = self.by_name.get(member) else {
            return BTreeMap::new();
        };
        let namespaces = self.members[i].store.namespaces.iter();
        namespaces
            .filter_map(|(name, ns)| {
                let scope: bowline_model::Labels = ns
                    .meta
                    .annotations
                    .iter()
                    .filter(|(k, _)| *k == EXPORT_TO || *k == EXPORT_TO_SELECTOR)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                (!scope.is_empty()).then(|| (name.clone(), scope))
            })
            .collect()
    }

    /// The address families a member is seen to use: those of its Services' cluster IPs and
    /// `ipFamilies` and of its endpoints' addresses. Empty when nothing says.
    pub fn families(&self, member: &MemberName) -> BTreeSet<bowline_model::IpFamily> {
        let Some(&i) = self.by_name.get(member) else {
            return BTreeSet::new();
        };
        let store = &self.members[i].store;
        let services = store
            .services
            .values()
            .flat_map(|s| s.ip_families.iter().copied());
        let endpoints = store.slices.values().filter_map(|s| match s.address_type {
            bowline_model::objects::AddressType::IPv4 if !s.endpoints.is_empty() => {
                Some(bowline_model::IpFamily::IPv4)
            }
            bowline_model::objects::AddressType::IPv6 if !s.endpoints.is_empty() => {
                Some(bowline_model::IpFamily::IPv6)
            }
            _ => None,
        });
        services.chain(endpoints).collect()
    }

    /// The workload selectors in `namespace` of `member`: each Service's `selector` and each
    /// ServiceEntry's `workloadSelector`, as `(kind, name, labels)`. Reads that namespace only
    /// and copies no object (the VM registration checks proxies' labels against them).
    pub fn workload_selectors(
        &self,
        member: &MemberName,
        namespace: &str,
    ) -> Vec<(ObjectKind, Strng, bowline_model::Labels)> {
        let Some(&i) = self.by_name.get(member) else {
            return Vec::new();
        };
        let s = &self.members[i].store;
        let services = s
            .services
            .range(ServiceKey::new(namespace, "")..)
            .take_while(|(k, _)| &*k.namespace == namespace)
            .filter_map(|(k, svc)| {
                let labels = svc.selector.clone()?;
                Some((ObjectKind::Service, Strng::from(&*k.name), labels))
            });
        let entries = s
            .service_entries
            .range((Strng::from(namespace), Strng::from(""))..)
            .take_while(|((ns, _), _)| &**ns == namespace)
            .filter_map(|((_, name), entry)| {
                let labels = entry.workload_selector.clone()?;
                Some((ObjectKind::ServiceEntry, name.clone(), labels))
            });
        services.chain(entries).collect()
    }

    /// The objects of one kind a member holds (for debugging and later controllers).
    pub fn objects(&self, member: &MemberName, kind: ObjectKind) -> Vec<Object> {
        let Some(&i) = self.by_name.get(member) else {
            return Vec::new();
        };
        let s = &self.members[i].store;
        match kind {
            ObjectKind::Namespace => s
                .namespaces
                .values()
                .cloned()
                .map(Object::Namespace)
                .collect(),
            ObjectKind::Node => s.nodes.values().cloned().map(Object::Node).collect(),
            ObjectKind::Pod => s.pods.values().cloned().map(Object::Pod).collect(),
            ObjectKind::Service => s
                .services
                .values()
                .map(|o| Object::Service(o.clone()))
                .collect(),
            ObjectKind::EndpointSlice => s
                .slices
                .values()
                .cloned()
                .map(Object::EndpointSlice)
                .collect(),
            ObjectKind::ServiceExport => s
                .exports
                .values()
                .map(|o| Object::ServiceExport((**o).clone()))
                .collect(),
            ObjectKind::ServiceImport => s
                .imports
                .values()
                .map(|o| Object::ServiceImport(Box::new((**o).clone())))
                .collect(),
            ObjectKind::ClusterProperty => s
                .properties
                .values()
                .cloned()
                .map(Object::ClusterProperty)
                .collect(),
            ObjectKind::WorkloadEntry => s
                .workload_entries
                .values()
                .map(|o| Object::WorkloadEntry(Box::new(o.clone())))
                .collect(),
            ObjectKind::WorkloadGroup => s
                .workload_groups
                .values()
                .map(|o| Object::WorkloadGroup(Box::new(o.clone())))
                .collect(),
            ObjectKind::ServiceEntry => s
                .service_entries
                .values()
                .map(|o| Object::ServiceEntry(Box::new(o.clone())))
                .collect(),
            ObjectKind::PeerAuthentication => s
                .peer_authentications
                .values()
                .map(|o| Object::PeerAuthentication(Box::new(o.clone())))
                .collect(),
            ObjectKind::ClusterClaim => s
                .claims
                .values()
                .cloned()
                .map(Object::ClusterClaim)
                .collect(),
        }
    }
}

impl Member {
    /// Turns what a batch of changes touched into the services to recompute.
    fn collect_dirty(
        &self,
        touched: Touched,
        keys: &mut BTreeSet<ServiceKey>,
        changes: &mut Changes,
    ) {
        keys.extend(touched.keys);
        for ns in &touched.namespaces {
            keys.extend(self.store.keys_in(ns));
        }
        for pod in &touched.pods {
            keys.extend(
                self.pod_refs
                    .get(pod)
                    .into_iter()
                    .flat_map(Refs::iter)
                    .cloned(),
            );
        }
        for node in &touched.nodes {
            keys.extend(
                self.node_refs
                    .get(node)
                    .into_iter()
                    .flat_map(Refs::iter)
                    .cloned(),
            );
        }
        changes.gateways |= touched.gateways;
        changes.members |= touched.identity || touched.rejections;
        changes.policies |= touched.policies;
    }

    /// Recomputes the ServiceEntry hosts this member serves under their own name; true when
    /// they changed. Only members holding ServiceEntries (or that held such hosts) do any
    /// work; the set is small (VMs), so it is derived whole.
    fn recompute_hosts(&mut self) -> bool {
        if self.store.service_entries.is_empty() && self.hosts.is_empty() {
            return false;
        }
        let mut next = BTreeMap::new();
        if let Some(id) = self.admission.id().filter(|_| !self.withdrawn) {
            let cx = MemberContext {
                id,
                default_network: &self.config.network,
                store: &self.store,
                localities: &self.localities,
                withdrawn: self.withdrawn,
            };
            for (host, entries) in service_entry::external_hosts(&self.store) {
                let namespace = entries[0].meta.namespace.clone();
                let key = ServiceKey::new(namespace.clone(), host.as_str());
                let Some(service) = service_entry::stand_in(&key, &entries) else {
                    continue;
                };
                let labels = self
                    .store
                    .namespaces
                    .get(&namespace)
                    .map(|n| &n.meta.labels);
                let endpoints = service_entry::endpoints(&cx, &key, &entries, labels, &[]);
                let view = HostService {
                    host: host.clone(),
                    cluster: id.clone(),
                    service: Arc::new(service),
                    service_entries: entries.iter().map(|e| e.meta.name.clone()).collect(),
                    endpoints: endpoints.into(),
                };
                let view = match self.hosts.get(&host) {
                    Some(previous) if **previous == view => previous.clone(),
                    _ => Arc::new(view),
                };
                next.insert(host, view);
            }
        }
        let changed = next != self.hosts;
        self.hosts = next;
        changed
    }

    /// Recomputes this member's contribution to `key`; true when it changed.
    fn recompute(&mut self, key: &ServiceKey) -> bool {
        let next = self.admission.id().and_then(|id| {
            let cx = MemberContext {
                id,
                default_network: &self.config.network,
                store: &self.store,
                localities: &self.localities,
                withdrawn: self.withdrawn,
            };
            derive::member_service(&cx, key)
        });
        let previous = self.derived.remove(key);
        let changed = previous.as_ref().map(|d| &d.view) != next.as_ref().map(|d| &d.view);
        let same_deps = matches!((&previous, &next), (Some(p), Some(n)) if p.pods == n.pods && p.nodes == n.nodes);
        if !same_deps {
            if let Some(previous) = &previous {
                for pod in &previous.pods {
                    unlink(&mut self.pod_refs, pod, key);
                }
                for node in &previous.nodes {
                    unlink(&mut self.node_refs, node, key);
                }
            }
            if let Some(next) = &next {
                for pod in &next.pods {
                    link(&mut self.pod_refs, pod, key);
                }
                for node in &next.nodes {
                    link(&mut self.node_refs, node, key);
                }
            }
        }
        if let Some(next) = next {
            self.derived.insert(key.clone(), next);
        }
        changed
    }
}

/// The names referring to one pod or node: nearly always one, held without an allocation.
#[derive(Debug)]
enum Refs {
    One(ServiceKey),
    Many(Vec<ServiceKey>),
}

impl Refs {
    fn iter(&self) -> std::slice::Iter<'_, ServiceKey> {
        match self {
            Refs::One(key) => std::slice::from_ref(key).iter(),
            Refs::Many(keys) => keys.iter(),
        }
    }

    fn add(&mut self, key: &ServiceKey) {
        match self {
            Refs::One(one) if one == key => {}
            Refs::One(one) => *self = Refs::Many(vec![one.clone(), key.clone()]),
            Refs::Many(keys) if keys.contains(key) => {}
            Refs::Many(keys) => keys.push(key.clone()),
        }
    }

    /// Removes `key`; true when no name is left.
    fn remove(&mut self, key: &ServiceKey) -> bool {
        match self {
            Refs::One(one) => one == key,
            Refs::Many(keys) => {
                keys.retain(|k| k != key);
                if let [last] = keys.as_slice() {
                    *self = Refs::One(last.clone());
                    return false;
                }
                keys.is_empty()
            }
        }
    }
}

fn link<K: std::hash::Hash + Eq + Clone>(refs: &mut HashMap<K, Refs>, at: &K, key: &ServiceKey) {
    match refs.get_mut(at) {
        Some(keys) => keys.add(key),
        None => {
            refs.insert(at.clone(), Refs::One(key.clone()));
        }
    }
}

fn unlink<K: std::hash::Hash + Eq>(refs: &mut HashMap<K, Refs>, at: &K, key: &ServiceKey) {
    if refs.get_mut(at).is_some_and(|keys| keys.remove(key)) {
        refs.remove(at);
    }
}

#[cfg(test)]
mod refs_tests {
    use super::*;

    fn names(refs: &HashMap<&str, Refs>, at: &str) -> Vec<String> {
        refs.get(at)
            .into_iter()
            .flat_map(Refs::iter)
            .map(|k| k.name.to_string())
            .collect()
    }

    #[test]
    fn references_are_added_once_and_removed_to_nothing() {
        let (a, b) = (ServiceKey::new("ns", "a"), ServiceKey::new("ns", "b"));
        let mut refs: HashMap<&str, Refs> = HashMap::new();
        link(&mut refs, &"pod", &a);
        link(&mut refs, &"pod", &a);
        assert_eq!(names(&refs, "pod"), ["a"]);
        link(&mut refs, &"pod", &b);
        link(&mut refs, &"pod", &b);
        assert_eq!(names(&refs, "pod"), ["a", "b"]);
        unlink(&mut refs, &"pod", &a);
        assert!(matches!(refs["pod"], Refs::One(_)), "back to inline");
        assert_eq!(names(&refs, "pod"), ["b"]);
        unlink(&mut refs, &"pod", &a);
        assert_eq!(
            names(&refs, "pod"),
            ["b"],
            "removing an absent name changes nothing"
        );
        unlink(&mut refs, &"pod", &b);
        assert!(
            !refs.contains_key("pod"),
            "no entry is left for an unreferenced pod"
        );
    }
}
