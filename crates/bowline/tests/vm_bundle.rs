//! `bowline vm token` and `bowline vm bundle`: the files a VM needs, against golden files
//! (the random token and its expiry replaced by placeholders, the token checked against the
//! store), and refusals naming the object. Regenerate the golden files with
//! `UPDATE_GOLDEN=1 cargo test -p bowline --test vm_bundle` and review the diff.

use std::{fs, os::unix::fs::PermissionsExt, path::Path, process::Command};

use bowline_vm::tokens::TokenStore;

const CONFIG: &str = "\
clusterSet: prod
members:
  - {name: east, manifests: east, network: net-east}
  - {name: west, manifests: west, id: west}
listen: {xdsTls: \"192.0.2.1:15012\"}
";

const EAST: &str = "\
apiVersion: about.k8s.io/v1beta1
kind: ClusterProperty
metadata: {name: cluster.clusterset.k8s.io}
spec: {value: east-1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: legacy, namespace: demo}
spec:
  metadata:
    labels: {app: legacy, version: v2, team: \"it's ours\"}
  template:
    serviceAccount: legacy
    network: vm-net
    labels: {tier: back}
    ports: {http: 8080, grpc: 9090}
  probe:
    periodSeconds: 5
    initialDelaySeconds: 1
    httpGet: {port: 8080, path: /healthz}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: shared, namespace: demo}
spec:
  template: {}
";

const WEST: &str = "\
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: shared, namespace: demo}
spec:
  template: {}
";

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (member, text) in [("east", EAST), ("west", WEST)] {
        fs::create_dir_all(dir.path().join(member)).unwrap();
        fs::write(dir.path().join(member).join("objects.yaml"), text).unwrap();
    }
    fs::write(dir.path().join("bowline.yaml"), CONFIG).unwrap();
    dir
}

fn bowline(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bowline"))
        .args(["vm"])
        .args(args)
        .arg("--config")
        .arg(dir.join("bowline.yaml"))
        .env_remove("RUST_LOG")
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/vm-bundle")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(&path, actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} is missing; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert_eq!(actual, expected, "{name} differs from {}", path.display());
}

#[test]
fn the_bundle_holds_what_the_vm_needs() {
    let dir = setup();
    let out = dir.path().join("vm-files");
    let (ok, stdout, stderr) = bowline(
        dir.path(),
        &[
            "bundle",
            "--group",
            "legacy",
            "-n",
            "demo",
            "-o",
            out.to_str().unwrap(),
            "--vm-address",
            "192.0.2.50",
            "--ttl",
            "2h",
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "");
    let token = fs::read_to_string(out.join("token")).unwrap();
    let store = TokenStore::open(&dir.path().join(".bowline-data"));
    let scope = store.verify(&token, jiff::Timestamp::now()).unwrap();
    assert_eq!(
        (scope.group.as_str(), scope.namespace.as_str()),
        ("legacy", "demo")
    );
    let record = store.records().unwrap().into_iter().next().unwrap();
    assert_eq!(
        record.expires.duration_since(record.issued),
        jiff::SignedDuration::from_hours(2)
    );
    let mode = |name: &str| fs::metadata(out.join(name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("token"), 0o600);
    assert_eq!(
        fs::read_to_string(out.join("root-cert.pem")).unwrap(),
        fs::read_to_string(dir.path().join(".bowline-data/ca/root-cert.pem")).unwrap()
    );
    for name in ["cluster.env", "mesh.yaml", "hosts", "README"] {
        let text = fs::read_to_string(out.join(name)).unwrap();
        assert!(!text.contains(&token), "{name} holds the token");
        golden(
            name,
            &text.replace(&record.expires.to_string(), "<EXPIRES>"),
        );
    }
    let mut names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "README",
            "cluster.env",
            "hosts",
            "mesh.yaml",
            "root-cert.pem",
            "token"
        ]
    );
}

#[test]
fn token_prints_only_the_token_and_stores_its_hash() {
    let dir = setup();
    let (ok, stdout, stderr) = bowline(
        dir.path(),
        &["token", "--group", "web", "-n", "shop", "--ttl", "30m"],
    );
    assert!(ok, "{stderr}");
    let token = stdout.strip_suffix('\n').unwrap();
    let store = TokenStore::open(&dir.path().join(".bowline-data"));
    assert_eq!(
        store.verify(token, jiff::Timestamp::now()).unwrap().group,
        "web"
    );
    let stored = fs::read_to_string(store.path()).unwrap();
    assert!(!stored.contains(token.rsplit('.').next().unwrap()));
}

#[test]
fn refusals_name_the_object() {
    let dir = setup();
    let out = dir.path().join("vm-files");
    let out = out.to_str().unwrap();
    let refused = |args: &[&str]| {
        let (ok, _, stderr) = bowline(dir.path(), args);
        assert!(!ok, "{args:?} succeeded");
        stderr
    };
    let err = refused(&["bundle", "--group", "nope", "-n", "demo", "-o", out]);
    assert!(
        err.contains("no WorkloadGroup demo/nope in the manifest members"),
        "{err}"
    );
    let err = refused(&["bundle", "--group", "shared", "-n", "demo", "-o", out]);
    assert!(
        err.contains(
            "WorkloadGroup demo/shared is in several members (east, west); choose one with --member"
        ),
        "{err}"
    );
    let err = refused(&[
        "bundle", "--group", "legacy", "-n", "demo", "-o", out, "--member", "west",
    ]);
    assert!(
        err.contains("no WorkloadGroup demo/legacy in member west"),
        "{err}"
    );
    let err = refused(&[
        "bundle", "--group", "legacy", "-n", "demo", "-o", out, "--member", "north",
    ]);
    assert!(err.contains("--member north: no such member"), "{err}");
    // An unwritable directory: a path under a regular file.
    let blocked = dir.path().join("east/objects.yaml/vm");
    let err = refused(&[
        "bundle",
        "--group",
        "shared",
        "-n",
        "demo",
        "--member",
        "west",
        "-o",
        blocked.to_str().unwrap(),
    ]);
    assert!(
        err.contains(&format!("cannot write the bundle to {}", blocked.display())),
        "{err}"
    );
    // The listener's address is unspecified and none was given: an empty hosts file and a
    // warning.
    fs::write(
        dir.path().join("bowline.yaml"),
        CONFIG.replace("192.0.2.1:15012", "[::]:15012"),
    )
    .unwrap();
    let (ok, _, stderr) = bowline(
        dir.path(),
        &[
            "bundle", "--group", "shared", "-n", "demo", "--member", "west", "-o", out,
        ],
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("warning: listen.xdsTls is [::]:15012 and no --address was given: the hosts file is empty"), "{stderr}");
    assert_eq!(
        fs::read_to_string(Path::new(out).join("hosts")).unwrap(),
        ""
    );
}
