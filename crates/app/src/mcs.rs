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
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinSet,
};
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
    leadership: watch::Receiver<bowline_kube::lease::Leadership>,
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
    let writers: Vec<(MemberName, Box<dyn Writer>)> = config
        .members
        .iter()
        .map(|m| (MemberName::new(m.name.as_str()), writer(m, &shutdown)))
        .collect();
    let mcs_config = McsConfig {
        policy: config.export.clone(),
        pools: config.cluster_set_ips.clone(),
    };
    let resync = config.mcs.resync;
    let (adoptions, mut adopted) = mpsc::channel::<Adoption>(writers.len().max(1));
    let members = writers.len();
    for (member, writer) in writers {
        tasks.spawn(member_writer(
            Slot {
                member,
                writer,
                read: false,
            },
            WriterContext {
                outcomes: outcomes.subscribe(),
                registry: registry.clone(),
                leadership: leadership.clone(),
                adoptions: adoptions.clone(),
                resync,
                follow: config.leader_election.as_ref().map(|e| e.follower_refresh),
                metrics: metrics.clone(),
                shutdown: shutdown.clone(),
            },
        ));
    }
    drop(adoptions);
    tasks.spawn(async move {
        // Start from what the members hold: wait a little for every member's read-back, so
        // that ClusterSetIPs already written are served from the first computation on.
        let mut existing = BTreeMap::new();
        let mut replies = Vec::new();
        let deadline = tokio::time::Instant::now() + INITIAL_READ_BACK;
        while existing.len() < members {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                adoption = adopted.recv() => match adoption {
                    Some(a) => {
                        existing.insert(a.member, a.objects);
                        replies.push(a.done);
                    }
                    None => return,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    warn!(read = existing.len(), members, "not every member could be read back in time; the others are adopted when they are");
                    break;
                }
            }
        }
        let mut controller = Controller::new(mcs_config, existing);
        let mut changes = registry.read().subscribe_changes();
        loop {
            let snapshot = Snapshot::from_registry(&registry.read());
            let outcome = Arc::new(controller.reconcile(&snapshot, jiff::Timestamp::now()));
            metrics.reconciles.inc();
            debug!(
                imports = outcome.imports.len(),
                "MCS desired state computed"
            );
            outcomes.send_replace(outcome);
            for done in replies.drain(..) {
                let _ = done.send(());
            }
            // Only the wait for the first change races the others: `changed()` is cancel-safe,
            // while the debounce after it must run to its end, or the change it consumed
            // would be lost until the next one.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = changes.changed() => {
                    if changed.is_err() || !settle(&mut changes, debounce).await {
                        return;
                    }
                }
                adoption = adopted.recv() => {
                    let Some(a) = adoption else { return };
                    controller.adopt(a.member, a.objects, a.takeover);
                    replies.push(a.done);
                }
            }
        }
    });
}

/// The writer of a member: files under `.bowline/` of a manifest directory, server-side
/// apply on Kubernetes (requests give up on `shutdown`). Called on the runtime.
pub(crate) fn writer(
    member: &crate::config::Member,
    shutdown: &CancellationToken,
) -> Box<dyn Writer> {
    match &member.source {
        MemberSource::Manifests(dir) => Box::new(FileWriter::new(dir)),
        source @ (MemberSource::Kubeconfig { .. } | MemberSource::InCluster) => {
            Box::new(bowline_kube::KubeWriter::new(
                crate::run::credentials(source).expect("a Kubernetes member"),
                tokio::runtime::Handle::current(),
                bowline_kube::WriteOptions::default(),
                shutdown.clone(),
            ))
        }
    }
}

/// How long the controller waits for every member's read-back before its first computation.
const INITIAL_READ_BACK: Duration = Duration::from_secs(5);

/// What a member holds, read back by its writer, for the controller to resume from; `done`
/// is answered once an outcome that includes it is published.
struct Adoption {
    member: MemberName,
    objects: WriteSet,
    takeover: bool,
    done: oneshot::Sender<()>,
}

/// What a member's writer task works with.
struct WriterContext {
    outcomes: watch::Receiver<Arc<Outcome>>,
    registry: Shared,
    leadership: watch::Receiver<bowline_kube::lease::Leadership>,
    adoptions: mpsc::Sender<Adoption>,
    resync: Duration,
    /// How often a follower reads the member back (with leader election).
    follow: Option<Duration>,
    metrics: Arc<McsMetrics>,
    shutdown: CancellationToken,
}

/// One member's writer: reads back what the member holds (again when this replica becomes
/// the leader, and every `follow` while it does not lead, so that its ClusterSetIPs follow
/// the leader's), then, while leading, makes it hold its part of each outcome, and checks it
/// every `resync`. Each member has its own task, so that one whose API server is slow holds
/// back only itself.
async fn member_writer(mut slot: Slot, mut cx: WriterContext) {
    let mut tick = tokio::time::interval(cx.resync);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_leading = false;
    let mut read_at = tokio::time::Instant::now();
    loop {
        let leading = cx.leadership.borrow_and_update().leading;
        let following =
            !leading && slot.read && cx.follow.is_some_and(|every| read_at.elapsed() >= every);
        let takeover = (leading && !was_leading && slot.read) || following;
        if takeover {
            // Taking over: start from what the member holds now, as the previous leader
            // left it, so that what is already right is not rewritten.
            slot.read = false;
        }
        was_leading = leading;
        if !slot.read {
            let read;
            (slot, read) = blocking(slot, read_back).await;
            if let Some((member, objects)) = read {
                read_at = tokio::time::Instant::now();
                let (done, adopted) = oneshot::channel();
                let adoption = Adoption {
                    member,
                    objects,
                    takeover,
                    done,
                };
                if cx.adoptions.send(adoption).await.is_err() || adopted.await.is_err() {
                    return;
                }
            }
        }
        if slot.read && leading {
            let outcome = cx.outcomes.borrow_and_update().clone();
            let admission = cx
                .registry
                .read()
                .members()
                .into_iter()
                .find(|m| m.name == slot.member)
                .map(|m| m.admission);
            let metrics = cx.metrics.clone();
            (slot, ()) = blocking(slot, move |slot| {
                write_one(slot, &outcome, admission.as_ref(), &metrics)
            })
            .await;
        }
        tokio::select! {
            _ = cx.shutdown.cancelled() => return,
            changed = cx.outcomes.changed() => if changed.is_err() { return },
            changed = cx.leadership.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
        }
    }
}

/// Runs `f` on the slot on a blocking thread.
async fn blocking<T: Send + 'static>(
    mut slot: Slot,
    f: impl FnOnce(&mut Slot) -> T + Send + 'static,
) -> (Slot, T) {
    tokio::task::spawn_blocking(move || {
        let out = f(&mut slot);
        (slot, out)
    })
    .await
    .expect("writers do not panic")
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

/// Reads back one member if not read yet.
fn read_back(slot: &mut Slot) -> Option<(MemberName, WriteSet)> {
    if slot.read {
        return None;
    }
    match slot.writer.read() {
        Ok(objects) => {
            if !objects.is_empty() {
                info!(member = %slot.member, objects = objects.len(), "read back the objects Bowline wrote before");
            }
            slot.read = true;
            Some((slot.member.clone(), objects))
        }
        Err(e) => {
            warn!(member = %slot.member, "cannot read back written objects (nothing is written into it until they are): {e}");
            None
        }
    }
}

/// Makes one member hold what it should, once it was read back.
fn write_one(
    slot: &mut Slot,
    outcome: &Outcome,
    admission: Option<&Admission>,
    metrics: &McsMetrics,
) {
    let Slot {
        member,
        writer,
        read,
    } = slot;
    if !*read {
        return;
    }
    let Some(desired) = plan(outcome, admission, member) else {
        return;
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
