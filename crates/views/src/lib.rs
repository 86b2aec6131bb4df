//! The views stage: from one registry read per batch, and the MCS outcome computed from that
//! same read, one immutable [`ClusterSet`] snapshot that every server reads.
//!
//! ```text
//!  registry ──Input::read (one read lock: Arcs only)──┬──► MCS controller ──► Outcome
//!                                                     │                         │
//!                                                     ▼                         ▼
//!                                          Views::next(input, outcome) ──► Arc<ClusterSet>
//!                                                                       version, Changed,
//!                                                                       a log of recent ones
//!                         ┌──────────────────────────┬──────────────────────────┤
//!                         ▼                          ▼                          ▼
//!                  xds (per-key caches)      dns (per-name answers)       admin (/debug)
//! ```
//!
//! The stage is pure and synchronous. What changed is found by pointer: the registry keeps a
//! service's `Arc` while its view is unchanged and the controller keeps an import's while it
//! is equal, so comparing two snapshots costs one pointer comparison per name. Servers that
//! skipped snapshots ask [`ClusterSet::changes_since`] for everything since the one they
//! last saw; `None` means rebuild everything.
//!
//! The servers depend on this crate and `model` only: the types they read are re-exported
//! here.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::Arc,
    time::Instant,
};

pub use bowline_mcs::{ExportInfo, Import, MemberInput, MemberWrites, Outcome};
use bowline_model::{ClusterId, Rejection, ServiceKey};
pub use bowline_registry::{
    Admission, Gateway, Gateways, HostService, MemberService, MemberStatus, Policies, ServiceView,
};

/// How many snapshots' changes each snapshot remembers for servers that skipped some.
const LOG: usize = 64;

/// What changed from one snapshot to the next.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changed {
    /// Services whose view, import or export decisions changed (appeared or went too).
    pub services: BTreeSet<ServiceKey>,
    /// The east-west gateways changed.
    pub gateways: bool,
    /// The ServiceEntry hosts served under their own name changed.
    pub hosts: bool,
    /// A member's status, namespaces or families changed.
    pub members: bool,
    /// A member's PeerAuthentications changed.
    pub policies: bool,
}

impl Changed {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && !self.gateways && !self.hosts && !self.members && !self.policies
    }

    fn extend(&mut self, other: &Changed) {
        self.services.extend(other.services.iter().cloned());
        self.gateways |= other.gateways;
        self.hosts |= other.hosts;
        self.members |= other.members;
        self.policies |= other.policies;
    }
}

/// The ClusterSet as every server sees it: immutable, cheap to clone (every part is shared).
#[derive(Clone, Debug, Default)]
pub struct ClusterSet {
    /// The ClusterSet's name (`clusterSet`).
    pub name: Arc<str>,
    /// Increases with every snapshot published (0: none yet).
    pub version: u64,
    /// What changed since the snapshot before this one.
    pub changed: Arc<Changed>,
    /// Changes of the snapshots before, newest last, as `(version, changed)`.
    log: Arc<VecDeque<(u64, Arc<Changed>)>>,
    /// Service views, by namespace and name.
    pub services: Arc<BTreeMap<ServiceKey, Arc<ServiceView>>>,
    /// The MCS outcome computed from the same read: imports, export decisions, writes.
    pub outcome: Outcome,
    /// East-west gateways per network.
    pub gateways: Arc<Gateways>,
    /// ServiceEntry hosts served under their own name, to the proxies of their member.
    pub hosts: Arc<[Arc<HostService>]>,
    /// Every admitted member's PeerAuthentications (the mTLS mode of its sidecars' inbound
    /// listeners).
    pub policies: Arc<Policies>,
    /// Every member's status, in configuration order.
    pub members: Arc<[MemberStatus]>,
    /// The admitted members with their namespaces and families, in configuration order.
    pub admitted: Arc<[MemberInput]>,
    /// Everything refused.
    pub rejections: Arc<[Rejection]>,
    /// Every member completed its first listing.
    pub synced: bool,
    /// Bowline is still starting: this snapshot was built before every member's first
    /// listing was in and the MCS outcome computed from all of them (or the grace for it
    /// passed). It is incomplete, and serving it would make a proxy drop what it was last
    /// given, so the xDS server holds requests until a snapshot that is not starting.
    pub starting: bool,
    /// When it was published (push latency is measured from here).
    pub published: Option<Instant>,
}

impl ClusterSet {
    /// The snapshot before the pipeline's first: empty and [`starting`](Self::starting), so
    /// that no proxy is served an empty ClusterSet.
    pub fn before_start() -> Self {
        Self {
            starting: true,
            ..Self::default()
        }
    }

    /// Everything that changed after snapshot `version` up to this one; `None` when this
    /// snapshot no longer remembers (or `version` is not older): rebuild everything.
    pub fn changes_since(&self, version: u64) -> Option<Changed> {
        if version >= self.version || version == 0 {
            return None;
        }
        if version + 1 == self.version {
            return Some((*self.changed).clone());
        }
        let oldest = self.log.front().map_or(self.version, |(v, _)| *v);
        if version + 1 < oldest {
            return None;
        }
        let mut all = Changed::default();
        for (_, changed) in self.log.iter().filter(|(v, _)| *v > version) {
            all.extend(changed);
        }
        all.extend(&self.changed);
        Some(all)
    }

    /// This snapshot under another version, remembering no earlier changes (tests and
    /// benchmarks that build snapshots from scratch and publish them in their own order:
    /// `changed` of a snapshot from scratch names everything).
    pub fn at_version(mut self, version: u64) -> Self {
        self.version = version;
        self.log = Arc::default();
        self
    }

    /// A service's view.
    pub fn service(&self, key: &ServiceKey) -> Option<&Arc<ServiceView>> {
        self.services.get(key)
    }

    /// The imported services.
    pub fn imports(&self) -> &BTreeMap<ServiceKey, Arc<Import>> {
        &self.outcome.imports
    }

    /// `key`'s import as the proxies and DNS clients of member `member` see it: `None` when
    /// no export of the name reaches that member. Without a member (proxies that name
    /// none, east-west gateways, the shared DNS listener): the import of every export.
    pub fn import_for(&self, key: &ServiceKey, member: Option<&str>) -> Option<&Import> {
        let import = self.outcome.imports.get(key)?;
        match member {
            Some(member) => import.for_member(member),
            None => Some(import),
        }
    }

    /// Every import as member `member` sees it (see [`Self::import_for`]), sharing the
    /// controller's `Arc`s: what a server answering for that member alone serves.
    pub fn imports_for(&self, member: &str) -> BTreeMap<ServiceKey, Arc<Import>> {
        let imports = self.outcome.imports.iter();
        imports
            .filter_map(|(key, import)| Some((key.clone(), Import::shared_for(import, member)?)))
            .collect()
    }

    /// Per service and member: exported or not, and why.
    pub fn exports(&self) -> &BTreeMap<ServiceKey, Arc<BTreeMap<ClusterId, ExportInfo>>> {
        &self.outcome.exports
    }

    /// Namespaces that exist in some admitted member.
    pub fn namespaces(&self) -> BTreeSet<&str> {
        self.admitted
            .iter()
            .flat_map(|m| m.namespaces.keys().map(|n| &**n))
            .collect()
    }

    /// The admitted member with cluster id `id`.
    pub fn member(&self, id: &ClusterId) -> Option<&MemberInput> {
        self.admitted.iter().find(|m| &m.id == id)
    }
}

/// Everything a snapshot is made of, taken from the registry under one read lock (shared
/// values only) so that the MCS outcome and the snapshot pair the same state.
#[derive(Clone, Debug, Default)]
pub struct Input {
    /// The ClusterSet's name.
    pub name: Arc<str>,
    /// The MCS controller's input (admitted members, service views, pending listings).
    pub mcs: bowline_mcs::Snapshot,
    /// Gateways.
    pub gateways: Arc<Gateways>,
    /// ServiceEntry hosts.
    pub hosts: Vec<Arc<HostService>>,
    /// PeerAuthentications.
    pub policies: Arc<Policies>,
    /// Member statuses.
    pub members: Vec<MemberStatus>,
    /// Rejections.
    pub rejections: Vec<Rejection>,
}

impl Input {
    /// Reads the registry once.
    pub fn read(registry: &bowline_registry::Registry) -> Self {
        let members = registry.members();
        Self {
            name: registry.cluster_set().into(),
            mcs: bowline_mcs::Snapshot::from_registry(registry),
            gateways: registry.gateways(),
            hosts: registry.host_services(),
            policies: registry.peer_authentications(),
            rejections: registry.rejections(),
            members,
        }
    }
}

/// The stage: remembers the last snapshot to tell what changed and to keep what did not.
#[derive(Debug, Default)]
pub struct Views {
    last: Arc<ClusterSet>,
    starting: bool,
}

impl Views {
    /// A stage whose snapshots say they are [`starting`](ClusterSet::starting) until
    /// [`started`](Self::started) is called (the pipeline at start-up; `default()` builds
    /// complete snapshots from the first).
    pub fn starting() -> Self {
        Self {
            last: Arc::default(),
            starting: true,
        }
    }

    /// From the next snapshot on, snapshots are complete.
    pub fn started(&mut self) {
        self.starting = false;
    }

    /// The last snapshot built.
    pub fn last(&self) -> &Arc<ClusterSet> {
        &self.last
    }

    /// The next snapshot, from one registry read and the outcome computed from it. Parts
    /// equal to the last snapshot's keep its `Arc`s.
    pub fn next(&mut self, input: Input, outcome: Outcome) -> Arc<ClusterSet> {
        let last = &self.last;
        let outcome = keep_equal(outcome, &last.outcome);
        let services: BTreeMap<ServiceKey, Arc<ServiceView>> = input
            .mcs
            .services
            .iter()
            .map(|v| (v.key.clone(), v.clone()))
            .collect();
        let mut changed = Changed::default();
        changed_keys(&services, &last.services, &mut changed.services);
        changed_keys(
            &outcome.imports,
            &last.outcome.imports,
            &mut changed.services,
        );
        changed_keys(
            &outcome.exports,
            &last.outcome.exports,
            &mut changed.services,
        );
        changed.gateways =
            !Arc::ptr_eq(&input.gateways, &last.gateways) && *input.gateways != *last.gateways;
        let hosts: Arc<[Arc<HostService>]> = if same_list(&input.hosts, &last.hosts) {
            last.hosts.clone()
        } else {
            changed.hosts = true;
            input.hosts.into()
        };
        changed.policies =
            !Arc::ptr_eq(&input.policies, &last.policies) && *input.policies != *last.policies;
        let policies = if changed.policies {
            input.policies
        } else {
            last.policies.clone()
        };
        let members = share(input.members, &last.members, &mut changed.members);
        let admitted = share(input.mcs.members, &last.admitted, &mut changed.members);
        let mut unchanged = false;
        let rejections = share(input.rejections, &last.rejections, &mut unchanged);
        let mut log = (*last.log).clone();
        if last.version > 0 {
            log.push_back((last.version, last.changed.clone()));
            while log.len() > LOG {
                log.pop_front();
            }
        }
        let name = if *input.name == *last.name {
            last.name.clone()
        } else {
            input.name
        };
        let next = ClusterSet {
            name,
            version: last.version + 1,
            changed: Arc::new(changed),
            log: Arc::new(log),
            services: Arc::new(services),
            outcome,
            gateways: input.gateways,
            hosts,
            policies,
            synced: members.iter().all(|m| m.synced),
            starting: self.starting,
            members,
            admitted,
            rejections,
            published: Some(Instant::now()),
        };
        self.last = Arc::new(next);
        self.last.clone()
    }
}

/// The snapshot built from scratch out of one registry state and its outcome (tests, and
/// what every incremental snapshot must equal).
pub fn from_scratch(registry: &bowline_registry::Registry, outcome: Outcome) -> Arc<ClusterSet> {
    Views::default().next(Input::read(registry), outcome)
}

/// Keys whose values are not the same `Arc` in `new` and `old`, or are in only one.
fn changed_keys<V>(
    new: &BTreeMap<ServiceKey, Arc<V>>,
    old: &BTreeMap<ServiceKey, Arc<V>>,
    out: &mut BTreeSet<ServiceKey>,
) {
    let mut a = new.iter().peekable();
    let mut b = old.iter().peekable();
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => return,
            (Some((k, _)), None) => {
                out.insert((*k).clone());
                a.next();
            }
            (None, Some((k, _))) => {
                out.insert((*k).clone());
                b.next();
            }
            (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    out.insert((*ka).clone());
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    out.insert((*kb).clone());
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if !Arc::ptr_eq(va, vb) {
                        out.insert((*ka).clone());
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
}

fn same_list<T>(a: &[Arc<T>], b: &[Arc<T>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y))
}

/// `new` as a shared list, or `old` when equal (and `changed` set otherwise).
fn share<T: PartialEq>(new: Vec<T>, old: &Arc<[T]>, changed: &mut bool) -> Arc<[T]> {
    if *new == **old {
        old.clone()
    } else {
        *changed = true;
        new.into()
    }
}

/// The outcome with the `Arc`s of the last one wherever the values are equal (a consumer's
/// outcome is computed afresh every time; the controller's keeps them itself).
fn keep_equal(mut outcome: Outcome, last: &Outcome) -> Outcome {
    for (key, import) in outcome.imports.iter_mut() {
        if let Some(old) = last.imports.get(key)
            && !Arc::ptr_eq(old, import)
            && **old == **import
        {
            *import = old.clone();
        }
    }
    for (key, exports) in outcome.exports.iter_mut() {
        if let Some(old) = last.exports.get(key)
            && !Arc::ptr_eq(old, exports)
            && **old == **exports
        {
            *exports = old.clone();
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ServiceKey {
        ServiceKey::new("ns", name)
    }

    #[test]
    fn changes_since_accumulates_skipped_snapshots_and_forgets_old_ones() {
        let mut views = Views::default();
        let mut versions = Vec::new();
        for name in ["a", "b", "c"] {
            let mut input = Input::default();
            input.mcs.services = vec![Arc::new(ServiceView {
                key: key(name),
                members: BTreeMap::new(),
            })];
            versions.push(views.next(input, Outcome::default()));
        }
        let last = versions.last().unwrap();
        assert_eq!(last.version, 3);
        assert_eq!(
            last.changes_since(2).unwrap().services,
            [key("b"), key("c")].into()
        );
        assert_eq!(
            last.changes_since(1).unwrap().services,
            [key("a"), key("b"), key("c")].into()
        );
        assert_eq!(last.changes_since(0), None, "nothing seen: rebuild");
        assert_eq!(last.changes_since(3), None);

        for _ in 0..LOG + 2 {
            views.next(Input::default(), Outcome::default());
        }
        let newest = views.last();
        assert!(newest.changes_since(newest.version - 1).unwrap().is_empty());
        assert_eq!(newest.changes_since(2), None, "older than the log");
    }
}
