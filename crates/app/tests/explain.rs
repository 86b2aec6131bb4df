//! `bowline explain` golden file: the demo ClusterSet, plus a few objects that bring out the
//! rules the demo alone does not (an export scope, a workload without a proxy across networks,
//! a cluster-local Service, a VM failing its health check, a refused member, a withdrawn one), explained for proxies of each
//! member, network, family and mTLS. Every exclusion rule must appear at least once.
//! Regenerate with `UPDATE_GOLDEN=1 cargo test -p bowline-app --test explain`.

use std::{fs, path::Path};

use bowline_mcs::Snapshot;
use bowline_model::{EventBody, MemberName, ServiceKey, SourceEvent};
use bowline_xds::node::ProxyInfo;

const EXTRA_WEST: &str = r#"apiVersion: v1
kind: Service
metadata: {name: scoped, namespace: demo, annotations: {multicluster.bowline.io/export-to: west}}
spec:
  clusterIP: 10.97.0.77
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: scoped-w, namespace: demo, labels: {kubernetes.io/service-name: scoped}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints: [{addresses: [10.2.7.1], conditions: {ready: true}}]
---
apiVersion: v1
kind: Service
metadata: {name: plain, namespace: demo}
spec:
  clusterIP: 10.97.0.78
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: plain-w, namespace: demo, labels: {kubernetes.io/service-name: plain}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints: [{addresses: [10.2.7.2], conditions: {ready: true}}]
"#;

const EXTRA_EAST: &str = r#"apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: legacy-sick
  namespace: demo
  labels: {app: legacy}
  annotations: {proxy.istio.io/health-checks-enabled: "true"}
spec:
  address: 192.0.2.51
  labels: {app: legacy}
  network: net-east
  ports: {http: 8080}
status:
  conditions: [{type: Healthy, status: "False"}]
---
apiVersion: v1
kind: Service
metadata: {name: coredns, namespace: kube-system}
spec:
  clusterIP: 10.96.0.53
  ports: [{name: dns, port: 53, protocol: UDP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: coredns-e, namespace: kube-system, labels: {kubernetes.io/service-name: coredns}}
addressType: IPv4
ports: [{name: dns, port: 53, protocol: UDP}]
endpoints: [{addresses: [10.1.9.53], conditions: {ready: true}}]
"#;

/// A member of another ClusterSet: refused.
const STRANGER: &str = "apiVersion: about.k8s.io/v1alpha1\nkind: ClusterProperty\nmetadata: {name: clusterset.k8s.io}\nspec: {value: elsewhere}\n";

fn snapshot() -> bowline_views::ClusterSet {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    bowline_app::demo::write_to(root).unwrap();
    fs::write(root.join("members/west/explain.yaml"), EXTRA_WEST).unwrap();
    fs::write(root.join("members/east/explain.yaml"), EXTRA_EAST).unwrap();
    for (name, text) in [("stranger", STRANGER), ("gone", "")] {
        fs::create_dir_all(root.join("members").join(name)).unwrap();
        fs::write(root.join("members").join(name).join("m.yaml"), text).unwrap();
    }
    let mut config = fs::read_to_string(root.join("bowline.yaml")).unwrap();
    config = config.replace(
        "export:\n",
        "  - {manifests: members/stranger, network: net-east, id: stranger}\n  - {manifests: members/gone, network: net-east, id: gone}\nexport:\n",
    );
    fs::write(root.join("bowline.yaml"), config).unwrap();
    let config = bowline_app::config::Config::load(&root.join("bowline.yaml")).unwrap();
    let mut registry = bowline_app::offline::registry(&config);
    let unread = bowline_app::offline::scan_manifests(&config, &mut registry);
    assert!(unread.failed.is_empty());
    // `gone` stopped answering long ago: withdrawn.
    for body in [
        EventBody::SourceError("connection refused".into()),
        EventBody::Withdraw,
    ] {
        registry.apply(SourceEvent {
            member: MemberName::new("gone"),
            body,
        });
    }
    let mut controller = bowline_app::offline::controller(&config);
    let outcome = controller.reconcile(
        &Snapshot::from_registry(&registry),
        "2026-11-22T00:00:00Z".parse().unwrap(),
    );
    (*bowline_views::from_scratch(&registry, outcome)).clone()
}

#[test]
fn every_exclusion_rule_is_explained_on_the_demo() {
    let snapshot = snapshot();
    let ip =
        |s: &str| -> Vec<std::net::IpAddr> { s.split(',').map(|a| a.parse().unwrap()).collect() };
    let cases: [(&str, ProxyInfo, &str); 9] = [
        // A VM whose health check fails.
        (
            "an east sidecar",
            ProxyInfo::asked(Some("east"), "net-east", &ip("10.1.1.50"), true),
            "demo/legacy",
        ),
        // East, IPv4, with certificates: west's pods through west's gateway; central's
        // IPv6-only pods by family; the unready one; reviews' port conflict.
        (
            "an east sidecar",
            ProxyInfo::asked(Some("east"), "net-east", &ip("10.1.1.50"), true),
            "demo/echo",
        ),
        (
            "an east sidecar",
            ProxyInfo::asked(Some("east"), "net-east", &ip("10.1.1.50"), true),
            "demo/reviews",
        ),
        // Without certificates, it cannot cross west's gateway.
        (
            "an east proxy without mTLS",
            ProxyInfo::asked(Some("east"), "net-east", &ip("10.1.1.50"), false),
            "demo/echo",
        ),
        // IPv6 only in west: east's gateway has no IPv6 address.
        (
            "a west IPv6-only sidecar",
            ProxyInfo::asked(Some("west"), "net-west", &ip("fd00:2:1::50"), true),
            "demo/db",
        ),
        // West's `scoped` goes to west only.
        (
            "an east sidecar",
            ProxyInfo::asked(Some("east"), "net-east", &ip("10.1.1.50"), true),
            "demo/scoped",
        ),
        // West's `plain` pod has no proxy: no mTLS through the gateway.
        (
            "an east sidecar",
            ProxyInfo::asked(Some("east"), "net-east", &ip("10.1.1.50"), true),
            "demo/plain",
        ),
        // Cluster-local, and a namespace that opts out.
        (
            "an east sidecar",
            ProxyInfo::asked(Some("east"), "net-east", &ip("10.1.1.50"), true),
            "kube-system/coredns",
        ),
        (
            "a west sidecar",
            ProxyInfo::asked(Some("west"), "net-west", &ip("10.2.1.50"), true),
            "local-only/cache",
        ),
    ];
    let mut text = String::new();
    for (what, proxy, service) in &cases {
        let (ns, name) = service.split_once('/').unwrap();
        let explained =
            bowline_xds::explain::explain(proxy, &snapshot, &ServiceKey::new(ns, name), None, None);
        text.push_str(&format!("## {what}, {service}\n"));
        text.push_str(&bowline_app::inspect::explain_text(&explained));
        text.push('\n');
    }
    for rule in [
        "excluded (readiness): not ready",
        "excluded (health): health check failing",
        "excluded (IP family): it has no address of the proxy's IP family",
        "excluded (IP family): its network's east-west gateways have no address",
        "excluded (network and gateways): in another network, behind a gateway, but this proxy does not originate mTLS",
        "excluded (network and gateways): in another network, behind a gateway, but it has no proxy",
        "excluded (strict port rule)",
        "excluded (export scope): no export of demo/scoped reaches member east",
        "excluded (export policy): not exported: cluster-local host",
        "excluded (export policy): not exported: Namespace label bowline.io/export=false",
        "through gateway",
        "direct",
        "member stranger: refused",
        "member gone: withdrawn",
    ] {
        assert!(text.contains(rule), "{rule:?} in\n{text}");
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/explain.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(&path, &text).unwrap();
        return;
    }
    let expected = fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing; run with UPDATE_GOLDEN=1", path.display()));
    assert!(
        expected == text,
        "{} differs; run with UPDATE_GOLDEN=1 and review the diff:\n{text}",
        path.display()
    );
}
