//! The embedded demo ClusterSet (`examples/demo`), written out to a directory to run and edit.

use std::{io, path::Path};

use include_dir::{Dir, include_dir};

static DEMO: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../examples/demo");

/// Writes the demo (its `bowline.yaml` and member directories) into `target`.
pub fn write_to(target: &Path) -> io::Result<()> {
    std::fs::create_dir_all(target)?;
    DEMO.extract(target)
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
