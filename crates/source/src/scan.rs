//! Reading a manifest directory: a full rescan lists every file, a rescan of some paths reads
//! only those; either re-reads only files that changed and hands their documents to the
//! [`Index`](crate::index), which computes what changed in the objects held.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet, hash_map::DefaultHasher},
    fs,
    hash::{Hash, Hasher},
    io,
    ops::Bound,
    path::{Path, PathBuf},
    sync::{Arc, atomic::Ordering},
    time::SystemTime,
};

use bowline_model::{Change, MemberName, Object, RejectReason, Rejection, files};

use crate::{
    documents,
    index::{Contents, FileName, Index},
    manifests::SourceStats,
};

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

/// The largest manifest file read (the API server's objects are at most 1.5 MB each; a
/// file of this size holds thousands).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// How deep directories are followed below the member directory.
const MAX_DEPTH: usize = 32;

/// Why a directory reached a second time is not read.
const LINKED: &str = "directory not read: it is a link to a directory already read (a symlink loop, or a second link to it)";

/// A directory the walk did not enter, and why.
pub(crate) type Skipped = (PathBuf, String);

/// A directory's identity: device and inode, so that each is listed once however many
/// links (or symlink loops) lead to it.
fn dir_id(meta: &fs::Metadata) -> (u64, u64) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        (0, 0)
    }
}

/// The manifests under `start` (relative to `dir`; empty for all of it), relative to `dir`,
/// and the directories not entered: each directory is listed once (a symlink loop, or a
/// second link to a directory already listed, is skipped), at most [`MAX_DEPTH`] deep.
fn list_files(dir: &Path, start: &Path) -> io::Result<(Vec<PathBuf>, Vec<Skipped>)> {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mut visited = HashSet::new();
    // The directories above `start` count as listed: a link back up is a loop.
    let mut above = dir.to_path_buf();
    visited.insert(dir_id(&fs::metadata(&above)?));
    for part in start.components() {
        above.push(part);
        if let Ok(meta) = fs::metadata(&above)
            && !visited.insert(dir_id(&meta))
        {
            // `start` is reached through a loop: what it holds is read under its own name.
            return Ok((Vec::new(), vec![(start.to_path_buf(), LINKED.to_string())]));
        }
    }
    let mut pending = vec![dir.join(start)];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current)? {
            let entry = entry?;
            let path = entry.path();
            let relative = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
            if is_hidden(&relative) {
                continue;
            }
            let file_type = entry.file_type()?;
            let is_dir = file_type.is_dir() || (file_type.is_symlink() && path.is_dir());
            if !is_dir {
                if is_manifest(&relative) {
                    out.push(relative);
                }
                continue;
            }
            if relative.components().count() > MAX_DEPTH {
                skipped.push((
                    relative,
                    format!("directory not read: more than {MAX_DEPTH} levels deep"),
                ));
                continue;
            }
            match fs::metadata(&path) {
                Ok(meta) if visited.insert(dir_id(&meta)) => pending.push(path),
                Ok(_) => skipped.push((relative, LINKED.to_string())),
                Err(e) => skipped.push((relative, format!("directory not read: {e}"))),
            }
        }
    }
    out.sort();
    skipped.sort();
    Ok((out, skipped))
}

/// What identifies a file's version without reading it: a file rewritten in place, replaced
/// (renamed over) or touched gets a new stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    /// Device, inode and change time where the platform has them.
    id: (u64, u64, i64, i64),
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Self {
        #[cfg(unix)]
        let id = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec())
        };
        #[cfg(not(unix))]
        let id = (0, 0, 0, 0);
        Self {
            modified: meta.modified().ok(),
            len: meta.len(),
            id,
        }
    }
}

/// A file as last read: `None` when it could not be read, so it is read again next time.
#[derive(Clone, Copy, Debug)]
struct Seen {
    stamp: Option<Stamp>,
    hash: Option<u64>,
}

/// What looking at a file found.
enum Look {
    /// It is gone (or is no longer a manifest file).
    Gone,
    /// Its content is what was read last time; only its stamp changed.
    Same(Seen),
    /// It holds something new.
    Changed(Seen, Contents),
}

/// When a file is read again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Only if its stamp changed (full rescans, directories named by an event).
    Stamp,
    /// Always: a file event named it.
    Always,
}

/// Reads one member directory, remembering what each file held.
#[derive(Debug)]
pub struct Scanner {
    dir: PathBuf,
    index: Index,
    /// Every file the index holds, as last read.
    seen: BTreeMap<FileName, Seen>,
    /// Directories the last listings did not enter, by path.
    skipped: BTreeMap<PathBuf, String>,
    stats: Arc<SourceStats>,
}

impl Scanner {
    /// A scanner of `dir` that has read nothing yet.
    pub fn new(member: MemberName, dir: PathBuf) -> Self {
        Self::with_stats(member, dir, Arc::default())
    }

    /// A scanner counting its work into `stats`.
    pub fn with_stats(member: MemberName, dir: PathBuf, stats: Arc<SourceStats>) -> Self {
        Self {
            dir,
            index: Index::new(member),
            seen: BTreeMap::new(),
            skipped: BTreeMap::new(),
            stats,
        }
    }

    /// Every object now held, in key order.
    pub fn objects(&self) -> Vec<Object> {
        self.index.objects()
    }

    /// Every document now refused, in file then document order, then every directory not
    /// read (loops, too deep).
    pub fn rejections(&self) -> Vec<Rejection> {
        let mut rejections = self.index.rejections();
        rejections.extend(self.skipped.iter().map(|(path, message)| Rejection {
            member: self.index.member().clone(),
            origin: path.display().to_string(),
            object: None,
            reason: RejectReason::ParseError,
            message: message.clone(),
        }));
        rejections
    }

    /// Lists the whole directory and returns what changed since the last scan; files whose
    /// stamp (modification and change time, length, inode) is unchanged are not read. Fails
    /// only when a directory cannot be listed; unreadable files and broken documents become
    /// rejections.
    pub fn scan(&mut self) -> io::Result<Vec<Change>> {
        self.stats.full_scans.fetch_add(1, Ordering::Relaxed);
        let (listed, skipped) = list_files(&self.dir, Path::new(""))?;
        self.skipped = skipped.into_iter().collect();
        let mut looks = BTreeMap::new();
        for file in &listed {
            self.look(file, Check::Stamp, &mut looks);
        }
        let listed: HashSet<&Path> = listed.iter().map(PathBuf::as_path).collect();
        for file in self.seen.keys().filter(|f| !listed.contains(&***f)) {
            looks.insert(file.clone(), Look::Gone);
        }
        Ok(self.commit(looks))
    }

    /// Looks again at the given paths (relative to the directory; files or directories, present
    /// or gone) and returns what changed: a named file is read, a named directory is listed (its
    /// unchanged files are not read), and what was held under a path that is gone is deleted.
    /// Fails when the directory itself, or a directory under it, cannot be listed.
    pub fn rescan(&mut self, paths: &BTreeSet<PathBuf>) -> io::Result<Vec<Change>> {
        if !fs::metadata(&self.dir)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        let mut looks = BTreeMap::new();
        for path in paths {
            if path.as_os_str().is_empty() {
                return self.scan();
            }
            let found = match fs::metadata(self.dir.join(path)) {
                Ok(meta) if meta.is_dir() => match list_files(&self.dir, path) {
                    Ok((found, skipped)) => {
                        self.skipped.retain(|p, _| !p.starts_with(path));
                        self.skipped.extend(skipped);
                        found.into_iter().map(|f| (f, Check::Stamp)).collect()
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => return Err(e),
                },
                Ok(_) if is_manifest(path) => vec![(path.clone(), Check::Always)],
                Ok(_) => Vec::new(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e),
            };
            for (file, check) in &found {
                self.look(file, *check, &mut looks);
            }
            let found: HashSet<&Path> = found.iter().map(|(f, _)| f.as_path()).collect();
            let under = self
                .seen
                .range::<Path, _>((Bound::Included(path.as_path()), Bound::Unbounded))
                .map(|(f, _)| f)
                .take_while(|f| f.starts_with(path));
            for file in under.filter(|f| !found.contains(&***f)) {
                looks.entry(file.clone()).or_insert(Look::Gone);
            }
        }
        Ok(self.commit(looks))
    }

    /// Records what a file holds now in `looks`, unless it was already looked at or is unchanged.
    fn look(&self, file: &Path, check: Check, looks: &mut BTreeMap<FileName, Look>) {
        if looks.contains_key(file) {
            return;
        }
        let known = self.seen.get(file);
        let path = self.dir.join(file);
        let unreadable = |e: io::Error| match e.kind() {
            io::ErrorKind::NotFound => Look::Gone,
            _ => Look::Changed(
                Seen {
                    stamp: None,
                    hash: None,
                },
                Contents::Unreadable(e.to_string()),
            ),
        };
        let look = match fs::metadata(&path) {
            Err(e) => unreadable(e),
            Ok(meta) if meta.is_dir() => Look::Gone,
            Ok(meta) => {
                let stamp = Some(Stamp::of(&meta));
                if check == Check::Stamp && known.is_some_and(|k| k.stamp == stamp) {
                    return;
                }
                // Not read (nor read again) until it changes: too large to be manifests, or
                // not text. Its stamp is kept, so a resync does not read it again.
                let refused = |why: String| {
                    Look::Changed(Seen { stamp, hash: None }, Contents::Unreadable(why))
                };
                if meta.len() > MAX_FILE_BYTES {
                    looks.insert(
                        Arc::from(file),
                        refused(format!(
                            "{} bytes, more than the {MAX_FILE_BYTES} a manifest file may hold",
                            meta.len()
                        )),
                    );
                    return;
                }
                self.stats.files_read.fetch_add(1, Ordering::Relaxed);
                match fs::read_to_string(&path) {
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => refused(e.to_string()),
                    Err(e) => unreadable(e),
                    Ok(text) => {
                        let mut hasher = DefaultHasher::new();
                        text.hash(&mut hasher);
                        let hash = Some(hasher.finish());
                        let seen = Seen { stamp, hash };
                        if known.is_some_and(|k| k.hash == hash) {
                            Look::Same(seen)
                        } else {
                            Look::Changed(seen, Contents::Documents(documents::parse(&text)))
                        }
                    }
                }
            }
        };
        looks.insert(Arc::from(file), look);
    }

    fn commit(&mut self, looks: BTreeMap<FileName, Look>) -> Vec<Change> {
        let mut updates = BTreeMap::new();
        for (file, look) in looks {
            match look {
                Look::Gone => {
                    if self.seen.remove(&file).is_some() {
                        updates.insert(file, None);
                    }
                }
                Look::Same(seen) => {
                    self.seen.insert(file, seen);
                }
                Look::Changed(seen, contents) => {
                    self.seen.insert(file.clone(), seen);
                    updates.insert(file, Some(contents));
                }
            }
        }
        if updates.is_empty() {
            return Vec::new();
        }
        self.index.update(updates)
    }
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
