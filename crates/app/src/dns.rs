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
use tokio::{net::UdpSocket, sync::watch, task::JoinSet};
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

/// Whom a DNS listener answers for.
#[derive(Clone, Debug)]
pub(crate) enum Audience {
    /// Anyone (`listen.dns`): every import, and `cluster.local` of `dns.clusterLocalMember`.
    ClusterSet {
        /// `dns.clusterLocalMember`.
        cluster_local_member: Option<ClusterId>,
    },
    /// The clients of one member (`members[].dnsListen`, by member name): the imports that
    /// reach it, and its own Services under `cluster.local`.
    Member(String),
}

/// Republishes the DNS view with every ClusterSet snapshot: imports, the ClusterSet's
/// namespaces, whether every member synced (or the sync timeout passed), and the
/// `cluster.local` member's own services when one is configured.
pub(crate) fn spawn_views(
    tasks: &mut JoinSet<()>,
    mut snapshots: watch::Receiver<Arc<ClusterSet>>,
    views: watch::Sender<Arc<View>>,
    (sync_timeout, audience): (Duration, Audience),
    shutdown: CancellationToken,
) {
    let started = tokio::time::Instant::now();
    tasks.spawn(async move {
        loop {
            let snapshot = snapshots.borrow_and_update().clone();
            // A name not found is NXDOMAIN only once the imports were computed from every
            // member (SERVFAIL until then: "try again", not "it does not exist").
            let synced = snapshot.version > 0
                && !snapshot.starting
                && (snapshot.synced || started.elapsed() >= sync_timeout);
            views.send_replace(Arc::new(view(&snapshot, synced, &audience)));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = snapshots.changed() => if changed.is_err() { return },
                // Re-evaluate `synced` when the sync timeout passes without any change.
                _ = tokio::time::sleep_until(started + sync_timeout), if started.elapsed() < sync_timeout => {}
            }
        }
    });
}

/// The DNS view of `snapshot` for `audience`. Every import keeps its `Arc`, so the DNS
/// server's caches recompute only the names of the imports that changed
/// (`bowline_dns::cache`).
fn view(snapshot: &ClusterSet, synced: bool, audience: &Audience) -> View {
    let namespaces = snapshot
        .namespaces()
        .into_iter()
        .map(String::from)
        .collect();
    match audience {
        Audience::ClusterSet {
            cluster_local_member,
        } => View {
            imports: Arc::new(snapshot.imports().clone()),
            namespaces,
            synced,
            local: cluster_local_member
                .as_ref()
                .map(|id| LocalZone::from_cluster_set(snapshot, id)),
        },
        Audience::Member(name) => {
            let status = snapshot.members.iter().find(|m| m.name.as_str() == name);
            match status.and_then(|m| m.admission.id()) {
                Some(id) => View {
                    imports: Arc::new(snapshot.imports_for(id.as_str())),
                    namespaces,
                    synced,
                    local: Some(LocalZone::from_cluster_set(snapshot, id)),
                },
                // Not (or no longer) a member: nothing is known for its clients, and
                // every answer is SERVFAIL until it is admitted.
                None => View {
                    synced: false,
                    local: Some(LocalZone {
                        member: name.clone(),
                        ..LocalZone::default()
                    }),
                    ..View::default()
                },
            }
        }
    }
}

/// Serves DNS on `udp` and `tcp` from `views`, counting every query in `metrics`.
pub(crate) fn spawn_server(
    tasks: &mut JoinSet<()>,
    udp: Vec<UdpSocket>,
    tcp: bowline_net::Guard,
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
        if let Err(e) = bowline_dns::server::serve(udp, tcp, handler, shutdown).await {
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

#[cfg(test)]
mod tests {

    use bowline_dns::{answer::RData, cache::Cache, server::Protocol, zone};
    use bowline_mcs::Snapshot;

    use super::*;

    /// The demo's DNS view, `cluster.local` answered for east as the demo configures it.
    fn demo_view() -> View {
        let dir = tempfile::tempdir().unwrap();
        let (config, registry) = crate::offline::demo(dir.path()).unwrap();
        let mut controller = crate::offline::controller(&config);
        let outcome = controller.reconcile(
            &Snapshot::from_registry(&registry),
            "2026-11-22T00:00:00Z".parse().unwrap(),
        );
        let snapshot = bowline_views::from_scratch(&registry, outcome);
        let audience = Audience::ClusterSet {
            cluster_local_member: config.dns.cluster_local_member.clone(),
        };
        view(&snapshot, true, &audience)
    }

    fn query(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
        let mut out = id.to_be_bytes().to_vec();
        out.extend([1, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
        for label in name.split('.').filter(|l| !l.is_empty()) {
            out.push(u8::try_from(label.len()).unwrap());
            out.extend(label.as_bytes());
        }
        out.extend([0, (qtype >> 8) as u8, qtype as u8, 0, 1]);
        if let Some(payload) = edns {
            out.extend([
                0,
                0,
                41,
                (payload >> 8) as u8,
                payload as u8,
                0,
                0,
                0,
                0,
                0,
                0,
            ]);
        }
        out
    }

    /// Over every name of the demo's zones, in lower, upper and mixed case, for every type
    /// served and an unknown one, with and without EDNS, over UDP and TCP: the cached
    /// response (computed for the first spelling, copied for the others) is the reference
    /// path's, byte for byte.
    #[test]
    fn cached_demo_answers_are_the_reference_bytes() {
        let view = demo_view();
        let (_, views) = watch::channel(Arc::new(view.clone()));
        let handler = Handler::new(views, Duration::from_secs(5), Arc::new(|_, _, _| {}));
        let mut cache = Cache::new(Arc::new(view.clone()));
        let src = "127.0.0.1:5300".parse().unwrap();
        let mut names = Vec::new();
        for apex in [ZONE, LOCAL_ZONE] {
            for record in zone::records(&view, apex) {
                if let RData::Srv { target, .. } = &record.data {
                    names.push(target.clone());
                }
                names.push(record.name);
            }
        }
        names.sort();
        names.dedup();
        assert!(names.len() > 20, "the demo has names: {names:?}");
        let mut out = Vec::new();
        let mut id = 0u16;
        for name in &names {
            let mixed: String = name
                .char_indices()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            for spelled in [name.clone(), name.to_ascii_uppercase(), mixed] {
                for qtype in [1, 28, 33, 16, 6, 99] {
                    for edns in [None, Some(1232), Some(4096)] {
                        for protocol in [Protocol::Udp, Protocol::Tcp] {
                            id = id.wrapping_add(1);
                            let raw = query(id, &spelled, qtype, edns);
                            cache.respond(&handler, &raw, src, protocol, &mut out);
                            let want = handler.reference(&view, &raw, src, protocol).unwrap();
                            assert_eq!(out, want, "{spelled} {qtype} {edns:?} {protocol:?}");
                        }
                    }
                }
            }
        }
        // One answer computed per (name, type class, EDNS payload, transport).
        assert_eq!(cache.computed(), names.len() as u64 * 6 * 2 * 2);
    }
}
