//! Resources cached per proxy class, type and name across snapshots, regenerated only where a
//! snapshot's changes reach them, and shared (encoded once) by every stream of that class.
//!
//! ```text
//!  snapshot N ── changes_since(N-1), compared with N-1 where needed ──► Invalidation
//!        EDS: the cluster names of the changed services (old and new ports), of the
//!             ServiceEntry hosts if they changed; every EDS name if the gateways did
//!        CDS/LDS/RDS: the classes whose host ports (hosts, port numbers, names, protocols)
//!             changed: every class if an import's ports did, else the members whose own
//!             Services' or ServiceEntry hosts' ports (or PeerAuthentications) did;
//!             endpoint-only changes reach none
//!        │
//!        ├──► drops the invalidated entries of every class (regenerated when next asked for)
//!        └──► kept in a log, so that a stream asks "what touched my class since version V"
//!             and diffs only the types and names touched
//! ```

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque, hash_map::DefaultHasher},
    hash::{Hash, Hasher},
    net::IpAddr,
    sync::Arc,
};

use bowline_model::{Network, ServiceKey};
use bytes::Bytes;
use envoy_types::pb::{envoy::service::discovery::v3::DiscoveryResponse, google::protobuf::Any};
use parking_lot::Mutex;
use prost::Message;

use bowline_views::{ClusterSet, Import, ServiceView};

use crate::{
    eds::ProxyFamilies,
    node::{ProxyInfo, ProxyKind},
    resources::{generate, type_url},
    wire,
};

/// How many snapshot transitions the cache remembers for streams that skipped snapshots.
const LOG: usize = 64;

/// What a proxy's resources depend on: proxies that agree on it are served the same.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Class {
    kind: ProxyKind,
    member: Option<String>,
    network: Network,
    families: ProxyFamilies,
    listen_address: IpAddr,
    gateway_port: Option<u16>,
    sds: bool,
    mesh: Arc<crate::security::Mesh>,
    /// Per sidecar (its own address) when it has inbound listeners.
    inbound: Option<Arc<crate::node::Inbound>>,
    /// A proxyless gRPC server with certificates: whose PeerAuthentications apply.
    subject: Option<(Option<String>, bowline_model::Labels)>,
}

impl Class {
    fn of(proxy: &ProxyInfo) -> Self {
        Self {
            kind: proxy.kind,
            member: proxy.member.clone(),
            network: proxy.network.clone(),
            families: ProxyFamilies::of(&proxy.instance_ips),
            listen_address: proxy.listen_address,
            gateway_port: proxy.gateway_port,
            sds: proxy.sds,
            mesh: proxy.mesh.clone(),
            inbound: proxy.inbound.clone(),
            subject: (proxy.sds && proxy.kind == ProxyKind::Grpc)
                .then(|| (proxy.namespace.clone(), proxy.labels.clone())),
        }
    }
}

/// One encoded resource with the digest of its encoding, shared by the cache and every stream
/// that holds it (its record of what it was sent points here, it does not copy the bytes), and
/// sent as it is in every response that carries it (see [`crate::wire`]).
#[derive(Debug, PartialEq)]
pub struct Encoded {
    /// The resource as field 2 of a response: tag, length and the encoded `Any`.
    entry: Bytes,
    /// Hash of the encoding: a resource whose digest is unchanged is not resent.
    pub digest: u64,
}

impl Encoded {
    /// `any`, encoded.
    pub fn new(any: &Any) -> Self {
        let entry = wire::entry(any);
        let mut h = DefaultHasher::new();
        entry.hash(&mut h);
        Self {
            digest: h.finish(),
            entry,
        }
    }

    /// The resource as field 2 of a response (`DiscoveryResponse.resources`,
    /// `Resource.resource`).
    pub fn entry(&self) -> &Bytes {
        &self.entry
    }

    /// The resource, decoded again (for debug views and tests).
    pub fn any(&self) -> Any {
        DiscoveryResponse::decode(self.entry.clone())
            .ok()
            .and_then(|r| r.resources.into_iter().next())
            .unwrap_or_default()
    }
}

/// Resources by name.
pub type Resources = Arc<BTreeMap<String, Arc<Encoded>>>;

/// A set of names, or every name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Names {
    /// Every name.
    All,
    /// Only these.
    Some(BTreeSet<String>),
}

impl Names {
    fn none() -> Self {
        Self::Some(BTreeSet::new())
    }

    fn is_empty(&self) -> bool {
        matches!(self, Self::Some(n) if n.is_empty())
    }

    fn contains(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Some(names) => names.contains(name),
        }
    }

    fn extend(&mut self, other: &Names) {
        match (&mut *self, other) {
            (Self::All, _) => {}
            (_, Self::All) => *self = Self::All,
            (Self::Some(a), Self::Some(b)) => a.extend(b.iter().cloned()),
        }
    }
}

/// What one snapshot transition invalidates.
#[derive(Debug)]
struct Invalidation {
    /// EDS cluster names whose assignment may have changed.
    eds: Names,
    /// Every class's CDS, LDS and RDS (an import's ports changed, or no history).
    shape_all: bool,
    /// Members whose proxies' CDS, LDS and RDS changed (their own Services' or hosts' ports).
    shape_members: BTreeSet<String>,
}

impl Invalidation {
    fn everything() -> Self {
        Self {
            eds: Names::All,
            shape_all: true,
            shape_members: BTreeSet::new(),
        }
    }

    fn shape(&self, class: &Class) -> bool {
        self.shape_all
            || class
                .member
                .as_ref()
                .is_some_and(|m| self.shape_members.contains(m))
    }
}

/// What changed for one proxy class between two snapshots: the types and names a stream of
/// that class must diff again. Everything else it holds is still current.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Touched {
    /// Its clusters, listeners or routes may have changed.
    pub shape: bool,
    /// The cluster load assignments that may have changed.
    pub eds: Names,
}

impl Touched {
    /// Everything may have changed.
    pub fn all() -> Self {
        Self {
            shape: true,
            eds: Names::All,
        }
    }

    /// Nothing changed.
    pub fn none() -> Self {
        Self {
            shape: false,
            eds: Names::none(),
        }
    }

    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        !self.shape && self.eds.is_empty()
    }

    /// Of a stream's subscription to `type_url` (`None`: wildcard), what must be diffed:
    /// `None` nothing, `Some(None)` everything subscribed, `Some(Some(names))` only those.
    pub fn of(
        &self,
        type_url: &str,
        subscribed: Option<&BTreeSet<String>>,
    ) -> Option<Option<BTreeSet<String>>> {
        match type_url {
            type_url::ENDPOINT => match (&self.eds, subscribed) {
                (Names::All, _) => Some(None),
                (eds, None) => (!eds.is_empty()).then_some(None),
                (Names::Some(eds), Some(subscribed)) => {
                    let (small, large) = if eds.len() <= subscribed.len() {
                        (eds, subscribed)
                    } else {
                        (subscribed, eds)
                    };
                    let names: BTreeSet<String> = small
                        .iter()
                        .filter(|n| large.contains(*n))
                        .cloned()
                        .collect();
                    (!names.is_empty()).then_some(Some(names))
                }
            },
            type_url::CLUSTER | type_url::LISTENER | type_url::ROUTE => self.shape.then_some(None),
            _ => None,
        }
    }
}

/// Counts of the cache's work since start (tests and benchmarks).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries generated, per type URL (one entry: one name, or every resource of a type).
    pub generated: BTreeMap<&'static str, u64>,
    /// Calls of [`Cache::get`] (a stream diffing a type).
    pub lookups: u64,
    /// Proxy classes holding entries.
    pub classes: usize,
    /// Entries held, over every class.
    pub entries: usize,
}

#[derive(Default)]
struct Inner {
    /// The snapshot the entries are current for.
    snapshot: Option<Arc<ClusterSet>>,
    /// Per class, per type and name (`None`: every resource of the type).
    classes: HashMap<Class, HashMap<(&'static str, Option<String>), Resources>>,
    /// Streams per class that [`Cache::join`]ed: a class's entries go with its last stream.
    streams: HashMap<Class, usize>,
    /// Recent transitions as `(from, to, what they invalidated)`, oldest first.
    log: VecDeque<(u64, u64, Arc<Invalidation>)>,
    stats: Stats,
}

/// The cache, shared by every stream of a server.
pub struct Cache {
    /// Guards the entries and the log; held while one entry generates, so that concurrent
    /// streams of a class wait for it instead of generating it again. Never held across an
    /// await.
    inner: Mutex<Inner>,
    /// The mesh's settings proxies are configured by.
    mesh: Arc<crate::security::Mesh>,
}

impl Default for Cache {
    fn default() -> Self {
        Self::for_mesh(crate::security::Mesh::default())
    }
}

impl Cache {
    /// An empty cache for `mesh`.
    pub fn for_mesh(mesh: crate::security::Mesh) -> Self {
        Self {
            inner: Mutex::default(),
            mesh: Arc::new(mesh),
        }
    }

    /// The mesh's settings.
    pub fn mesh(&self) -> &Arc<crate::security::Mesh> {
        &self.mesh
    }

    /// The resources of `type_url` for `proxy` under `snapshot`: every one (`names` is
    /// `None`, or a type other than EDS and gRPC's LDS), or only those named, each name
    /// generated once per class until a snapshot invalidates it. A snapshot older than the
    /// cache's (a stream that fell behind) is served without caching.
    pub fn get(
        &self,
        type_url: &'static str,
        proxy: &ProxyInfo,
        snapshot: &Arc<ClusterSet>,
        names: Option<&BTreeSet<String>>,
    ) -> Resources {
        let mut inner = self.inner.lock();
        inner.stats.lookups += 1;
        let current = inner.advance(snapshot);
        let per_name = match names {
            // Assignments, and gRPC listeners (which include servers' own, named by address),
            // are generated per subscribed name.
            Some(names)
                if type_url == type_url::ENDPOINT
                    || (type_url == type_url::LISTENER && proxy.kind == ProxyKind::Grpc) =>
            {
                names
            }
            _ => return inner.entry(current, proxy, type_url, None, snapshot),
        };
        let mut out = BTreeMap::new();
        for name in per_name {
            let resources = inner.entry(current, proxy, type_url, Some(name), snapshot);
            out.extend(resources.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Arc::new(out)
    }

    /// What changed for `proxy`'s class from snapshot `since` to `snapshot`.
    pub fn touched(&self, proxy: &ProxyInfo, since: u64, snapshot: &Arc<ClusterSet>) -> Touched {
        let mut inner = self.inner.lock();
        inner.advance(snapshot);
        let to = snapshot.version;
        if to == since {
            return Touched::none();
        }
        if since == 0 || to < since {
            return Touched::all();
        }
        let steps: Vec<&(u64, u64, Arc<Invalidation>)> = inner
            .log
            .iter()
            .filter(|(_, t, _)| *t > since && *t <= to)
            .collect();
        let (Some(first), Some(last)) = (steps.first(), steps.last()) else {
            return Touched::all();
        };
        if first.0 > since || last.1 != to {
            return Touched::all();
        }
        let class = Class::of(proxy);
        let mut touched = Touched::none();
        for (_, _, invalidation) in steps {
            touched.shape |= invalidation.shape(&class);
            touched.eds.extend(&invalidation.eds);
        }
        touched
    }

    /// A stream of `proxy`'s class started.
    pub fn join(&self, proxy: &ProxyInfo) {
        *self
            .inner
            .lock()
            .streams
            .entry(Class::of(proxy))
            .or_default() += 1;
    }

    /// A stream of `proxy`'s class ended: the last one of a class takes its entries along.
    pub fn leave(&self, proxy: &ProxyInfo) {
        let class = Class::of(proxy);
        let mut inner = self.inner.lock();
        if let Some(count) = inner.streams.get_mut(&class) {
            *count -= 1;
            if *count == 0 {
                inner.streams.remove(&class);
                inner.classes.remove(&class);
            }
        }
    }

    /// The work done so far.
    pub fn stats(&self) -> Stats {
        let inner = self.inner.lock();
        Stats {
            classes: inner.classes.len(),
            entries: inner.classes.values().map(HashMap::len).sum(),
            ..inner.stats.clone()
        }
    }
}

impl Inner {
    /// Moves the entries to `snapshot` if it is newer; false when it is older than theirs.
    fn advance(&mut self, snapshot: &Arc<ClusterSet>) -> bool {
        let Some(last) = &self.snapshot else {
            self.snapshot = Some(snapshot.clone());
            return true;
        };
        if snapshot.version < last.version {
            return false;
        }
        if snapshot.version == last.version {
            return true;
        }
        let invalidation = Arc::new(invalidation(last, snapshot));
        for (class, entries) in &mut self.classes {
            let shape = invalidation.shape(class);
            entries.retain(|(t, name), _| match (*t, name) {
                (type_url::ENDPOINT, None) => invalidation.eds.is_empty(),
                (type_url::ENDPOINT, Some(name)) => !invalidation.eds.contains(name),
                _ => !shape,
            });
        }
        self.log
            .push_back((last.version, snapshot.version, invalidation));
        while self.log.len() > LOG {
            self.log.pop_front();
        }
        self.snapshot = Some(snapshot.clone());
        true
    }

    fn entry(
        &mut self,
        current: bool,
        proxy: &ProxyInfo,
        type_url: &'static str,
        name: Option<&String>,
        snapshot: &ClusterSet,
    ) -> Resources {
        let make = |stats: &mut Stats| -> Resources {
            *stats.generated.entry(type_url).or_default() += 1;
            let one = name.map(|n| BTreeSet::from([n.clone()]));
            let resources = generate(type_url, proxy, snapshot, one.as_ref());
            let encoded = resources
                .into_iter()
                .map(|(n, any)| (n, Arc::new(Encoded::new(&any))));
            Arc::new(encoded.collect())
        };
        if !current {
            return make(&mut self.stats);
        }
        let key = (type_url, name.cloned());
        let entries = self.classes.entry(Class::of(proxy)).or_default();
        if let Some(found) = entries.get(&key) {
            return found.clone();
        }
        let made = make(&mut self.stats);
        // A name that resolves to nothing is not kept: a client subscribing to made-up names
        // must not grow the cache (it holds only what exists, per class).
        if name.is_none() || !made.is_empty() {
            entries.insert(key, made.clone());
        }
        made
    }
}

fn cluster_name(port: u16, host: &str) -> String {
    format!("outbound|{port}||{host}")
}

/// A port as far as clusters, listeners and routes care: name, number, application protocol.
type Shape<'a> = Vec<(&'a str, u16, Option<&'a str>)>;

fn import_shape(import: Option<&Arc<Import>>) -> Option<Shape<'_>> {
    import.map(|i| {
        let ports = i.merged.ports.iter();
        ports
            .map(|p| (p.name.as_str(), p.port, p.app_protocol.as_deref()))
            .collect()
    })
}

/// The shape each consumer of a scoped import sees (`None`: every member sees the import).
fn consumer_shapes(import: Option<&Arc<Import>>) -> Option<BTreeMap<&str, Shape<'_>>> {
    let import = import?;
    let consumers = import.consumers.as_ref()?;
    Some(
        consumers
            .iter()
            .map(|(id, own)| {
                let seen = own.as_deref().unwrap_or(import);
                let ports = seen.merged.ports.iter();
                let shape = ports
                    .map(|p| (p.name.as_str(), p.port, p.app_protocol.as_deref()))
                    .collect();
                (id.as_str(), shape)
            })
            .collect(),
    )
}

fn own_shape<'a>(view: Option<&'a Arc<ServiceView>>, member: &str) -> Option<Shape<'a>> {
    let own = view?
        .members
        .iter()
        .find(|(id, _)| id.as_str() == member)?
        .1;
    let ports = own.service.as_ref()?.ports.iter();
    Some(
        ports
            .map(|p| (p.name.as_str(), p.port, p.app_protocol.as_deref()))
            .collect(),
    )
}

/// Keys of `old` that `new` lacks (snapshots built outside the views stage, `at_version`,
/// do not name what went away in `changed`).
fn gone<V>(
    old: &BTreeMap<ServiceKey, V>,
    new: &BTreeMap<ServiceKey, V>,
    out: &mut BTreeSet<ServiceKey>,
) {
    let mut fresh = new.keys().peekable();
    for key in old.keys() {
        while fresh.next_if(|k| *k < key).is_some() {}
        if fresh.peek() != Some(&key) {
            out.insert(key.clone());
        }
    }
}

/// The ServiceEntry hosts' ports per member.
fn host_shapes(set: &ClusterSet) -> BTreeMap<&str, Vec<(&str, Shape<'_>)>> {
    let mut per_member: BTreeMap<&str, Vec<(&str, Shape<'_>)>> = BTreeMap::new();
    for entry in set.hosts.iter() {
        let ports = entry.service.ports.iter();
        let shape = ports
            .map(|p| (p.name.as_str(), p.port, p.app_protocol.as_deref()))
            .collect();
        let member = per_member.entry(entry.cluster.as_str()).or_default();
        member.push((entry.host.as_str(), shape));
    }
    per_member
}

/// What the step from `last` to `next` invalidates.
fn invalidation(last: &ClusterSet, next: &ClusterSet) -> Invalidation {
    let Some(changes) = next.changes_since(last.version) else {
        return Invalidation::everything();
    };
    let mut keys = changes.services;
    gone(&last.services, &next.services, &mut keys);
    gone(&last.outcome.imports, &next.outcome.imports, &mut keys);
    gone(&last.outcome.exports, &next.outcome.exports, &mut keys);
    let mut eds = BTreeSet::new();
    let mut shape_all = false;
    let mut shape_members = BTreeSet::new();
    for key in &keys {
        let (old, new) = (last.outcome.imports.get(key), next.outcome.imports.get(key));
        let host = format!("{}.{}.svc.clusterset.local", key.name, key.namespace);
        for import in old.iter().chain(new.iter()) {
            let scoped = import.consumers.iter().flat_map(|c| c.values().flatten());
            let whole: &Import = import;
            for seen in std::iter::once(whole).chain(scoped.map(|i| &**i)) {
                let ports = seen.merged.ports.iter();
                eds.extend(ports.map(|p| cluster_name(p.port, &host)));
            }
        }
        shape_all |= import_shape(old) != import_shape(new);
        // Which members see the name, and its shape for each, when an export is scoped.
        match (consumer_shapes(old), consumer_shapes(new)) {
            (None, None) => {}
            (Some(before), Some(after)) => {
                for member in before.keys().chain(after.keys()) {
                    if before.get(member) != after.get(member) {
                        shape_members.insert(member.to_string());
                    }
                }
            }
            _ => shape_all = true,
        }
        let (old, new) = (last.services.get(key), next.services.get(key));
        let host = format!("{}.{}.svc.cluster.local", key.name, key.namespace);
        let members: BTreeSet<&str> = old
            .iter()
            .chain(new.iter())
            .flat_map(|v| v.members.keys().map(|id| id.as_str()))
            .collect();
        for member in members {
            let (before, after) = (own_shape(old, member), own_shape(new, member));
            for (_, port, _) in before.iter().chain(after.iter()).flatten() {
                eds.insert(cluster_name(*port, &host));
            }
            if before != after {
                shape_members.insert(member.to_string());
            }
        }
    }
    if changes.hosts || !Arc::ptr_eq(&last.hosts, &next.hosts) {
        let (before, after) = (host_shapes(last), host_shapes(next));
        for member in before.keys().chain(after.keys()) {
            if before.get(member) != after.get(member) {
                shape_members.insert(member.to_string());
            }
        }
        for (host, shape) in before.values().chain(after.values()).flatten() {
            eds.extend(shape.iter().map(|(_, port, _)| cluster_name(*port, host)));
        }
    }
    // PeerAuthentications shape the inbound listeners of their member's sidecars.
    if !Arc::ptr_eq(&last.policies, &next.policies) {
        for id in last.policies.keys().chain(next.policies.keys()) {
            if last.policies.get(id) != next.policies.get(id) {
                shape_members.insert(id.to_string());
            }
        }
    }
    let gateways = changes.gateways
        || (!Arc::ptr_eq(&last.gateways, &next.gateways) && *last.gateways != *next.gateways);
    Invalidation {
        eds: if gateways {
            Names::All
        } else {
            Names::Some(eds)
        },
        shape_all,
        shape_members,
    }
}
