//! The release binary killed (`kill -9`) under a steady edit load, then restarted:
//! once the edits are undone and it has resynced, it writes the same ServiceImports with the
//! same ClusterSetIPs and serves the same DNS and xDS answers as before the load, and nothing
//! under any member's `.bowline/` is partial or corrupt, at the kill or after.

use std::{
    collections::BTreeMap,
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bowline_test_support::{eventually, http_get};
use envoy_types::pb::envoy::{
    config::{cluster::v3::Cluster, core::v3::Node},
    service::discovery::v3::{
        DiscoveryRequest, aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
    },
};
use prost::Message;

mod common;

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// Every file under the members' `.bowline/` directories, by path.
fn written(dir: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.insert(path.clone(), fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    let mut out = BTreeMap::new();
    for member in fs::read_dir(dir.join("members")).unwrap().flatten() {
        walk(&member.path().join(".bowline"), &mut out);
    }
    out
}

/// Every file Bowline wrote is whole: a YAML object under Bowline's header. Temporary
/// files of a write cut short are allowed only when `temporaries_allowed`.
fn assert_whole(files: &BTreeMap<PathBuf, String>, temporaries_allowed: bool) {
    assert!(!files.is_empty(), "Bowline wrote into the members");
    for (path, text) in files {
        let name = path.file_name().unwrap().to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") {
            assert!(temporaries_allowed, "{} left behind", path.display());
            continue;
        }
        assert!(
            text.starts_with("# Written by Bowline"),
            "{}: {text:?}",
            path.display()
        );
        let value: serde_json::Value = serde_saphyr::from_str(text)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
        assert!(value["kind"].is_string(), "{}: {text}", path.display());
    }
}

/// The clusters and load assignments a sidecar in east is sent, each encoded, in order.
fn xds_resources(xds: SocketAddr) -> Vec<Vec<u8>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let channel = tonic::transport::Channel::from_shared(format!("http://{xds}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let node = bowline_test_support::ads::node("sidecar~10.1.1.7~probe.demo~demo", "envoy")
            .at("east", "net-east", "10.1.1.7")
            .build();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let request = |type_url: &str, names: Vec<String>, node: Option<Node>| DiscoveryRequest {
            node,
            type_url: type_url.into(),
            resource_names: names,
            ..Default::default()
        };
        tx.send(request(CDS, Vec::new(), Some(node))).await.unwrap();
        let mut responses = AggregatedDiscoveryServiceClient::new(channel)
            .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let clusters = responses.message().await.unwrap().unwrap();
        let mut out: Vec<Vec<u8>> = clusters.resources.iter().map(|a| a.value.clone()).collect();
        let names: Vec<String> = clusters
            .resources
            .iter()
            .map(|a| Cluster::decode(&a.value[..]).unwrap().name)
            .filter(|n| n.starts_with("outbound|"))
            .collect();
        assert!(!names.is_empty(), "east's sidecar gets outbound clusters");
        tx.send(request(EDS, names, None)).await.unwrap();
        let assignments = responses.message().await.unwrap().unwrap();
        assert_eq!(assignments.type_url, EDS);
        out.extend(assignments.resources.iter().map(|a| a.value.clone()));
        out.sort();
        out
    })
}

/// What clients see of the ClusterSet.
#[derive(Debug, PartialEq)]
struct Seen {
    /// Every ServiceImport file written into every member.
    imports: BTreeMap<PathBuf, String>,
    /// A, AAAA and SRV answers for every imported service.
    dns: BTreeMap<String, Vec<u8>>,
    xds: Vec<Vec<u8>>,
}

fn seen(bowline: &common::Bowline, dir: &Path) -> Seen {
    let imports: BTreeMap<PathBuf, String> = written(dir)
        .into_iter()
        .filter(|(p, _)| p.components().any(|c| c.as_os_str() == "serviceimports"))
        .collect();
    let mut dns = BTreeMap::new();
    for path in imports.keys() {
        let name = path.file_stem().unwrap().to_string_lossy();
        let namespace = path
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy();
        let host = format!("{name}.{namespace}.svc.clusterset.local");
        for (qtype, label) in [(1, "A"), (28, "AAAA"), (33, "SRV")] {
            let owner = if qtype == 33 {
                format!("_http._tcp.{host}")
            } else {
                host.clone()
            };
            dns.insert(
                format!("{owner} {label}"),
                common::dns_answer(bowline.dns, &owner, qtype).unwrap_or_default(),
            );
        }
    }
    Seen {
        imports,
        dns,
        xds: xds_resources(bowline.xds),
    }
}

/// What clients see once the writes of the start are done: every member's imports written
/// (no write in flight, so no temporary file) and the same over a pause, or `None`.
fn settled(bowline: &common::Bowline, dir: &Path) -> Option<Seen> {
    let first = seen(bowline, dir);
    let in_flight = first.imports.keys().any(|p| {
        p.file_name()
            .is_some_and(|f| f.to_string_lossy().ends_with(".tmp"))
    });
    if in_flight || first.imports.len() < 10 {
        return None;
    }
    std::thread::sleep(Duration::from_millis(300));
    (seen(bowline, dir) == first).then_some(first)
}

/// Panics naming every entry that differs.
fn assert_same<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    what: &str,
    before: &BTreeMap<K, V>,
    after: &BTreeMap<K, V>,
) {
    let keys: std::collections::BTreeSet<&K> = before.keys().chain(after.keys()).collect();
    let differ: Vec<String> = keys
        .into_iter()
        .filter(|k| before.get(k) != after.get(k))
        .map(|k| {
            format!(
                "{k:?}:\n  before {:?}\n  after  {:?}",
                before.get(k),
                after.get(k)
            )
        })
        .collect();
    assert!(differ.is_empty(), "{what} differ:\n{}", differ.join("\n"));
}

fn ready(bowline: &common::Bowline) {
    eventually("/readyz", || {
        (http_get(&bowline.admin, "/readyz").ok()?.0 == 200).then_some(())
    });
}

/// Services created, changed and deleted in east and west, one edit every few milliseconds.
fn edit_load(dir: &Path, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    let files = [("east", "10.1.8"), ("west", "10.2.8")]
        .map(|(member, net)| (dir.join(format!("members/{member}/load.yaml")), net));
    std::thread::spawn(move || {
        let mut edits = 0;
        while !stop.load(Ordering::Relaxed) {
            for (path, net) in &files {
                let name = ["load-a", "load-b", "echo"][edits % 3];
                let mut text = format!(
                    "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}-{edits}, namespace: demo}}\n\
                     spec:\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n---\n\
                     apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
                     metadata:\n  name: {name}-{edits}-1\n  namespace: demo\n  labels: {{kubernetes.io/service-name: {name}-{edits}}}\n\
                     addressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\nendpoints:\n"
                );
                for i in 0..=(edits % 7) {
                    text.push_str(&format!("- addresses: [\"{net}.{i}\"]\n"));
                }
                fs::write(path, text).unwrap();
                edits += 1;
            }
            std::thread::sleep(Duration::from_millis(15));
        }
        for (path, _) in &files {
            fs::remove_file(path).unwrap();
        }
        edits
    })
}

#[test]
fn killed_under_an_edit_load_it_restarts_to_the_same_imports_addresses_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    bowline_app::demo::write_to(dir.path()).unwrap();
    let config = common::demo_config(dir.path(), "");
    let mut bowline = common::start(&config, None);
    ready(&bowline);
    let before = eventually("the demo's imports written and served", || {
        settled(&bowline, dir.path())
    });

    let stop = Arc::new(AtomicBool::new(false));
    let load = edit_load(dir.path(), stop.clone());
    eventually("the load's imports are written", || {
        written(dir.path())
            .keys()
            .any(|p| p.to_string_lossy().contains("/load-"))
            .then_some(())
    });
    // Past the second of the first writes, so that a transition time taken anew shows.
    std::thread::sleep(Duration::from_millis(1100));
    bowline.child.kill().unwrap();
    bowline.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let edits = load.join().unwrap();
    assert!(edits > 20, "{edits} edits");
    // Every file is whole at the kill: a write is a temporary file renamed into place.
    assert_whole(&written(dir.path()), true);

    drop(bowline);
    let bowline = common::start(&config, None);
    ready(&bowline);
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let after = seen(&bowline, dir.path());
        if after == before || Instant::now() > deadline {
            break after;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_same(
        "ServiceImports and ClusterSetIPs",
        &before.imports,
        &after.imports,
    );
    assert_same("DNS answers", &before.dns, &after.dns);
    assert!(after.xds == before.xds, "xDS resources differ");
    assert_whole(&written(dir.path()), false);
}
