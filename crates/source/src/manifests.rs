//! A member given as a directory of Kubernetes manifests, watched for changes.

use std::{
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use bowline_model::{EventBody, MemberName, Object, Rejection, SourceEvent};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
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
    /// Quiet period after a file change before rescanning (edits arriving within it are
    /// rescanned together, so a file written in several steps is read once, complete).
    pub debounce: Duration,
    /// Rescan at least this often, even without file events.
    pub resync: Duration,
}

/// Reads a directory once: every object and every refused document (for `bowline validate`).
pub fn scan_directory(member: MemberName, dir: &Path) -> io::Result<(Vec<Object>, Vec<Rejection>)> {
    let scan = Scanner::new(member, dir.to_path_buf()).scan()?;
    Ok((scan.objects, scan.rejections))
}

impl ManifestMember {
    /// Watches the directory until `shutdown`, sending a `Reset` after the first successful
    /// scan and a `Changes` event after every later rescan that changed something.
    pub async fn run(self, events: mpsc::Sender<SourceEvent>, shutdown: CancellationToken) {
        let dir = self.dir.canonicalize().unwrap_or_else(|_| self.dir.clone());
        let (wake_tx, mut wake_rx) = mpsc::unbounded_channel();
        let mut watcher: Option<RecommendedWatcher> = None;
        let mut scanner = Some(Scanner::new(self.member.clone(), dir.clone()));
        let mut synced = false;
        let mut last_rejections: Vec<Rejection> = Vec::new();
        let mut last_error: Option<String> = None;
        loop {
            let mut owned = scanner
                .take()
                .expect("scanner is returned after every scan");
            let (returned, result) = tokio::task::spawn_blocking(move || {
                let result = owned.scan();
                (owned, result)
            })
            .await
            .expect("scan does not panic");
            scanner = Some(returned);
            let body = match result {
                Ok(scan) => {
                    last_error = None;
                    if watcher.is_none() {
                        watcher = start_watcher(&dir, wake_tx.clone());
                    }
                    let rejections_changed = scan.rejections != last_rejections;
                    for r in scan
                        .rejections
                        .iter()
                        .filter(|r| !last_rejections.contains(r))
                    {
                        warn!(origin = %r.origin, reason = %r.reason, "document skipped: {}", r.message);
                    }
                    last_rejections.clone_from(&scan.rejections);
                    if !synced {
                        synced = true;
                        info!(dir = %dir.display(), objects = scan.objects.len(), rejected = scan.rejections.len(), "manifest directory read");
                        Some(EventBody::Reset {
                            objects: scan.objects,
                            rejections: scan.rejections,
                        })
                    } else if !scan.changes.is_empty() || rejections_changed {
                        debug!(changes = scan.changes.len(), "manifest directory changed");
                        Some(EventBody::Changes {
                            changes: scan.changes,
                            rejections: Some(scan.rejections),
                        })
                    } else {
                        None
                    }
                }
                Err(e) => {
                    let message = format!("cannot read manifest directory {}: {e}", dir.display());
                    watcher = None;
                    (last_error.as_ref() != Some(&message)).then(|| {
                        last_error = Some(message.clone());
                        EventBody::SourceError(message)
                    })
                }
            };
            if let Some(body) = body
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
            tokio::select! {
                _ = shutdown.cancelled() => return,
                woke = wake_rx.recv() => {
                    if woke.is_none() {
                        return;
                    }
                    settle(&mut wake_rx, self.debounce).await;
                }
                _ = tokio::time::sleep(self.resync) => {}
            }
        }
    }
}

/// Waits until no file event arrived for `quiet` (at most 20 quiet periods in all).
async fn settle(wake: &mut mpsc::UnboundedReceiver<()>, quiet: Duration) {
    let deadline = tokio::time::Instant::now() + quiet * 20;
    while let Ok(Some(())) = tokio::time::timeout_at(
        deadline.min(tokio::time::Instant::now() + quiet),
        wake.recv(),
    )
    .await
    {}
}

fn start_watcher(dir: &Path, wake: mpsc::UnboundedSender<()>) -> Option<RecommendedWatcher> {
    let root = dir.to_path_buf();
    let handler = move |event: notify::Result<notify::Event>| match event {
        Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
        Ok(event) => {
            // Anything not hidden may hold manifests (a file, or a directory of them); what
            // Bowline writes under `.bowline/` and editors' hidden swap files never wake a rescan.
            let relevant = event
                .paths
                .iter()
                .any(|p| !is_hidden(p.strip_prefix(&root).unwrap_or(p)));
            if relevant || event.paths.is_empty() {
                let _ = wake.send(());
            }
        }
        Err(_) => {
            let _ = wake.send(());
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
