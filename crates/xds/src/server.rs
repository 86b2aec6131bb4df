//! The ADS server: `StreamAggregatedResources` (state of the world) and
//! `DeltaAggregatedResources`, one task per stream, with per-stream state so that an unchanged
//! resource is never resent and a NACK is logged and counted but never answered with the same
//! content in a loop.

use std::{
    collections::{BTreeSet, HashMap},
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use envoy_types::pb::{
    envoy::config::core::v3::Node,
    envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest},
};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Status, Streaming};
use tracing::{Instrument, debug, info, info_span, warn};

use bowline_views::ClusterSet;

use crate::{
    cache::{Cache, Encoded},
    node::ProxyInfo,
    resources::type_url,
    status::{Connections, Held, TypeStatus},
    wire::{self, GrpcMessage, Responses},
};

/// Types that are state-of-the-world: every response holds all of them, and an empty
/// subscription is a wildcard.
fn is_wildcard_type(type_url: &str) -> bool {
    matches!(type_url, type_url::CLUSTER | type_url::LISTENER)
}

/// `type.googleapis.com/istio.v1.HealthInformation`: a VM proxy's health report, sent as a
/// request (healthy without `error_detail`, unhealthy with it). Not a subscription.
pub const HEALTH_INFORMATION: &str = "type.googleapis.com/istio.v1.HealthInformation";

/// A proxy stream as it identifies itself, for [`Workloads::connected`].
#[derive(Debug)]
pub struct Connecting<'a> {
    /// The stream.
    pub stream: u64,
    /// What the node says.
    pub proxy: &'a ProxyInfo,
    /// The peer's address.
    pub peer: Option<SocketAddr>,
    /// The request's gRPC metadata (`authorization`...).
    pub metadata: &'a tonic::metadata::MetadataMap,
    /// The request's extensions (what the transport recorded about the connection).
    pub extensions: &'a tonic::Extensions,
    /// What [`Workloads::authenticate`] found for this stream.
    pub authenticated: Option<&'a (dyn std::any::Any + Send + Sync)>,
}

/// What a stream presented when it opened, for [`Workloads::authenticate`].
pub struct Credentials<'a> {
    /// The peer's address.
    pub peer: Option<SocketAddr>,
    /// The request's gRPC metadata (`authorization`...).
    pub metadata: &'a tonic::metadata::MetadataMap,
    /// The request's extensions (the transport, the client certificate).
    pub extensions: &'a tonic::Extensions,
}

/// Who a stream's caller is, as [`Workloads::authenticate`] proved it.
pub type Authenticated = Option<Arc<dyn std::any::Any + Send + Sync>>;

/// What the ADS server tells the VM registration about its streams.
pub trait Workloads: Send + Sync + 'static {
    /// Proves who opened a stream, before its first request is read (a token may need a
    /// review in a member, hence asynchronous). What it returns comes back in
    /// [`Connecting::authenticated`]; an error ends the stream with that status.
    fn authenticate<'a>(
        &'a self,
        _credentials: Credentials<'a>,
    ) -> futures::future::BoxFuture<'a, Result<Authenticated, Status>> {
        Box::pin(std::future::ready(Ok(None)))
    }
    /// A stream identified its node. An error ends the stream with that status.
    fn connected(&self, connecting: Connecting<'_>) -> Result<(), Status>;
    /// The proxy on `stream` reported its health.
    fn health(&self, stream: u64, healthy: bool, message: Option<String>);
    /// The stream ended (only for streams `connected` accepted).
    fn disconnected(&self, stream: u64);
}

/// The ADS service.
#[derive(Clone)]
pub struct Ads {
    snapshots: watch::Receiver<Arc<ClusterSet>>,
    connections: Connections,
    next_id: Arc<AtomicU64>,
    cache: Arc<Cache>,
    workloads: Option<Arc<dyn Workloads>>,
}

impl Ads {
    /// A server reading `snapshots`, recording its streams in `connections`.
    pub fn new(snapshots: watch::Receiver<Arc<ClusterSet>>, connections: Connections) -> Self {
        Self {
            snapshots,
            connections,
            next_id: Arc::new(AtomicU64::new(1)),
            cache: Arc::default(),
            workloads: None,
        }
    }

    /// The mesh's settings: the trust domain proxies verify each other by and the root
    /// namespace of mesh-wide policies.
    pub fn with_mesh(mut self, mesh: crate::security::Mesh) -> Self {
        self.cache = Arc::new(Cache::for_mesh(mesh));
        self
    }

    /// The resource cache its streams share (its [`Cache::stats`] count the work done).
    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// Tells `workloads` about every stream (VM registration and health).
    pub fn with_workloads(mut self, workloads: Arc<dyn Workloads>) -> Self {
        self.workloads = Some(workloads);
        self
    }
}

/// What a stream needs to tell [`Workloads`] about itself.
pub(crate) struct Caller {
    peer: Option<SocketAddr>,
    metadata: tonic::metadata::MetadataMap,
    extensions: tonic::Extensions,
    workloads: Option<Arc<dyn Workloads>>,
    /// What `authenticate` proved.
    authenticated: Authenticated,
    /// `connected` accepted the stream: `disconnected` is due when it ends.
    accepted: bool,
}

impl Caller {
    /// A caller without a connection or workloads (the fuzzer's).
    #[cfg(feature = "fuzz")]
    pub(crate) fn detached() -> Self {
        Self {
            peer: None,
            metadata: Default::default(),
            extensions: Default::default(),
            workloads: None,
            authenticated: None,
            accepted: false,
        }
    }

    fn new<T>(request: Request<T>, workloads: Option<Arc<dyn Workloads>>) -> (Self, T) {
        let peer = request.remote_addr();
        let (metadata, extensions, inbound) = request.into_parts();
        (
            Self {
                peer,
                metadata,
                extensions,
                workloads,
                authenticated: None,
                accepted: false,
            },
            inbound,
        )
    }

    /// Health reports are for the registration, never subscriptions: true when handled.
    fn health(&self, stream: u64, type_url: &str, error: Option<String>) -> bool {
        if type_url != HEALTH_INFORMATION {
            return false;
        }
        if let Some(workloads) = &self.workloads {
            workloads.health(stream, error.is_none(), error);
        }
        true
    }

    fn ended(&self, stream: u64) {
        if let (true, Some(workloads)) = (self.accepted, &self.workloads) {
            workloads.disconnected(stream);
        }
    }
}

/// Per-type state of one stream.
#[derive(Default)]
pub(crate) struct TypeState {
    /// `None`: wildcard.
    pub(crate) names: Option<BTreeSet<String>>,
    version: u64,
    pub(crate) nonce: Option<String>,
    /// A request of this type was handled (delta: the first one decides wildcard).
    subscribed: bool,
}

/// Resources to send, names removed, and every subscribed resource (only when the whole
/// subscription was diffed).
type Diff = (Vec<(String, Arc<Encoded>)>, Vec<String>, Vec<Arc<Encoded>>);

/// A response on the wire, or the status that ends the stream.
pub(crate) type Reply = Result<GrpcMessage, Status>;

/// Builds a stream's response for a type: `(stream, type, snapshot, force, only these names)`.
type Respond =
    fn(&mut Stream_, &str, &Arc<ClusterSet>, bool, Option<&BTreeSet<String>>) -> Option<Reply>;

/// One stream's state.
pub(crate) struct Stream_ {
    id: u64,
    proxy: Option<ProxyInfo>,
    pub(crate) types: HashMap<String, TypeState>,
    /// What it was last sent of each type (shared with the connection table's record).
    pub(crate) held: Held,
    /// The version of the last snapshot its subscriptions were brought up to date with.
    seen: u64,
    nonce: u64,
    connections: Connections,
    cache: Arc<Cache>,
    /// NACK logging: when the last one was logged, and how many were not since.
    nacks: NackLog,
}

/// Bounds on what one stream may ask for: the node it sends, the resource types it asks
/// about and the names it subscribes to per type. A stream over one ends with a status
/// naming the bound.
const MAX_NODE_BYTES: usize = 64 * 1024;
const MAX_TYPES: usize = 32;
const MAX_NAMES: usize = 100_000;

/// The status ending a stream that asks about one type too many, or subscribes to too many
/// names of one; `None` within the bounds.
fn over_bounds(
    types: &HashMap<String, TypeState>,
    type_url: &str,
    names: Option<usize>,
) -> Option<Status> {
    if !types.contains_key(type_url) && types.len() >= MAX_TYPES {
        return Some(Status::resource_exhausted(format!(
            "a stream may ask about at most {MAX_TYPES} resource types"
        )));
    }
    let names = names?;
    (names > MAX_NAMES).then(|| {
        Status::resource_exhausted(format!(
            "{names} names of {type_url} subscribed, more than the {MAX_NAMES} a stream may"
        ))
    })
}

/// How often a stream's NACKs are logged: one per [`NACK_LOG_EVERY`], the others counted
/// in the next one (all are counted in `bowline_xds_nacks_total`).
const NACK_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// How much of a proxy's error message is logged, and kept in `/debug/connections`.
const NACK_LOGGED: usize = 512;
const NACK_KEPT: usize = 4096;

#[derive(Default)]
struct NackLog {
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl NackLog {
    /// Whether to log this NACK now, and how many were not logged before it.
    fn admit(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < NACK_LOG_EVERY)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl Stream_ {
    pub(crate) fn new(id: u64, connections: Connections, cache: Arc<Cache>) -> Self {
        Self {
            id,
            proxy: None,
            types: HashMap::new(),
            held: Held::default(),
            seen: 0,
            nonce: 0,
            connections,
            cache,
            nacks: NackLog::default(),
        }
    }

    /// Learns who the proxy is from the first request's node; later requests may omit it.
    fn identify(
        &mut self,
        node: Option<&Node>,
        protocol: &'static str,
        caller: &mut Caller,
    ) -> Result<(), Status> {
        if self.proxy.is_some() {
            return Ok(());
        }
        let node =
            node.ok_or_else(|| Status::invalid_argument("the first request must carry a node"))?;
        let size = prost::Message::encoded_len(node);
        if size > MAX_NODE_BYTES {
            return Err(Status::invalid_argument(format!(
                "the node is {size} bytes encoded, more than the {MAX_NODE_BYTES} allowed"
            )));
        }
        let mut proxy = ProxyInfo::from_node(node);
        proxy.mesh = self.cache.mesh().clone();
        tracing::Span::current().record("node", proxy.id.as_str());
        let peer = caller.peer;
        if let Some(workloads) = &caller.workloads {
            workloads.connected(Connecting {
                stream: self.id,
                proxy: &proxy,
                peer,
                metadata: &caller.metadata,
                extensions: &caller.extensions,
                authenticated: caller.authenticated.as_deref(),
            })?;
            caller.accepted = true;
        }
        info!(member = proxy.member.as_deref().unwrap_or("-"), network = %proxy.network, kind = ?proxy.kind, ?peer, protocol, "proxy connected");
        let held = self.held.clone();
        self.connections
            .connect(self.id, proxy.clone(), protocol, held);
        self.cache.join(&proxy);
        self.proxy = Some(proxy);
        Ok(())
    }

    /// The responses a new snapshot calls for, one per subscribed type that changed. Only
    /// the types and names the snapshot's changes touched for this proxy's class are diffed:
    /// a stream they did not touch does no work.
    pub(crate) fn push(&mut self, snapshot: &Arc<ClusterSet>, respond: Respond) -> Vec<Reply> {
        let Some(proxy) = &self.proxy else {
            return Vec::new();
        };
        let touched = self.cache.touched(proxy, self.seen, snapshot);
        self.seen = snapshot.version;
        if touched.is_empty() {
            return Vec::new();
        }
        let work: Vec<(String, Option<BTreeSet<String>>)> = self
            .types
            .iter()
            .filter_map(|(t, state)| Some((t.clone(), touched.of(t, state.names.as_ref())?)))
            .collect();
        let responses: Vec<Reply> = work
            .iter()
            .filter_map(|(t, only)| respond(self, t, snapshot, false, only.as_ref()))
            .collect();
        for _ in &responses {
            self.connections.pushed(snapshot.published);
        }
        responses
    }

    /// A request is answered from `snapshot`: the first one sets where pushes start from.
    fn answering(&mut self, snapshot: &ClusterSet) {
        if self.seen == 0 {
            self.seen = snapshot.version;
        }
    }

    fn next_nonce(&mut self) -> String {
        self.nonce += 1;
        self.nonce.to_string()
    }

    fn record(&self, type_url: &str, f: impl FnOnce(&mut TypeStatus)) {
        self.connections.update_type(self.id, type_url, f);
    }

    /// Handles a request's ACK/NACK part; false when the request is stale (an old nonce).
    fn acknowledge(&mut self, type_url: &str, nonce: &str, error: Option<String>) -> bool {
        let state = self.types.entry(type_url.to_string()).or_default();
        if nonce.is_empty() {
            return true;
        }
        if state.nonce.as_deref() != Some(nonce) {
            debug!(type_url, nonce, "stale nonce, request ignored");
            return false;
        }
        let version = state.version.to_string();
        match error {
            Some(message) => {
                let node = self
                    .proxy
                    .as_ref()
                    .map(|p| p.id.clone())
                    .unwrap_or_default();
                if let Some(suppressed) = self.nacks.admit() {
                    let logged = bowline_model::echo::capped(&message, NACK_LOGGED);
                    if suppressed > 0 {
                        warn!(node = %node, type_url, version = %version, suppressed, "NACK: {logged} ({suppressed} earlier NACKs of this stream not logged)");
                    } else {
                        warn!(node = %node, type_url, version = %version, "NACK: {logged}");
                    }
                } else {
                    debug!(node = %node, type_url, version = %version, "NACK (not logged at warn: one per stream every 10 s)");
                }
                self.connections.nack();
                let kept = bowline_model::echo::capped(&message, NACK_KEPT).into_owned();
                self.record(type_url, |t| {
                    t.last_nack = Some(format!("version {version}: {kept}"))
                });
            }
            None => self.record(type_url, |t| t.acked_version = Some(version.clone())),
        }
        true
    }

    /// What changed for a type since the last response: (resources to send, removed names,
    /// every subscribed resource). `force` answers even when nothing changed (first request).
    /// With `only`, just those subscribed names are compared (the others are known current).
    fn diff(
        &mut self,
        type_url: &str,
        snapshot: &Arc<ClusterSet>,
        force: bool,
        only: Option<&BTreeSet<String>>,
    ) -> Option<Diff> {
        let proxy = self.proxy.as_ref()?;
        let state = self.types.get_mut(type_url)?;
        let all = match known_type(type_url) {
            Some(t) => self
                .cache
                .get(t, proxy, snapshot, only.or(state.names.as_ref())),
            None => Default::default(),
        };
        let in_scope = |name: &String| only.is_none_or(|o| o.contains(name));
        let wanted =
            |name: &String| in_scope(name) && state.names.as_ref().is_none_or(|n| n.contains(name));
        let diff = self.held.with(type_url, |held| {
            let current: Vec<(&String, &Arc<Encoded>)> =
                all.iter().filter(|(n, _)| wanted(n)).collect();
            let mut changed = Vec::new();
            for (name, now) in &current {
                match held.get_mut(*name) {
                    Some(was) if was.digest == now.digest => {
                        // Equal: hold the cache's copy, so that the old one can go.
                        if !Arc::ptr_eq(was, now) {
                            *was = (*now).clone();
                        }
                    }
                    _ => changed.push(((*name).clone(), (*now).clone())),
                }
            }
            let removed: Vec<String> = held
                .keys()
                .filter(|n| in_scope(n) && !(all.contains_key(*n) && wanted(n)))
                .cloned()
                .collect();
            if changed.is_empty() && removed.is_empty() && !force {
                return None;
            }
            for name in &removed {
                held.remove(name);
            }
            for (name, now) in &changed {
                held.insert(name.clone(), now.clone());
            }
            let everything = match only {
                Some(_) => Vec::new(),
                None => current.into_iter().map(|(_, e)| e.clone()).collect(),
            };
            Some((changed, removed, everything))
        })?;
        state.version += 1;
        Some(diff)
    }
}

impl Drop for Stream_ {
    fn drop(&mut self) {
        if let Some(proxy) = &self.proxy {
            self.cache.leave(proxy);
        }
    }
}

fn known_type(type_url: &str) -> Option<&'static str> {
    [
        type_url::CLUSTER,
        type_url::ENDPOINT,
        type_url::LISTENER,
        type_url::ROUTE,
    ]
    .into_iter()
    .find(|t| *t == type_url)
}

/// The SotW response for `type_url`: everything current for wildcard types, the changed
/// resources otherwise.
pub(crate) fn sotw_response(
    stream: &mut Stream_,
    type_url: &str,
    snapshot: &Arc<ClusterSet>,
    force: bool,
    only: Option<&BTreeSet<String>>,
) -> Option<Reply> {
    let (changed, _removed, everything) = stream.diff(type_url, snapshot, force, only)?;
    let state = stream.types.get(type_url)?;
    let version_info = state.version.to_string();
    let nonce = stream.next_nonce();
    stream.types.get_mut(type_url)?.nonce = Some(nonce.clone());
    stream.record(type_url, |t| t.sent_version = Some(version_info.clone()));
    let resources: Vec<&Encoded> = if is_wildcard_type(type_url) {
        everything.iter().map(|e| &**e).collect()
    } else {
        changed.iter().map(|(_, e)| &**e).collect()
    };
    debug!(type_url, version = %version_info, nonce = %nonce, resources = resources.len(), "response");
    Some(wire::sotw(version_info, type_url, nonce, &resources))
}

impl Ads {
    /// Serves one state-of-the-world stream: its task runs until the client goes away.
    pub(crate) fn sotw(&self, request: Request<Streaming<DiscoveryRequest>>) -> Responses {
        self.serve(
            request,
            |stream, caller, request, snapshots| {
                stream.on_sotw(caller, request, || snapshots.borrow().clone())
            },
            sotw_response,
        )
    }

    /// Serves one delta stream: its task runs until the client goes away.
    pub(crate) fn delta(&self, request: Request<Streaming<DeltaDiscoveryRequest>>) -> Responses {
        self.serve(
            request,
            |stream, caller, request, snapshots| {
                stream.on_delta(caller, request, || snapshots.borrow().clone())
            },
            delta_response,
        )
    }

    /// Serves one stream of requests `R`: each request taken by `step`, each new snapshot
    /// pushed with `respond`, until the client goes away or a step ends the stream.
    fn serve<R: prost::Message + Default + 'static>(
        &self,
        request: Request<Streaming<R>>,
        step: impl Fn(&mut Stream_, &mut Caller, &R, &watch::Receiver<Arc<ClusterSet>>) -> Step
        + Send
        + 'static,
        respond: Respond,
    ) -> Responses {
        let (mut caller, mut inbound) = Caller::new(request, self.workloads.clone());
        let (tx, rx) = mpsc::channel(16);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut snapshots = self.snapshots.clone();
        let connections = self.connections.clone();
        let cache = self.cache.clone();
        let span = info_span!("xds", stream = id, node = tracing::field::Empty);
        tokio::spawn(
            async move {
                let mut stream = Stream_::new(id, connections.clone(), cache);
                if let Some(workloads) = caller.workloads.clone() {
                    let credentials = Credentials {
                        peer: caller.peer,
                        metadata: &caller.metadata,
                        extensions: &caller.extensions,
                    };
                    match workloads.authenticate(credentials).await {
                        Ok(authenticated) => caller.authenticated = authenticated,
                        Err(status) => {
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                    }
                }
                // Requests that came while Bowline was starting, answered once it is not.
                let mut held: Vec<R> = Vec::new();
                // The proxy sent its last request (half-closed) with some still held.
                let mut closed = false;
                // Every way out of the loop goes through the clean-up after it: the connection
                // table and the VM registration must learn that the stream ended.
                'stream: loop {
                    tokio::select! {
                        message = inbound.message(), if !closed => {
                            let request = match message {
                                Ok(Some(r)) => r,
                                Ok(None) if !held.is_empty() => {
                                    closed = true;
                                    continue;
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    debug!("stream ended: {e}");
                                    break;
                                }
                            };
                            if snapshots.borrow().starting {
                                if held.len() == HELD_WHILE_STARTING {
                                    let status = Status::resource_exhausted(format!("more than {HELD_WHILE_STARTING} requests before Bowline finished starting"));
                                    let _ = tx.send(Err(status)).await;
                                    break;
                                }
                                if held.is_empty() {
                                    debug!("request held until every member's first listing is in");
                                }
                                held.push(request);
                                continue;
                            }
                            let step = step(&mut stream, &mut caller, &request, &snapshots);
                            if !deliver(&tx, step).await {
                                break;
                            }
                        }
                        changed = snapshots.changed() => {
                            if changed.is_err() {
                                break;
                            }
                            let snapshot = snapshots.borrow_and_update().clone();
                            if snapshot.starting {
                                continue;
                            }
                            for request in std::mem::take(&mut held) {
                                let step = step(&mut stream, &mut caller, &request, &snapshots);
                                if !deliver(&tx, step).await {
                                    break 'stream;
                                }
                            }
                            if closed {
                                break;
                            }
                            for response in stream.push(&snapshot, respond) {
                                if tx.send(response).await.is_err() {
                                    break 'stream;
                                }
                            }
                        }
                    }
                }
                connections.disconnect(id);
                caller.ended(id);
                info!("proxy disconnected");
            }
            .instrument(span),
        );
        Responses::new(rx)
    }
}

/// What one request calls for: a response to send (`Some`), nothing, or the status that
/// ends the stream.
type Step = Result<Option<Reply>, Status>;

/// Requests one stream may send before Bowline finished starting (a proxy sends one per
/// type it subscribes to, and waits for the answers); more end the stream.
const HELD_WHILE_STARTING: usize = 64;

/// Sends what `step` calls for; false when the stream is over (the status that ended it was
/// sent, or the proxy is gone).
async fn deliver(tx: &mpsc::Sender<Reply>, step: Step) -> bool {
    match step {
        Ok(None) => true,
        Ok(Some(response)) => tx.send(response).await.is_ok(),
        Err(status) => {
            let _ = tx.send(Err(status)).await;
            false
        }
    }
}

impl Stream_ {
    /// One state-of-the-world request: identify the proxy, check the bounds, take the ACK or
    /// NACK, apply the subscription and answer it from `snapshot()` when it changed.
    pub(crate) fn on_sotw(
        &mut self,
        caller: &mut Caller,
        request: &DiscoveryRequest,
        snapshot: impl FnOnce() -> Arc<ClusterSet>,
    ) -> Step {
        self.identify(request.node.as_ref(), "sotw", caller)?;
        let type_url = &request.type_url;
        debug!(type_url = %type_url, names = request.resource_names.len(), nonce = %request.response_nonce, version = %request.version_info, "request");
        if let Some(status) = over_bounds(&self.types, type_url, Some(request.resource_names.len()))
        {
            return Err(status);
        }
        let error = request.error_detail.as_ref().map(|e| e.message.clone());
        if caller.health(self.id, type_url, error.clone()) {
            return Ok(None);
        }
        if !self.acknowledge(type_url, &request.response_nonce, error) {
            return Ok(None);
        }
        let names: BTreeSet<String> = request
            .resource_names
            .iter()
            .filter(|n| *n != "*")
            .cloned()
            .collect();
        let wildcard = is_wildcard_type(type_url) && names.is_empty();
        let state = self.types.entry(type_url.clone()).or_default();
        let first = state.nonce.is_none();
        let subscription = if wildcard { None } else { Some(names) };
        let resubscribed = state.names != subscription;
        state.names = subscription;
        self.record(type_url, |t| {
            t.subscribed = state_names(&stream_names(self, type_url))
        });
        if !first && !resubscribed {
            // An ACK or NACK of an unchanged subscription: what changed since is the next
            // push's (as a delta ACK).
            return Ok(None);
        }
        let snapshot = snapshot();
        self.answering(&snapshot);
        Ok(sotw_response(
            self,
            type_url,
            &snapshot,
            first || resubscribed,
            None,
        ))
    }

    /// One delta request: as [`Stream_::on_sotw`], with the subscription changed by the
    /// names it adds and removes.
    pub(crate) fn on_delta(
        &mut self,
        caller: &mut Caller,
        request: &DeltaDiscoveryRequest,
        snapshot: impl FnOnce() -> Arc<ClusterSet>,
    ) -> Step {
        self.identify(request.node.as_ref(), "delta", caller)?;
        let type_url = &request.type_url;
        debug!(type_url = %type_url, subscribe = request.resource_names_subscribe.len(), unsubscribe = request.resource_names_unsubscribe.len(), nonce = %request.response_nonce, "delta request");
        let held = self
            .types
            .get(type_url)
            .and_then(|t| t.names.as_ref())
            .map_or(0, BTreeSet::len);
        let asked = held + request.resource_names_subscribe.len();
        if let Some(status) = over_bounds(&self.types, type_url, Some(asked)) {
            return Err(status);
        }
        let error = request.error_detail.as_ref().map(|e| e.message.clone());
        if caller.health(self.id, type_url, error.clone()) {
            return Ok(None);
        }
        // The nonce only decides whether this ACKs or NACKs a response; a subscription change
        // is applied whatever it says, since a delta client never repeats it.
        self.acknowledge(type_url, &request.response_nonce, error);
        let first = !self.types.get(type_url).is_some_and(|t| t.subscribed);
        let (subscribe, unsubscribe) = (
            &request.resource_names_subscribe,
            &request.resource_names_unsubscribe,
        );
        if !first && subscribe.is_empty() && unsubscribe.is_empty() {
            return Ok(None);
        }
        let state = self.types.entry(type_url.clone()).or_default();
        state.subscribed = true;
        let mut wildcard = state.names.is_none()
            && (!first || (subscribe.is_empty() && is_wildcard_type(type_url)));
        let mut names = state.names.take().unwrap_or_default();
        for name in subscribe {
            if name == "*" {
                wildcard = true
            } else {
                names.insert(name.clone());
            }
        }
        for name in unsubscribe {
            if name == "*" {
                wildcard = false
            }
            names.remove(name);
            self.held.with(type_url, |held| held.remove(name));
        }
        state.names = if wildcard { None } else { Some(names) };
        let snapshot = snapshot();
        self.answering(&snapshot);
        Ok(delta_response(self, type_url, &snapshot, first, None))
    }
}

fn stream_names(stream: &Stream_, type_url: &str) -> Option<BTreeSet<String>> {
    stream.types.get(type_url).and_then(|t| t.names.clone())
}

fn state_names(names: &Option<BTreeSet<String>>) -> Vec<String> {
    match names {
        None => vec!["*".into()],
        Some(n) => n.iter().cloned().collect(),
    }
}

pub(crate) fn delta_response(
    stream: &mut Stream_,
    type_url: &str,
    snapshot: &Arc<ClusterSet>,
    force: bool,
    only: Option<&BTreeSet<String>>,
) -> Option<Reply> {
    let (changed, removed, _) = stream.diff(type_url, snapshot, force, only)?;
    let version = stream.types.get(type_url)?.version.to_string();
    let nonce = stream.next_nonce();
    stream.types.get_mut(type_url)?.nonce = Some(nonce.clone());
    stream.record(type_url, |t| t.sent_version = Some(version.clone()));
    Some(wire::delta(version, type_url, nonce, &changed, removed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nack_flood_is_logged_once_per_interval_with_its_detail_capped() {
        let mut log = NackLog::default();
        let logged = (0..3000).filter(|_| log.admit().is_some()).count();
        assert_eq!(logged, 1, "3,000 NACKs within 10 s: one logged line");
        assert_eq!(log.suppressed, 2999);
        log.last = Some(std::time::Instant::now() - NACK_LOG_EVERY);
        assert_eq!(log.admit(), Some(2999), "the next line counts the others");

        let detail = "é".repeat(40_000);
        let logged = bowline_model::echo::capped(&detail, NACK_LOGGED);
        assert!(logged.len() < NACK_LOGGED + 32, "{}", logged.len());
        assert!(logged.ends_with("... (80000 bytes)"), "{logged}");
    }
}
