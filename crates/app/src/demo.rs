//! The embedded demo ClusterSet (`examples/demo`), written out to a directory to run and edit.

use std::{io, path::Path};

use include_dir::{Dir, include_dir};

static DEMO: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../examples/demo");

/// Writes the demo (its `bowline.yaml` and member directories) into `target`, replacing the
/// demo's files there.
pub fn write_to(target: &Path) -> io::Result<()> {
    std::fs::create_dir_all(target)?;
    DEMO.extract(target)
}

/// What `bowline demo --dir` does with a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prepared {
    /// It was missing or empty: the demo was written.
    Written,
    /// It holds a `bowline.yaml` (an earlier demo, maybe edited): used as it is.
    Kept,
}

/// Prepares `target` for the demo without losing a user's edits: writes the demo into a
/// missing or empty directory, keeps one holding a `bowline.yaml` as it is, and refuses any
/// other (unless `reset`, which writes the demo's files afresh over whatever is there).
pub fn prepare(target: &Path, reset: bool) -> io::Result<Prepared> {
    if reset {
        write_to(target)?;
        return Ok(Prepared::Written);
    }
    if target.join("bowline.yaml").is_file() {
        return Ok(Prepared::Kept);
    }
    let empty = match std::fs::read_dir(target) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => true,
        Err(e) => return Err(e),
    };
    if !empty {
        return Err(io::Error::other(format!(
            "{} is not empty and holds no bowline.yaml; choose another --dir, or pass --reset to write the demo over it",
            target.display()
        )));
    }
    write_to(target)?;
    Ok(Prepared::Written)
}

/// Every file of the demo, with its path inside it (`bowline.yaml`, `members/east/...`).
pub fn files() -> Vec<(&'static Path, &'static [u8])> {
    fn walk(dir: &'static Dir<'static>, out: &mut Vec<(&'static Path, &'static [u8])>) {
        out.extend(dir.files().map(|f| (f.path(), f.contents())));
        for sub in dir.dirs() {
            walk(sub, out);
        }
    }
    let mut out = Vec::new();
    walk(&DEMO, &mut out);
    out.sort();
    out
}

#[cfg(test)]
mod prepare_tests {
    use super::*;

    #[test]
    fn a_second_demo_keeps_the_users_edits_unless_reset() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("demo");
        assert_eq!(prepare(&target, false).unwrap(), Prepared::Written);
        let config = target.join("bowline.yaml");
        std::fs::write(&config, "# edited\n").unwrap();
        assert_eq!(prepare(&target, false).unwrap(), Prepared::Kept);
        assert_eq!(std::fs::read_to_string(&config).unwrap(), "# edited\n");
        assert_eq!(prepare(&target, true).unwrap(), Prepared::Written);
        assert_ne!(std::fs::read_to_string(&config).unwrap(), "# edited\n");

        let other = dir.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("notes.txt"), "mine").unwrap();
        let err = prepare(&other, false).unwrap_err().to_string();
        assert!(
            err.contains("is not empty and holds no bowline.yaml"),
            "{err}"
        );
        assert!(!other.join("bowline.yaml").exists(), "nothing written");
    }
}
