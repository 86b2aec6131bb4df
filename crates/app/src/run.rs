//! Starting and stopping the control plane: a few small steps, each starting one part.
//!
//! ```text
//!  sources ─► pump ─► registry ─► pipeline (views stage + MCS) ─► ClusterSet snapshots
//!                                        │ writers (one per member)        │
//!                                        ▼                                 ├─► xDS (plaintext, TLS)
//!                                     members                              ├─► DNS
//!                                                                          └─► admin
//! ```

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use bowline_admin::{AdminState, ClusterSetCollector, Readiness};
use bowline_registry::Shared;
use bowline_views::ClusterSet;
use prometheus_client::registry::Registry as Metrics;
use tokio::{net::TcpListener, sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::info;

use bowline_xds::transport::{Origin, Transport};

use crate::{
    config::Config,
    listeners::{Listeners, bind},
    mcs::{McsMetrics, spawn_pipeline},
    pump::PumpMetrics,
};

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
    /// Where each member's own DNS listener is (`members[].dnsListen`), by member name.
    pub member_dns_addrs: std::collections::BTreeMap<String, SocketAddr>,
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

/// What every step adds to: the tasks, the shutdown token, the metrics, the extra debug
/// views, and the ClusterSet snapshots every server reads.
struct Root<'a> {
    config: &'a Config,
    tasks: JoinSet<()>,
    shutdown: CancellationToken,
    metrics: Metrics,
    views: std::collections::BTreeMap<&'static str, bowline_admin::DebugView>,
    snapshot: watch::Receiver<Arc<ClusterSet>>,
    /// The listeners' connection counts and refusals.
    listen_metrics: Arc<bowline_net::Metrics>,
    /// The soft open-files limit, raised at start, that default connection limits share.
    open_files: u64,
}

/// What a TLS connection must send within its handshake timeout: no ClientHello and
/// Finished that complete a handshake are shorter.
const TLS_FIRST_BYTES: usize = 200;
/// A DNS query's length prefix and header.
const DNS_FIRST_BYTES: usize = 14;
/// `GET / HTTP/1.1\r\n`.
const HTTP1_FIRST_BYTES: usize = 16;

/// Starts sources, the registry pump, the views stage with the MCS controller, the xDS, DNS
/// and admin servers.
pub async fn start(config: &Config, listeners: Listeners) -> anyhow::Result<Running> {
    let registry = new_registry(config);
    let (snapshots, snapshot) = watch::channel(Arc::new(ClusterSet::before_start()));
    bowline_net::raise_open_files_limit();
    let listen_metrics = Arc::new(bowline_net::Metrics::default());
    let mut metrics = Metrics::default();
    listen_metrics.register(&mut metrics);
    let mut root = Root {
        config,
        tasks: JoinSet::new(),
        shutdown: CancellationToken::new(),
        metrics,
        views: Default::default(),
        snapshot,
        listen_metrics,
        open_files: bowline_net::open_files_limit().0,
    };
    let admin = bind(listeners.admin, config.listen.admin, "listen.admin").await?;
    let admin_addr = admin.local_addr()?;
    let (xds_addr, xds_tls_addr) = root
        .xds(listeners.xds, listeners.xds_tls, &registry)
        .await?;
    let (dns_addr, member_dns_addrs) = root.dns(listeners.dns).await?;
    let leadership = root.leader();
    root.pump(&registry);
    let mcs_metrics = root.mcs_metrics();
    spawn_pipeline(
        &mut root.tasks,
        config,
        registry.clone(),
        snapshots,
        mcs_metrics,
        leadership,
        root.shutdown.clone(),
    );
    root.admin(admin);
    info!(cluster_set = %config.cluster_set, members = config.members.len(), admin = %admin_addr, xds = %xds_addr, xds_tls = %xds_tls_addr, "bowline started");
    Ok(Running {
        admin_addr,
        xds_addr,
        xds_tls_addr,
        dns_addr,
        member_dns_addrs,
        registry,
        shutdown: root.shutdown,
        tasks: root.tasks,
    })
}

fn new_registry(config: &Config) -> Shared {
    Arc::new(parking_lot::RwLock::new(crate::offline::registry(config)))
}

impl Root<'_> {
    /// `listener` guarded by its `limits` (by default, a share of the open-files limit), as
    /// `name` in metrics and logs.
    fn guard(
        &self,
        listener: TcpListener,
        name: &'static str,
        limits: &crate::config::ListenerLimits,
        first_bytes: usize,
    ) -> bowline_net::Guard {
        let max_connections = limits
            .max_connections
            .unwrap_or_else(|| bowline_net::default_max_connections(self.open_files));
        let limits = bowline_net::Limits {
            max_connections,
            handshake_timeout: limits.handshake_timeout,
            first_bytes,
            idle_timeout: limits.idle_timeout,
        };
        info!(listener = name, max_connections, handshake_timeout = ?limits.handshake_timeout, idle_timeout = ?limits.idle_timeout, "listener limits");
        bowline_net::Guard::new(listener, name, limits, self.listen_metrics.clone())
    }

    /// The xDS server on both listeners, the VM registration behind it, its metrics and
    /// debug views; returns the plaintext and TLS addresses.
    async fn xds(
        &mut self,
        plaintext: Option<TcpListener>,
        tls: Option<TcpListener>,
        registry: &Shared,
    ) -> anyhow::Result<(SocketAddr, SocketAddr)> {
        let config = self.config;
        let plaintext = bind(plaintext, config.listen.xds, "listen.xds").await?;
        let tls = bind(tls, config.listen.xds_tls, "listen.xdsTls").await?;
        let addrs = (plaintext.local_addr()?, tls.local_addr()?);
        let state = crate::state::StateStore::of(config);
        let ca = state
            .signing_ca(config)
            .await
            .context("Bowline's CA, for the xDS TLS listener's certificate")?;
        let identity =
            crate::xds::tls_identity(&ca, addrs.1).context("the xDS TLS listener's certificate")?;
        let ca = Arc::new(ca);
        if state.keeps_files(config) {
            state.keep_root_ca(ca.clone(), &mut self.tasks, self.shutdown.clone());
        }
        let tokens = state
            .token_store(&mut self.tasks, self.shutdown.clone())
            .await;
        let ca_metrics = Arc::new(crate::ca_api::CaMetrics::default());
        ca_metrics.register(&mut self.metrics);
        let issued = ca_metrics.clone();
        self.views
            .insert("identities", Arc::new(move |_| Ok(issued.identities())));
        let reviewer = Arc::new(crate::auth::Reviewer {
            registry: registry.clone(),
            kubernetes: config
                .members
                .iter()
                .filter_map(|m| {
                    let credentials = crate::members::credentials(&m.source)?;
                    Some((bowline_model::MemberName::new(m.name.as_str()), credentials))
                })
                .collect(),
            audiences: config.ca.audiences.clone(),
            trust_domain: config.ca.trust_domain.clone(),
        });
        let certificates = crate::ca_api::CaServer::new(
            ca,
            tokens.clone(),
            registry.clone(),
            config.ca.clone(),
            reviewer.clone(),
            ca_metrics,
        );
        let connections = bowline_xds::status::Connections::default();
        crate::xds::register_metrics(&mut self.metrics, &connections);
        let vm_metrics = Arc::new(crate::vm::VmMetrics::default());
        vm_metrics.register(&mut self.metrics);
        let registration = crate::vm::spawn_registration(
            &mut self.tasks,
            config,
            registry.clone(),
            vm_metrics,
            tokens.clone(),
            reviewer,
            self.shutdown.clone(),
        );
        let ads = bowline_xds::server::Ads::new(self.snapshot.clone(), connections.clone())
            .with_mesh(bowline_xds::security::Mesh {
                trust_domain: config.ca.trust_domain.as_str().into(),
                root_namespace: config.mtls.root_namespace.as_str().into(),
            })
            .with_workloads(registration);
        let limits = &config.limits;
        for (listener, transport, tls) in [
            (
                self.guard(
                    plaintext,
                    "xds",
                    &limits.xds,
                    bowline_xds::transport::HTTP2_PREFACE_LEN,
                ),
                Transport::Plaintext,
                None,
            ),
            (
                self.guard(tls, "xds-tls", &limits.xds_tls, TLS_FIRST_BYTES),
                Transport::Tls,
                Some(identity),
            ),
        ] {
            let origin = Origin { transport };
            let shutdown = self.shutdown.clone();
            let mut routes = tonic::service::Routes::new(ads.clone());
            // Certificates only over TLS: the CSR's answer names an identity.
            if transport == Transport::Tls {
                routes = routes.add_service(certificates.clone());
            }
            crate::xds::spawn_server(&mut self.tasks, listener, routes, origin, tls, shutdown);
        }
        let replica = crate::leader::replica_identity(self.config);
        self.views.extend(crate::xds::debug_views(
            &connections,
            self.snapshot.clone(),
            replica,
        ));
        let hosts = self.snapshot.clone();
        self.views.insert(
            "hosts",
            Arc::new(move |_| {
                serde_json::to_value(&*hosts.borrow().hosts).map_err(|e| e.to_string())
            }),
        );
        Ok(addrs)
    }

    /// The DNS servers, their views and metrics; returns the shared listener's address and
    /// each member listener's.
    async fn dns(
        &mut self,
        sockets: Option<(Vec<tokio::net::UdpSocket>, TcpListener)>,
    ) -> anyhow::Result<(SocketAddr, std::collections::BTreeMap<String, SocketAddr>)> {
        let config = self.config;
        let (udp, tcp) = match sockets {
            Some(sockets) => sockets,
            None => Listeners::bind_dns(config.listen.dns)
                .await
                .context("listen.dns")?,
        };
        let addr = tcp.local_addr()?;
        let metrics = Arc::new(crate::dns::DnsMetrics::default());
        metrics.register(&mut self.metrics);
        let (dns_views, dns_view) = watch::channel(Arc::new(bowline_dns::answer::View::default()));
        let audience = crate::dns::Audience::ClusterSet {
            cluster_local_member: config.dns.cluster_local_member.clone(),
        };
        crate::dns::spawn_views(
            &mut self.tasks,
            self.snapshot.clone(),
            dns_views,
            (config.member_sync_timeout, audience),
            self.shutdown.clone(),
        );
        self.views.insert(
            "dns_zone",
            crate::dns::zone_view(dns_view.clone(), config.dns.ttl),
        );
        let tcp = self.guard(tcp, "dns-tcp", &config.limits.dns, DNS_FIRST_BYTES);
        crate::dns::spawn_server(
            &mut self.tasks,
            udp,
            tcp,
            dns_view,
            config.dns.ttl,
            metrics.clone(),
            self.shutdown.clone(),
        );
        let members = self.member_dns(metrics).await?;
        Ok((addr, members))
    }

    /// One DNS listener per member with `dnsListen`, answering as that member sees the
    /// ClusterSet.
    async fn member_dns(
        &mut self,
        metrics: Arc<crate::dns::DnsMetrics>,
    ) -> anyhow::Result<std::collections::BTreeMap<String, SocketAddr>> {
        let config = self.config;
        let mut addrs = std::collections::BTreeMap::new();
        for member in &config.members {
            let Some(listen) = member.dns_listen else {
                continue;
            };
            let field = format!("members[{}].dnsListen", member.name);
            let (udp, tcp) = Listeners::bind_dns(listen).await.context(field)?;
            let addr = tcp.local_addr()?;
            tracing::info!(member = %member.name, "DNS for the member's clients on {addr}");
            addrs.insert(member.name.clone(), addr);
            let (views, view) = watch::channel(Arc::new(bowline_dns::answer::View::default()));
            let audience = crate::dns::Audience::Member(member.name.clone());
            crate::dns::spawn_views(
                &mut self.tasks,
                self.snapshot.clone(),
                views,
                (config.member_sync_timeout, audience),
                self.shutdown.clone(),
            );
            let tcp = self.guard(tcp, "dns-tcp", &config.limits.dns, DNS_FIRST_BYTES);
            crate::dns::spawn_server(
                &mut self.tasks,
                udp,
                tcp,
                view,
                config.dns.ttl,
                metrics.clone(),
                self.shutdown.clone(),
            );
        }
        Ok(addrs)
    }

    /// Leader election (always leading without `leaderElection`), its gauge and debug view.
    fn leader(&mut self) -> watch::Receiver<bowline_kube::lease::Leadership> {
        let gauge = prometheus_client::metrics::gauge::Gauge::default();
        self.metrics.register(
            "bowline_leader",
            "1 while this replica holds the leader Lease and writes into members (always 1 without leaderElection).",
            gauge.clone(),
        );
        let leadership =
            crate::leader::spawn_leader(&mut self.tasks, self.config, gauge, self.shutdown.clone());
        self.views
            .insert("leader", crate::leader::view(leadership.clone()));
        leadership
    }

    /// One source per member and the pump applying their events to the registry.
    fn pump(&mut self, registry: &Shared) {
        let metrics = Arc::new(PumpMetrics::default());
        metrics.register(&mut self.metrics);
        crate::pump::spawn(
            &mut self.tasks,
            self.config,
            registry.clone(),
            metrics,
            &self.shutdown,
        );
    }

    /// The MCS controller's counters, registered.
    fn mcs_metrics(&mut self) -> Arc<McsMetrics> {
        let metrics = Arc::new(McsMetrics::default());
        metrics.register(&mut self.metrics);
        metrics
    }

    /// The admin server, reading the snapshots, every metric and every debug view.
    fn admin(&mut self, listener: TcpListener) {
        let limits = self.config.limits.admin;
        let guard = self.guard(listener, "admin", &limits, HTTP1_FIRST_BYTES);
        let mut metrics = std::mem::take(&mut self.metrics);
        metrics.register_collector(Box::new(ClusterSetCollector(self.snapshot.clone())));
        let state = AdminState {
            snapshots: self.snapshot.clone(),
            metrics: Arc::new(metrics),
            readiness: Readiness::new(self.config.member_sync_timeout),
            views: std::mem::take(&mut self.views),
        };
        let shutdown = self.shutdown.clone();
        let hosts: Arc<[String]> = self.config.listen.admin_hosts.clone().into();
        self.tasks.spawn(bowline_admin::serve(
            guard,
            state,
            limits.handshake_timeout,
            hosts,
            self.config.listen.admin_debug,
            shutdown,
        ));
    }
}
