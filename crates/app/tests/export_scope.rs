//! Export scope end to end: two manifest members and a Kubernetes member.
//! `a` exports `cart` to `b` with the ServiceExport's annotation; `c` auto-exports `pay` to
//! the members labelled `team=billing` with the Service's annotation. The objects written,
//! the ServiceExport status (`status.clusters`, `Ready`), the shared and per-member DNS
//! listeners, the xDS clusters of each member's proxies and `/debug/imports` must agree.

use std::{fs, net::SocketAddr, path::Path, time::Duration};

use bowline_app::config::Config;
use bowline_test_support::{ads, eventually_async, http_get};
use envoy_types::pb::envoy::{
    config::cluster::v3::Cluster,
    service::discovery::v3::{
        DiscoveryRequest, aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
    },
};
use prost::Message;
use serde_json::{Value, json};

const MEMBER: &str = "apiVersion: about.k8s.io/v1alpha1
kind: ClusterProperty
metadata: {name: clusterset.k8s.io}
spec: {value: set}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
";

/// `cart` in `a`, exported to `b` only.
const CART: &str = r#"apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  clusterIP: 10.1.255.1
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: cart-a
  namespace: shop
  labels: {kubernetes.io/service-name: cart}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints: [{addresses: [10.1.0.1], conditions: {ready: true}}]
---
apiVersion: multicluster.x-k8s.io/v1beta1
kind: ServiceExport
metadata:
  name: cart
  namespace: shop
  annotations: {multicluster.bowline.io/export-to: b}
"#;

fn write_members(dir: &Path, server: &bowline_fake_kube::FakeApiServer) -> Config {
    for m in ["a", "b"] {
        fs::create_dir_all(dir.join(m)).unwrap();
        fs::write(dir.join(m).join("member.yaml"), MEMBER).unwrap();
    }
    fs::write(dir.join("a/cart.yaml"), CART).unwrap();
    fs::write(dir.join("c.kubeconfig"), server.kubeconfig_yaml("t")).unwrap();
    fs::write(
        dir.join("bowline.yaml"),
        "clusterSet: set
members:
  - {manifests: a, id: a, labels: {team: billing}}
  - {manifests: b, id: b, labels: {team: billing}, dnsListen: '127.0.0.1:0'}
  - {kubeconfig: c.kubeconfig, name: c, id: c, dnsListen: '127.0.0.1:0'}
export: {default: none}
listen: {dns: '127.0.0.1:0'}
",
    )
    .unwrap();
    Config::load(&dir.join("bowline.yaml")).unwrap()
}

/// `pay` in the Kubernetes member `c`: auto-exported by its label, to `team=billing`.
fn kubernetes_member_c(server: &bowline_fake_kube::FakeApiServer) {
    server.install_bowline_crds();
    for object in [
        json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "kube-system", "uid": "6c1b5d3e-1111-4a4a-9c9c-00000000000c"}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        json!({"apiVersion": "about.k8s.io/v1alpha1", "kind": "ClusterProperty",
            "metadata": {"name": "clusterset.k8s.io"}, "spec": {"value": "set"}}),
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "pay", "namespace": "shop",
                "labels": {"bowline.io/export": "true"},
                "annotations": {"multicluster.bowline.io/export-to-selector": "team=billing"}},
            "spec": {"clusterIP": "10.3.255.1", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "pay-c", "namespace": "shop",
                "labels": {"kubernetes.io/service-name": "pay"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.3.0.1"], "conditions": {"ready": true}}]}),
    ] {
        server.apply_json(object);
    }
}

fn read_yaml(path: &Path) -> Option<Value> {
    serde_saphyr::from_str(&fs::read_to_string(path).ok()?).ok()
}

/// A file member's written object (`serviceimports`, `serviceexport-status`, ...).
fn written(dir: &Path, member: &str, kind_dir: &str, name: &str) -> Option<Value> {
    read_yaml(
        &dir.join(member)
            .join(".bowline")
            .join(kind_dir)
            .join("shop")
            .join(format!("{name}.yaml")),
    )
}

fn clusters(object: &Value) -> Vec<String> {
    object["status"]["clusters"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["cluster"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The response code and the number of answers of an A query for `name` at `server`.
fn resolve(server: SocketAddr, name: &str) -> (u8, u16) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut query = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        query.push(u8::try_from(label.len()).unwrap());
        query.extend(label.as_bytes());
    }
    query.extend([0, 0, 1, 0, 1]);
    socket.send_to(&query, server).unwrap();
    let mut buf = [0u8; 1500];
    let n = socket.recv(&mut buf).unwrap();
    assert!(n >= 12 && buf[..2] == [0x12, 0x34]);
    (buf[3] & 0x0f, u16::from_be_bytes([buf[6], buf[7]]))
}

/// The clusterset clusters (CDS) of a proxy in `member`, over the plaintext ADS port.
async fn clusterset_clusters(xds: SocketAddr, member: &str) -> Vec<String> {
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{xds}"))
        .await
        .unwrap();
    let request = DiscoveryRequest {
        node: Some(
            ads::node(&format!("p-{member}"), "envoy")
                .at(member, "", "10.9.0.1")
                .build(),
        ),
        type_url: bowline_xds::resources::type_url::CLUSTER.into(),
        ..Default::default()
    };
    let mut responses = client
        .stream_aggregated_resources(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let mut names: Vec<String> = response
        .resources
        .iter()
        .map(|any| Cluster::decode(any.value.as_slice()).unwrap().name)
        .filter(|n| n.ends_with(".svc.clusterset.local"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_exports_reach_their_members_only_in_writes_dns_xds_and_debug_views() {
    let server = bowline_fake_kube::FakeApiServer::start().await;
    kubernetes_member_c(&server);
    let dir = tempfile::tempdir().unwrap();
    let config = write_members(dir.path(), &server);
    let running = bowline_app::start(&config, bowline_app::Listeners::loopback().await.unwrap())
        .await
        .unwrap();
    let d = dir.path();

    // Writes: cart's ServiceImport in a and b, not in c; pay's in a, b and c (its own).
    eventually_async("cart imported into a and b, pay into a, b and c", || {
        let files = ["a", "b"].iter().all(|m| {
            written(d, m, "serviceimports", "cart").is_some()
                && written(d, m, "serviceimports", "pay").is_some()
        });
        files
            && server
                .get(
                    "multicluster.x-k8s.io/v1beta1",
                    "ServiceImport",
                    Some("shop"),
                    "pay",
                )
                .is_some()
    })
    .await;
    assert!(
        server
            .get(
                "multicluster.x-k8s.io/v1beta1",
                "ServiceImport",
                Some("shop"),
                "cart"
            )
            .is_none(),
        "cart's export does not reach c"
    );
    let imported_slices = server.list("discovery.k8s.io/v1", "EndpointSlice");
    assert!(
        imported_slices
            .iter()
            .all(|s| s["metadata"]["labels"]["multicluster.kubernetes.io/service-name"] != "cart"),
        "no slice of cart in c: {imported_slices:?}"
    );

    // Where each export went: status.clusters and the Ready message (written by a's writer,
    // which may come after the imports).
    let mut status = None;
    eventually_async("a's ServiceExport status is written", || {
        status = written(d, "a", "serviceexport-status", "cart");
        status.is_some()
    })
    .await;
    let status = status.unwrap();
    assert_eq!(clusters(&status), ["a", "b"]);
    let ready = status["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["status"], "True");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .starts_with("exported to a, b;"),
        "{ready}"
    );
    let mut pay_export = None;
    eventually_async("c's auto-export of pay reports its consumers", || {
        pay_export = server.get(
            "multicluster.x-k8s.io/v1beta1",
            "ServiceExport",
            Some("shop"),
            "pay",
        );
        pay_export
            .as_ref()
            .is_some_and(|e| clusters(e) == ["a", "b", "c"])
    })
    .await;

    // DNS: the shared listener answers the whole set; each member's listener what reaches it.
    let cart = "cart.shop.svc.clusterset.local";
    let (b_dns, c_dns) = (running.member_dns_addrs["b"], running.member_dns_addrs["c"]);
    let shared = running.dns_addr;
    let answers = tokio::task::spawn_blocking(move || {
        [
            resolve(shared, cart),
            resolve(b_dns, cart),
            resolve(c_dns, cart),
            resolve(c_dns, "pay.shop.svc.clusterset.local"),
        ]
    })
    .await
    .unwrap();
    assert_eq!(
        answers,
        [(0, 1), (0, 1), (3, 0), (0, 1)],
        "(rcode, answers)"
    );

    // xDS: a proxy in c gets no clusterset cluster for cart; one in b does.
    assert_eq!(
        clusterset_clusters(running.xds_addr, "b").await,
        [
            "outbound|80||cart.shop.svc.clusterset.local",
            "outbound|80||pay.shop.svc.clusterset.local"
        ]
    );
    assert_eq!(
        clusterset_clusters(running.xds_addr, "c").await,
        ["outbound|80||pay.shop.svc.clusterset.local"]
    );

    // /debug/imports names, per member, whether it imports and why not.
    let admin = running.admin_addr.to_string();
    let (code, body) =
        tokio::task::spawn_blocking(move || http_get(&admin, "/debug/imports/shop/cart").unwrap())
            .await
            .unwrap();
    assert_eq!(code, 200, "{body}");
    let view: Value = serde_json::from_str(&body).unwrap();
    let member = |id: &str| {
        view["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(member("b")["imports"], true);
    assert_eq!(member("c")["imports"], false);
    let why = member("c")["why"].as_str().unwrap().to_string();
    assert!(
        why.starts_with("no export reaches member c: a exports to a, b (ServiceExport annotation"),
        "{why}"
    );

    // Moving c in: cart's objects appear in c, a's and b's ServiceImports stay as they were.
    let before_b = written(d, "b", "serviceimports", "cart");
    fs::write(
        d.join("a/cart.yaml"),
        CART.replace("export-to: b}", "export-to: 'b,c'}"),
    )
    .unwrap();
    eventually_async("cart imported into c", || {
        server
            .get(
                "multicluster.x-k8s.io/v1beta1",
                "ServiceImport",
                Some("shop"),
                "cart",
            )
            .is_some()
    })
    .await;
    assert_eq!(written(d, "b", "serviceimports", "cart"), before_b);
    running.stop().await;
}
