//! Starting and stopping the control plane: a few small `spawn_*` steps.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use anyhow::Context;
use bowline_admin::{AdminState, ClusterSetCollector, Readiness};
use bowline_model::{EventBody, MemberName, SourceEvent};
use bowline_registry::{MemberConfig, Registry, Shared};
use bowline_source::ManifestMember;
use bowline_views::ClusterSet;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use tokio::{
    net::TcpListener,
    sync::{mpsc, watch},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, debug, info, info_span};

use bowline_xds::transport::{Origin, Transport};

use crate::{
    config::{Config, MemberSource},
    mcs::{McsMetrics, spawn_pipeline},
};

/// Largest number of source events applied to the registry under one lock.
const MAX_BATCH: usize = 256;

/// A running control plane.
pub struct Running {
    /// Where the admin server listens.
    pub admin_addr: SocketAddr,
    /// Where the xDS server listens (plaintext).
    pub xds_addr: SocketAddr,
    /// Where the xDS server listens over TLS.
    pub xds_tls_addr: SocketAddr,
    /// Where the DNS server listens (UDP and TCP).
    pub dns_addr: SocketAddr,
    /// The registry.
    pub registry: Shared,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Running {
    /// Stops every task and waits for them.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// A token that stops the control plane when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Metric labels naming a member.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MemberLabel {
    pub member: String,
}

/// Counters of the event pump.
#[derive(Default)]
struct PumpMetrics {
    events: Family<MemberLabel, Counter>,
    batches: Counter,
    recomputed: Counter,
}

/// Listeners bound by the caller instead of the configured addresses (tests and the demo
/// bind port 0).
#[derive(Default)]
pub struct Listeners {
    /// Admin HTTP.
    pub admin: Option<TcpListener>,
    /// xDS gRPC.
    pub xds: Option<TcpListener>,
    /// xDS gRPC over TLS.
    pub xds_tls: Option<TcpListener>,
    /// DNS over UDP and TCP (both on the same address).
    pub dns: Option<(Vec<tokio::net::UdpSocket>, TcpListener)>,
}

impl Listeners {
    /// Binds DNS on `addr` over TCP and over UDP with one socket per CPU (`SO_REUSEPORT`: the
    /// kernel spreads queries over them, and each has its own receive loop); port 0 picks one
    /// free for both.
    pub async fn bind_dns(
        addr: SocketAddr,
    ) -> anyhow::Result<(Vec<tokio::net::UdpSocket>, TcpListener)> {
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        for _ in 0..16 {
            let first =
                reuse_port_udp(addr).with_context(|| format!("cannot listen on {addr}/udp"))?;
            let bound = first.local_addr()?;
            match TcpListener::bind(bound).await {
                Ok(tcp) => {
                    let mut udp = vec![first];
                    for _ in 1..workers {
                        udp.push(
                            reuse_port_udp(bound)
                                .with_context(|| format!("cannot listen on {bound}/udp"))?,
                        );
                    }
                    return Ok((udp, tcp));
                }
                Err(_) if addr.port() == 0 => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot listen on {addr}/tcp")),
            }
        }
        anyhow::bail!("no port free for both UDP and TCP on {}", addr.ip())
    }

    /// Every listener on an ephemeral port of `127.0.0.1` (tests).
    pub async fn loopback() -> anyhow::Result<Self> {
        let any: SocketAddr = "127.0.0.1:0".parse()?;
        Ok(Self {
            admin: Some(TcpListener::bind(any).await?),
            xds: Some(TcpListener::bind(any).await?),
            xds_tls: Some(TcpListener::bind(any).await?),
            dns: Some(Self::bind_dns(any).await?),
        })
    }
}

async fn bind(
    given: Option<TcpListener>,
    addr: std::net::SocketAddr,
    field: &str,
) -> anyhow::Result<TcpListener> {
    match given {
        Some(listener) => Ok(listener),
        None => TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} ({field})")),
    }
}

/// Starts sources, the registry pump, the MCS controller, the xDS server and the admin server.
pub async fn start(config: &Config, listeners: Listeners) -> anyhow::Result<Running> {
    let registry: Shared = Arc::new(parking_lot::RwLock::new(Registry::new(
        config.cluster_set.clone(),
        config.members.iter().map(|m| MemberConfig {
            name: MemberName::new(m.name.as_str()),
            id: m.id.clone(),
            network: m.network.clone(),
        }),
    )));
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let pump_metrics = Arc::new(PumpMetrics::default());
    let mcs_metrics = Arc::new(McsMetrics::default());
    let (snapshots, snapshot) = watch::channel(Arc::new(ClusterSet::default()));
    let mut metrics = metrics_registry(&snapshot, &pump_metrics, &mcs_metrics);

    let admin = bind(listeners.admin, config.listen.admin, "listen.admin").await?;
    let admin_addr = admin.local_addr()?;
    let xds = bind(listeners.xds, config.listen.xds, "listen.xds").await?;
    let xds_addr = xds.local_addr()?;
    let xds_tls = bind(listeners.xds_tls, config.listen.xds_tls, "listen.xdsTls").await?;
    let xds_tls_addr = xds_tls.local_addr()?;
    let state = crate::state::StateStore::of(config);
    let ca = state
        .root_ca()
        .await
        .context("Bowline's root CA, for the xDS TLS listener's certificate")?;
    let identity = crate::xds::tls_identity(&ca, xds_tls_addr)
        .context("the xDS TLS listener's certificate")?;
    let tokens = state.token_store(&mut tasks, shutdown.clone()).await;
    let connections = bowline_xds::status::Connections::default();
    metrics.register_collector(Box::new(crate::xds::XdsCollector(connections.clone())));
    metrics.register(
        "bowline_xds_push_latency_seconds",
        "From publishing a new ClusterSet snapshot to a response for it being queued on a stream.",
        connections.push_latency(),
    );
    let vm_metrics = Arc::new(crate::vm::VmMetrics::default());
    metrics.register(
        "bowline_vm_registering_proxies",
        "Proxies connected to this instance that register a VM (AUTO_REGISTER_GROUP).",
        vm_metrics.connected.clone(),
    );
    metrics.register(
        "bowline_vm_entry_writes",
        "Auto-registered WorkloadEntries written or deleted, by reason.",
        vm_metrics.writes.clone(),
    );
    metrics.register(
        "bowline_vm_entry_write_errors",
        "Failed writes of auto-registered WorkloadEntries.",
        vm_metrics.errors.clone(),
    );
    let registration = crate::vm::spawn_registration(
        &mut tasks,
        config,
        registry.clone(),
        vm_metrics,
        tokens,
        shutdown.clone(),
    );
    let ads = bowline_xds::server::Ads::new(snapshot.clone(), connections.clone())
        .with_workloads(registration);
    for (listener, transport, tls) in [
        (xds, Transport::Plaintext, None),
        (xds_tls, Transport::Tls, Some(identity)),
    ] {
        let origin = Origin { transport };
        crate::xds::spawn_server(
            &mut tasks,
            listener,
            ads.clone(),
            origin,
            tls,
            shutdown.clone(),
        );
    }
    let mut views = crate::xds::debug_views(&connections);
    let leader_gauge = prometheus_client::metrics::gauge::Gauge::default();
    metrics.register(
        "bowline_leader",
        "1 while this replica holds the leader Lease and writes into members (always 1 without leaderElection).",
        leader_gauge.clone(),
    );
    let leadership =
        crate::leader::spawn_leader(&mut tasks, config, leader_gauge, shutdown.clone());
    views.insert("leader", crate::leader::view(leadership.clone()));
    let hosts = snapshot.clone();
    views.insert(
        "hosts",
        Arc::new(move |_| serde_json::to_value(&*hosts.borrow().hosts).map_err(|e| e.to_string())),
    );
    let (udp, tcp) = match listeners.dns {
        Some(sockets) => sockets,
        None => Listeners::bind_dns(config.listen.dns)
            .await
            .context("listen.dns")?,
    };
    let dns_addr = tcp.local_addr()?;
    let dns_metrics = Arc::new(crate::dns::DnsMetrics::default());
    metrics.register(
        "bowline_dns_queries",
        "DNS queries by type and response code.",
        dns_metrics.queries.clone(),
    );
    metrics.register(
        "bowline_dns_query_seconds",
        "Time to answer a DNS query.",
        dns_metrics.latency.clone(),
    );
    let metrics = Arc::new(metrics);
    let (dns_views, dns_view) = watch::channel(Arc::new(bowline_dns::answer::View::default()));
    crate::dns::spawn_views(
        &mut tasks,
        snapshot.clone(),
        dns_views,
        (
            config.member_sync_timeout,
            config.dns.cluster_local_member.clone(),
        ),
        shutdown.clone(),
    );
    views.insert(
        "dns_zone",
        crate::dns::zone_view(dns_view.clone(), config.dns.ttl),
    );
    crate::dns::spawn_server(
        &mut tasks,
        udp,
        tcp,
        dns_view,
        config.dns.ttl,
        dns_metrics,
        shutdown.clone(),
    );
    spawn_admin(
        &mut tasks,
        admin,
        AdminState {
            snapshots: snapshot,
            metrics,
            readiness: Readiness::new(config.member_sync_timeout),
            views,
        },
        shutdown.clone(),
    );

    let (events_tx, events_rx) = mpsc::channel(1024);
    let spans = spawn_sources(&mut tasks, config, events_tx, &shutdown);
    spawn_pump(
        &mut tasks,
        registry.clone(),
        events_rx,
        spans,
        pump_metrics,
        config.stale_endpoint_ttl,
    );
    spawn_pipeline(
        &mut tasks,
        config,
        registry.clone(),
        snapshots,
        mcs_metrics,
        leadership,
        shutdown.clone(),
    );
    info!(cluster_set = %config.cluster_set, members = config.members.len(), admin = %admin_addr, xds = %xds_addr, xds_tls = %xds_tls_addr, "bowline started");
    Ok(Running {
        admin_addr,
        xds_addr,
        xds_tls_addr,
        dns_addr,
        registry,
        shutdown,
        tasks,
    })
}

fn metrics_registry(
    snapshots: &watch::Receiver<Arc<ClusterSet>>,
    pump: &Arc<PumpMetrics>,
    mcs: &Arc<McsMetrics>,
) -> prometheus_client::registry::Registry {
    let mut metrics = prometheus_client::registry::Registry::default();
    metrics.register_collector(Box::new(ClusterSetCollector(snapshots.clone())));
    metrics.register(
        "bowline_source_events",
        "Events received from member sources.",
        pump.events.clone(),
    );
    metrics.register(
        "bowline_registry_batches",
        "Batches of source events applied to the registry.",
        pump.batches.clone(),
    );
    metrics.register(
        "bowline_registry_recomputed",
        "(member, service) contributions recomputed by the registry.",
        pump.recomputed.clone(),
    );
    metrics.register(
        "bowline_mcs_reconciles",
        "MCS desired-state computations (one per ClusterSet snapshot).",
        mcs.reconciles.clone(),
    );
    metrics.register(
        "bowline_mcs_objects_written",
        "Objects written into members by the MCS controller.",
        mcs.written.clone(),
    );
    metrics.register(
        "bowline_mcs_objects_deleted",
        "Objects deleted from members by the MCS controller.",
        mcs.deleted.clone(),
    );
    metrics.register(
        "bowline_mcs_write_errors",
        "Failed MCS reconciles of a member.",
        mcs.errors.clone(),
    );
    metrics
}

fn spawn_admin(
    tasks: &mut JoinSet<()>,
    listener: TcpListener,
    state: AdminState,
    shutdown: CancellationToken,
) {
    tasks.spawn(async move {
        if let Err(e) = bowline_admin::serve(listener, state, shutdown.cancelled_owned()).await {
            tracing::error!("admin server stopped: {e}");
        }
    });
}

/// One source per member, each in a span that later carries the member's cluster id.
fn spawn_sources(
    tasks: &mut JoinSet<()>,
    config: &Config,
    events: mpsc::Sender<SourceEvent>,
    shutdown: &CancellationToken,
) -> HashMap<MemberName, Span> {
    let mut spans = HashMap::new();
    for member in &config.members {
        let name = MemberName::new(member.name.as_str());
        let span = info_span!("member", member = %name, cluster = tracing::field::Empty);
        match &member.source {
            MemberSource::Manifests(dir) => {
                let source = ManifestMember {
                    member: name.clone(),
                    dir: dir.clone(),
                    debounce: config.watch.debounce,
                    resync: config.watch.resync,
                };
                tasks.spawn(
                    source
                        .run(events.clone(), shutdown.clone())
                        .instrument(span.clone()),
                );
            }
            source @ (MemberSource::Kubeconfig { .. } | MemberSource::InCluster) => {
                let source = bowline_kube::KubeMember {
                    member: name.clone(),
                    credentials: credentials(source).expect("a Kubernetes member"),
                    options: bowline_kube::WatchOptions::default(),
                };
                tasks.spawn(
                    source
                        .run(events.clone(), shutdown.clone())
                        .instrument(span.clone()),
                );
            }
        }
        spans.insert(name, span);
    }
    spans
}

/// How a Kubernetes member is reached; `None` for a manifest directory.
pub(crate) fn credentials(source: &MemberSource) -> Option<bowline_kube::Credentials> {
    match source {
        MemberSource::Kubeconfig { path, context } => Some(bowline_kube::Credentials::Kubeconfig {
            path: path.clone(),
            context: context.clone(),
        }),
        MemberSource::InCluster => Some(bowline_kube::Credentials::InCluster),
        MemberSource::Manifests(_) => None,
    }
}

/// Applies source events to the registry in batches; records admitted ids into member spans;
/// withdraws the endpoints of members whose source has been failing for longer than
/// `stale_ttl`.
fn spawn_pump(
    tasks: &mut JoinSet<()>,
    registry: Shared,
    mut events: mpsc::Receiver<SourceEvent>,
    spans: HashMap<MemberName, Span>,
    metrics: Arc<PumpMetrics>,
    stale_ttl: Option<std::time::Duration>,
) {
    tasks.spawn(async move {
        let mut recorded: HashMap<MemberName, bowline_model::ClusterId> = HashMap::new();
        let mut failing_since: HashMap<MemberName, tokio::time::Instant> = HashMap::new();
        loop {
            let deadline = stale_ttl.and_then(|ttl| {
                failing_since
                    .iter()
                    .map(|(member, since)| (*since + ttl, member.clone()))
                    .min()
            });
            let first = tokio::select! {
                event = events.recv() => match event {
                    Some(event) => event,
                    None => return,
                },
                _ = sleep_until(deadline.as_ref().map(|d| d.0)) => {
                    let member = deadline.expect("woken by a deadline").1;
                    failing_since.remove(&member);
                    SourceEvent { member, body: EventBody::Withdraw }
                }
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match events.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
            for event in &batch {
                match event.body {
                    EventBody::SourceError(_) => {
                        failing_since
                            .entry(event.member.clone())
                            .or_insert_with(tokio::time::Instant::now);
                    }
                    EventBody::Reset { .. } | EventBody::Changes { .. } => {
                        failing_since.remove(&event.member);
                    }
                    EventBody::Missing(_) | EventBody::Withdraw => {}
                }
                metrics
                    .events
                    .get_or_create(&MemberLabel {
                        member: event.member.to_string(),
                    })
                    .inc();
            }
            let (changes, members) = {
                let mut reg = registry.write();
                let changes = reg.apply_all(batch);
                let members = changes.members.then(|| reg.members());
                (changes, members)
            };
            metrics.batches.inc();
            metrics.recomputed.inc_by(changes.recomputed as u64);
            for member in members.into_iter().flatten() {
                let (Some(id), Some(span)) = (member.admission.id(), spans.get(&member.name))
                else {
                    continue;
                };
                if recorded.get(&member.name) != Some(id) {
                    span.record("cluster", id.as_str());
                    recorded.insert(member.name.clone(), id.clone());
                }
            }
            debug!(
                services = changes.services.len(),
                recomputed = changes.recomputed,
                gateways = changes.gateways,
                "registry updated"
            );
        }
    });
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A non-blocking UDP socket on `addr` with `SO_REUSEPORT`, so that several can share it.
fn reuse_port_udp(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // `[::]` answers IPv4 clients too, whatever the system default.
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}
