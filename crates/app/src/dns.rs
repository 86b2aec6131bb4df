//! The DNS server in the composition root: views chained after the MCS outcome, sockets,
//! metrics.

use std::{sync::Arc, time::Duration};

use bowline_dns::{
    answer::{LOCAL_ZONE, LocalZone, View, ZONE},
    server::Handler,
};
use bowline_model::ClusterId;
use bowline_views::ClusterSet;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
};
use tokio::{
    net::{TcpListener, UdpSocket},
    sync::watch,
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::error;

/// Labels of the query counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct QueryLabels {
    qtype: &'static str,
    rcode: &'static str,
}

/// DNS metrics.
pub(crate) struct DnsMetrics {
    pub queries: Family<QueryLabels, Counter>,
    pub latency: Histogram,
}

impl Default for DnsMetrics {
    fn default() -> Self {
        Self {
            queries: Family::default(),
            latency: Histogram::new(exponential_buckets(0.000_01, 2.0, 16)),
        }
    }
}

impl DnsMetrics {
    /// Registers the query counter and the latency histogram.
    pub(crate) fn register(&self, metrics: &mut prometheus_client::registry::Registry) {
        metrics.register(
            "bowline_dns_queries",
            "DNS queries by type and response code.",
            self.queries.clone(),
        );
        metrics.register(
            "bowline_dns_query_seconds",
            "Time to answer a DNS query.",
            self.latency.clone(),
        );
    }
}

/// Republishes the DNS view with every ClusterSet snapshot: imports, the ClusterSet's
/// namespaces, whether every member synced (or the sync timeout passed), and the
/// `cluster.local` member's own services when one is configured.
pub(crate) fn spawn_views(
    tasks: &mut JoinSet<()>,
    mut snapshots: watch::Receiver<Arc<ClusterSet>>,
    views: watch::Sender<Arc<View>>,
    (sync_timeout, cluster_local_member): (Duration, Option<ClusterId>),
    shutdown: CancellationToken,
) {
    let started = tokio::time::Instant::now();
    tasks.spawn(async move {
        loop {
            let snapshot = snapshots.borrow_and_update().clone();
            let local = cluster_local_member
                .as_ref()
                .map(|id| LocalZone::from_cluster_set(&snapshot, id));
            let namespaces = snapshot.namespaces().into_iter().map(String::from).collect();
            let synced = snapshot.version > 0
                && (snapshot.synced || started.elapsed() >= sync_timeout);
            views.send_replace(Arc::new(View {
                imports: Arc::new(snapshot.imports().clone()),
                namespaces,
                synced,
                local,
            }));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = snapshots.changed() => if changed.is_err() { return },
                // Re-evaluate `synced` when the sync timeout passes without any change.
                _ = tokio::time::sleep_until(started + sync_timeout), if started.elapsed() < sync_timeout => {}
            }
        }
    });
}

pub(crate) fn spawn_server(
    tasks: &mut JoinSet<()>,
    udp: Vec<UdpSocket>,
    tcp: TcpListener,
    views: watch::Receiver<Arc<View>>,
    ttl: Duration,
    metrics: Arc<DnsMetrics>,
    shutdown: CancellationToken,
) {
    let observe = Arc::new(move |qtype, rcode, elapsed: Duration| {
        metrics
            .queries
            .get_or_create(&QueryLabels { qtype, rcode })
            .inc();
        metrics.latency.observe(elapsed.as_secs_f64());
    });
    let handler = Handler::new(views, ttl, observe);
    tasks.spawn(async move {
        if let Err(e) =
            bowline_dns::server::serve(udp, tcp, handler, shutdown.cancelled_owned()).await
        {
            error!("DNS server stopped: {e}");
        }
    });
}

/// `/debug/dns_zone?zone=clusterset.local|cluster.local`: the zone as a master file, every
/// record the DNS server answers now.
pub(crate) fn zone_view(
    views: watch::Receiver<Arc<View>>,
    ttl: Duration,
) -> bowline_admin::DebugView {
    Arc::new(move |query| {
        let apex = query.get("zone").map_or(ZONE, String::as_str);
        let view = views.borrow().clone();
        let served = apex == ZONE || (apex == LOCAL_ZONE && view.local.is_some());
        if !served {
            return Err(format!(
                "zone {apex:?} is not served: {ZONE}, or {LOCAL_ZONE} with dns.clusterLocalMember"
            ));
        }
        let ttl = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX).max(1);
        Ok(serde_json::json!({
            "zone": apex,
            "zoneFile": bowline_dns::zone::zone_file(&view, apex, ttl),
        }))
    })
}
