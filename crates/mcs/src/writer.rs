//! Writers make a member hold exactly its desired objects. The embedded writer keeps them as
//! YAML files under `<member dir>/.bowline/`, one per object, written atomically.

use std::{
    collections::{BTreeMap, HashMap},
    fs, io,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use serde_json::Value;

use crate::{WriteChange, WriteKey, WriteKind, WriteSet};

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
    /// What the member holds now (read back at start).
    fn read(&mut self) -> Result<WriteSet, WriteError>;
    /// Writes objects that differ from `desired`, deletes those not in it. Level-triggered:
    /// an object changed or removed behind Bowline's back is restored.
    fn reconcile(&mut self, desired: &WriteSet) -> Result<WriteReport, WriteError>;
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

const KINDS: [WriteKind; 4] = [
    WriteKind::ServiceImport,
    WriteKind::EndpointSlice,
    WriteKind::ServiceExport,
    WriteKind::ServiceExportStatus,
];

#[derive(Debug)]
struct Known {
    object: Arc<Value>,
    len: u64,
    modified: Option<SystemTime>,
}

/// The embedded writer: `<member dir>/.bowline/<kind>/<namespace>/<name>.yaml`. Only the MCS
/// kinds are reconciled as a set; WorkloadEntries are put and removed one by one.
#[derive(Debug)]
pub struct FileWriter {
    root: PathBuf,
    /// What this writer last wrote or verified, by path: the object, its bytes and the
    /// file's (length, modification time) then, so that an unchanged object whose file was
    /// not touched is neither rendered nor read again.
    known: HashMap<PathBuf, Known>,
}

fn err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WriteError + 'a {
    move |source| WriteError {
        action,
        path: path.display().to_string(),
        source: source.into(),
    }
}

impl FileWriter {
    /// A writer for the member directory `member_dir`.
    pub fn new(member_dir: &Path) -> Self {
        Self {
            root: member_dir.join(DIR),
            known: HashMap::new(),
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
        let mut out = BTreeMap::new();
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
                    }
                }
            }
        }
        Ok(out)
    }

    fn stat(path: &Path) -> Option<(u64, Option<SystemTime>)> {
        let meta = fs::metadata(path).ok()?;
        Some((meta.len(), meta.modified().ok()))
    }

    /// Makes the file hold `object`; true when it had to be written.
    fn ensure(&mut self, path: &Path, object: &Arc<Value>) -> Result<bool, WriteError> {
        let stat = Self::stat(path);
        if let (Some(known), Some((len, modified))) = (self.known.get(path), stat)
            && known.len == len
            && known.modified == modified
            && (Arc::ptr_eq(&known.object, object) || known.object == *object)
        {
            return Ok(false);
        }
        let bytes = to_yaml(object).into_bytes();
        let same = stat.is_some() && fs::read(path).is_ok_and(|current| current == bytes);
        if !same {
            let dir = path.parent().expect("object files live in a directory");
            fs::create_dir_all(dir).map_err(err("cannot create", dir))?;
            let file_name = path
                .file_name()
                .expect("object files have names")
                .to_string_lossy();
            let temp = dir.join(format!(".{file_name}.tmp"));
            fs::write(&temp, &bytes).map_err(err("cannot write", &temp))?;
            fs::rename(&temp, path).map_err(err("cannot rename into", path))?;
        }
        let (len, modified) = Self::stat(path).unwrap_or((bytes.len() as u64, None));
        self.known.insert(
            path.to_path_buf(),
            Known {
                object: object.clone(),
                len,
                modified,
            },
        );
        Ok(!same)
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
        for (key, path) in self.files()? {
            let Ok(text) = fs::read_to_string(&path) else {
                continue;
            };
            // A file that no longer parses is not kept: reconcile rewrites or deletes it.
            if let Ok(value) = serde_saphyr::from_str::<Value>(&text) {
                out.insert(key, Arc::new(value));
            }
        }
        Ok(out)
    }

    fn reconcile(&mut self, desired: &WriteSet) -> Result<WriteReport, WriteError> {
        let mut report = WriteReport::default();
        for (key, object) in desired {
            let path = self.path(key);
            if self.ensure(&path, object)? {
                report.written += 1;
            }
        }
        for (key, path) in self.files()? {
            if !desired.contains_key(&key) {
                fs::remove_file(&path).map_err(err("cannot delete", &path))?;
                self.known.remove(&path);
                report.deleted += 1;
            }
        }
        Ok(report)
    }

    fn patch(&mut self, changes: &[WriteChange]) -> Result<WriteReport, WriteError> {
        let mut report = WriteReport::default();
        for (key, object) in changes {
            let path = self.path(key);
            match object {
                Some(object) => report.written += usize::from(self.ensure(&path, object)?),
                None => {
                    self.known.remove(&path);
                    match fs::remove_file(&path) {
                        Ok(()) => report.deleted += 1,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(err("cannot delete", &path)(e)),
                    }
                }
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
        let path = self.path(key);
        let object = match object["metadata"].get("resourceVersion") {
            Some(_) => {
                let mut stripped = (**object).clone();
                if let Some(meta) = stripped["metadata"].as_object_mut() {
                    meta.remove("resourceVersion");
                }
                Arc::new(stripped)
            }
            None => object.clone(),
        };
        self.ensure(&path, &object)
    }

    fn remove(&mut self, key: &WriteKey, _precondition: Option<&str>) -> Result<bool, WriteError> {
        let path = self.path(key);
        self.known.remove(&path);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(err("cannot delete", &path)(e)),
        }
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
            Arc::new(json!({"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport", "metadata": {"name": "echo", "namespace": "demo"}, "spec": {"ips": ["241.0.0.1"]}})),
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
                Some(Arc::new(json!({"spec": {"ips": ["241.0.0.2"]}}))),
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
            Arc::new(json!({"spec": {"ips": ["241.0.0.2"]}})),
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
