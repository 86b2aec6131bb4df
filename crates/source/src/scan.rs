//! Atomic rescans of a manifest directory: every file read, the result diffed against the last
//! scan, and invalid edits kept at their last valid version.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, hash_map::DefaultHasher},
    hash::{Hash, Hasher},
    io,
    path::{Path, PathBuf},
};

use bowline_model::{Change, MemberName, Object, ObjectKey, RejectReason, Rejection, files};

use crate::documents::{self, Document};

/// Where an object was read.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    file: PathBuf,
    line: usize,
    index: usize,
}

impl Origin {
    fn describe(&self) -> String {
        match self.line {
            0 => self.file.display().to_string(),
            line => format!("{}:{line} (document {})", self.file.display(), self.index),
        }
    }
}

/// The last parse of one file, reused while its content is unchanged.
struct FileCache {
    hash: u64,
    documents: Vec<Document>,
}

/// The result of one scan.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Changes since the previous scan.
    pub changes: Vec<Change>,
    /// Every object now held.
    pub objects: Vec<Object>,
    /// Every document refused in this scan.
    pub rejections: Vec<Rejection>,
}

/// Scans one member directory, remembering what the previous scan found.
pub(crate) struct Scanner {
    member: MemberName,
    dir: PathBuf,
    cache: HashMap<PathBuf, FileCache>,
    current: BTreeMap<ObjectKey, (Object, Origin)>,
}

/// True for paths the manifest reader skips: hidden entries (including `.bowline/`, where
/// Bowline writes, except its `workloadentries/`) and anything not ending in `.yaml` or `.yml`.
pub(crate) fn is_manifest(relative: &Path) -> bool {
    let yaml = matches!(
        relative.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    !is_hidden(relative) && yaml
}

/// True when a path has a component starting with `.`, except the auto-registered
/// WorkloadEntries Bowline writes (`.bowline/workloadentries/...`), which are the member's
/// objects and read like the user's.
pub(crate) fn is_hidden(relative: &Path) -> bool {
    let components: Vec<_> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect();
    let dotted = |c: &std::borrow::Cow<'_, str>| c.starts_with('.');
    match components.as_slice() {
        [first] if first == files::DIR => false,
        [first, second, rest @ ..] if first == files::DIR && second == files::WORKLOAD_ENTRIES => {
            rest.iter().any(dotted)
        }
        all => all.iter().any(dotted),
    }
}

fn list_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let entry = entry?;
            let path = entry.path();
            let relative = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
            if is_hidden(&relative) {
                continue;
            }
            let file_type = entry.file_type()?;
            if file_type.is_dir() || (file_type.is_symlink() && path.is_dir()) {
                pending.push(path);
            } else if is_manifest(&relative) {
                out.push(relative);
            }
        }
    }
    out.sort();
    Ok(out)
}

impl Scanner {
    pub fn new(member: MemberName, dir: PathBuf) -> Self {
        Self {
            member,
            dir,
            cache: HashMap::new(),
            current: BTreeMap::new(),
        }
    }

    /// Reads the directory and computes what changed. Fails only when the directory itself
    /// cannot be listed; unreadable files and broken documents become rejections.
    pub fn scan(&mut self) -> io::Result<Scan> {
        let files = list_files(&self.dir)?;
        let mut next: BTreeMap<ObjectKey, (Object, Origin)> = BTreeMap::new();
        let mut rejections = Vec::new();
        let mut seen = BTreeSet::new();
        for file in files {
            seen.insert(file.clone());
            let documents = match self.read(&file) {
                Ok(documents) => documents,
                // Removed between listing and reading: it is gone, like its objects.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    let origin = Origin {
                        file: file.clone(),
                        line: 0,
                        index: 0,
                    };
                    rejections.push(self.rejection(
                        &origin,
                        None,
                        RejectReason::ParseError,
                        format!("cannot read file: {e}"),
                    ));
                    self.keep_previous(&file, |_| true, &mut next);
                    continue;
                }
            };
            let mut refused_keys = BTreeSet::new();
            let mut unknown_broken = false;
            for doc in documents {
                let origin = Origin {
                    file: file.clone(),
                    line: doc.line,
                    index: doc.index,
                };
                match doc.result {
                    Ok(None) => {}
                    Ok(Some(object)) => {
                        let key = object.key();
                        if let Some((_, first)) = next.get(&key) {
                            let message = format!(
                                "{key} is already defined at {}; this copy is ignored",
                                first.describe()
                            );
                            rejections.push(self.rejection(
                                &origin,
                                Some(key),
                                RejectReason::DuplicateObject,
                                message,
                            ));
                        } else {
                            next.insert(key, (object, origin));
                        }
                    }
                    Err(e) => {
                        let kept = e.key.as_ref().is_some_and(|k| {
                            self.current.get(k).is_some_and(|(_, o)| o.file == file)
                        });
                        let message = if kept {
                            format!("{}; its last valid version is kept", e.message)
                        } else {
                            e.message
                        };
                        match &e.key {
                            Some(key) => {
                                refused_keys.insert(key.clone());
                            }
                            None => unknown_broken = true,
                        }
                        rejections.push(self.rejection(&origin, e.key, e.reason, message));
                    }
                }
            }
            // An invalid edit must not delete what was there: keep the last valid version of
            // objects whose document is now refused; if a document is too broken to name its
            // object, keep every object the file held.
            self.keep_previous(
                &file,
                |key| unknown_broken || refused_keys.contains(key),
                &mut next,
            );
        }
        self.cache.retain(|file, _| seen.contains(file));
        let changes = diff(&self.current, &next);
        self.current = next;
        Ok(Scan {
            changes,
            objects: self.current.values().map(|(o, _)| o.clone()).collect(),
            rejections,
        })
    }

    fn read(&mut self, file: &Path) -> io::Result<Vec<Document>> {
        let text = std::fs::read_to_string(self.dir.join(file))?;
        let mut hasher = DefaultHasher::new();
        text.hash(&mut hasher);
        let hash = hasher.finish();
        if let Some(cached) = self.cache.get(file).filter(|c| c.hash == hash) {
            return Ok(cached.documents.clone());
        }
        let documents = documents::parse(&text);
        self.cache.insert(
            file.to_path_buf(),
            FileCache {
                hash,
                documents: documents.clone(),
            },
        );
        Ok(documents)
    }

    fn keep_previous(
        &self,
        file: &Path,
        keep: impl Fn(&ObjectKey) -> bool,
        next: &mut BTreeMap<ObjectKey, (Object, Origin)>,
    ) {
        for (key, (object, origin)) in &self.current {
            if origin.file == file && keep(key) && !next.contains_key(key) {
                next.insert(key.clone(), (object.clone(), origin.clone()));
            }
        }
    }

    fn rejection(
        &self,
        origin: &Origin,
        object: Option<ObjectKey>,
        reason: RejectReason,
        message: String,
    ) -> Rejection {
        Rejection {
            member: self.member.clone(),
            origin: origin.describe(),
            object,
            reason,
            message,
        }
    }
}

fn diff(
    before: &BTreeMap<ObjectKey, (Object, Origin)>,
    after: &BTreeMap<ObjectKey, (Object, Origin)>,
) -> Vec<Change> {
    let deleted = before
        .keys()
        .filter(|k| !after.contains_key(*k))
        .map(|k| Change::Delete(k.clone()));
    let applied = after
        .iter()
        .filter(|(k, (object, _))| before.get(*k).is_none_or(|(old, _)| old != object))
        .map(|(_, (object, _))| Change::Apply(object.clone()));
    deleted.chain(applied).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bowline_writes_are_hidden_except_workload_entries() {
        let read = |p: &str| is_manifest(Path::new(p));
        assert!(read("demo/svc.yaml"));
        assert!(!read(".git/config.yaml"));
        assert!(!read("demo/.svc.yaml"));
        assert!(!read(".bowline/serviceimports/demo/echo.yaml"));
        assert!(!read(".bowline/endpointslices/demo/echo-east.yaml"));
        assert!(read(".bowline/workloadentries/demo/legacy-192.0.2.50.yaml"));
        assert!(
            !read(".bowline/workloadentries/demo/.legacy-192.0.2.50.yaml.tmp"),
            "a file being written"
        );
        assert!(!is_hidden(Path::new(".bowline")), "walked into");
        assert!(is_hidden(Path::new(".bowline/serviceimports")));
    }
}
