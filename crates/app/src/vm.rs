//! VM auto-registration in the composition root: the xDS server reports registering streams
//! ([`Registration`]), one task keeps a [`Registrar`] and makes the members hold the entries
//! it asks for, through each member's writer (`.bowline/workloadentries/` of a manifest
//! member, which its source reads back; server-side apply on Kubernetes).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use bowline_mcs::{WriteKey, WriteKind, writer::Writer};
use bowline_model::{Object, ObjectKind};
use bowline_registry::Shared;
use bowline_vm::{
    lifecycle::{
        self, Action, EntryKey, MemberObjects, Observed, Registrar, Report, StreamId, World,
    },
    registration::{CONTROLLER_ANNOTATION, DISCONNECTED_AT, Proxy, Selector},
    tokens::Caller,
};
use bowline_xds::server::{Connecting, Workloads};
use jiff::Timestamp;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};
use serde_json::Value;
use tokio::{sync::mpsc, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::{debug, info, warn};

use crate::config::Config;

/// How often the registrar looks again without being woken (grace periods, heartbeats).
const TICK: Duration = Duration::from_secs(1);
/// An identical write is not repeated within this time (the member's source has not read it
/// back yet).
const SETTLE: Duration = Duration::from_secs(5);

/// What the xDS server reports.
#[derive(Debug)]
pub(crate) enum VmEvent {
    Connected {
        stream: StreamId,
        proxy: Proxy,
        cluster: Option<String>,
        at: Timestamp,
    },
    Health {
        stream: StreamId,
        report: Report,
    },
    Disconnected {
        stream: StreamId,
    },
}

/// Metric labels of a registration write.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    pub reason: String,
}

/// Metrics of the registration.
#[derive(Default)]
pub(crate) struct VmMetrics {
    /// Streams registering a VM now.
    pub connected: Gauge,
    /// Entry writes and deletions, by reason.
    pub writes: Family<ReasonLabel, Counter>,
    /// Failed writes.
    pub errors: Counter,
}

/// The xDS side: checks who may register and passes the streams on.
pub(crate) struct Registration {
    events: mpsc::UnboundedSender<VmEvent>,
    /// Where the bearer tokens of registering proxies are checked.
    tokens: Arc<bowline_vm::tokens::TokenStore>,
    /// Where the proxy's group and the selectors its labels must not join are found.
    registry: Shared,
    /// Streams open per token id, and each counted stream's token id.
    identities: parking_lot::Mutex<Identities>,
    /// `limits.streamsPerIdentity`.
    streams_per_identity: usize,
    /// Reviews service-account tokens presented on xDS streams.
    reviewer: Arc<crate::auth::Reviewer>,
    /// `listen.xdsPlaintextFrom`.
    plaintext_from: crate::config::PlaintextAccess,
}

impl Registration {
    /// The label rule, when the proxy's group is known now (a group that appears later is
    /// checked when its entry is written, which then is not).
    fn check_labels(
        &self,
        proxy: &Proxy,
        cluster: Option<&str>,
    ) -> Result<(), bowline_vm::registration::Refusal> {
        let registry = self.registry.read();
        let Some((member, group)) = find_group(&registry, &proxy.namespace, &proxy.group, cluster)
        else {
            return Ok(());
        };
        let namespaces = BTreeSet::from([proxy.namespace.clone()]);
        let selectors = selectors(&registry, &member, &namespaces);
        bowline_vm::registration::check_labels(&group, proxy, &selectors)
    }
}

/// xDS streams counted per authenticated identity (a registration token).
#[derive(Default)]
struct Identities {
    open: HashMap<String, usize>,
    streams: HashMap<u64, String>,
}

impl Registration {
    /// Counts a stream presenting a valid token against its token's limit; a stream over it
    /// is refused with `RESOURCE_EXHAUSTED` naming the token and the limit.
    fn count_identity(&self, c: &Connecting<'_>, caller: &Caller) -> Result<(), Status> {
        let Caller::Token(scope) = caller else {
            return Ok(());
        };
        let mut identities = self.identities.lock();
        let open = identities.open.entry(scope.id.clone()).or_default();
        if *open >= self.streams_per_identity {
            let status = Status::resource_exhausted(format!(
                "token {} ({}/{}) already has {open} xDS streams open, the most limits.streamsPerIdentity allows",
                scope.id, scope.namespace, scope.group
            ));
            return Err(refuse(status, &c.proxy.id, "limits.streamsPerIdentity"));
        }
        *open += 1;
        identities.streams.insert(c.stream, scope.id.clone());
        Ok(())
    }

    fn uncount_identity(&self, stream: u64) {
        let mut identities = self.identities.lock();
        if let Some(id) = identities.streams.remove(&stream)
            && let Some(open) = identities.open.get_mut(&id)
        {
            *open -= 1;
            if *open == 0 {
                identities.open.remove(&id);
            }
        }
    }
}

/// Why a registering stream is refused, as a gRPC status, logged with the proxy and the rule.
fn refuse(status: Status, proxy: &str, rule: &str) -> Status {
    warn!(
        node = proxy,
        rule,
        "registration refused: {}",
        status.message()
    );
    status
}

impl Workloads for Registration {
    fn authenticate<'a>(
        &'a self,
        credentials: bowline_xds::server::Credentials<'a>,
    ) -> futures::future::BoxFuture<'a, Result<bowline_xds::server::Authenticated, Status>> {
        Box::pin(async move {
            let caller = crate::auth::authenticate(
                credentials.peer,
                credentials.metadata,
                credentials.extensions,
                &self.tokens,
                &self.reviewer,
            )
            .await?;
            let caller: Arc<dyn std::any::Any + Send + Sync> = Arc::new(caller);
            Ok(Some(caller))
        })
    }

    fn connected(&self, c: Connecting<'_>) -> Result<(), Status> {
        let classified;
        let caller = match c.authenticated.and_then(|a| a.downcast_ref::<Caller>()) {
            Some(caller) => caller,
            None => {
                classified =
                    crate::auth::caller_of(c.metadata, c.extensions, c.peer, Some(&self.tokens));
                &classified
            }
        };
        let tls = c
            .extensions
            .get::<bowline_xds::transport::Origin>()
            .is_some_and(|o| o.transport == bowline_xds::transport::Transport::Tls);
        let claims = crate::auth::Claims {
            proxy: &c.proxy.id,
            namespace: c.proxy.namespace.as_deref(),
            cluster: c.proxy.member.as_deref(),
            group: c.proxy.auto_register_group.as_deref(),
        };
        crate::auth::stream_rule(caller, tls, c.peer, self.plaintext_from, &claims)?;
        self.count_identity(&c, caller)?;
        let registered = self.register(&c, caller);
        if registered.is_err() {
            self.uncount_identity(c.stream);
        }
        registered
    }

    fn health(&self, stream: u64, healthy: bool, message: Option<String>) {
        let _ = self.events.send(VmEvent::Health {
            stream,
            report: Report {
                healthy,
                message,
                at: Timestamp::now(),
            },
        });
    }

    fn disconnected(&self, stream: u64) {
        self.uncount_identity(stream);
        let _ = self.events.send(VmEvent::Disconnected { stream });
    }
}

impl Registration {
    /// Registers the stream's VM when its node asks to (`AUTO_REGISTER_GROUP`).
    fn register(&self, c: &Connecting<'_>, caller: &Caller) -> Result<(), Status> {
        let Some(group) = &c.proxy.auto_register_group else {
            return Ok(());
        };
        let Some(namespace) = &c.proxy.namespace else {
            return Err(refuse(
                Status::invalid_argument(format!(
                    "proxy {:?} asks to register into WorkloadGroup {group:?} (AUTO_REGISTER_GROUP) without NAMESPACE",
                    c.proxy.id
                )),
                &c.proxy.id,
                "NAMESPACE is required",
            ));
        };
        let account =
            {
                let registry = self.registry.read();
                find_group(&registry, namespace, group, c.proxy.member.as_deref()).map(|(_, g)| {
                    match g.template.service_account.as_str() {
                        "" => "default".to_string(),
                        account => account.to_string(),
                    }
                })
            };
        if account.is_none() && matches!(caller, Caller::Workload { .. }) {
            return Err(refuse(
                Status::permission_denied(format!(
                    "no member holds WorkloadGroup {namespace}/{group}: {caller} cannot be checked against its template's serviceAccount"
                )),
                &c.proxy.id,
                "workload-identity",
            ));
        }
        let account = account.unwrap_or_else(|| "default".to_string());
        crate::auth::authorize_registration(caller, &c.proxy.id, group, namespace, &account)?;
        if c.proxy.instance_ips.is_empty() {
            return Err(refuse(
                Status::invalid_argument(format!(
                    "proxy {:?} of WorkloadGroup {namespace}/{group} has no INSTANCE_IPS: its address is unknown",
                    c.proxy.id
                )),
                &c.proxy.id,
                "INSTANCE_IPS is required",
            ));
        }
        let proxy = Proxy {
            group: group.clone(),
            namespace: namespace.clone(),
            instance_ips: c.proxy.instance_ips.clone(),
            network: Some(c.proxy.network.to_string()).filter(|n| !n.is_empty()),
            labels: c.proxy.labels.clone(),
            locality: c.proxy.locality.clone(),
        };
        self.check_labels(&proxy, c.proxy.member.as_deref())
            .map_err(|refusal| {
                refuse(
                    Status::permission_denied(refusal.to_string()),
                    &c.proxy.id,
                    "proxy labels may not select more than the group's template",
                )
            })?;
        let _ = self.events.send(VmEvent::Connected {
            stream: c.stream,
            proxy,
            cluster: c.proxy.member.clone(),
            at: Timestamp::now(),
        });
        Ok(())
    }
}

type Writers = BTreeMap<String, Box<dyn Writer>>;

impl VmMetrics {
    /// Registers the counters.
    pub(crate) fn register(&self, metrics: &mut prometheus_client::registry::Registry) {
        metrics.register(
            "bowline_vm_registering_proxies",
            "Proxies connected to this instance that register a VM (AUTO_REGISTER_GROUP).",
            self.connected.clone(),
        );
        metrics.register(
            "bowline_vm_entry_writes",
            "Auto-registered WorkloadEntries written or deleted, by reason.",
            self.writes.clone(),
        );
        metrics.register(
            "bowline_vm_entry_write_errors",
            "Failed writes of auto-registered WorkloadEntries.",
            self.errors.clone(),
        );
    }
}

/// Starts the registration task; the returned hook goes to the ADS server.
pub(crate) fn spawn_registration(
    tasks: &mut JoinSet<()>,
    config: &Config,
    registry: Shared,
    metrics: Arc<VmMetrics>,
    tokens: Arc<bowline_vm::tokens::TokenStore>,
    reviewer: Arc<crate::auth::Reviewer>,
    shutdown: CancellationToken,
) -> Arc<Registration> {
    let (events, inbound) = mpsc::unbounded_channel();
    let writers: Writers = config
        .members
        .iter()
        .map(|m| (m.name.clone(), crate::mcs::writer(m, &shutdown, None)))
        .collect();
    let registrar = Registrar::new(
        config.vm.controller.clone(),
        config.vm.grace_period,
        Timestamp::now(),
    );
    // Without leader election this is the only instance: another controller named on an
    // entry is an earlier one, gone. With replicas, each renews a heartbeat Lease next to the
    // leader's, and the others are running while theirs changes.
    let peers = match &config.leader_election {
        None => Peers::Single,
        Some(election) => {
            let heard = Arc::new(parking_lot::RwLock::new(Heard::default()));
            let member = config
                .members
                .iter()
                .find(|m| m.name == election.member)
                .and_then(|m| crate::members::credentials(&m.source))
                .expect("leaderElection.member is a Kubernetes member (validated)");
            tasks.spawn(heartbeats(
                member,
                election.namespace.clone(),
                config.vm.controller.clone(),
                heard.clone(),
                shutdown.clone(),
            ));
            Peers::Heartbeats(heard)
        }
    };
    info!(controller = %config.vm.controller, grace = ?config.vm.grace_period, "VM auto-registration ready");
    tasks.spawn(run(
        registrar,
        peers,
        registry.clone(),
        writers,
        inbound,
        metrics,
        shutdown,
    ));
    Arc::new(Registration {
        events,
        tokens,
        registry,
        identities: Default::default(),
        streams_per_identity: config.limits.streams_per_identity,
        reviewer,
        plaintext_from: config.listen.xds_plaintext_from,
    })
}

/// How often this instance renews its heartbeat Lease.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// How long an instance whose heartbeat stopped changing counts as running.
const HEARTBEAT_LIFETIME: Duration = Duration::from_secs(30);

/// How the registrar learns which other instances run.
enum Peers {
    /// None: this is the only one.
    Single,
    /// From heartbeat Leases.
    Heartbeats(Arc<parking_lot::RwLock<Heard>>),
}

/// What the heartbeat Leases said last, and since when they have been read.
#[derive(Default)]
struct Heard {
    liveness: bowline_kube::heartbeat::Liveness,
    /// The first successful read.
    since: Option<Instant>,
}

impl Heard {
    /// Controllers known to have stopped: their Lease stopped changing, or (once Leases have
    /// been read for a lifetime) they have none. Until then nothing is taken over on a guess.
    fn stopped<'a>(&self, named: impl Iterator<Item = &'a String>) -> BTreeSet<String> {
        let mut stopped = self.liveness.stopped.clone();
        if self
            .since
            .is_some_and(|at| at.elapsed() >= HEARTBEAT_LIFETIME)
        {
            stopped.extend(
                named
                    .filter(|c| !self.liveness.running.contains(*c))
                    .cloned(),
            );
        }
        stopped
    }
}

/// Renews this instance's heartbeat and reads the others' every [`HEARTBEAT`].
async fn heartbeats(
    credentials: bowline_kube::Credentials,
    namespace: String,
    controller: String,
    heard: Arc<parking_lot::RwLock<Heard>>,
    shutdown: CancellationToken,
) {
    let mut beats = None;
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if beats.is_none() {
            match credentials.request_client().await {
                Ok(client) => {
                    beats = Some(bowline_kube::heartbeat::Heartbeats::new(
                        client,
                        &namespace,
                        &controller,
                        HEARTBEAT_LIFETIME,
                    ))
                }
                Err(e) => {
                    warn!("VM controller heartbeat: cannot connect: {e}");
                    continue;
                }
            }
        }
        let Some(beats) = beats.as_mut() else {
            continue;
        };
        if let Err(e) = beats.beat().await {
            warn!("VM controller heartbeat not renewed: {e}");
        }
        match beats.read().await {
            Ok(liveness) => {
                let mut heard = heard.write();
                heard.liveness = liveness;
                heard.since.get_or_insert_with(Instant::now);
            }
            Err(e) => warn!("VM controller heartbeats not read: {e}"),
        }
    }
}

async fn run(
    mut registrar: Registrar,
    peers: Peers,
    registry: Shared,
    writers: Writers,
    mut inbound: mpsc::UnboundedReceiver<VmEvent>,
    metrics: Arc<VmMetrics>,
    shutdown: CancellationToken,
) {
    let mut changes = registry.read().subscribe_changes();
    let mut tick = tokio::time::interval(TICK);
    let writers = Arc::new(parking_lot::Mutex::new(writers));
    let mut recent: HashMap<EntryKey, (Option<Value>, Instant)> = HashMap::new();
    // Connections whose entry cannot be built, logged once each.
    let mut refused: BTreeMap<u64, String> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            event = inbound.recv() => match event {
                Some(event) => handle(&mut registrar, event),
                None => return,
            },
            _ = changes.changed() => {}
            _ = tick.tick() => {}
        }
        while let Ok(event) = inbound.try_recv() {
            handle(&mut registrar, event);
        }
        metrics.connected.set(registrar.connected() as i64);
        let world = world(&registry, &peers);
        let now = Timestamp::now();
        recent.retain(|_, (_, at)| at.elapsed() < SETTLE);
        let refusals = registrar.refusals(&world);
        for (stream, why) in &refusals {
            if refused.get(stream) != Some(why) {
                warn!(
                    stream,
                    rule = "proxy labels may not select more than the group's template",
                    "{why}"
                );
            }
        }
        refused = refusals;
        let mut actions = Vec::new();
        for action in registrar.reconcile(&world, now) {
            let (key, content) = match &action {
                Action::Apply { key, entry, .. } => (key, Some(essence(entry))),
                Action::Delete { key, .. } => (key, None),
            };
            if recent.get(key).is_some_and(|(done, _)| *done == content) {
                continue;
            }
            recent.insert(key.clone(), (content, Instant::now()));
            actions.push(action);
        }
        if actions.is_empty() {
            continue;
        }
        let writers = writers.clone();
        let metrics = metrics.clone();
        let performed = tokio::task::spawn_blocking(move || {
            let mut writers = writers.lock();
            actions
                .into_iter()
                .filter_map(|action| perform(&mut writers, action, &metrics))
                .collect::<Vec<EntryKey>>()
        })
        .await;
        match performed {
            // A failed write is tried again at the next look, not held back as done.
            Ok(failed) => {
                for key in failed {
                    recent.remove(&key);
                }
            }
            Err(e) => warn!("VM registration writes failed: {e}"),
        }
    }
}

fn handle(registrar: &mut Registrar, event: VmEvent) {
    match event {
        VmEvent::Connected {
            stream,
            proxy,
            cluster,
            at,
        } => {
            let group = format!("{}/{}", proxy.namespace, proxy.group);
            match registrar.connect(stream, proxy, cluster, at) {
                Ok(()) => info!(stream, group, "VM proxy connected for registration"),
                Err(refusal) => warn!(stream, "VM proxy not registered: {refusal}"),
            }
        }
        VmEvent::Health { stream, report } => {
            if registrar.report(stream, report.clone()) {
                info!(
                    stream,
                    healthy = report.healthy,
                    message = report.message.as_deref().unwrap_or(""),
                    "VM health reported"
                );
            } else {
                debug!(
                    stream,
                    "health report from a stream that registers nothing, ignored"
                );
            }
        }
        VmEvent::Disconnected { stream } => registrar.disconnect(stream),
    }
}

/// What an identical write would not change: the object without the times written in it.
fn essence(entry: &Value) -> Value {
    let mut entry = entry.clone();
    if let Some(annotations) = entry["metadata"]["annotations"].as_object_mut() {
        annotations.remove(DISCONNECTED_AT);
    }
    if let Some(conditions) = entry["status"]["conditions"].as_array_mut() {
        for condition in conditions.iter_mut().filter_map(Value::as_object_mut) {
            condition.remove("lastProbeTime");
            condition.remove("lastTransitionTime");
        }
    }
    entry
}

/// Performs one action; the entry's key when the write failed.
fn perform(writers: &mut Writers, action: Action, metrics: &VmMetrics) -> Option<EntryKey> {
    let (key, reason) = match &action {
        Action::Apply { key, reason, .. } | Action::Delete { key, reason, .. } => {
            (key.clone(), *reason)
        }
    };
    let writer = writers.get_mut(&key.member)?;
    let write_key = WriteKey::new(WriteKind::WorkloadEntry, &key.namespace, &key.name);
    let result = match action {
        Action::Apply {
            entry,
            observed: None,
            ..
        } => writer.put(&write_key, &Arc::new(entry)).map(|_| true),
        Action::Apply {
            mut entry,
            observed: Some(observed),
            ..
        } => still(writer.as_mut(), &write_key, &observed).and_then(|version| match version {
            Some(version) => {
                if let Some(version) = version {
                    entry["metadata"]["resourceVersion"] = Value::String(version);
                }
                writer.put(&write_key, &Arc::new(entry)).map(|_| true)
            }
            None => Ok(false),
        }),
        Action::Delete { observed, .. } => {
            still(writer.as_mut(), &write_key, &observed).and_then(|version| match version {
                Some(version) => writer.remove(&write_key, version.as_deref()),
                None => Ok(false),
            })
        }
    };
    match result {
        Ok(true) => {
            metrics
                .writes
                .get_or_create(&ReasonLabel {
                    reason: reason.code().to_string(),
                })
                .inc();
            info!(entry = %key, %reason, "WorkloadEntry written");
        }
        Ok(false) => {
            debug!(entry = %key, %reason, "WorkloadEntry changed meanwhile; decided again when read back")
        }
        Err(e) => {
            metrics.errors.inc();
            warn!(entry = %key, %reason, "WorkloadEntry not written: {e}");
            return Some(key);
        }
    }
    None
}

/// Whether the member's copy still holds the `observed` connection annotations: `Some` with
/// its resource version (if it keeps one) when it does, `None` when it changed or is gone.
fn still(
    writer: &mut dyn Writer,
    key: &WriteKey,
    observed: &Observed,
) -> Result<Option<Option<String>>, bowline_mcs::writer::WriteError> {
    let Some(live) = writer.get(key)? else {
        return Ok(None);
    };
    let annotations: bowline_model::Labels =
        serde_json::from_value(live["metadata"]["annotations"].clone()).unwrap_or_default();
    if Observed::of(&annotations) != *observed {
        return Ok(None);
    }
    Ok(Some(
        live["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
    ))
}

/// The workload selectors of `member`'s Services and ServiceEntries in `namespaces`: what a
/// registering VM's own labels must not add it to.
fn selectors(
    registry: &bowline_registry::Registry,
    member: &bowline_model::MemberName,
    namespaces: &BTreeSet<String>,
) -> Vec<Selector> {
    let mut out = Vec::new();
    for namespace in namespaces {
        for (kind, name, labels) in registry.workload_selectors(member, namespace) {
            out.push(Selector {
                owner: format!("{kind:?} {namespace}/{name}"),
                namespace: namespace.clone(),
                labels,
            });
        }
    }
    out
}

/// WorkloadGroup `namespace/name` and the member holding it: the member whose cluster id is
/// `cluster` when it holds one, else the first that does (as the registrar picks it).
pub(crate) fn find_group(
    registry: &bowline_registry::Registry,
    namespace: &str,
    name: &str,
    cluster: Option<&str>,
) -> Option<(
    bowline_model::MemberName,
    bowline_model::objects::WorkloadGroup,
)> {
    let found: Vec<_> = registry
        .members()
        .into_iter()
        .filter_map(|member| {
            let group = registry
                .objects(&member.name, ObjectKind::WorkloadGroup)
                .into_iter()
                .find_map(|o| match o {
                    Object::WorkloadGroup(g)
                        if *g.meta.namespace == *namespace && *g.meta.name == *name =>
                    {
                        Some(g)
                    }
                    _ => None,
                })?;
            let id = member.admission.id().map(|id| id.to_string());
            Some((member.name, id, group))
        })
        .collect();
    let preferred = found
        .iter()
        .position(|(_, id, _)| cluster.is_some() && id.as_deref() == cluster)
        .unwrap_or(0);
    found
        .into_iter()
        .nth(preferred)
        .map(|(member, _, group)| (member, *group))
}

/// The synced members' groups and entries, and which other instances run.
fn world(registry: &Shared, peers: &Peers) -> World {
    let registry = registry.read();
    let mut world = World::default();
    for member in registry.members().into_iter().filter(|m| m.synced) {
        let objects = |kind| registry.objects(&member.name, kind);
        let groups: Vec<_> = objects(ObjectKind::WorkloadGroup)
            .into_iter()
            .filter_map(|o| match o {
                Object::WorkloadGroup(g) => Some(*g),
                _ => None,
            })
            .collect();
        let entries = objects(ObjectKind::WorkloadEntry)
            .into_iter()
            .filter_map(|o| match o {
                Object::WorkloadEntry(e) => Some(*e),
                _ => None,
            })
            .collect();
        let namespaces: BTreeSet<String> = groups
            .iter()
            .map(|g| g.meta.namespace.to_string())
            .collect();
        world.members.push(MemberObjects {
            member: member.name.to_string(),
            cluster: member.admission.id().map(|id| id.to_string()),
            selectors: selectors(&registry, &member.name, &namespaces),
            groups,
            entries,
        });
    }
    world.peers = match peers {
        Peers::Single => lifecycle::Peers::Alone,
        Peers::Heartbeats(heard) => {
            let named = world
                .members
                .iter()
                .flat_map(|m| &m.entries)
                .filter_map(|e| e.meta.annotations.get(CONTROLLER_ANNOTATION));
            lifecycle::Peers::Stopped(heard.read().stopped(named))
        }
    };
    world
}
