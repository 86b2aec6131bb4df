//! The manifest-directory source against a real directory: scans, rejections, last-valid
//! retention, and the watcher for create, modify, rename, delete and half-written files.

use std::{fs, path::Path, time::Duration};

use bowline_model::MemberName;
use bowline_model::{Change, EventBody, ObjectKey, ObjectKind, RejectReason, SourceEvent};
use bowline_source::{ManifestMember, scan_directory};
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
        let (tx, rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let source = ManifestMember {
            member: member(),
            dir: dir.to_path_buf(),
            debounce: Duration::from_millis(30),
            resync: Duration::from_secs(3600),
        };
        tokio::spawn(source.run(tx, stop.clone()));
        Self { rx, stop }
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
