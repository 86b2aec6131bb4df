//! The MCS loop: recompute the desired state when the registry changes, and make every
//! manifest member's `.bowline/` hold it, checking every `mcs.resync` for tampering.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use bowline_mcs::{
    Controller, McsConfig, Outcome, Snapshot, WriteSet,
    writer::{FileWriter, Writer},
};
use bowline_model::MemberName;
use bowline_registry::{Admission, Shared};
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::{sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    config::{Config, McsMode, MemberSource},
    run::MemberLabel,
};

/// How changes are coalesced before the ClusterSet view is recomputed (and so pushed).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Debounce {
    /// Recompute once no change arrived for this long...
    pub quiet: Duration,
    /// ...or once this long has passed since the first change.
    pub max: Duration,
}

/// Counters of the MCS loop.
#[derive(Default)]
pub(crate) struct McsMetrics {
    pub written: Family<MemberLabel, Counter>,
    pub deleted: Family<MemberLabel, Counter>,
    pub errors: Family<MemberLabel, Counter>,
    pub reconciles: Counter,
}

/// What a member should hold now: its write set when admitted, nothing when refused (it is
/// not a member), and `None` (leave it alone) while its first sync is pending.
fn plan(outcome: &Outcome, admission: Option<&Admission>, member: &MemberName) -> Option<WriteSet> {
    match admission? {
        Admission::Admitted { .. } => Some(outcome.writes.get(member).cloned().unwrap_or_default()),
        Admission::Refused { .. } => Some(WriteSet::new()),
        Admission::Pending => None,
    }
}

pub(crate) fn spawn_mcs(
    tasks: &mut JoinSet<()>,
    config: &Config,
    registry: Shared,
    outcomes: watch::Sender<Arc<Outcome>>,
    metrics: Arc<McsMetrics>,
    mut leadership: watch::Receiver<bowline_kube::lease::Leadership>,
    shutdown: CancellationToken,
) {
    let debounce = Debounce {
        quiet: config.xds.debounce,
        max: config.xds.max_debounce,
    };
    if config.mcs.mode == McsMode::Consumer {
        info!("MCS consumer mode: Bowline writes nothing and reads the provider's ServiceImports");
        tasks.spawn(consume_loop(
            registry, outcomes, metrics, shutdown, debounce,
        ));
        return;
    }
    let handle = tokio::runtime::Handle::current();
    let writers: Vec<(MemberName, Box<dyn Writer>)> = config
        .members
        .iter()
        .map(|m| {
            let writer: Box<dyn Writer> = match &m.source {
                MemberSource::Manifests(dir) => Box::new(FileWriter::new(dir)),
                source @ (MemberSource::Kubeconfig { .. } | MemberSource::InCluster) => {
                    Box::new(bowline_kube::KubeWriter::new(
                        crate::run::credentials(source).expect("a Kubernetes member"),
                        handle.clone(),
                        bowline_kube::WriteOptions::default(),
                    ))
                }
            };
            (MemberName::new(m.name.as_str()), writer)
        })
        .collect();
    let mcs_config = McsConfig {
        policy: config.export.clone(),
        pools: config.cluster_set_ips.clone(),
    };
    let resync = config.mcs.resync;
    tasks.spawn(async move {
        let mut slots: Vec<Slot> = writers
            .into_iter()
            .map(|(member, writer)| Slot {
                member,
                writer,
                read: false,
            })
            .collect();
        let existing;
        (slots, existing) = read_back_blocking(slots).await;
        let mut controller = Controller::new(mcs_config.clone(), existing);
        let mut leading = leadership.borrow_and_update().leading;
        let mut changes = registry.read().subscribe_changes();
        let mut tick = tokio::time::interval(resync);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dirty = true;
        loop {
            let now_leading = leadership.borrow_and_update().leading;
            if now_leading && !leading {
                // Taking over: start from what the members hold now, as the previous leader
                // left it, so that what is already right is not rewritten.
                for slot in &mut slots {
                    slot.read = false;
                }
                let existing;
                (slots, existing) = read_back_blocking(slots).await;
                controller = Controller::new(mcs_config.clone(), existing);
                dirty = true;
            }
            leading = now_leading;
            if slots.iter().any(|s| !s.read) {
                let adopted;
                (slots, adopted) = read_back_blocking(slots).await;
                for (member, objects) in adopted {
                    controller.adopt(member, objects);
                    dirty = true;
                }
            }
            if dirty {
                dirty = false;
                let snapshot = Snapshot::from_registry(&registry.read());
                let outcome = Arc::new(controller.reconcile(&snapshot, jiff::Timestamp::now()));
                metrics.reconciles.inc();
                debug!(
                    imports = outcome.imports.len(),
                    "MCS desired state computed"
                );
                outcomes.send_replace(outcome);
            }
            let outcome = outcomes.borrow().clone();
            let admissions: BTreeMap<MemberName, Admission> = registry
                .read()
                .members()
                .into_iter()
                .map(|m| (m.name, m.admission))
                .collect();
            if leading {
                let metrics_for_write = metrics.clone();
                slots = tokio::task::spawn_blocking(move || {
                    write_all(&mut slots, &outcome, &admissions, &metrics_for_write);
                    slots
                })
                .await
                .expect("writing does not panic");
            }
            // Only the wait for the first change races the resync tick: `changed()` is
            // cancel-safe, while the debounce after it must run to its end, or the change it
            // consumed would be lost until the next one.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = changes.changed() => {
                    if changed.is_err() || !settle(&mut changes, debounce).await {
                        return;
                    }
                    dirty = true;
                }
                _ = tick.tick() => {}
                changed = leadership.changed() => if changed.is_err() { return },
            }
        }
    });
}

/// Consumer mode: republish the provider's view whenever the registry changes.
async fn consume_loop(
    registry: Shared,
    outcomes: watch::Sender<Arc<Outcome>>,
    metrics: Arc<McsMetrics>,
    shutdown: CancellationToken,
    debounce: Debounce,
) {
    let mut changes = registry.read().subscribe_changes();
    loop {
        let snapshot = Snapshot::from_registry(&registry.read());
        outcomes.send_replace(Arc::new(bowline_mcs::consumer::consume(&snapshot)));
        metrics.reconciles.inc();
        if !settled_change(&mut changes, &shutdown, debounce).await {
            return;
        }
    }
}

/// Waits for a registry change and lets a burst of them settle (debounce); false on shutdown.
async fn settled_change(
    changes: &mut watch::Receiver<u64>,
    shutdown: &CancellationToken,
    debounce: Debounce,
) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => return false,
        changed = changes.changed() => if changed.is_err() { return false },
    }
    settle(changes, debounce).await
}

/// After a change was seen: waits until no further change came for `debounce.quiet`, or
/// `debounce.max` passed; false when the registry is gone.
async fn settle(changes: &mut watch::Receiver<u64>, debounce: Debounce) -> bool {
    changes.mark_unchanged();
    let deadline = tokio::time::Instant::now() + debounce.max;
    loop {
        let until = deadline.min(tokio::time::Instant::now() + debounce.quiet);
        match tokio::time::timeout_at(until, changes.changed()).await {
            Ok(Ok(())) if tokio::time::Instant::now() < deadline => changes.mark_unchanged(),
            Ok(Err(_)) => return false,
            _ => return true,
        }
    }
}

/// A member's writer, and whether what it holds was read back (nothing is written into a
/// member before, so that its ClusterSetIPs and condition times are kept).
struct Slot {
    member: MemberName,
    writer: Box<dyn Writer>,
    read: bool,
}

/// [`read_back`] on a blocking thread.
async fn read_back_blocking(mut slots: Vec<Slot>) -> (Vec<Slot>, BTreeMap<MemberName, WriteSet>) {
    tokio::task::spawn_blocking(move || {
        let existing = read_back(&mut slots);
        (slots, existing)
    })
    .await
    .expect("reading written objects does not panic")
}

/// Reads back the members not read yet; what each that could be read holds.
fn read_back(slots: &mut [Slot]) -> BTreeMap<MemberName, WriteSet> {
    let mut existing = BTreeMap::new();
    for slot in slots.iter_mut().filter(|s| !s.read) {
        match slot.writer.read() {
            Ok(objects) => {
                if !objects.is_empty() {
                    info!(member = %slot.member, objects = objects.len(), "read back the objects Bowline wrote before");
                }
                slot.read = true;
                existing.insert(slot.member.clone(), objects);
            }
            Err(e) => {
                warn!(member = %slot.member, "cannot read back written objects (nothing is written into it until they are): {e}")
            }
        }
    }
    existing
}

fn write_all(
    slots: &mut [Slot],
    outcome: &Outcome,
    admissions: &BTreeMap<MemberName, Admission>,
    metrics: &McsMetrics,
) {
    for Slot { member, writer, .. } in slots.iter_mut().filter(|s| s.read) {
        let Some(desired) = plan(outcome, admissions.get(member), member) else {
            continue;
        };
        let label = MemberLabel {
            member: member.to_string(),
        };
        match writer.reconcile(&desired) {
            Ok(report) => {
                metrics
                    .written
                    .get_or_create(&label)
                    .inc_by(report.written as u64);
                metrics
                    .deleted
                    .get_or_create(&label)
                    .inc_by(report.deleted as u64);
                if report.written + report.deleted > 0 {
                    debug!(member = %member, written = report.written, deleted = report.deleted, "member reconciled");
                }
            }
            Err(e) => {
                metrics.errors.get_or_create(&label).inc();
                warn!(member = %member, "cannot write MCS objects: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debounce() -> Debounce {
        Debounce {
            quiet: Duration::from_millis(10),
            max: Duration::from_millis(100),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_single_change_waits_for_the_quiet_period() {
        let (tx, mut rx) = watch::channel(0u64);
        let start = tokio::time::Instant::now();
        tx.send_modify(|v| *v += 1);
        assert!(settled_change(&mut rx, &CancellationToken::new(), debounce()).await);
        assert_eq!(start.elapsed(), Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_stream_of_changes_is_capped() {
        let (tx, mut rx) = watch::channel(0u64);
        let start = tokio::time::Instant::now();
        tokio::spawn(async move {
            for _ in 0..100 {
                tx.send_modify(|v| *v += 1);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        assert!(settled_change(&mut rx, &CancellationToken::new(), debounce()).await);
        assert_eq!(start.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_wait() {
        let (_tx, mut rx) = watch::channel(0u64);
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        assert!(!settled_change(&mut rx, &shutdown, debounce()).await);
    }
}
