//! The manifest-directory source against a real directory: scans, rejections, last-valid
//! retention, the watcher for create, modify, rename, delete and half-written files, and what
//! each change costs (files read, full listings).

use std::{collections::BTreeSet, fs, path::Path, sync::Arc, time::Duration};

use bowline_model::MemberName;
use bowline_model::{Change, EventBody, ObjectKey, ObjectKind, RejectReason, SourceEvent};
use bowline_source::{ManifestMember, SourceStats, scan::Scanner, scan_directory};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn ns(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}

fn svc(name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: demo\nspec:\n  ports:\n  - port: {port}\n"
    )
}

fn names(objects: &[bowline_model::Object]) -> Vec<String> {
    let mut v: Vec<String> = objects.iter().map(|o| o.key().to_string()).collect();
    v.sort();
    v
}

fn member() -> MemberName {
    MemberName::new("east")
}

#[test]
fn scan_reads_nested_yaml_and_skips_hidden_and_other_files() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("sub")).unwrap();
    fs::create_dir_all(dir.path().join(".bowline")).unwrap();
    fs::write(
        dir.path().join("a.yaml"),
        format!("{}---\n{}", ns("a"), svc("web", 80)),
    )
    .unwrap();
    fs::write(dir.path().join("sub/b.yml"), ns("b")).unwrap();
    fs::write(
        dir.path().join(".bowline/imports.yaml"),
        ns("written-by-bowline"),
    )
    .unwrap();
    fs::write(dir.path().join(".a.yaml.swp"), ns("swap")).unwrap();
    fs::write(dir.path().join("notes.txt"), ns("text")).unwrap();
    let (objects, rejections) = scan_directory(member(), dir.path()).unwrap();
    assert_eq!(
        names(&objects),
        vec!["Namespace a", "Namespace b", "Service demo/web"]
    );
    assert!(rejections.is_empty());
}

#[test]
fn rejections_name_file_line_document_object_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: bad, namespace: demo}}\nspec: {{clusterIP: 10.0.0.999}}\n---\n{}",
        ns("a"),
        ns("a")
    );
    fs::write(dir.path().join("a.yaml"), text).unwrap();
    let (objects, rejections) = scan_directory(member(), dir.path()).unwrap();
    assert_eq!(names(&objects), vec!["Namespace a"]);
    let summary: Vec<(String, Option<String>, RejectReason)> = rejections
        .iter()
        .map(|r| {
            (
                r.origin.clone(),
                r.object.as_ref().map(|k| k.to_string()),
                r.reason,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "a.yaml:6 (document 2)".into(),
                Some("Service demo/bad".into()),
                RejectReason::InvalidObject
            ),
            (
                "a.yaml:11 (document 3)".into(),
                Some("Namespace a".into()),
                RejectReason::DuplicateObject
            ),
        ]
    );
    assert!(
        rejections[0].message.contains("spec.clusterIP"),
        "{}",
        rejections[0].message
    );
    assert!(
        rejections[1]
            .message
            .contains("already defined at a.yaml:1 (document 1)"),
        "{}",
        rejections[1].message
    );
}

struct Running {
    rx: mpsc::Receiver<SourceEvent>,
    stop: CancellationToken,
}

impl Running {
    fn start(dir: &Path) -> Self {
        Self::start_counted(dir).0
    }

    /// A source whose work is counted (it never lists the whole directory again by itself).
    fn start_counted(dir: &Path) -> (Self, Arc<SourceStats>) {
        let (tx, rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let stats = Arc::new(SourceStats::default());
        let source = ManifestMember {
            member: member(),
            dir: dir.to_path_buf(),
            debounce: Duration::from_millis(30),
            resync: Duration::from_secs(3600),
        };
        tokio::spawn(source.run_with_stats(tx, stop.clone(), stats.clone()));
        (Self { rx, stop }, stats)
    }

    /// The next event; the timeout only guards against a hang, it asserts no speed.
    async fn next(&mut self) -> EventBody {
        tokio::time::timeout(Duration::from_secs(20), self.rx.recv())
            .await
            .expect("an event within 20 s")
            .expect("source running")
            .body
    }

    async fn next_changes(&mut self) -> (Vec<Change>, Vec<bowline_model::Rejection>) {
        match self.next().await {
            EventBody::Changes {
                changes,
                rejections,
            } => (changes, rejections.unwrap_or_default()),
            other => panic!("expected changes, got {other:?}"),
        }
    }
}

fn change_summary(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .map(|c| match c {
            Change::Apply(o) => format!("apply {}", o.key()),
            Change::Delete(k) => format!("delete {k}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_follows_create_modify_rename_delete() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.yaml"), ns("a")).unwrap();
    let mut source = Running::start(dir.path());
    match source.next().await {
        EventBody::Reset {
            objects,
            rejections,
        } => {
            assert_eq!(names(&objects), vec!["Namespace a"]);
            assert!(rejections.is_empty());
        }
        other => panic!("first event must be a reset, got {other:?}"),
    }

    fs::write(dir.path().join("b.yaml"), svc("web", 80)).unwrap();
    let (changes, _) = source.next_changes().await;
    assert_eq!(change_summary(&changes), vec!["apply Service demo/web"]);

    fs::write(dir.path().join("b.yaml"), svc("web", 8080)).unwrap();
    let (changes, _) = source.next_changes().await;
    assert_eq!(change_summary(&changes), vec!["apply Service demo/web"]);

    // A rename changes no object: no event. The next real edit shows nothing was deleted.
    fs::rename(dir.path().join("b.yaml"), dir.path().join("c.yaml")).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    fs::write(
        dir.path().join("a.yaml"),
        format!("{}---\n{}", ns("a"), ns("a2")),
    )
    .unwrap();
    let (changes, _) = source.next_changes().await;
    assert_eq!(change_summary(&changes), vec!["apply Namespace a2"]);

    fs::remove_file(dir.path().join("c.yaml")).unwrap();
    let (changes, _) = source.next_changes().await;
    assert_eq!(change_summary(&changes), vec!["delete Service demo/web"]);

    // Writes under .bowline/ never reach the registry.
    fs::create_dir_all(dir.path().join(".bowline")).unwrap();
    fs::write(dir.path().join(".bowline/x.yaml"), ns("ours")).unwrap();
    fs::write(dir.path().join("d.yaml"), ns("d")).unwrap();
    let (changes, _) = source.next_changes().await;
    assert_eq!(change_summary(&changes), vec!["apply Namespace d"]);
    source.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_written_and_invalid_edits_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let api = "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: demo}\nspec: {ports: [{port: 90}]}\n";
    let full = format!("{}---\n{api}", svc("web", 80));
    fs::write(dir.path().join("a.yaml"), &full).unwrap();
    let mut source = Running::start(dir.path());
    assert!(matches!(source.next().await, EventBody::Reset { .. }));

    // Half-written: the writer stopped inside the second document, which no longer parses
    // and cannot even be named; every object the file held is kept.
    let cut = &full[..full.find("name: ap").unwrap() + 8];
    fs::write(dir.path().join("a.yaml"), cut).unwrap();
    let (changes, rejections) = source.next_changes().await;
    assert!(
        changes.iter().all(|c| !matches!(c, Change::Delete(_))),
        "nothing deleted while half-written: {:?}",
        change_summary(&changes)
    );
    assert_eq!(rejections.len(), 1, "{rejections:?}");
    assert_eq!(rejections[0].origin, "a.yaml:10 (document 2)");

    // Completed: every object is there, the rejection is gone.
    fs::write(
        dir.path().join("a.yaml"),
        format!("{}---\n{}", svc("web", 80), svc("api", 91)),
    )
    .unwrap();
    let (changes, rejections) = source.next_changes().await;
    assert_eq!(change_summary(&changes), vec!["apply Service demo/api"]);
    assert!(rejections.is_empty());

    // An invalid edit of a named object keeps its last valid version and says so.
    let broken = format!("{}---\n{}", svc("web", 80), svc("api", 0));
    fs::write(dir.path().join("a.yaml"), broken).unwrap();
    let (changes, rejections) = source.next_changes().await;
    assert!(changes.is_empty(), "{:?}", change_summary(&changes));
    assert_eq!(
        rejections[0].object,
        Some(ObjectKey::new(ObjectKind::Service, "demo", "api"))
    );
    assert!(
        rejections[0]
            .message
            .ends_with("its last valid version is kept"),
        "{}",
        rejections[0].message
    );

    // Deleting that document for real deletes the object.
    fs::write(dir.path().join("a.yaml"), svc("web", 80)).unwrap();
    let (changes, rejections) = source.next_changes().await;
    assert_eq!(change_summary(&changes), vec!["delete Service demo/api"]);
    assert!(rejections.is_empty());
    source.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_directory_is_a_source_error_then_recovers() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("member");
    let (tx, mut rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let source = ManifestMember {
        member: member(),
        dir: dir.clone(),
        debounce: Duration::from_millis(30),
        resync: Duration::from_millis(100),
    };
    tokio::spawn(source.run(tx, stop.clone()));
    let first = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(first.body, EventBody::SourceError(ref m) if m.contains("cannot read manifest directory"))
    );
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("a.yaml"), ns("a")).unwrap();
    let next = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(next.body, EventBody::Reset { ref objects, .. } if objects.len() == 1));
    stop.cancel();
}

/// Writes a file the way careful writers do: a hidden temporary file renamed into place, so
/// the watcher reports one event for the file, complete.
fn replace(path: &Path, text: &str) {
    let temp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    fs::write(&temp, text).unwrap();
    fs::rename(&temp, path).unwrap();
}

fn rejection_summary(rejections: &[bowline_model::Rejection]) -> Vec<(String, RejectReason)> {
    rejections
        .iter()
        .map(|r| (r.origin.clone(), r.reason))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_reads_only_the_file_that_changed() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("sub")).unwrap();
    for i in 0..40 {
        fs::write(
            dir.path().join(format!("sub/n{i}.yaml")),
            ns(&format!("n{i}")),
        )
        .unwrap();
    }
    fs::write(dir.path().join("web.yaml"), svc("web", 80)).unwrap();
    let (mut source, stats) = Running::start_counted(dir.path());
    assert!(
        matches!(source.next().await, EventBody::Reset { ref objects, .. } if objects.len() == 41)
    );
    assert_eq!((stats.files_read(), stats.full_scans()), (41, 1));

    replace(&dir.path().join("web.yaml"), &svc("web", 8080));
    let (changes, _) = source.next_changes().await;
    assert_eq!(change_summary(&changes), vec!["apply Service demo/web"]);
    assert_eq!((stats.files_read(), stats.full_scans()), (42, 1));

    // A new directory of manifests is listed and read; nothing else is.
    fs::create_dir_all(dir.path().join("new")).unwrap();
    fs::write(dir.path().join("new/api.yaml"), svc("api", 90)).unwrap();
    let (changes, _) = source.next_changes().await;
    assert_eq!(change_summary(&changes), vec!["apply Service demo/api"]);
    assert_eq!(stats.full_scans(), 1);
    assert!(stats.files_read() <= 44, "read {}", stats.files_read());

    // Removing a directory deletes what its files held.
    fs::remove_dir_all(dir.path().join("sub")).unwrap();
    let mut deleted = BTreeSet::new();
    while deleted.len() < 40 {
        let (changes, _) = source.next_changes().await;
        for change in changes {
            match change {
                Change::Delete(key) => deleted.insert(key.to_string()),
                other => panic!("only deletes expected, got {other:?}"),
            };
        }
    }
    assert_eq!(stats.full_scans(), 1);
    source.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bowline_writes_are_not_read_except_workload_entries() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join(".bowline/workloadentries/demo")).unwrap();
    fs::write(dir.path().join("a.yaml"), ns("a")).unwrap();
    let (mut source, stats) = Running::start_counted(dir.path());
    assert!(matches!(source.next().await, EventBody::Reset { .. }));
    let read = stats.files_read();

    // What the MCS writer writes: no event, nothing read.
    for path in [
        ".bowline/serviceimports/demo/echo.yaml",
        ".bowline/endpointslices/demo/echo-west.yaml",
        ".bowline/serviceexports/demo/echo.yaml",
    ] {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        replace(&path, &svc("written-by-bowline", 80));
    }
    // A change made afterwards is the next event, alone: the writes above sent none.
    replace(&dir.path().join("b.yaml"), &ns("b"));
    let (changes, _) = source.next_changes().await;
    assert_eq!(change_summary(&changes), vec!["apply Namespace b"]);
    assert_eq!(stats.files_read(), read + 1, "only b.yaml was read");

    // What the VM registrar writes is read, alone.
    let entry = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: vm-1, namespace: demo}\nspec: {address: 192.0.2.50}\n";
    replace(
        &dir.path().join(".bowline/workloadentries/demo/vm-1.yaml"),
        entry,
    );
    let (changes, _) = source.next_changes().await;
    assert_eq!(
        change_summary(&changes),
        vec!["apply WorkloadEntry demo/vm-1"]
    );
    assert_eq!(stats.files_read(), read + 2);
    assert_eq!(stats.full_scans(), 1);
    source.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renames_into_place_and_between_names_change_only_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.yaml"), svc("web", 80)).unwrap();
    let mut source = Running::start(dir.path());
    assert!(matches!(source.next().await, EventBody::Reset { .. }));

    // An editor's save: the new version renamed over the old one.
    replace(&dir.path().join("a.yaml"), &svc("web", 81));
    let (changes, _) = source.next_changes().await;
    assert_eq!(change_summary(&changes), vec!["apply Service demo/web"]);
    // `mv tmp a.yaml` with a temporary name that is not a manifest.
    fs::write(dir.path().join("a.yaml.new"), svc("web", 82)).unwrap();
    fs::rename(dir.path().join("a.yaml.new"), dir.path().join("a.yaml")).unwrap();
    let (changes, _) = source.next_changes().await;
    assert_eq!(change_summary(&changes), vec!["apply Service demo/web"]);

    // A file renamed, and a directory renamed, hold the same objects: no event; the next
    // change shows nothing was deleted.
    fs::create_dir_all(dir.path().join("d")).unwrap();
    fs::rename(dir.path().join("a.yaml"), dir.path().join("d/b.yaml")).unwrap();
    fs::rename(dir.path().join("d"), dir.path().join("e")).unwrap();
    replace(&dir.path().join("z.yaml"), &ns("z"));
    let (changes, _) = source.next_changes().await;
    assert_eq!(change_summary(&changes), vec!["apply Namespace z"]);

    // Edits under the renamed directory are seen under its new name.
    replace(&dir.path().join("e/b.yaml"), &svc("web", 83));
    let (changes, _) = source.next_changes().await;
    assert_eq!(change_summary(&changes), vec!["apply Service demo/web"]);

    // The file deleted: its objects are.
    fs::remove_file(dir.path().join("e/b.yaml")).unwrap();
    let (changes, _) = source.next_changes().await;
    assert_eq!(change_summary(&changes), vec!["delete Service demo/web"]);
    source.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_defined_twice_comes_from_the_first_file_in_path_order() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("b.yaml"),
        format!("{}---\n{}", ns("b"), svc("web", 80)),
    )
    .unwrap();
    let mut source = Running::start(dir.path());
    assert!(matches!(source.next().await, EventBody::Reset { .. }));

    // A later file defining the same object: its copy is refused, naming the first.
    replace(&dir.path().join("c.yaml"), &svc("web", 81));
    let (changes, rejections) = source.next_changes().await;
    assert!(changes.is_empty(), "{:?}", change_summary(&changes));
    assert_eq!(
        rejection_summary(&rejections),
        vec![(
            "c.yaml:1 (document 1)".into(),
            RejectReason::DuplicateObject
        )]
    );
    assert!(
        rejections[0]
            .message
            .contains("already defined at b.yaml:6 (document 2)"),
        "{}",
        rejections[0].message
    );

    // An earlier file defining it takes it over; both later copies are refused.
    replace(&dir.path().join("a.yaml"), &svc("web", 82));
    let (changes, rejections) = source.next_changes().await;
    assert_eq!(change_summary(&changes), vec!["apply Service demo/web"]);
    assert_eq!(
        rejection_summary(&rejections),
        vec![
            (
                "b.yaml:6 (document 2)".into(),
                RejectReason::DuplicateObject
            ),
            (
                "c.yaml:1 (document 1)".into(),
                RejectReason::DuplicateObject
            ),
        ]
    );
    assert!(rejections.iter().all(|r| r.message.contains("a.yaml:1")));

    // The first copy goes: the next file's copy is the one held, the third's names it.
    replace(&dir.path().join("a.yaml"), &ns("a"));
    let (changes, rejections) = source.next_changes().await;
    assert_eq!(
        change_summary(&changes),
        vec!["apply Namespace a", "apply Service demo/web"]
    );
    assert_eq!(
        rejection_summary(&rejections),
        vec![(
            "c.yaml:1 (document 1)".into(),
            RejectReason::DuplicateObject
        )]
    );
    assert!(rejections[0].message.contains("b.yaml:6"));

    // Moved to the last file: its copy (a different version) is held, no copy is refused.
    replace(&dir.path().join("b.yaml"), &ns("b"));
    let (changes, rejections) = source.next_changes().await;
    assert_eq!(change_summary(&changes), vec!["apply Service demo/web"]);
    assert!(rejections.is_empty(), "{rejections:?}");

    // Moved between files unchanged: nothing to tell.
    replace(&dir.path().join("d.yaml"), &svc("web", 81));
    let (changes, rejections) = source.next_changes().await;
    assert!(changes.is_empty(), "{:?}", change_summary(&changes));
    assert_eq!(rejections.len(), 1, "d.yaml's copy is a duplicate");
    fs::remove_file(dir.path().join("c.yaml")).unwrap();
    let (changes, rejections) = source.next_changes().await;
    assert!(changes.is_empty(), "{:?}", change_summary(&changes));
    assert!(rejections.is_empty(), "{rejections:?}");
    source.stop.cancel();
}

#[test]
fn a_rescan_without_watcher_finds_changes_reading_only_changed_files() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("sub")).unwrap();
    fs::write(dir.path().join("a.yaml"), ns("a")).unwrap();
    fs::write(dir.path().join("b.yaml"), svc("web", 80)).unwrap();
    fs::write(dir.path().join("sub/c.yaml"), ns("c")).unwrap();
    let stats = Arc::new(SourceStats::default());
    let mut scanner = Scanner::with_stats(member(), dir.path().to_path_buf(), stats.clone());
    assert_eq!(scanner.scan().unwrap().len(), 3);
    assert_eq!(stats.files_read(), 3);
    assert!(scanner.scan().unwrap().is_empty());
    assert_eq!(stats.files_read(), 3, "nothing changed, nothing read");

    // Changes no watcher reported: the next full rescan finds them, reading those files only.
    fs::write(dir.path().join("b.yaml"), svc("web", 8080)).unwrap();
    assert_eq!(
        change_summary(&scanner.scan().unwrap()),
        vec!["apply Service demo/web"]
    );
    assert_eq!(stats.files_read(), 4);
    replace(&dir.path().join("a.yaml"), &ns("a"));
    assert!(scanner.scan().unwrap().is_empty(), "same content");
    assert_eq!(stats.files_read(), 5, "a new inode is read");
    fs::remove_file(dir.path().join("sub/c.yaml")).unwrap();
    assert_eq!(
        change_summary(&scanner.scan().unwrap()),
        vec!["delete Namespace c"]
    );
    assert_eq!((stats.files_read(), stats.full_scans()), (5, 5));

    // Paths named by the watcher: a file is read even when its stamp looks unchanged; a
    // directory is listed; what a path that is gone held is deleted.
    let paths = |p: &[&str]| p.iter().map(Into::into).collect::<BTreeSet<_>>();
    assert!(scanner.rescan(&paths(&["b.yaml"])).unwrap().is_empty());
    assert_eq!(stats.files_read(), 6);
    fs::write(dir.path().join("sub/d.yaml"), ns("d")).unwrap();
    assert_eq!(
        change_summary(&scanner.rescan(&paths(&["sub"])).unwrap()),
        vec!["apply Namespace d"]
    );
    assert_eq!(stats.files_read(), 7);
    fs::remove_dir_all(dir.path().join("sub")).unwrap();
    assert_eq!(
        change_summary(&scanner.rescan(&paths(&["sub"])).unwrap()),
        vec!["delete Namespace d"]
    );
    assert_eq!((stats.files_read(), stats.full_scans()), (7, 5));
    assert_eq!(
        names(&scanner.objects()),
        vec!["Namespace a", "Service demo/web"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_readable_again_is_listed_whole_even_if_nothing_changed() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("member");
    let away = parent.path().join("away");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("a.yaml"), ns("a")).unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let source = ManifestMember {
        member: member(),
        dir: dir.clone(),
        debounce: Duration::from_millis(30),
        resync: Duration::from_millis(100),
    };
    tokio::spawn(source.run(tx, stop.clone()));
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("an event within 20 s")
            .expect("source running")
            .body
    };
    assert!(matches!(next().await, EventBody::Reset { ref objects, .. } if objects.len() == 1));
    fs::rename(&dir, &away).unwrap();
    let error = next().await;
    assert!(
        matches!(error, EventBody::SourceError(ref m) if m.contains("cannot read manifest directory")),
        "{error:?}"
    );
    // Back as it was: nothing changed, but the registry must hear that it is readable again.
    fs::rename(&away, &dir).unwrap();
    let back = next().await;
    assert!(
        matches!(back, EventBody::Reset { ref objects, .. } if names(objects) == ["Namespace a"]),
        "{back:?}"
    );
    stop.cancel();
}

#[cfg(unix)]
#[test]
fn symlink_loops_are_read_once_and_reported_by_path() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("x")).unwrap();
    fs::create_dir_all(dir.path().join("shared")).unwrap();
    fs::write(dir.path().join("a.yaml"), ns("a")).unwrap();
    fs::write(dir.path().join("x/b.yaml"), ns("b")).unwrap();
    fs::write(dir.path().join("shared/c.yaml"), ns("c")).unwrap();
    // Two loops (to the member directory and to x itself) make a naive walk endless; a second
    // link to a directory would read its objects twice.
    symlink("..", dir.path().join("x/up")).unwrap();
    symlink(".", dir.path().join("x/self")).unwrap();
    symlink("../shared", dir.path().join("x/also-shared")).unwrap();
    let (objects, rejections) = scan_directory(member(), dir.path()).unwrap();
    assert_eq!(
        names(&objects),
        vec!["Namespace a", "Namespace b", "Namespace c"]
    );
    let skipped: Vec<(&str, bool)> = rejections
        .iter()
        .map(|r| (r.origin.as_str(), r.message.contains("symlink loop")))
        .collect();
    assert_eq!(skipped.len(), 3, "{rejections:?}");
    assert!(
        skipped.iter().all(|(_, loop_named)| *loop_named),
        "{rejections:?}"
    );
    let origins: Vec<&str> = skipped.iter().map(|(o, _)| *o).collect();
    assert!(
        origins.contains(&"x/self") && origins.contains(&"x/up"),
        "{origins:?}"
    );
}

#[test]
fn huge_and_binary_files_are_refused_once_and_not_read_again_until_they_change() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.yaml"), ns("a")).unwrap();
    fs::write(dir.path().join("binary.yaml"), [0xff, 0xfe, 0x00, 0x80]).unwrap();
    // Sparse: 65 MiB that take no space, and are never read.
    fs::File::create(dir.path().join("huge.yaml"))
        .unwrap()
        .set_len(65 * 1024 * 1024)
        .unwrap();
    let stats = Arc::new(SourceStats::default());
    let mut scanner = bowline_source::scan::Scanner::with_stats(
        member(),
        dir.path().to_path_buf(),
        stats.clone(),
    );
    scanner.scan().unwrap();
    assert_eq!(names(&scanner.objects()), vec!["Namespace a"]);
    let refused: Vec<(String, String)> = scanner
        .rejections()
        .iter()
        .map(|r| (r.origin.clone(), r.message.clone()))
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused
            .iter()
            .any(|(o, m)| o.starts_with("huge.yaml") && m.contains("68157440 bytes, more than")),
        "{refused:?}"
    );
    let read = stats.files_read();
    assert_eq!(read, 2, "a.yaml and binary.yaml read, huge.yaml not");
    for _ in 0..3 {
        scanner.scan().unwrap();
    }
    assert_eq!(stats.files_read(), read, "resyncs read none of them again");
    assert_eq!(scanner.rejections().len(), 2, "and still report both");
}
