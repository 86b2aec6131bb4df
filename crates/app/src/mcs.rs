//! The views stage's loop and the MCS writers: after every registry change, one snapshot of
//! the ClusterSet with the MCS outcome from the same read; each member's writer writes what
//! changed in it, and checks every object every `mcs.resync` for tampering.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use bowline_mcs::{
    Controller, McsConfig, Outcome, WriteSet,
    writer::{FileWriter, Writer},
};
use bowline_model::{MemberName, RejectReason};
use bowline_registry::Shared;
use bowline_views::{Admission, ClusterSet, Input, MemberWrites, Views};
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    config::{Config, McsMode, MemberSource},
    members::MemberLabel,
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

impl McsMetrics {
    /// Registers the counters.
    pub(crate) fn register(&self, metrics: &mut prometheus_client::registry::Registry) {
        metrics.register(
            "bowline_mcs_reconciles",
            "MCS desired-state computations (one per ClusterSet snapshot).",
            self.reconciles.clone(),
        );
        metrics.register(
            "bowline_mcs_objects_written",
            "Objects written into members by the MCS controller.",
            self.written.clone(),
        );
        metrics.register(
            "bowline_mcs_objects_deleted",
            "Objects deleted from members by the MCS controller.",
            self.deleted.clone(),
        );
        metrics.register(
            "bowline_mcs_write_errors",
            "Failed MCS reconciles of a member.",
            self.errors.clone(),
        );
    }
}

/// What a member should hold now: its writes when admitted, nothing when refused (it is
/// not a member), and `None` (leave it alone) while its first sync is pending or while its
/// files disagree on its identity (a stray file must not delete what was written).
fn plan(snapshot: &ClusterSet, member: &MemberName) -> Option<MemberWrites> {
    let status = snapshot.members.iter().find(|m| &m.name == member)?;
    match status.admission {
        Admission::Refused {
            reason: RejectReason::ConflictingClusterProperty,
            ..
        } => None,
        Admission::Admitted { .. } => Some(
            snapshot
                .outcome
                .writes
                .get(member)
                .cloned()
                .unwrap_or_default(),
        ),
        Admission::Refused { .. } => Some(MemberWrites::default()),
        Admission::Pending => None,
    }
}

/// The views stage's loop: after every registry change (debounced), one registry read, the
/// MCS outcome computed from it (the controller's, or the provider's in consumer mode) and
/// one ClusterSet snapshot published to every server and writer.
pub(crate) fn spawn_pipeline(
    tasks: &mut JoinSet<()>,
    config: &Config,
    registry: Shared,
    snapshots: watch::Sender<Arc<ClusterSet>>,
    metrics: Arc<McsMetrics>,
    leadership: watch::Receiver<bowline_kube::lease::Leadership>,
    shutdown: CancellationToken,
) {
    let debounce = Debounce {
        quiet: config.xds.debounce,
        max: config.xds.max_debounce,
    };
    let pipeline = Pipeline {
        registry,
        snapshots,
        metrics,
        debounce,
        // How long the start waits for the members: a shorter `memberSyncTimeout` shortens it.
        grace: INITIAL_READ_BACK.min(config.member_sync_timeout),
        shutdown,
    };
    if config.mcs.mode == McsMode::Consumer {
        info!("MCS consumer mode: Bowline writes nothing and reads the provider's ServiceImports");
        tasks.spawn(consume_loop(pipeline));
        return;
    }
    let (adoptions, adopted) = mpsc::channel::<Adoption>(config.members.len().max(1));
    for member in &config.members {
        let slot = Slot {
            member: MemberName::new(member.name.as_str()),
            writer: writer(member, &pipeline.shutdown, Some(config.watch.resync)),
            read: false,
            written: None,
            failing: None,
        };
        tasks.spawn(member_writer(
            slot,
            WriterContext {
                snapshots: pipeline.snapshots.subscribe(),
                leadership: leadership.clone(),
                adoptions: adoptions.clone(),
                resync: config.mcs.resync,
                follow: config.leader_election.as_ref().map(|e| e.follower_refresh),
                metrics: pipeline.metrics.clone(),
                shutdown: pipeline.shutdown.clone(),
            },
        ));
    }
    let mcs_config = McsConfig {
        policy: config.export.clone(),
        pools: config.cluster_set_ips.clone(),
    };
    let members = config.members.len();
    tasks.spawn(controller_loop(pipeline, mcs_config, adopted, members));
}

/// What the views stage's loop works with.
struct Pipeline {
    registry: Shared,
    snapshots: watch::Sender<Arc<ClusterSet>>,
    metrics: Arc<McsMetrics>,
    debounce: Debounce,
    /// How long the start waits for every member's read-back and first listing.
    grace: Duration,
    shutdown: CancellationToken,
}

impl Pipeline {
    /// One registry read, the outcome `compute` makes of it, one snapshot published (and
    /// returned).
    fn publish(
        &self,
        views: &mut Views,
        compute: impl FnOnce(&bowline_mcs::Snapshot) -> Outcome,
    ) -> Arc<ClusterSet> {
        let input = Input::read(&self.registry.read());
        let outcome = compute(&input.mcs);
        self.metrics.reconciles.inc();
        let snapshot = views.next(input, outcome);
        debug!(
            version = snapshot.version,
            changed = snapshot.changed.services.len(),
            imports = snapshot.imports().len(),
            starting = snapshot.starting,
            "ClusterSet snapshot published"
        );
        self.snapshots.send_replace(snapshot.clone());
        snapshot
    }
}

/// Names the members whose first listing is not in yet.
fn unsynced(snapshot: &ClusterSet) -> Vec<&str> {
    snapshot
        .members
        .iter()
        .filter(|m| !m.synced)
        .map(|m| m.name.as_str())
        .collect()
}

/// Controller mode: starts from what the members hold (every member's read-back, waited for
/// a little, so that ClusterSetIPs already written are served from the first snapshot on)
/// and from every member's first listing (so that the first outcome is computed once, from
/// all of them, not again as each member comes in), then publishes a snapshot after every
/// registry change and every later read-back. Until that first outcome, snapshots are
/// [`starting`](ClusterSet::starting): they carry the members and services, no imports.
async fn controller_loop(
    pipeline: Pipeline,
    config: McsConfig,
    mut adopted: mpsc::Receiver<Adoption>,
    members: usize,
) {
    let mut existing = BTreeMap::new();
    let mut replies = Vec::new();
    let deadline = tokio::time::Instant::now() + pipeline.grace;
    let mut views = Views::starting();
    let mut changes = pipeline.registry.read().subscribe_changes();
    let mut snapshot = pipeline.publish(&mut views, |_| Outcome::default());
    while existing.len() < members || !snapshot.synced {
        tokio::select! {
            _ = pipeline.shutdown.cancelled() => return,
            changed = changes.changed() => {
                if changed.is_err() || !settle(&mut changes, pipeline.debounce).await {
                    return;
                }
                snapshot = pipeline.publish(&mut views, |_| Outcome::default());
            }
            adoption = adopted.recv() => match adoption {
                Some(a) => {
                    existing.insert(a.member, a.objects);
                    replies.push(a.done);
                }
                None => return,
            },
            _ = tokio::time::sleep_until(deadline) => {
                if existing.len() < members {
                    warn!(read = existing.len(), members, "not every member could be read back in time; the others are adopted when they are");
                }
                if !snapshot.synced {
                    warn!(pending = ?unsynced(&snapshot), grace = ?pipeline.grace, "members are still listing; serving and writing without them (their endpoints and imports are added once listed)");
                }
                break;
            }
        }
    }
    let mut controller = Controller::new(config, existing);
    views.started();
    loop {
        pipeline.publish(&mut views, |input| {
            controller.reconcile(input, jiff::Timestamp::now())
        });
        for done in replies.drain(..) {
            let _ = done.send(());
        }
        // Only the wait for the first change races the others: `changed()` is cancel-safe,
        // while the debounce after it must run to its end, or the change it consumed
        // would be lost until the next one.
        tokio::select! {
            _ = pipeline.shutdown.cancelled() => return,
            changed = changes.changed() => {
                if changed.is_err() || !settle(&mut changes, pipeline.debounce).await {
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
}

/// The writer of a member: files under `.bowline/` of a manifest directory (watched, and
/// all of them checked every `full_check`, when given), server-side apply on Kubernetes
/// (requests give up on `shutdown`). Called on the runtime.
pub(crate) fn writer(
    member: &crate::config::Member,
    shutdown: &CancellationToken,
    full_check: Option<Duration>,
) -> Box<dyn Writer> {
    match &member.source {
        MemberSource::Manifests(dir) => match full_check {
            Some(every) => Box::new(FileWriter::watched(dir, every)),
            None => Box::new(FileWriter::new(dir)),
        },
        source @ (MemberSource::Kubeconfig { .. } | MemberSource::InCluster) => {
            Box::new(bowline_kube::KubeWriter::new(
                crate::members::credentials(source).expect("a Kubernetes member"),
                tokio::runtime::Handle::current(),
                bowline_kube::WriteOptions::default(),
                shutdown.clone(),
            ))
        }
    }
}

/// The longest the start waits for every member's read-back and first listing: the
/// controller's first computation, the writers and the xDS answers wait for them as long.
const INITIAL_READ_BACK: Duration = bowline_mcs::FIRST_SYNC_GRACE;

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
    snapshots: watch::Receiver<Arc<ClusterSet>>,
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
/// the leader's), then, while leading, writes what changed in each snapshot and checks
/// every object every `resync`. Each member has its own task, so that one whose API server
/// is slow holds back only itself.
async fn member_writer(mut slot: Slot, mut cx: WriterContext) {
    let mut tick = tokio::time::interval(cx.resync);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_leading = false;
    let mut read_at = tokio::time::Instant::now();
    let mut full = true;
    loop {
        let leading = cx.leadership.borrow_and_update().leading;
        let following =
            !leading && slot.read && cx.follow.is_some_and(|every| read_at.elapsed() >= every);
        let takeover = (leading && !was_leading && slot.read) || following;
        if takeover {
            // Taking over: start from what the member holds now, as the previous leader
            // left it, so that what is already right is not rewritten.
            slot.read = false;
            slot.written = None;
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
        let snapshot = cx.snapshots.borrow_and_update().clone();
        // Until every member's first listing is in (or the start's grace passed), a member
        // not yet read would look as if its exports were gone, and writing then would delete
        // its imported objects from every other member, to write them again a moment later
        // (after a restart, withdrawing endpoints that never went away).
        if slot.read && leading && !snapshot.starting {
            let metrics = cx.metrics.clone();
            (slot, ()) =
                blocking(slot, move |slot| write_one(slot, &snapshot, full, &metrics)).await;
        }
        tokio::select! {
            _ = cx.shutdown.cancelled() => return,
            changed = cx.snapshots.changed() => {
                if changed.is_err() { return }
                full = false;
            }
            changed = cx.leadership.changed() => {
                if changed.is_err() { return }
                full = false;
            }
            _ = tick.tick() => full = true,
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

/// Consumer mode: a snapshot of the provider's view after every registry change (each name's
/// import recomputed only when its service view changed).
async fn consume_loop(pipeline: Pipeline) {
    let debounce = pipeline.debounce;
    let mut views = Views::starting();
    let mut consumer = bowline_mcs::consumer::Consumer::default();
    let mut changes = pipeline.registry.read().subscribe_changes();
    let deadline = tokio::time::Instant::now() + pipeline.grace;
    loop {
        let snapshot = pipeline.publish(&mut views, |snapshot| consumer.consume(snapshot));
        // Every member's objects (the provider's ServiceImports among them) are in: serve.
        if snapshot.starting && snapshot.synced {
            views.started();
            continue;
        }
        tokio::select! {
            changed = settled_change(&mut changes, &pipeline.shutdown, debounce) => if !changed { return },
            _ = tokio::time::sleep_until(deadline), if snapshot.starting => {
                warn!(pending = ?unsynced(&snapshot), grace = ?pipeline.grace, "members are still listing; serving without them (they are added once listed)");
                views.started();
            }
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

/// A member's writer, whether what it holds was read back (nothing is written into a
/// member before, so that its ClusterSetIPs and condition times are kept), and what it last
/// wrote in full or in part without an error (the next snapshot writes only what changed
/// since; `None`: check everything).
struct Slot {
    member: MemberName,
    writer: Box<dyn Writer>,
    read: bool,
    written: Option<MemberWrites>,
    /// The last write error, logged once until it changes or the writes work again.
    failing: Option<String>,
}

/// Reads back one member if not read yet.
fn read_back(slot: &mut Slot) -> Option<(MemberName, WriteSet)> {
    if slot.read {
        return None;
    }
    slot.written = None;
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

/// Makes one member hold what it should, once it was read back: every object checked when
/// `full` (or when the last write failed), else only what changed since the last write.
fn write_one(slot: &mut Slot, snapshot: &ClusterSet, full: bool, metrics: &McsMetrics) {
    if !slot.read {
        return;
    }
    let Some(desired) = plan(snapshot, &slot.member) else {
        return;
    };
    let label = MemberLabel {
        member: slot.member.to_string(),
    };
    // A full check the writer knows would find nothing is skipped.
    let full = full && (slot.written.is_none() || slot.writer.needs_check());
    let result = match slot.written.take().filter(|_| !full) {
        Some(written) => {
            let changes = desired.changes_since(&written);
            if changes.is_empty() {
                Ok(Default::default())
            } else {
                slot.writer.patch(&changes)
            }
        }
        None => slot.writer.reconcile(&desired.to_set()),
    };
    match result {
        Ok(report) => {
            slot.written = Some(desired);
            if slot.failing.take().is_some() {
                info!(member = %slot.member, "MCS objects written again");
            }
            metrics
                .written
                .get_or_create(&label)
                .inc_by(report.written as u64);
            metrics
                .deleted
                .get_or_create(&label)
                .inc_by(report.deleted as u64);
            if report.written + report.deleted > 0 {
                debug!(member = %slot.member, written = report.written, deleted = report.deleted, "member reconciled");
            }
        }
        Err(e) => {
            metrics.errors.get_or_create(&label).inc();
            let message = e.to_string();
            if slot.failing.as_ref() == Some(&message) {
                debug!(member = %slot.member, "still cannot write MCS objects: {message}");
            } else {
                warn!(member = %slot.member, "cannot write MCS objects (retried every resync; said again only if the error changes): {message}");
                slot.failing = Some(message);
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
