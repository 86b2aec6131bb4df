//! A member given as a directory of Kubernetes manifests, watched for changes.
//!
//! The watcher's events name the paths that changed; after the debounce only those are read
//! again (a directory named by an event is listed, its unchanged files skipped). What Bowline
//! writes under `.bowline/` is ignored, except `.bowline/workloadentries/`, read like the
//! user's files. Every `resync`, and whenever the watcher fails or reports lost events, the
//! whole directory is listed again (reading only files whose stamp changed). A directory that
//! cannot be read is reported (its last known objects stay, stale) and tried again after
//! 0.5 s, doubling up to `resync`; once it reads again it is sent whole, so that the registry
//! clears its staleness and withdrawal even when nothing in it changed.

use std::{
    collections::BTreeSet,
    io,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bowline_model::{EventBody, MemberName, Object, Rejection, SourceEvent};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::scan::{Scanner, is_hidden};

/// A manifest-directory member and how it is watched.
#[derive(Clone, Debug)]
pub struct ManifestMember {
    /// The member's configured name.
    pub member: MemberName,
    /// The directory.
    pub dir: PathBuf,
    /// Quiet period after a file change before reading it (edits arriving within it are read
    /// together, so a file written in several steps is read once, complete).
    pub debounce: Duration,
    /// List the whole directory at least this often, even without file events.
    pub resync: Duration,
}

/// Counts of a source's work, for tests and benchmarks: how much a change costs.
#[derive(Debug, Default)]
pub struct SourceStats {
    pub(crate) files_read: AtomicU64,
    pub(crate) full_scans: AtomicU64,
}

impl SourceStats {
    /// Files opened and read (a file whose stamp is unchanged is not).
    pub fn files_read(&self) -> u64 {
        self.files_read.load(Ordering::Relaxed)
    }

    /// Listings of the whole directory.
    pub fn full_scans(&self) -> u64 {
        self.full_scans.load(Ordering::Relaxed)
    }
}

/// What the watcher saw: paths (relative to the directory) to look at again, or a reason to
/// list everything.
#[derive(Debug)]
enum Wake {
    Paths(Vec<PathBuf>),
    Rescan,
}

/// The next piece of work: a full rescan, or the paths gathered over a debounce.
#[derive(Debug)]
enum Work {
    Full,
    Paths(BTreeSet<PathBuf>),
}

impl Work {
    fn add(&mut self, wake: Wake) {
        match (self, wake) {
            (Work::Full, _) => {}
            (work, Wake::Rescan) => *work = Work::Full,
            (Work::Paths(paths), Wake::Paths(more)) => paths.extend(more),
        }
    }
}

/// Reads a directory once: every object and every refused document (for `bowline validate`).
pub fn scan_directory(member: MemberName, dir: &Path) -> io::Result<(Vec<Object>, Vec<Rejection>)> {
    let mut scanner = Scanner::new(member, dir.to_path_buf());
    scanner.scan()?;
    Ok((scanner.objects(), scanner.rejections()))
}

/// What a scan found, taken out of the blocking task.
struct Outcome {
    changes: Vec<bowline_model::Change>,
    rejections: Vec<Rejection>,
    /// Every object, for the first listing and the first after an error.
    objects: Option<Vec<Object>>,
}

/// What the member last told the registry, to send only what is new.
#[derive(Default)]
struct Reported {
    synced: bool,
    rejections: Vec<Rejection>,
    error: Option<String>,
}

impl Reported {
    /// The event a scan's outcome calls for, if any.
    fn event(&mut self, dir: &Path, result: io::Result<Outcome>) -> Option<EventBody> {
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => {
                let message = format!("cannot read manifest directory {}: {e}", dir.display());
                return (self.error.as_ref() != Some(&message)).then(|| {
                    self.error = Some(message.clone());
                    EventBody::SourceError(message)
                });
            }
        };
        // After an error only a full listing tells the registry that the member is back
        // (clearing its staleness, and its withdrawal after `staleEndpointTTL`), even when
        // nothing in it changed.
        let recovered = self.error.take().is_some();
        let rejections_changed = outcome.rejections != self.rejections;
        if rejections_changed {
            log_new_rejections(&self.rejections, &outcome.rejections);
        }
        self.rejections.clone_from(&outcome.rejections);
        match outcome.objects {
            Some(objects) if !self.synced || recovered => {
                if recovered {
                    info!(dir = %dir.display(), objects = objects.len(), rejected = outcome.rejections.len(), "manifest directory readable again");
                } else {
                    info!(dir = %dir.display(), objects = objects.len(), rejected = outcome.rejections.len(), "manifest directory read");
                }
                self.synced = true;
                Some(EventBody::Reset {
                    objects,
                    rejections: outcome.rejections,
                })
            }
            _ if !outcome.changes.is_empty() || rejections_changed => {
                debug!(
                    changes = outcome.changes.len(),
                    "manifest directory changed"
                );
                Some(EventBody::Changes {
                    changes: outcome.changes,
                    rejections: Some(outcome.rejections),
                })
            }
            _ => None,
        }
    }
}

/// New rejections logged per scan; the rest are counted in one line (all are listed in
/// `/debug/rejected`).
const LOGGED_REJECTIONS: usize = 20;

/// Logs the rejections of `now` that were not in `before` (a set difference, linear in both:
/// a file of 100,000 refused documents must not stall the runtime), at most
/// [`LOGGED_REJECTIONS`] of them.
fn log_new_rejections(before: &[Rejection], now: &[Rejection]) {
    let before: std::collections::HashSet<&Rejection> = before.iter().collect();
    let mut new = now.iter().filter(|r| !before.contains(r));
    for r in new.by_ref().take(LOGGED_REJECTIONS) {
        warn!(origin = %r.origin, reason = %r.reason, "document skipped: {}", bowline_model::echo::capped(&r.message, 512));
    }
    let more = new.count();
    if more > 0 {
        warn!(
            more,
            "more documents skipped; /debug/rejected lists every one"
        );
    }
}

impl ManifestMember {
    /// Watches the directory until `shutdown`, sending a `Reset` after the first successful
    /// scan and after the first successful one following an error, a `SourceError` when it
    /// cannot be read, and a `Changes` event after every other rescan that changed something.
    pub async fn run(self, events: mpsc::Sender<SourceEvent>, shutdown: CancellationToken) {
        self.run_with_stats(events, shutdown, Arc::default()).await;
    }

    /// [`run`](Self::run), counting the work done into `stats`.
    pub async fn run_with_stats(
        self,
        events: mpsc::Sender<SourceEvent>,
        shutdown: CancellationToken,
        stats: Arc<SourceStats>,
    ) {
        let dir = self.dir.canonicalize().unwrap_or_else(|_| self.dir.clone());
        let (wake_tx, mut wake_rx) = mpsc::unbounded_channel();
        let mut watcher: Option<RecommendedWatcher> = None;
        let mut scanner = Some(Scanner::with_stats(self.member.clone(), dir.clone(), stats));
        let mut reported = Reported::default();
        let mut work = Work::Full;
        let mut next_full = Instant::now();
        let mut retry = FIRST_RETRY;
        loop {
            // The first listing, and the first after an error (the watcher was lost with it),
            // read everything.
            if !reported.synced || reported.error.is_some() {
                work = Work::Full;
            }
            if matches!(work, Work::Full) {
                next_full = Instant::now() + self.resync;
                // Watching before listing: what changes during the listing is seen after it.
                if watcher.is_none() && dir.is_dir() {
                    watcher = start_watcher(&dir, wake_tx.clone());
                }
            }
            let owned = scanner
                .take()
                .expect("scanner is returned after every scan");
            // The first listing and the first after an error are sent whole.
            let first = !reported.synced || reported.error.is_some();
            let (returned, result) = tokio::task::spawn_blocking(move || scan(owned, work, first))
                .await
                .expect("scan does not panic");
            scanner = Some(returned);
            if result.is_err() {
                watcher = None;
                // A failing directory is tried again soon, backing off to `resync`.
                next_full = Instant::now() + retry;
                retry = (retry * 2).min(self.resync);
            } else {
                retry = FIRST_RETRY;
            }
            if let Some(body) = reported.event(&dir, result)
                && events
                    .send(SourceEvent {
                        member: self.member.clone(),
                        body,
                    })
                    .await
                    .is_err()
            {
                return;
            }
            work = tokio::select! {
                _ = shutdown.cancelled() => return,
                woke = wake_rx.recv() => match woke {
                    None => return,
                    Some(wake) => settle(wake, &mut wake_rx, self.debounce).await,
                },
                _ = tokio::time::sleep_until(next_full) => Work::Full,
            };
        }
    }
}

/// How soon a directory that could not be read is tried again (doubling after each failure,
/// up to `resync`).
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// Does one piece of work; a rescan of some paths that fails (the directory is gone or cannot
/// be listed) becomes a full rescan, whose error is the one reported.
fn scan(mut scanner: Scanner, work: Work, first: bool) -> (Scanner, io::Result<Outcome>) {
    let changes = match work {
        Work::Paths(paths) => scanner.rescan(&paths).or_else(|e| {
            debug!("rescanning the whole directory: {e}");
            scanner.scan()
        }),
        Work::Full => scanner.scan(),
    };
    let result = changes.map(|changes| Outcome {
        changes,
        rejections: scanner.rejections(),
        objects: first.then(|| scanner.objects()),
    });
    (scanner, result)
}

/// Gathers what the watcher reports until no event arrived for `quiet` (at most 20 quiet
/// periods in all).
async fn settle(first: Wake, wake: &mut mpsc::UnboundedReceiver<Wake>, quiet: Duration) -> Work {
    let mut work = Work::Paths(BTreeSet::new());
    work.add(first);
    let deadline = Instant::now() + quiet * 20;
    while let Ok(Some(more)) =
        tokio::time::timeout_at(deadline.min(Instant::now() + quiet), wake.recv()).await
    {
        work.add(more);
    }
    work
}

/// What an event asks for: nothing (hidden paths only: what Bowline writes under `.bowline/`
/// other than its WorkloadEntries, editors' swap files), some paths, or a full rescan (the
/// watcher lost events, or named no path or one outside the directory).
fn wake_for(root: &Path, event: notify::Result<notify::Event>) -> Option<Wake> {
    let event = match event {
        Ok(event) => event,
        Err(_) => return Some(Wake::Rescan),
    };
    if matches!(event.kind, EventKind::Access(_)) {
        return None;
    }
    if event.need_rescan() || event.paths.is_empty() {
        return Some(Wake::Rescan);
    }
    let mut paths = Vec::new();
    for path in &event.paths {
        let Ok(relative) = path.strip_prefix(root) else {
            return Some(Wake::Rescan);
        };
        if !is_hidden(relative) {
            paths.push(relative.to_path_buf());
        }
    }
    (!paths.is_empty()).then_some(Wake::Paths(paths))
}

fn start_watcher(dir: &Path, wake: mpsc::UnboundedSender<Wake>) -> Option<RecommendedWatcher> {
    let root = dir.to_path_buf();
    let handler = move |event: notify::Result<notify::Event>| {
        if let Some(w) = wake_for(&root, event) {
            let _ = wake.send(w);
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            warn!(dir = %dir.display(), "cannot watch manifest directory, rescanning periodically only: {e}");
            return None;
        }
    };
    if let Err(e) = watcher.watch(dir, RecursiveMode::Recursive) {
        warn!(dir = %dir.display(), "cannot watch manifest directory, rescanning periodically only: {e}");
        return None;
    }
    Some(watcher)
}

#[cfg(test)]
mod tests {
    use notify::{
        Event,
        event::{AccessKind, CreateKind, Flag, ModifyKind, RenameMode},
    };

    use super::*;

    fn wake(event: notify::Result<Event>) -> Option<Vec<String>> {
        match wake_for(Path::new("/m"), event) {
            None => None,
            Some(Wake::Rescan) => Some(vec!["rescan".into()]),
            Some(Wake::Paths(p)) => Some(p.iter().map(|p| p.display().to_string()).collect()),
        }
    }

    fn at(kind: EventKind, paths: &[&str]) -> notify::Result<Event> {
        Ok(paths
            .iter()
            .fold(Event::new(kind), |e, p| e.add_path(PathBuf::from(p))))
    }

    #[test]
    fn events_name_paths_to_read_again_except_bowline_writes() {
        let create = EventKind::Create(CreateKind::File);
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert_eq!(
            wake(at(create, &["/m/a/b.yaml"])),
            Some(vec!["a/b.yaml".into()])
        );
        assert_eq!(
            wake(at(create, &["/m/.bowline/serviceimports/demo/echo.yaml"])),
            None
        );
        assert_eq!(
            wake(at(
                create,
                &["/m/.bowline/endpointslices/demo/echo-west.yaml"]
            )),
            None
        );
        assert_eq!(
            wake(at(create, &["/m/.bowline/workloadentries/demo/vm.yaml"])),
            Some(vec![".bowline/workloadentries/demo/vm.yaml".into()])
        );
        assert_eq!(
            wake(at(rename, &["/m/.a.yaml.tmp", "/m/a.yaml"])),
            Some(vec!["a.yaml".into()]),
            "a hidden temporary file renamed into place"
        );
        assert_eq!(
            wake(at(EventKind::Access(AccessKind::Any), &["/m/a.yaml"])),
            None
        );
    }

    #[test]
    fn lost_events_and_errors_list_everything() {
        let any = EventKind::Any;
        let rescan = Some(vec!["rescan".to_string()]);
        let overflow = at(any, &[]).map(|e| e.set_flag(Flag::Rescan));
        assert_eq!(wake(overflow), rescan);
        assert_eq!(wake(at(any, &[])), rescan);
        assert_eq!(wake(at(any, &["/elsewhere/a.yaml"])), rescan);
        assert_eq!(wake(Err(notify::Error::generic("watch lost"))), rescan);
        assert_eq!(
            wake(at(any, &["/m"])),
            Some(vec!["".into()]),
            "the root: listed"
        );
    }
}
