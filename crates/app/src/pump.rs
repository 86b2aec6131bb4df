//! Member sources and the event pump: one source per member, its events applied to the
//! registry in batches under one write lock each.

use std::{collections::HashMap, sync::Arc};

use bowline_model::{EventBody, MemberName, SourceEvent};
use bowline_registry::Shared;
use bowline_source::ManifestMember;
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::{sync::mpsc, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, debug, info, info_span};

use crate::{
    config::{Config, MemberSource},
    members::{MemberLabel, credentials},
};

/// Largest number of source events applied to the registry under one lock.
const MAX_BATCH: usize = 256;

/// Counters of the event pump.
#[derive(Default)]
pub(crate) struct PumpMetrics {
    pub events: Family<MemberLabel, Counter>,
    pub batches: Counter,
    pub recomputed: Counter,
}

impl PumpMetrics {
    /// Registers the counters.
    pub(crate) fn register(&self, metrics: &mut prometheus_client::registry::Registry) {
        metrics.register(
            "bowline_source_events",
            "Events received from member sources.",
            self.events.clone(),
        );
        metrics.register(
            "bowline_registry_batches",
            "Batches of source events applied to the registry.",
            self.batches.clone(),
        );
        metrics.register(
            "bowline_registry_recomputed",
            "(member, service) contributions recomputed by the registry.",
            self.recomputed.clone(),
        );
    }
}

/// Starts one source per member and the pump applying their events to `registry`.
pub(crate) fn spawn(
    tasks: &mut JoinSet<()>,
    config: &Config,
    registry: Shared,
    metrics: Arc<PumpMetrics>,
    shutdown: &CancellationToken,
) {
    let (events_tx, events_rx) = mpsc::channel(1024);
    let spans = spawn_sources(tasks, config, events_tx, shutdown);
    spawn_pump(
        tasks,
        registry,
        events_rx,
        spans,
        metrics,
        config.stale_endpoint_ttl,
    );
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
            count(&batch, &mut failing_since, &metrics);
            batch.iter().for_each(log_event);
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

/// Logs, at info, the first few objects a member's event changes (a listing's size is
/// logged by its source).
fn log_event(event: &SourceEvent) {
    let EventBody::Changes { changes, .. } = &event.body else {
        return;
    };
    if changes.is_empty() {
        return;
    }
    const SHOWN: usize = 3;
    let mut named: Vec<String> = changes
        .iter()
        .take(SHOWN)
        .map(|change| match change {
            bowline_model::Change::Apply(object) => {
                let meta = object.meta();
                let name = match meta.namespace.is_empty() {
                    true => meta.name.to_string(),
                    false => format!("{}/{}", meta.namespace, meta.name),
                };
                format!("{} {name} applied", object.kind())
            }
            bowline_model::Change::Delete(key) => format!("{key} deleted"),
        })
        .collect();
    if changes.len() > SHOWN {
        named.push(format!("{} more", changes.len() - SHOWN));
    }
    info!(member = %event.member, "{}", named.join(", "));
}

/// Counts a batch's events and records since when each member's source has been failing.
fn count(
    batch: &[SourceEvent],
    failing_since: &mut HashMap<MemberName, tokio::time::Instant>,
    metrics: &PumpMetrics,
) {
    for event in batch {
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
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
