//! Writers make a member hold exactly its desired objects. The embedded writer keeps them as
//! YAML files under `<member dir>/.bowline/`, one per object, written atomically.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs, io,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher, event::CreateKind};
use parking_lot::Mutex;
use serde_json::Value;
use tracing::{debug, warn};

use crate::{Rendered, WriteChange, WriteKey, WriteKind, WriteSet};

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct WriteError {
    /// What was being done.
    pub action: &'static str,
    /// The file or object.
    pub path: String,
    /// The error.
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// What a reconcile changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Objects created or rewritten.
    pub written: usize,
    /// Objects deleted.
    pub deleted: usize,
}

/// Makes a member hold exactly a set of objects. Called from a blocking task.
pub trait Writer: Send {
    /// What the member holds now of what the controller resumes from (read back at start):
    /// ServiceImports, ServiceExports and their status. Imported EndpointSlices, derived
    /// afresh, are not returned (at scale they are most of what is written, ten copies of
    /// every endpoint in a ClusterSet of ten); strays among them are still found and deleted.
    fn read(&mut self) -> Result<WriteSet, WriteError>;
    /// Writes objects that differ from `desired`, deletes those not in it. Level-triggered:
    /// an object changed or removed behind Bowline's back is restored.
    fn reconcile(&mut self, desired: &WriteSet) -> Result<WriteReport, WriteError>;
    /// False when nothing this writer wrote can differ from what it last wrote, as far as it
    /// knows (a watch reported no change and no periodic check is due): a [`Writer::reconcile`]
    /// of the same objects would find nothing to do, and the caller may skip it.
    fn needs_check(&mut self) -> bool {
        true
    }
    /// Writes and deletes only the objects listed (what changed since the last reconcile or
    /// apply, see [`MemberWrites::changes_since`](crate::MemberWrites::changes_since)); the
    /// rest is left alone until the next [`Writer::reconcile`]. Users' ServiceExports are
    /// never deleted: only their status was Bowline's.
    fn patch(&mut self, changes: &[WriteChange]) -> Result<WriteReport, WriteError>;
    /// The member's copy of one object outside the reconciled set (an auto-registered
    /// WorkloadEntry), when it holds one.
    fn get(&mut self, key: &WriteKey) -> Result<Option<Value>, WriteError>;
    /// Makes the member hold one object outside the reconciled set (status included); true
    /// when it had to be written. An object carrying `metadata.resourceVersion` is written
    /// only over that version, where the member keeps versions (a [`WriteError`] otherwise).
    fn put(&mut self, key: &WriteKey, object: &Arc<Value>) -> Result<bool, WriteError>;
    /// Deletes one object outside the reconciled set, only at resource version
    /// `precondition` when given and the member keeps versions; true when it was deleted.
    fn remove(&mut self, key: &WriteKey, precondition: Option<&str>) -> Result<bool, WriteError>;
}

pub use bowline_model::files::{DIR, WORKLOAD_ENTRIES};

fn kind_dir(kind: WriteKind) -> &'static str {
    match kind {
        WriteKind::ServiceImport => "serviceimports",
        WriteKind::EndpointSlice => "endpointslices",
        WriteKind::ServiceExport => "serviceexports",
        WriteKind::ServiceExportStatus => "serviceexport-status",
        WriteKind::WorkloadEntry => WORKLOAD_ENTRIES,
    }
}

/// The object a file under the writer's root holds: `<kind>/<namespace>/<name>.yaml`.
fn key_of(relative: &Path) -> Option<WriteKey> {
    let mut parts = relative.iter().map(|p| p.to_str());
    let (Some(Some(dir)), Some(Some(namespace)), Some(Some(file)), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let kind = KINDS.into_iter().find(|k| kind_dir(*k) == dir)?;
    let name = file.strip_suffix(".yaml").filter(|n| !n.starts_with('.'))?;
    Some(WriteKey::new(kind, namespace, name))
}

/// Records what one watcher event touched. Bowline's temporary files, directories created
/// (their files have events of their own), WorkloadEntries (not reconciled) and reads are
/// not changes; anything else that is not one object's file means checking everything.
fn note(root: &Path, event: &notify::Event, touched: &mut Touched) {
    if touched.lost || touched.overflowed {
        // Every file is checked next: which ones were touched no longer matters.
        return;
    }
    if matches!(
        event.kind,
        EventKind::Access(_) | EventKind::Create(CreateKind::Folder)
    ) {
        return;
    }
    if event.need_rescan() || event.paths.is_empty() {
        touched.lost = true;
        return;
    }
    for path in &event.paths {
        let Ok(relative) = path.strip_prefix(root) else {
            touched.lost = true;
            continue;
        };
        let file = relative.file_name().and_then(|f| f.to_str()).unwrap_or("");
        let temporary = file.starts_with('.') && file.ends_with(".tmp");
        if temporary || relative.starts_with(WORKLOAD_ENTRIES) {
            continue;
        }
        match key_of(relative) {
            Some(key) => {
                touched.keys.insert(key);
            }
            None => touched.lost = true,
        }
    }
    if touched.keys.len() >= Touched::LIMIT {
        touched.overflowed = true;
        touched.keys = HashSet::new();
    }
}

const KINDS: [WriteKind; 4] = [
    WriteKind::ServiceImport,
    WriteKind::EndpointSlice,
    WriteKind::ServiceExport,
    WriteKind::ServiceExportStatus,
];

#[derive(Debug)]
struct Known {
    object: Arc<Rendered>,
    len: u64,
    modified: Option<SystemTime>,
}

/// The embedded writer: `<member dir>/.bowline/<kind>/<namespace>/<name>.yaml`. Only the MCS
/// kinds are reconciled as a set; WorkloadEntries are put and removed one by one.
///
/// A [`watched`](FileWriter::watched) writer learns from the file system which of its files
/// were touched (by anyone, itself included): a reconcile then checks only those, and every
/// file again at least every `full_check`, when the watcher lost events, or after a failure.
#[derive(Debug)]
pub struct FileWriter {
    root: PathBuf,
    /// What this writer last wrote or verified: the object, and the file's (length,
    /// modification time) then, so that an unchanged object whose file was not touched is
    /// neither rendered nor read again.
    known: HashMap<WriteKey, Known>,
    /// How often every file is checked when watched; `None`: on every reconcile.
    full_check: Option<Duration>,
    watch: Option<Watch>,
}

/// The watch of a writer's own files.
#[derive(Debug)]
struct Watch {
    touched: Arc<Mutex<Touched>>,
    /// When every file was last checked without an error; `None`: check them all next.
    checked: Option<Instant>,
    _watcher: RecommendedWatcher,
}

/// What the watcher reported since the last check.
#[derive(Debug, Default)]
struct Touched {
    keys: HashSet<WriteKey>,
    /// Events were lost or named something other than one object's file.
    lost: bool,
    /// More than [`Touched::LIMIT`] files were touched (the writer's own writes at a cold
    /// start, 12,000 files a member at 10 × 1,000 × 10): every file is checked next instead.
    overflowed: bool,
}

impl Touched {
    /// Keys remembered between checks; past it checking every file is as cheap as checking
    /// these, and holding them is not.
    const LIMIT: usize = 4096;
}
/// Creates `dir` and the directories between it and `member_dir`, which must exist: a member
/// directory that was deleted or moved away is never created again by Bowline's writes (the
/// source reports it as unreadable, and keeps its last known objects).
fn create_under(member_dir: &Path, dir: &Path) -> io::Result<()> {
    let below = dir
        .strip_prefix(member_dir)
        .expect("Bowline writes only under the member directory");
    let mut at = member_dir.to_path_buf();
    for part in below.components() {
        at.push(part);
        match fs::create_dir(&at) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("the member directory {} is gone", member_dir.display()),
                ));
            }
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WriteError + 'a {
    move |source| WriteError {
        action,
        path: path.display().to_string(),
        source: source.into(),
    }
}

impl FileWriter {
    /// A writer for the member directory `member_dir` that checks every file on every
    /// reconcile.
    pub fn new(member_dir: &Path) -> Self {
        Self {
            root: member_dir.join(DIR),
            known: HashMap::new(),
            full_check: None,
            watch: None,
        }
    }

    /// A writer for `member_dir` that watches its files, so that a reconcile checks only the
    /// files touched since the last one, and all of them at least every `full_check`. While
    /// they cannot be watched (the member directory is missing, or the watch failed: tried
    /// again on every full check), every file is checked on every reconcile.
    pub fn watched(member_dir: &Path, full_check: Duration) -> Self {
        Self {
            full_check: Some(full_check),
            ..Self::new(member_dir)
        }
    }

    /// Starts watching the writer's directory (created in the member directory, if that
    /// exists).
    fn start_watch(&mut self) {
        self.watch = None;
        let Some(member_dir) = self.root.parent().filter(|d| d.is_dir()) else {
            return;
        };
        let touched = Arc::new(Mutex::new(Touched::default()));
        let sink = touched.clone();
        // Events name paths under the path watched, as given.
        let root = self.root.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            let mut touched = sink.lock();
            match event {
                Ok(event) => note(&root, &event, &mut touched),
                Err(_) => touched.lost = true,
            }
        };
        let watcher = create_under(member_dir, &self.root)
            .map_err(|e| e.to_string())
            .and_then(|()| notify::recommended_watcher(handler).map_err(|e| e.to_string()))
            .and_then(|mut watcher| {
                watcher
                    .watch(&self.root, RecursiveMode::Recursive)
                    .map(|()| watcher)
                    .map_err(|e| e.to_string())
            });
        match watcher {
            Ok(watcher) => {
                self.watch = Some(Watch {
                    touched,
                    checked: None,
                    _watcher: watcher,
                })
            }
            Err(e) => warn!(
                dir = %member_dir.display(),
                "cannot watch Bowline's files in the member directory; checking every one on every resync: {e}"
            ),
        }
    }

    fn path(&self, key: &WriteKey) -> PathBuf {
        self.root
            .join(kind_dir(key.kind))
            .join(&*key.namespace)
            .join(format!("{}.yaml", key.name))
    }

    /// Every file under the kind directories, with its key.
    fn files(&self) -> Result<BTreeMap<WriteKey, PathBuf>, WriteError> {
        Ok(self.listing()?.0)
    }

    /// Every file under the kind directories, with its key, and the temporary files of
    /// writes that never reached their rename (this writer writes one file at a time, so
    /// between its writes any is left from a process killed mid-write).
    fn listing(&self) -> Result<(BTreeMap<WriteKey, PathBuf>, Vec<PathBuf>), WriteError> {
        let mut out = BTreeMap::new();
        let mut temporaries = Vec::new();
        for kind in KINDS {
            let dir = self.root.join(kind_dir(kind));
            let namespaces = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(err("cannot list", &dir)(e)),
            };
            for ns in namespaces.flatten().filter(|e| e.path().is_dir()) {
                let ns_name = ns.file_name().to_string_lossy().into_owned();
                for file in fs::read_dir(ns.path())
                    .map_err(err("cannot list", &ns.path()))?
                    .flatten()
                {
                    let name = file.file_name().to_string_lossy().into_owned();
                    if let Some(stem) = name.strip_suffix(".yaml").filter(|s| !s.starts_with('.')) {
                        out.insert(WriteKey::new(kind, &ns_name, stem), file.path());
                    } else if name.starts_with('.') && name.ends_with(".yaml.tmp") {
                        temporaries.push(file.path());
                    }
                }
            }
        }
        Ok((out, temporaries))
    }

    fn stat(path: &Path) -> Option<(u64, Option<SystemTime>)> {
        let meta = fs::metadata(path).ok()?;
        Some((meta.len(), meta.modified().ok()))
    }

    /// Makes the file of `key` hold `object`; true when it had to be written.
    fn ensure(&mut self, key: &WriteKey, object: &Arc<Rendered>) -> Result<bool, WriteError> {
        let path = self.path(key);
        let stat = Self::stat(&path);
        if let (Some(known), Some((len, modified))) = (self.known.get_mut(key), stat)
            && known.len == len
            && known.modified == modified
            && (Arc::ptr_eq(&known.object, object) || known.object == *object)
        {
            // The same object, maybe rendered again: the next check is a pointer comparison.
            known.object = object.clone();
            return Ok(false);
        }
        let bytes = to_yaml(&object.to_value()).into_bytes();
        let same = stat.is_some() && fs::read(&path).is_ok_and(|current| current == bytes);
        if !same {
            let dir = path.parent().expect("object files live in a directory");
            let member_dir = self
                .root
                .parent()
                .expect("the root is in the member directory");
            create_under(member_dir, dir).map_err(err("cannot create", dir))?;
            let file_name = path
                .file_name()
                .expect("object files have names")
                .to_string_lossy();
            let temp = dir.join(format!(".{file_name}.tmp"));
            fs::write(&temp, &bytes).map_err(err("cannot write", &temp))?;
            fs::rename(&temp, &path).map_err(err("cannot rename into", &path))?;
        }
        let (len, modified) = Self::stat(&path).unwrap_or((bytes.len() as u64, None));
        self.known.insert(
            key.clone(),
            Known {
                object: object.clone(),
                len,
                modified,
            },
        );
        Ok(!same)
    }

    /// Deletes the file of `key`; false when there was none.
    fn delete(&mut self, key: &WriteKey) -> Result<bool, WriteError> {
        self.known.remove(key);
        let path = self.path(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(err("cannot delete", &path)(e)),
        }
    }

    /// Checks every file: each desired one stat'ed (rewritten when it differs), every file
    /// listed (strays deleted).
    fn check_all(&mut self, desired: &WriteSet) -> Result<WriteReport, WriteError> {
        let mut report = WriteReport::default();
        for (key, object) in desired {
            report.written += usize::from(self.ensure(key, object)?);
        }
        let (files, temporaries) = self.listing()?;
        // What a write cut short left: not an object, so neither counted nor worth failing
        // the check for when it cannot go.
        for path in temporaries {
            match fs::remove_file(&path) {
                Ok(()) => {
                    debug!(file = %path.display(), "deleted a temporary file left by an interrupted write")
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    debug!(file = %path.display(), "cannot delete a temporary file left by an interrupted write: {e}")
                }
            }
        }
        for (key, path) in files {
            if !desired.contains_key(&key) {
                fs::remove_file(&path).map_err(err("cannot delete", &path))?;
                self.known.remove(&key);
                report.deleted += 1;
            }
        }
        self.known
            .retain(|key, _| key.kind == WriteKind::WorkloadEntry || desired.contains_key(key));
        Ok(report)
    }

    /// Checks only what may differ: desired objects not known to be written as they are, and
    /// the files the watcher saw touched.
    fn check_touched(
        &mut self,
        desired: &WriteSet,
        touched: HashSet<WriteKey>,
    ) -> Result<WriteReport, WriteError> {
        let mut report = WriteReport::default();
        for (key, object) in desired {
            let written = match self.known.get_mut(key) {
                Some(known) if Arc::ptr_eq(&known.object, object) => true,
                Some(known) if known.object == *object => {
                    known.object = object.clone();
                    true
                }
                _ => false,
            };
            if !written || touched.contains(key) {
                report.written += usize::from(self.ensure(key, object)?);
            }
        }
        let strays: Vec<WriteKey> = (self.known.keys().chain(&touched))
            .filter(|key| key.kind != WriteKind::WorkloadEntry && !desired.contains_key(*key))
            .cloned()
            .collect();
        for key in strays {
            report.deleted += usize::from(self.delete(&key)?);
        }
        Ok(report)
    }
}

/// The YAML Bowline writes for an object.
pub fn to_yaml(object: &Value) -> String {
    let body =
        serde_saphyr::to_string(object).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
    format!("# Written by Bowline; edits are overwritten.\n{body}")
}

impl Writer for FileWriter {
    fn read(&mut self) -> Result<WriteSet, WriteError> {
        let mut out = WriteSet::new();
        let files = self.files()?;
        for (key, path) in files
            .into_iter()
            .filter(|(k, _)| k.kind != WriteKind::EndpointSlice)
        {
            let Ok(text) = fs::read_to_string(&path) else {
                continue;
            };
            // A file that no longer parses is not kept: reconcile rewrites or deletes it.
            if let Ok(value) = serde_saphyr::from_str::<Value>(&text) {
                out.insert(key, Arc::new(value.into()));
            }
        }
        Ok(out)
    }

    fn reconcile(&mut self, desired: &WriteSet) -> Result<WriteReport, WriteError> {
        let Some(full_check) = self.full_check else {
            return self.check_all(desired);
        };
        let touched = self.watch.as_ref().map(|w| {
            let mut touched = w.touched.lock();
            std::mem::take(&mut *touched)
        });
        let lost = touched.as_ref().is_none_or(|t| t.lost);
        let overflowed = touched.as_ref().is_some_and(|t| t.overflowed);
        let quick = match (&self.watch, touched) {
            (Some(watch), Some(touched))
                if !lost
                    && !overflowed
                    && watch.checked.is_some_and(|at| at.elapsed() < full_check) =>
            {
                Some(touched.keys)
            }
            _ => None,
        };
        if let Some(touched) = quick {
            let report = self.check_touched(desired, touched);
            if report.is_err()
                && let Some(watch) = &mut self.watch
            {
                watch.checked = None;
            }
            return report;
        }
        // Watching (again: the watch may have been lost with the directory) before checking:
        // what is touched meanwhile is seen by the next reconcile.
        debug!(dir = %self.root.display(), "checking every file");
        if lost {
            self.start_watch();
        }
        let report = self.check_all(desired)?;
        if let Some(watch) = &mut self.watch {
            watch.checked = Some(Instant::now());
        }
        Ok(report)
    }

    fn needs_check(&mut self) -> bool {
        let (Some(full_check), Some(watch)) = (self.full_check, &self.watch) else {
            return true;
        };
        let touched = watch.touched.lock();
        touched.lost
            || touched.overflowed
            || !touched.keys.is_empty()
            || watch.checked.is_none_or(|at| at.elapsed() >= full_check)
    }

    fn patch(&mut self, changes: &[WriteChange]) -> Result<WriteReport, WriteError> {
        let mut report = WriteReport::default();
        for (key, object) in changes {
            let done = match object {
                Some(object) => self
                    .ensure(key, object)
                    .map(|w| report.written += usize::from(w)),
                None => self.delete(key).map(|d| report.deleted += usize::from(d)),
            };
            if let Err(e) = done {
                // Whatever else this left undone is found by checking everything next.
                if let Some(watch) = &mut self.watch {
                    watch.checked = None;
                }
                return Err(e);
            }
        }
        Ok(report)
    }

    fn get(&mut self, key: &WriteKey) -> Result<Option<Value>, WriteError> {
        let path = self.path(key);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(serde_saphyr::from_str(&text).ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err("cannot read", &path)(e)),
        }
    }

    /// Files keep no versions: `metadata.resourceVersion` is not written.
    fn put(&mut self, key: &WriteKey, object: &Arc<Value>) -> Result<bool, WriteError> {
        let object = match object["metadata"].get("resourceVersion") {
            Some(_) => {
                let mut stripped = (**object).clone();
                if let Some(meta) = stripped["metadata"].as_object_mut() {
                    meta.remove("resourceVersion");
                }
                Rendered::new(&stripped)
            }
            None => Rendered::new(object),
        };
        self.ensure(key, &Arc::new(object))
    }

    fn remove(&mut self, key: &WriteKey, _precondition: Option<&str>) -> Result<bool, WriteError> {
        self.delete(key)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn desired() -> WriteSet {
        let mut set = WriteSet::new();
        set.insert(
            WriteKey::new(WriteKind::ServiceImport, "demo", "echo"),
            Arc::new(json!({"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport", "metadata": {"name": "echo", "namespace": "demo"}, "spec": {"ips": ["241.0.0.1"]}}).into()),
        );
        set
    }

    #[test]
    fn writes_reads_back_restores_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = FileWriter::new(dir.path());
        let want = desired();
        assert_eq!(
            writer.reconcile(&want).unwrap(),
            WriteReport {
                written: 1,
                deleted: 0
            }
        );
        let path = dir.path().join(".bowline/serviceimports/demo/echo.yaml");
        assert!(fs::read_to_string(&path).unwrap().contains("241.0.0.1"));
        assert_eq!(
            writer.reconcile(&want).unwrap(),
            WriteReport::default(),
            "only changed objects are rewritten"
        );

        // Read back by a new writer (a restart).
        assert_eq!(FileWriter::new(dir.path()).read().unwrap(), want);

        // Hand edits and deletions are undone.
        fs::write(&path, "spec: {ips: [10.9.9.9]}\n").unwrap();
        assert_eq!(writer.reconcile(&want).unwrap().written, 1);
        assert!(fs::read_to_string(&path).unwrap().contains("241.0.0.1"));
        fs::remove_file(&path).unwrap();
        assert_eq!(writer.reconcile(&want).unwrap().written, 1);

        // Objects no longer desired are deleted, stray files included.
        fs::write(
            dir.path().join(".bowline/serviceimports/demo/stray.yaml"),
            "a: 1\n",
        )
        .unwrap();
        assert_eq!(
            writer.reconcile(&WriteSet::new()).unwrap(),
            WriteReport {
                written: 0,
                deleted: 2
            }
        );
        assert!(FileWriter::new(dir.path()).read().unwrap().is_empty());
    }

    #[test]
    fn a_write_cut_short_by_a_kill_leaves_no_temporary_file_after_the_next_full_check() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = FileWriter::new(dir.path());
        writer.reconcile(&desired()).unwrap();
        let imports = dir.path().join(".bowline/serviceimports/demo");
        let cut = imports.join(".echo.yaml.tmp");
        fs::write(
            &cut,
            "# Written by Bowline; edits are overwritten.\napiVersion: multi",
        )
        .unwrap();
        let report = writer.reconcile(&desired()).unwrap();
        assert!(!cut.exists(), "the half-written file is gone");
        assert_eq!(report.deleted, 0, "a temporary file is not an object");
        let files: Vec<_> = fs::read_dir(&imports).unwrap().flatten().collect();
        assert!(
            files
                .iter()
                .all(|f| !f.file_name().to_string_lossy().starts_with('.')),
            "{files:?}"
        );
    }

    #[test]
    fn a_member_directory_that_is_gone_is_never_created_again() {
        let parent = tempfile::tempdir().unwrap();
        for watched in [false, true] {
            let member = parent.path().join(format!("member-{watched}"));
            fs::create_dir(&member).unwrap();
            let mut writer = if watched {
                FileWriter::watched(&member, Duration::from_secs(3600))
            } else {
                FileWriter::new(&member)
            };
            assert_eq!(writer.reconcile(&desired()).unwrap().written, 1);
            fs::remove_dir_all(&member).unwrap();
            // A watched writer learns of the deletion from its watch, a moment later.
            let deadline = Instant::now() + Duration::from_secs(10);
            let e = loop {
                match writer.reconcile(&desired()) {
                    Err(e) => break e.to_string(),
                    Ok(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Ok(report) => panic!("the deletion was never noticed: {report:?}"),
                }
            };
            assert!(e.contains("is gone"), "{e}");
            assert!(
                !member.exists(),
                "the writer left the deleted directory alone"
            );
            fs::create_dir(&member).unwrap();
            assert_eq!(
                writer.reconcile(&desired()).unwrap().written,
                1,
                "written again once the directory is back"
            );
        }
    }

    /// Reconciles until `done` holds for the report (the watcher's events arrive a little
    /// after the change), for at most ten seconds.
    fn reconcile_until(
        writer: &mut FileWriter,
        want: &WriteSet,
        done: impl Fn(WriteReport) -> bool,
    ) -> WriteReport {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let report = writer.reconcile(want).unwrap();
            if done(report) || Instant::now() > deadline {
                return report;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_watched_writer_restores_the_files_it_sees_touched_between_full_checks() {
        let dir = tempfile::tempdir().unwrap();
        // No full check during the test: only the watcher can tell what was touched.
        let mut writer = FileWriter::watched(dir.path(), Duration::from_secs(3600));
        let want = desired();
        assert_eq!(writer.reconcile(&want).unwrap().written, 1);
        let path = dir.path().join(".bowline/serviceimports/demo/echo.yaml");
        // Its own write is seen touched too, and found as written.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(writer.reconcile(&want).unwrap(), WriteReport::default());
        assert!(
            !writer.needs_check(),
            "nothing touched: a check can be skipped"
        );

        fs::write(&path, "spec: {ips: [10.9.9.9]}\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !writer.needs_check() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(writer.needs_check(), "an edit is seen");
        assert_eq!(
            writer.reconcile(&want).unwrap().written,
            1,
            "an edit is undone"
        );
        assert!(fs::read_to_string(&path).unwrap().contains("241.0.0.1"));

        let stray = dir.path().join(".bowline/serviceimports/demo/stray.yaml");
        fs::write(&stray, "a: 1\n").unwrap();
        let report = reconcile_until(&mut writer, &want, |r| r.deleted == 1);
        assert_eq!(report.deleted, 1, "a stray file is deleted");
        assert!(!stray.exists());

        fs::remove_dir_all(dir.path().join(".bowline/serviceimports")).unwrap();
        let report = reconcile_until(&mut writer, &want, |r| r.written == 1);
        assert_eq!(
            report.written, 1,
            "a deleted directory's files are restored"
        );
        assert!(fs::read_to_string(&path).unwrap().contains("241.0.0.1"));

        // Objects no longer desired are deleted.
        assert_eq!(writer.reconcile(&WriteSet::new()).unwrap().deleted, 1);
        assert!(!path.exists());
    }

    #[test]
    fn past_its_limit_the_watch_remembers_no_file_and_every_file_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = FileWriter::watched(dir.path(), Duration::from_secs(3600));
        let want = desired();
        assert_eq!(writer.reconcile(&want).unwrap().written, 1);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(writer.reconcile(&want).unwrap(), WriteReport::default());

        // As many touched files as the watch remembers, none of them the written one (whose
        // edit below the watcher is not told of).
        let root = dir.path().join(DIR);
        let touched = writer.watch.as_ref().unwrap().touched.clone();
        for i in 0..Touched::LIMIT {
            let path = root.join(format!("endpointslices/demo/s{i}.yaml"));
            let event = notify::Event::new(EventKind::Any).add_path(path);
            note(&root, &event, &mut touched.lock());
        }
        assert!(touched.lock().overflowed);
        assert!(touched.lock().keys.is_empty(), "the keys are let go");
        assert!(writer.needs_check());
        let path = root.join("serviceimports/demo/echo.yaml");
        fs::write(&path, "spec: {ips: [10.9.9.9]}\n").unwrap();
        assert_eq!(
            writer.reconcile(&want).unwrap().written,
            1,
            "every file is checked: the edit nobody reported is undone"
        );
        assert!(fs::read_to_string(&path).unwrap().contains("241.0.0.1"));
    }

    #[test]
    fn apply_touches_only_the_listed_objects() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = FileWriter::new(dir.path());
        let want = desired();
        writer.reconcile(&want).unwrap();
        let key = WriteKey::new(WriteKind::ServiceImport, "demo", "echo");
        let other = WriteKey::new(WriteKind::ServiceImport, "demo", "other");
        let path = dir.path().join(".bowline/serviceimports/demo/echo.yaml");
        // A hand edit is left alone by an apply that does not name the object...
        fs::write(&path, "spec: {ips: [10.9.9.9]}\n").unwrap();
        let report = writer
            .patch(&[(
                other.clone(),
                Some(Arc::new(json!({"spec": {"ips": ["241.0.0.2"]}}).into())),
            )])
            .unwrap();
        assert_eq!(
            report,
            WriteReport {
                written: 1,
                deleted: 0
            }
        );
        assert!(fs::read_to_string(&path).unwrap().contains("10.9.9.9"));
        // ...and restored by the next reconcile.
        let mut both = want.clone();
        both.insert(
            other.clone(),
            Arc::new(json!({"spec": {"ips": ["241.0.0.2"]}}).into()),
        );
        assert_eq!(writer.reconcile(&both).unwrap().written, 1);
        // Deletions: once, then nothing to do.
        assert_eq!(writer.patch(&[(key.clone(), None)]).unwrap().deleted, 1);
        assert!(!path.exists());
        assert_eq!(
            writer.patch(&[(key, None)]).unwrap(),
            WriteReport::default()
        );
    }
}
