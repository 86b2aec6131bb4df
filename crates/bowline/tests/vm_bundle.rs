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
    for name in ["agent.yaml", "cluster.env", "mesh.yaml", "hosts", "README"] {
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
            "agent.yaml",
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
        &["token", "--group", "legacy", "-n", "demo", "--ttl", "30m"],
    );
    assert!(ok, "{stderr}");
    let token = stdout.strip_suffix('\n').unwrap();
    let store = TokenStore::open(&dir.path().join(".bowline-data"));
    assert_eq!(
        store.verify(token, jiff::Timestamp::now()).unwrap().group,
        "legacy"
    );
    let stored = fs::read_to_string(store.path().unwrap()).unwrap();
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
    let err = refused(&["token", "--group", "nosuch", "-n", "demo"]);
    assert!(
        err.contains("no WorkloadGroup demo/nosuch in any member (searched east, west)"),
        "{err}"
    );
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

/// A Kubernetes member (the fake API server): `--member` reads the group with a GET and the
/// cluster id from its ClusterProperty (else the kube-system Namespace UID); with
/// `leaderElection` the root comes from the Secret `bowline-ca` and the token is stored in
/// the Secret `bowline-vm-tokens`, as `bowline vm token` does. The files equal those made
/// from the same group in a manifest member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kubernetes_the_bundle_reads_the_group_and_the_secrets() {
    use base64::Engine;
    use bowline_fake_kube::{FakeApiServer, ResourceDef};

    let server = FakeApiServer::start().await;
    server.install_crd(ResourceDef::custom(
        "networking.istio.io",
        &["v1", "v1beta1", "v1alpha3"],
        "workloadgroups",
        "WorkloadGroup",
    ));
    server.install_crd(
        ResourceDef::custom(
            "about.k8s.io",
            &["v1alpha1", "v1beta1"],
            "clusterproperties",
            "ClusterProperty",
        )
        .cluster_scoped(),
    );
    for document in EAST.split("---") {
        server.apply_json(serde_saphyr::from_str(document).unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("east.kubeconfig"),
        server.kubeconfig_yaml("t"),
    )
    .unwrap();
    fs::write(
        dir.path().join("bowline.yaml"),
        "clusterSet: prod\nmembers:\n  - {name: east, kubeconfig: east.kubeconfig, network: net-east}\n\
         listen: {xdsTls: \"192.0.2.1:15012\"}\nleaderElection: {member: east}\n",
    )
    .unwrap();
    let run = |args: Vec<String>| {
        let dir = dir.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            bowline(&dir, &args)
        })
    };
    let out = dir.path().join("vm-files");
    let bundle = |group: &str| {
        [
            "bundle", "--group", group, "-n", "demo", "--member", "east", "-o",
        ]
        .into_iter()
        .map(String::from)
        .chain([out.display().to_string()])
        .chain(["--vm-address", "192.0.2.50", "--ttl", "2h"].map(String::from))
        .collect::<Vec<_>>()
    };
    let (ok, _, stderr) = run(bundle("legacy")).await.unwrap();
    assert!(ok, "{stderr}");
    let secret = |name: &str, key: &str| {
        let secret = server.get("v1", "Secret", Some("bowline-system"), name)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(secret["data"][key].as_str()?)
            .ok()?;
        String::from_utf8(bytes).ok()
    };
    assert_eq!(
        fs::read_to_string(out.join("root-cert.pem")).unwrap(),
        secret("bowline-ca", "tls.crt").expect("the CA Secret")
    );
    let tokens = TokenStore::pushed("the token Secret", || ());
    let stored = secret("bowline-vm-tokens", "vm-tokens.json").expect("the token Secret");
    tokens.replace(Some(&stored)).unwrap();
    let token = fs::read_to_string(out.join("token")).unwrap();
    let scope = tokens.verify(&token, jiff::Timestamp::now()).unwrap();
    assert_eq!(
        (scope.group.as_str(), scope.namespace.as_str()),
        ("legacy", "demo")
    );
    let record = tokens.records().unwrap().into_iter().next().unwrap();
    for name in ["cluster.env", "mesh.yaml", "hosts", "README"] {
        let text = fs::read_to_string(out.join(name)).unwrap();
        golden(
            name,
            &text.replace(&record.expires.to_string(), "<EXPIRES>"),
        );
    }
    assert!(
        !dir.path().join(".bowline-data").exists(),
        "no data directory"
    );

    // `bowline vm token` adds its record beside the bundle's.
    let (ok, stdout, stderr) = run(["token", "--group", "legacy", "-n", "demo"]
        .map(String::from)
        .to_vec())
    .await
    .unwrap();
    assert!(ok, "{stderr}");
    tokens
        .replace(secret("bowline-vm-tokens", "vm-tokens.json").as_deref())
        .unwrap();
    assert_eq!(tokens.records().unwrap().len(), 2);
    assert_eq!(
        tokens
            .verify(stdout.trim(), jiff::Timestamp::now())
            .unwrap()
            .group,
        "legacy"
    );

    // Without a ClusterProperty, the kube-system Namespace UID is the cluster id.
    server.delete(
        "about.k8s.io/v1beta1",
        "ClusterProperty",
        None,
        "cluster.clusterset.k8s.io",
    );
    let kube_system = server.apply_json(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"},
    }));
    let (ok, _, stderr) = run(bundle("shared")).await.unwrap();
    assert!(ok, "{stderr}");
    let env = fs::read_to_string(out.join("cluster.env")).unwrap();
    let uid = kube_system["metadata"]["uid"].as_str().unwrap();
    assert!(
        env.contains(&format!("ISTIO_META_CLUSTER_ID='{uid}'")),
        "{env}"
    );

    let (ok, _, stderr) = run(bundle("nope")).await.unwrap();
    assert!(!ok);
    assert!(
        stderr.contains("no WorkloadGroup demo/nope in member east"),
        "{stderr}"
    );
}
