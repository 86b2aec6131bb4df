//! The shared behaviour battery: the demo's three members, once as manifest directories and
//! once as Kubernetes API members (each on its own fake API server holding the same
//! objects), must give the same ClusterSet view, the same refusals and the same writes.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use bowline_app::config::Config;
use bowline_fake_kube::FakeApiServer;
use bowline_test_support::http_get;
use serde_json::{Value, json};

const MEMBERS: [&str; 3] = ["east", "west", "central"];

/// Every document of every manifest file under `dir` (hidden entries skipped) whose kind
/// Bowline reads, as JSON.
fn documents(dir: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    let read: Vec<&str> = bowline_model::ObjectKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    files
        .iter()
        .flat_map(|f| bowline_source::documents::split(&fs::read_to_string(f).unwrap()))
        .filter_map(|(_, body)| serde_saphyr::from_str::<Value>(&body).ok())
        .filter(|v| read.contains(&v["kind"].as_str().unwrap_or_default()))
        .collect()
}

async fn get(addr: &str, path: &str) -> Value {
    let (addr, owned) = (addr.to_string(), path.to_string());
    let (code, body) = tokio::task::spawn_blocking(move || http_get(&addr, &owned).unwrap())
        .await
        .unwrap();
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// A view without the `uid`s the API server gives objects (manifests have none).
fn without_uids(mut value: Value) -> Value {
    match &mut value {
        Value::Object(map) => {
            map.remove("uid");
            for v in map.values_mut() {
                *v = without_uids(v.take());
            }
        }
        Value::Array(items) => {
            for v in items {
                *v = without_uids(v.take());
            }
        }
        _ => {}
    }
    value
}

async fn ready(addr: &str) {
    for _ in 0..400 {
        let a = addr.to_string();
        let (code, _) = tokio::task::spawn_blocking(move || http_get(&a, "/readyz").unwrap())
            .await
            .unwrap();
        if code == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{addr} never ready");
}

/// Refusals without their origin (`file:line` for manifests, empty for the API).
fn refusals(rejected: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = rejected
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!([r["member"], r["object"], r["reason"], r["message"]]))
        .collect();
    out.sort_by_key(|v| v.to_string());
    out
}

/// The part of a written object both writers must agree on (not times, not server fields).
fn essence(kind: &str, object: &Value) -> Value {
    let conditions = |o: &Value| {
        o["status"]["conditions"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(|c| json!([c["type"], c["status"], c["reason"], c["message"]]))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    match kind {
        "ServiceImport" => json!({
            "labels": object["metadata"]["labels"],
            "spec": object["spec"],
            "clusters": object["status"]["clusters"],
            "conditions": conditions(object),
        }),
        "EndpointSlice" => json!({
            "labels": object["metadata"]["labels"],
            "addressType": object["addressType"],
            "endpoints": object["endpoints"],
            "ports": object["ports"],
        }),
        _ => json!({
            "labels": object["metadata"]["labels"],
            "conditions": conditions(object),
        }),
    }
}

type Written = BTreeMap<String, Value>;

/// What the file writer wrote into a member directory.
fn written_files(member_dir: &Path) -> Written {
    let mut out = Written::new();
    for (dir, kind) in [
        ("serviceimports", "ServiceImport"),
        ("endpointslices", "EndpointSlice"),
        ("serviceexports", "ServiceExport"),
        ("serviceexport-status", "ServiceExport"),
    ] {
        let Ok(namespaces) = fs::read_dir(member_dir.join(".bowline").join(dir)) else {
            continue;
        };
        for ns in namespaces.flatten() {
            for file in fs::read_dir(ns.path()).unwrap().flatten() {
                // `.name.yaml.tmp` is a write in flight, renamed into place when complete.
                if file.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                let object: Value =
                    serde_saphyr::from_str(&fs::read_to_string(file.path()).unwrap()).unwrap();
                let key = format!(
                    "{kind} {}/{}",
                    object["metadata"]["namespace"].as_str().unwrap(),
                    object["metadata"]["name"].as_str().unwrap()
                );
                out.insert(key, essence(kind, &object));
            }
        }
    }
    out
}

/// What the Kubernetes writer wrote into a fake API server.
fn written_objects(server: &FakeApiServer) -> Written {
    let mut out = Written::new();
    let ours = |o: &Value| !o["metadata"]["labels"]["bowline.io/managed-by"].is_null();
    let key = |kind: &str, o: &Value| {
        format!(
            "{kind} {}/{}",
            o["metadata"]["namespace"].as_str().unwrap(),
            o["metadata"]["name"].as_str().unwrap()
        )
    };
    for o in server.list("multicluster.x-k8s.io/v1beta1", "ServiceImport") {
        if ours(&o) {
            out.insert(key("ServiceImport", &o), essence("ServiceImport", &o));
        }
    }
    for o in server.list("discovery.k8s.io/v1", "EndpointSlice") {
        if ours(&o) {
            out.insert(key("EndpointSlice", &o), essence("EndpointSlice", &o));
        }
    }
    for o in server.list("multicluster.x-k8s.io/v1beta1", "ServiceExport") {
        // Bowline's own (auto-export) and users' with the status Bowline wrote.
        if ours(&o) || !o["status"]["conditions"].is_null() {
            out.insert(key("ServiceExport", &o), essence("ServiceExport", &o));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_and_kubernetes_members_give_the_same_view_and_the_same_writes() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    bowline_app::demo::write_to(&files).unwrap();
    let by_files = Config::load(&files.join("bowline.yaml")).unwrap();

    // The same objects, each member in its own fake API server.
    let kube = dir.path().join("kube");
    fs::create_dir_all(&kube).unwrap();
    let mut servers = BTreeMap::new();
    for member in MEMBERS {
        let server = FakeApiServer::start().await;
        server.install_bowline_crds();
        for object in documents(&files.join("members").join(member)) {
            server.restore_json(object);
        }
        fs::write(
            kube.join(format!("{member}.kubeconfig")),
            server.kubeconfig_yaml("token"),
        )
        .unwrap();
        servers.insert(member, server);
    }
    let demo = fs::read_to_string(files.join("bowline.yaml")).unwrap();
    let kube_config = MEMBERS.iter().fold(demo, |config, m| {
        config.replace(
            &format!("  - manifests: members/{m}\n"),
            &format!("  - kubeconfig: {m}.kubeconfig\n    name: {m}\n"),
        )
    });
    fs::write(kube.join("bowline.yaml"), &kube_config).unwrap();
    let by_api = Config::load(&kube.join("bowline.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(by_api.members.len(), 3);

    let a = bowline_app::start(&by_files, bowline_app::Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    let b = bowline_app::start(&by_api, bowline_app::Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    let (addr_a, addr_b) = (a.admin_addr.to_string(), b.admin_addr.to_string());
    ready(&addr_a).await;
    ready(&addr_b).await;

    // Both converge (debounced recomputation); then they must be equal.
    let mut last = None;
    for _ in 0..100 {
        let views = (
            get(&addr_a, "/debug/services").await,
            without_uids(get(&addr_b, "/debug/services").await),
        );
        let rejected = (
            refusals(&get(&addr_a, "/debug/rejected").await),
            refusals(&get(&addr_b, "/debug/rejected").await),
        );
        let writes = MEMBERS.map(|m| {
            (
                written_files(&files.join("members").join(m)),
                written_objects(&servers[m]),
            )
        });
        let same = views.0 == views.1
            && rejected.0 == rejected.1
            && writes.iter().all(|(f, k)| f == k && !f.is_empty());
        if same {
            last = None;
            break;
        }
        last = Some((views, rejected, writes));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some((views, rejected, writes)) = last {
        assert_eq!(views.0, views.1, "the same ClusterSet view");
        assert_eq!(rejected.0, rejected.1, "the same refusals");
        for (m, (f, k)) in MEMBERS.iter().zip(writes) {
            assert_eq!(f, k, "the same writes into {m}");
        }
    }
    a.stop().await;
    b.stop().await;
}

/// Writes (applies and deletes) Bowline made into a fake API server, Leases aside.
fn write_requests(server: &FakeApiServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| (r.verb == "patch" || r.verb == "delete") && r.resource != "leases")
        .count()
}

async fn leading(addr: &str) -> bool {
    get(addr, "/debug/leader").await["leading"] == json!(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_lease_one_writes_and_failover_rewrites_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    bowline_app::demo::write_to(&files).unwrap();
    let server = FakeApiServer::start().await;
    server.install_bowline_crds();
    for object in documents(&files.join("members/east")) {
        server.restore_json(object);
    }
    fs::write(
        dir.path().join("east.kubeconfig"),
        server.kubeconfig_yaml("t"),
    )
    .unwrap();
    let config = |identity: &str| {
        let path = dir.path().join(format!("{identity}.yaml"));
        fs::write(
            &path,
            format!(
                "clusterSet: demo\nmembers:\n- {{kubeconfig: east.kubeconfig, name: east, network: net-east}}\n\
                 leaderElection: {{member: east, leaseDuration: 1s, identity: {identity}}}\n"
            ),
        )
        .unwrap();
        Config::load(&path).unwrap_or_else(|e| panic!("{e}"))
    };
    let a = bowline_app::start(
        &config("a"),
        bowline_app::Listeners::loopback().await.unwrap(),
    )
    .await
    .unwrap();
    let addr_a = a.admin_addr.to_string();
    ready(&addr_a).await;
    let mut converged = false;
    for _ in 0..100 {
        if leading(&addr_a).await && !written_objects(&server).is_empty() {
            converged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(converged, "the only replica leads and writes");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let written = written_objects(&server);
    let before = write_requests(&server);

    // A second replica: serves, but does not write while the first leads.
    let b = bowline_app::start(
        &config("b"),
        bowline_app::Listeners::loopback().await.unwrap(),
    )
    .await
    .unwrap();
    let addr_b = b.admin_addr.to_string();
    ready(&addr_b).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(leading(&addr_a).await && !leading(&addr_b).await);
    assert_eq!(get(&addr_b, "/debug/leader").await["holder"], "a");
    assert_eq!(
        write_requests(&server),
        before,
        "nothing written while everything is right, by either replica"
    );

    // The leader stops: the other takes over and finds nothing to rewrite.
    a.stop().await;
    let mut took_over = false;
    for _ in 0..50 {
        if leading(&addr_b).await {
            took_over = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        took_over,
        "the second replica leads once the first released the Lease"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        write_requests(&server),
        before,
        "the new leader rewrites nothing already right"
    );
    assert_eq!(written_objects(&server), written);

    // And it does write what changes: an export withdrawn by its owner.
    server.delete(
        "multicluster.x-k8s.io/v1beta1",
        "ServiceExport",
        Some("demo"),
        "reviews",
    );
    let mut wrote = false;
    for _ in 0..50 {
        if write_requests(&server) > before {
            wrote = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(wrote, "the new leader writes");

    // A ServiceImport deleted by hand after the handover is back long before the 60 s sweep:
    // the new leader watches what it owns.
    let name = written
        .keys()
        .find_map(|k| k.strip_prefix("ServiceImport demo/"))
        .expect("a ServiceImport was written")
        .to_string();
    assert!(server.delete(
        "multicluster.x-k8s.io/v1beta1",
        "ServiceImport",
        Some("demo"),
        &name
    ));
    let mut restored = false;
    for _ in 0..50 {
        let back = server.get(
            "multicluster.x-k8s.io/v1beta1",
            "ServiceImport",
            Some("demo"),
            &name,
        );
        if back.is_some() {
            restored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(restored, "ServiceImport demo/{name} restored within 5 s");
    b.stop().await;
}

/// Polls `/debug/members` until `want` holds for the member named `name`.
async fn member_until(addr: &str, name: &str, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let members = get(addr, "/debug/members").await;
        if let Some(m) = members
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            && want(m)
        {
            return m.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("member {name} never {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_member_is_stale_then_withdrawn_then_restored_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    bowline_app::demo::write_to(&files).unwrap();
    let server = FakeApiServer::start().await;
    server.install_bowline_crds();
    for object in documents(&files.join("members/east")) {
        server.restore_json(object);
    }
    fs::write(
        dir.path().join("east.kubeconfig"),
        server.kubeconfig_yaml("t"),
    )
    .unwrap();
    fs::write(
        dir.path().join("bowline.yaml"),
        "clusterSet: demo\nmembers:\n- {kubeconfig: east.kubeconfig, name: east, network: net-east}\nstaleEndpointTTL: 2s\n",
    )
    .unwrap();
    let config = Config::load(&dir.path().join("bowline.yaml")).unwrap();
    let running = bowline_app::start(&config, bowline_app::Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    let addr = running.admin_addr.to_string();
    ready(&addr).await;
    let endpoints = |view: &Value| {
        view["members"]["east"]["endpoints"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(endpoints(&get(&addr, "/debug/services/demo/echo").await), 2);

    server.set_reachable(false).await;
    let stale = member_until(&addr, "east", "stale", |m| m["stale"] == true).await;
    assert_eq!(stale["withdrawn"], false);
    assert_eq!(
        endpoints(&get(&addr, "/debug/services/demo/echo").await),
        2,
        "a stale member's endpoints are still served"
    );
    member_until(&addr, "east", "withdrawn", |m| m["withdrawn"] == true).await;
    assert_eq!(
        endpoints(&get(&addr, "/debug/services/demo/echo").await),
        0,
        "withdrawn after staleEndpointTTL"
    );
    let metrics = {
        let a = addr.clone();
        tokio::task::spawn_blocking(move || http_get(&a, "/metrics").unwrap().1)
            .await
            .unwrap()
    };
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("bowline_member_withdrawn{") && l.ends_with(" 1")),
        "{metrics}"
    );

    server.set_reachable(true).await;
    member_until(&addr, "east", "restored", |m| {
        m["stale"] == false && m["withdrawn"] == false
    })
    .await;
    assert_eq!(endpoints(&get(&addr, "/debug/services/demo/echo").await), 2);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_does_not_wait_forever_for_a_member_that_never_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeApiServer::start().await;
    fs::write(
        dir.path().join("gone.kubeconfig"),
        server.kubeconfig_yaml("t"),
    )
    .unwrap();
    server.set_reachable(false).await;
    fs::write(
        dir.path().join("bowline.yaml"),
        "clusterSet: demo\nmembers:\n- {kubeconfig: gone.kubeconfig, id: gone}\nmemberSyncTimeout: 1s\n",
    )
    .unwrap();
    let config = Config::load(&dir.path().join("bowline.yaml")).unwrap();
    let running = bowline_app::start(&config, bowline_app::Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    let addr = running.admin_addr.to_string();
    let readyz = || {
        let a = addr.clone();
        tokio::task::spawn_blocking(move || http_get(&a, "/readyz").unwrap())
    };
    let (code, body) = readyz().await.unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("gone"), "{body}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (code, body) = readyz().await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("not synced") && body.contains("gone"),
        "{body}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_api_server_never_answers_does_not_hold_back_writes_to_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    bowline_app::demo::write_to(&files).unwrap();
    let server = FakeApiServer::start().await;
    server.install_bowline_crds();
    for object in documents(&files.join("members/east")) {
        server.restore_json(object);
    }
    fs::write(
        dir.path().join("east.kubeconfig"),
        server.kubeconfig_yaml("t"),
    )
    .unwrap();
    // Accepts connections (the kernel does) and never answers a request.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut kubeconfig: Value = serde_saphyr::from_str(&server.kubeconfig_yaml("t")).unwrap();
    kubeconfig["clusters"][0]["cluster"]["server"] =
        json!(format!("http://{}", silent.local_addr().unwrap()));
    fs::write(
        dir.path().join("silent.kubeconfig"),
        serde_json::to_string(&kubeconfig).unwrap(),
    )
    .unwrap();
    fs::write(
        dir.path().join("bowline.yaml"),
        "clusterSet: demo\nmembers:\n- {kubeconfig: silent.kubeconfig, name: silent, id: silent}\n\
         - {kubeconfig: east.kubeconfig, name: east, network: net-east}\n",
    )
    .unwrap();
    let config = Config::load(&dir.path().join("bowline.yaml")).unwrap();
    let running = bowline_app::start(&config, bowline_app::Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    let mut written = false;
    for _ in 0..300 {
        if !written_objects(&server).is_empty() {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        written,
        "east is written after the 5 s initial read-back wait, although the silent member's requests wait 30 s for an answer"
    );
    running.stop().await;
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_serves_the_cluster_set_ips_the_leader_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    bowline_app::demo::write_to(&files).unwrap();
    let server = FakeApiServer::start().await;
    server.install_bowline_crds();
    for object in documents(&files.join("members/east")) {
        server.restore_json(object);
    }
    // Another replica leads, for an hour.
    server.apply_json(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "bowline", "namespace": "bowline-system"},
        "spec": {"holderIdentity": "other", "leaseDurationSeconds": 3600,
                 "renewTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()},
    }));
    fs::write(
        dir.path().join("east.kubeconfig"),
        server.kubeconfig_yaml("t"),
    )
    .unwrap();
    fs::write(
        dir.path().join("bowline.yaml"),
        "clusterSet: demo\nmembers:\n- {kubeconfig: east.kubeconfig, name: east, network: net-east}\n\
         leaderElection: {member: east, identity: b, followerRefresh: 1s}\n",
    )
    .unwrap();
    let config = Config::load(&dir.path().join("bowline.yaml")).unwrap();
    let running = bowline_app::start(&config, bowline_app::Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    let addr = running.admin_addr.to_string();
    ready(&addr).await;
    let ips = |addr: String| async move {
        let (code, body) = tokio::task::spawn_blocking(move || {
            http_get(&addr, "/debug/imports/demo/echo").unwrap()
        })
        .await
        .unwrap();
        match code {
            200 => serde_json::from_str::<Value>(&body).unwrap()["import"]["ips"].clone(),
            _ => Value::Null,
        }
    };
    let mut own = Value::Null;
    for _ in 0..100 {
        own = ips(addr.clone()).await;
        if own.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(
        own,
        json!(["241.0.0.77"]),
        "allocated on its own first: {own}"
    );

    // The leader's ServiceImport, with the address the leader allocated.
    server.apply_json(json!({
        "apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport",
        "metadata": {"name": "echo", "namespace": "demo",
                     "labels": {"bowline.io/managed-by": "mcs-controller"}},
        "spec": {"type": "ClusterSetIP", "ips": ["241.0.0.77"],
                 "ports": [{"name": "http", "protocol": "TCP", "port": 80}]},
    }));
    let mut followed = false;
    for _ in 0..100 {
        if ips(addr.clone()).await == json!(["241.0.0.77"]) {
            followed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(followed, "the follower takes the leader's ClusterSetIP");
    assert_eq!(write_requests(&server), 0, "a follower writes nothing");
    running.stop().await;
}

/// The EndpointSlices written into a member that were imported from `source`.
fn imported_from(written: &Written, source: &str) -> Written {
    written
        .iter()
        .filter(|(key, object)| {
            key.starts_with("EndpointSlice ")
                && object["labels"]["multicluster.kubernetes.io/source-cluster"] == source
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_a_member_not_yet_synced_keeps_its_imports_in_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    bowline_app::demo::write_to(&files).unwrap();
    let server = FakeApiServer::start().await;
    server.install_bowline_crds();
    for object in documents(&files.join("members/east")) {
        server.restore_json(object);
    }
    fs::write(
        dir.path().join("east.kubeconfig"),
        server.kubeconfig_yaml("t"),
    )
    .unwrap();
    let west = files.join("members/west");
    fs::write(
        dir.path().join("bowline.yaml"),
        format!(
            "clusterSet: demo\nmembers:\n- {{kubeconfig: east.kubeconfig, name: east, network: net-east}}\n\
             - {{manifests: {}, name: west, network: net-west}}\n",
            west.display()
        ),
    )
    .unwrap();
    let config = Config::load(&dir.path().join("bowline.yaml")).unwrap();
    let start = || async {
        bowline_app::start(&config, bowline_app::Listeners::loopback().await.unwrap())
            .await
            .unwrap()
    };
    let running = start().await;
    let mut before = Written::new();
    for _ in 0..200 {
        before = imported_from(&written_files(&west), "east");
        if !before.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !before.is_empty(),
        "east's endpoints are imported into west"
    );
    running.stop().await;

    // East's Services cannot be listed when Bowline starts again, while what Bowline wrote
    // there can be read back: until east's first listing is in (or the 5 s grace passes),
    // what west holds from it must stay, not be deleted and written again later.
    server.fail_next("list", "services", 500, 10_000);
    let running = start().await;
    let addr = running.admin_addr.to_string();
    member_until(&addr, "west", "synced", |m| m["synced"] == true).await;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            imported_from(&written_files(&west), "east"),
            before,
            "west keeps east's imported slices while east is not synced"
        );
    }
    let east = get(&addr, "/debug/members").await;
    assert!(
        east.to_string().contains("\"synced\":false"),
        "east is still not synced: {east}"
    );
    running.stop().await;
}

/// The first EDS answer for echo's ClusterSet cluster to a proxy in east, on a stream opened
/// now (answered when Bowline has it).
fn first_echo_assignment(
    xds: std::net::SocketAddr,
) -> tokio::task::JoinHandle<envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse> {
    use envoy_types::pb::envoy::service::discovery::v3::{
        DiscoveryRequest, aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
    };
    let request = DiscoveryRequest {
        node: Some(
            bowline_test_support::ads::node("early", "envoy")
                .at("east", "net-east", "10.1.0.99")
                .build(),
        ),
        type_url: bowline_xds::resources::type_url::ENDPOINT.into(),
        resource_names: vec!["outbound|80||echo.demo.svc.clusterset.local".into()],
        ..Default::default()
    };
    tokio::spawn(async move {
        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{xds}"))
            .await
            .unwrap();
        let mut responses = client
            .stream_aggregated_resources(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        responses.message().await.unwrap().expect("an answer")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_asking_at_start_gets_the_whole_cluster_set_not_the_members_listed_so_far() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    bowline_app::demo::write_to(&files).unwrap();
    // west is on an API server that does not answer yet; east is a directory, read at once.
    let server = FakeApiServer::start().await;
    server.install_bowline_crds();
    for object in documents(&files.join("members/west")) {
        server.restore_json(object);
    }
    fs::write(
        dir.path().join("west.kubeconfig"),
        server.kubeconfig_yaml("t"),
    )
    .unwrap();
    server.set_reachable(false).await;
    fs::write(
        dir.path().join("bowline.yaml"),
        format!(
            "clusterSet: demo\nmembers:\n- {{manifests: {}, network: net-east}}\n\
             - {{kubeconfig: west.kubeconfig, name: west, network: net-west}}\n",
            files.join("members/east").display()
        ),
    )
    .unwrap();
    let config = Config::load(&dir.path().join("bowline.yaml")).unwrap();
    let running = bowline_app::start(&config, bowline_app::Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    let early = first_echo_assignment(running.xds_addr);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !early.is_finished(),
        "nothing is served while west's first listing is missing"
    );
    server.set_reachable(true).await;
    let early = tokio::time::timeout(Duration::from_secs(20), early)
        .await
        .expect("answered once west is listed")
        .unwrap();
    ready(&running.admin_addr.to_string()).await;
    let late = first_echo_assignment(running.xds_addr).await.unwrap();
    assert_eq!(
        early.resources, late.resources,
        "the first answer already holds both members' endpoints"
    );
    running.stop().await;
}
