//! The mcs-api v0.5.0 conformance specs for ServiceImports and EndpointSlices (digest §5.1–5.2),
//! and the cases around them, as synchronous apply-then-assert tests with exact objects.

use std::collections::BTreeMap;

use bowline_mcs::{
    Controller, McsConfig, Outcome, Rendered, Snapshot, WriteKey, WriteKind, WriteSet,
};
use bowline_model::{
    IpFamily, MemberName, Network, Object, ObjectKind, Protocol,
    export::{ExportDefault, ExportPolicy},
};
use bowline_registry::{MemberConfig, Registry};
use bowline_test_support::*;
use serde_json::{Value, json};

const NS: &str = "mcs-conformance";
const T1: &str = "2026-11-01T10:00:00Z";
const T2: &str = "2026-11-01T10:00:02Z";
const NOW: &str = "2026-11-22T00:00:00Z";
/// After a restart.
const LATER: &str = "2026-11-23T00:00:00Z";

struct Set {
    registry: Registry,
    controller: Controller,
    outcome: Outcome,
}

fn config(default: ExportDefault, pools: &[&str]) -> McsConfig {
    McsConfig {
        policy: ExportPolicy {
            default,
            cluster_local: vec![],
            ..Default::default()
        },
        pools: pools.iter().map(|p| p.parse().unwrap()).collect(),
    }
}

impl Set {
    /// Members `c1`, `c2`... each with id = name and namespace `mcs-conformance`. Exports are
    /// explicit (as in the conformance suite): `export.default: none`.
    fn new(n: usize) -> Self {
        Self::with(
            n,
            config(ExportDefault::None, &["241.0.0.0/16", "fd00:241::/112"]),
        )
    }

    fn with(n: usize, config: McsConfig) -> Self {
        let names: Vec<String> = (1..=n).map(|i| format!("c{i}")).collect();
        let mut registry = Registry::new(
            "set",
            names.iter().map(|m| MemberConfig {
                name: member(m),
                id: None,
                network: Network::default(),
            }),
        );
        for m in &names {
            registry.apply(reset(m, vec![cluster_id(m), namespace(NS, &[])]));
        }
        Self {
            registry,
            controller: Controller::new(config, BTreeMap::new()),
            outcome: Outcome::default(),
        }
    }

    fn apply(&mut self, m: &str, objects: Vec<Object>) -> &mut Self {
        self.registry.apply(applied(m, objects));
        self.reconcile()
    }

    fn delete(&mut self, m: &str, kind: ObjectKind, name: &str) -> &mut Self {
        self.registry.apply(deleted(m, vec![key(kind, NS, name)]));
        self.reconcile()
    }

    fn reconcile(&mut self) -> &mut Self {
        let snapshot = Snapshot::from_registry(&self.registry);
        self.outcome = self.controller.reconcile(&snapshot, NOW.parse().unwrap());
        self
    }

    fn written(&self, m: &str, kind: WriteKind, name: &str) -> Option<Value> {
        self.outcome
            .writes
            .get(&MemberName::new(m))?
            .get(&WriteKey::new(kind, NS, name))
            .map(|v| v.to_value())
    }

    fn import(&self, m: &str) -> Option<Value> {
        self.written(m, WriteKind::ServiceImport, "hello")
    }

    fn slices(&self, m: &str) -> Vec<Value> {
        let writes = &self.outcome.writes[&MemberName::new(m)];
        writes
            .iter()
            .filter(|(k, _)| k.kind == WriteKind::EndpointSlice)
            .map(|(_, v)| v.to_value())
            .collect()
    }

    /// (type, status, reason) of the conditions on member `m`'s ServiceExport `hello`.
    fn export_conditions(&self, m: &str) -> Vec<(String, String, String)> {
        let object = self
            .written(m, WriteKind::ServiceExportStatus, "hello")
            .or_else(|| self.written(m, WriteKind::ServiceExport, "hello"))
            .unwrap_or_else(|| panic!("no ServiceExport status in {m}"));
        object["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (s(&c["type"]), s(&c["status"]), s(&c["reason"])))
            .collect()
    }

    fn condition_message(&self, m: &str, type_: &str) -> String {
        let object = self
            .written(m, WriteKind::ServiceExportStatus, "hello")
            .unwrap();
        let c = object["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == type_)
            .unwrap();
        s(&c["message"])
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn conds(list: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    list.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

/// The conformance `hello` Service: tcp 42/TCP and udp 42/UDP, ClientIP affinity (10 s).
fn hello(ip: &str) -> ServiceBuilder {
    service(NS, "hello")
        .cluster_ips(&[ip])
        .port_proto("tcp", 42, Protocol::Tcp)
        .port_proto("udp", 42, Protocol::Udp)
        .client_ip_affinity(10)
}

fn hello_endpoints(slice_name: &str, addrs: &[&str]) -> Object {
    let mut b = slice(NS, slice_name, "hello")
        .port_proto("tcp", 42, Protocol::Tcp)
        .port_proto("udp", 42, Protocol::Udp);
    for (i, a) in addrs.iter().enumerate() {
        b = b.endpoint(ep(a).pod(&format!("hello-{slice_name}-{i}")).zone("z1"));
    }
    b.build()
}

fn exported_hello(m: &str, ip: &str, created: &str) -> Vec<Object> {
    let pod_net = if m == "c1" { "10.1.0" } else { "10.2.0" };
    vec![
        hello(ip).build(),
        hello_endpoints(
            &format!("hello-{m}"),
            &[&format!("{pod_net}.5"), &format!("{pod_net}.6")],
        ),
        export_at(NS, "hello", created, &[], &[]),
    ]
}

#[test]
fn spec_04_05_08_09_clusterip_export_makes_exact_imports_everywhere() {
    let mut set = Set::new(2);
    set.apply("c1", exported_hello("c1", "10.0.0.1", T1));
    let expected = json!({
        "apiVersion": "multicluster.x-k8s.io/v1beta1",
        "kind": "ServiceImport",
        "metadata": {"name": "hello", "namespace": NS, "labels": {"bowline.io/managed-by": "mcs-controller"}},
        "spec": {
            "type": "ClusterSetIP",
            "ports": [
                {"name": "tcp", "protocol": "TCP", "port": 42},
                {"name": "udp", "protocol": "UDP", "port": 42},
            ],
            "ips": ["241.0.0.1"],
            "ipFamilies": ["IPv4"],
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}},
        },
        "status": {
            "clusters": [{"cluster": "c1"}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "the ServiceImport is ready", "lastTransitionTime": NOW}],
        },
    });
    assert_eq!(
        set.import("c1").as_ref(),
        Some(&expected),
        "in the exporting member"
    );
    assert_eq!(
        set.import("c2").as_ref(),
        Some(&expected),
        "and in every other member with the namespace"
    );
    assert_eq!(
        set.export_conditions("c1"),
        conds(&[
            ("Valid", "True", "Valid"),
            ("Ready", "True", "Exported"),
            ("Conflict", "False", "NoConflicts")
        ])
    );
    assert!(
        set.written("c2", WriteKind::ServiceExportStatus, "hello")
            .is_none(),
        "c2 exports nothing"
    );

    // Unexporting deletes the import everywhere; the Service itself is never written.
    set.delete("c1", ObjectKind::ServiceExport, "hello");
    assert!(set.import("c1").is_none() && set.import("c2").is_none());
    assert!(
        set.outcome.writes.values().all(|w| w.is_empty()),
        "{:?}",
        set.outcome.writes
    );
}

#[test]
fn spec_01_import_lives_while_any_export_does() {
    let mut set = Set::new(2);
    set.apply("c1", exported_hello("c1", "10.0.0.1", T1));
    set.apply("c2", exported_hello("c2", "10.0.1.1", T2));
    assert!(set.import("c1").is_some());
    assert_eq!(
        set.import("c1").unwrap()["status"]["clusters"],
        json!([{"cluster": "c1"}, {"cluster": "c2"}])
    );
    set.delete("c1", ObjectKind::ServiceExport, "hello");
    assert_eq!(
        set.import("c1").unwrap()["status"]["clusters"],
        json!([{"cluster": "c2"}])
    );
    assert_eq!(
        set.import("c1").unwrap()["spec"]["ips"],
        json!(["241.0.0.1"]),
        "the address is stable"
    );
    set.delete("c2", ObjectKind::ServiceExport, "hello");
    assert!(set.import("c1").is_none() && set.import("c2").is_none());
}

#[test]
fn spec_02_only_exported_labels_and_annotations_propagate() {
    let mut set = Set::new(1);
    set.apply(
        "c1",
        vec![
            hello("10.0.0.1")
                .label("dummy-svc", "dummy")
                .annotation("dummy-svc", "dummy")
                .build(),
            export_at(
                NS,
                "hello",
                T1,
                &[("dummy-label", "true")],
                &[("dummy-annotation", "true")],
            ),
        ],
    );
    let import = set.import("c1").unwrap();
    assert_eq!(
        import["metadata"]["labels"],
        json!({"dummy-label": "true", "bowline.io/managed-by": "mcs-controller"})
    );
    assert_eq!(
        import["metadata"]["annotations"],
        json!({"dummy-annotation": "true"})
    );
}

#[test]
fn spec_03_conflicting_labels_oldest_wins_and_both_report() {
    let mut set = Set::new(2);
    set.apply(
        "c1",
        vec![
            hello("10.0.0.1").build(),
            export_at(
                NS,
                "hello",
                T1,
                &[("dummy-label", "1")],
                &[("dummy-annotation", "1")],
            ),
        ],
    );
    set.apply(
        "c2",
        vec![
            hello("10.0.1.1").build(),
            export_at(
                NS,
                "hello",
                T2,
                &[("dummy-label2", "1")],
                &[("dummy-annotation2", "1")],
            ),
        ],
    );
    for m in ["c1", "c2"] {
        assert!(
            set.export_conditions(m).contains(&(
                "Conflict".into(),
                "True".into(),
                "LabelsConflict,AnnotationsConflict".into()
            )),
            "{m}"
        );
        let import = set.import(m).unwrap();
        assert_eq!(import["metadata"]["labels"]["dummy-label"], "1");
        assert!(import["metadata"]["labels"].get("dummy-label2").is_none());
        assert!(
            import["metadata"]["annotations"]
                .get("dummy-annotation2")
                .is_none()
        );
    }
    let message = set.condition_message("c2", "Conflict");
    assert!(
        message.contains("from c1's ServiceExport, the oldest (created 2026-11-01T10:00:00Z)"),
        "{message}"
    );
    assert!(message.contains("1/2 members disagree (c2)"), "{message}");
}

#[test]
fn spec_06_07_internal_traffic_policy_and_traffic_distribution() {
    let mut set = Set::new(1);
    set.apply(
        "c1",
        vec![
            hello("10.0.0.1")
                .internal_traffic_policy("Cluster")
                .traffic_distribution("PreferClose")
                .build(),
            export_at(NS, "hello", T1, &[], &[]),
        ],
    );
    let spec = &set.import("c1").unwrap()["spec"];
    assert_eq!(
        (&spec["internalTrafficPolicy"], &spec["trafficDistribution"]),
        (&json!("Cluster"), &json!("PreferClose"))
    );
}

#[test]
fn spec_08_dual_stack_gets_one_ip_per_family_in_order() {
    let mut set = Set::new(1);
    set.apply(
        "c1",
        vec![
            hello("fd00::1")
                .cluster_ips(&["fd00::1", "10.0.0.1"])
                .build(),
            export_at(NS, "hello", T1, &[], &[]),
        ],
    );
    let spec = &set.import("c1").unwrap()["spec"];
    assert_eq!(spec["ipFamilies"], json!(["IPv6", "IPv4"]));
    assert_eq!(spec["ips"], json!(["fd00:241::1", "241.0.0.1"]));
}

#[test]
fn spec_10_port_union_raises_a_conflict_on_both() {
    let mut set = Set::new(2);
    set.apply("c1", exported_hello("c1", "10.0.0.1", T1));
    set.apply(
        "c2",
        vec![
            service(NS, "hello")
                .cluster_ips(&["10.0.1.1"])
                .port_proto("tcp", 42, Protocol::Tcp)
                .port_proto("stcp", 142, Protocol::Sctp)
                .client_ip_affinity(10)
                .build(),
            export_at(NS, "hello", T2, &[], &[]),
        ],
    );
    assert_eq!(
        set.import("c2").unwrap()["spec"]["ports"],
        json!([
            {"name": "stcp", "protocol": "SCTP", "port": 142},
            {"name": "tcp", "protocol": "TCP", "port": 42},
            {"name": "udp", "protocol": "UDP", "port": 42},
        ])
    );
    for m in ["c1", "c2"] {
        assert!(
            set.export_conditions(m).contains(&(
                "Conflict".into(),
                "True".into(),
                "PortConflict".into()
            )),
            "{m}"
        );
    }
}

#[test]
fn spec_11_conflicting_port_oldest_wins_and_only_its_members_serve_it() {
    let mut set = Set::new(2);
    set.apply("c1", exported_hello("c1", "10.0.0.1", T1));
    set.apply(
        "c2",
        vec![
            service(NS, "hello")
                .cluster_ips(&["10.0.1.1"])
                .port_proto("tcp", 43, Protocol::Tcp)
                .client_ip_affinity(10)
                .build(),
            slice(NS, "hello-c2", "hello")
                .port_proto("tcp", 43, Protocol::Tcp)
                .endpoint(ep("10.2.0.5").pod("p"))
                .build(),
            export_at(NS, "hello", T2, &[], &[]),
        ],
    );
    assert_eq!(
        set.import("c1").unwrap()["spec"]["ports"],
        json!([{"name": "tcp", "protocol": "TCP", "port": 42}, {"name": "udp", "protocol": "UDP", "port": 42}])
    );
    for m in ["c1", "c2"] {
        assert!(
            set.export_conditions(m).contains(&(
                "Conflict".into(),
                "True".into(),
                "PortConflict".into()
            )),
            "{m}"
        );
        let sources: Vec<String> = set
            .slices(m)
            .iter()
            .map(|sl| s(&sl["metadata"]["labels"]["multicluster.kubernetes.io/source-cluster"]))
            .collect();
        assert_eq!(
            sources,
            vec!["c1"],
            "c2 serves no port of the import, so none of its endpoints is published"
        );
    }
    let message = set.condition_message("c2", "Conflict");
    assert!(
        message.contains("\"tcp\" TCP/43 in c2 collides with \"tcp\" TCP/42"),
        "{message}"
    );
}

#[test]
fn strict_port_conflict_with_distinct_names_splits_traffic_by_port() {
    let mut set = Set::new(2);
    set.apply("c1", exported_hello("c1", "10.0.0.1", T1));
    set.apply(
        "c2",
        vec![
            service(NS, "hello")
                .cluster_ips(&["10.0.1.1"])
                .port_proto("tcp2", 4242, Protocol::Tcp)
                .client_ip_affinity(10)
                .build(),
            slice(NS, "hello-c2", "hello")
                .port_proto("tcp2", 42, Protocol::Tcp)
                .endpoint(ep("10.2.0.5").pod("p"))
                .build(),
            export_at(NS, "hello", T2, &[], &[]),
        ],
    );
    let ports_of = |source: &str| -> Value {
        set.slices("c1")
            .iter()
            .find(|sl| {
                sl["metadata"]["labels"]["multicluster.kubernetes.io/source-cluster"] == source
            })
            .unwrap()["ports"]
            .clone()
    };
    assert_eq!(
        ports_of("c1"),
        json!([{"name": "tcp", "port": 42, "protocol": "TCP"}, {"name": "udp", "port": 42, "protocol": "UDP"}])
    );
    assert_eq!(
        ports_of("c2"),
        json!([{"name": "tcp2", "port": 42, "protocol": "TCP"}])
    );
}

#[test]
fn spec_12_13_headless_imports_have_no_ips_but_families() {
    let mut set = Set::new(2);
    set.apply(
        "c1",
        vec![
            service(NS, "hello")
                .headless(&[IpFamily::IPv4])
                .port_proto("tcp", 42, Protocol::Tcp)
                .build(),
            slice(NS, "hello-c1", "hello")
                .port_proto("tcp", 42, Protocol::Tcp)
                .endpoint(ep("10.1.0.5").pod("web-0").hostname("web-0"))
                .endpoint(ep("10.1.0.6").pod("web-1").hostname("web-1"))
                .build(),
            export_at(NS, "hello", T1, &[], &[]),
        ],
    );
    for m in ["c1", "c2"] {
        let spec = &set.import(m).unwrap()["spec"];
        assert_eq!(spec["type"], "Headless");
        assert!(spec.get("ips").is_none());
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        let slices = set.slices(m);
        assert_eq!(slices.len(), 1);
        let hostnames: Vec<String> = slices[0]["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| s(&e["hostname"]))
            .collect();
        assert_eq!(
            hostnames,
            vec!["web-0", "web-1"],
            "both replicas, ready, with hostnames, in one slice"
        );
    }
    set.delete("c1", ObjectKind::ServiceExport, "hello");
    assert!(set.import("c1").is_none() && set.import("c2").is_none());
}

#[test]
fn spec_14_external_name_is_invalid_and_never_imported() {
    let mut set = Set::new(2);
    set.apply(
        "c1",
        vec![
            service(NS, "hello").external_name("example.com").build(),
            export_at(NS, "hello", T1, &[], &[]),
        ],
    );
    assert_eq!(
        set.export_conditions("c1"),
        conds(&[
            ("Valid", "False", "InvalidServiceType"),
            ("Ready", "False", "Failed")
        ])
    );
    assert!(set.import("c1").is_none() && set.import("c2").is_none());
}

#[test]
fn spec_15_headlessness_conflict_oldest_type_wins() {
    let mut set = Set::new(2);
    set.apply("c1", exported_hello("c1", "10.0.0.1", T1));
    set.apply(
        "c2",
        vec![
            service(NS, "hello")
                .headless(&[IpFamily::IPv4])
                .port_proto("tcp", 42, Protocol::Tcp)
                .port_proto("udp", 42, Protocol::Udp)
                .client_ip_affinity(10)
                .build(),
            export_at(NS, "hello", T2, &[], &[]),
        ],
    );
    for m in ["c1", "c2"] {
        assert_eq!(set.import(m).unwrap()["spec"]["type"], "ClusterSetIP");
        assert!(
            set.export_conditions(m).contains(&(
                "Conflict".into(),
                "True".into(),
                "TypeConflict".into()
            )),
            "{m}"
        );
    }
}

#[test]
fn spec_16_imported_endpoint_slices_per_source_and_family() {
    let mut set = Set::new(2);
    set.apply("c1", exported_hello("c1", "10.0.0.1", T1));
    set.apply("c2", exported_hello("c2", "10.0.1.1", T2));
    let expected_c1 = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "imported-hello-c1-ipv4",
            "namespace": NS,
            "labels": {
                "multicluster.kubernetes.io/service-name": "hello",
                "multicluster.kubernetes.io/source-cluster": "c1",
                "endpointslice.kubernetes.io/managed-by": "bowline.io",
                "bowline.io/managed-by": "mcs-controller",
            },
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.1.0.5"], "conditions": {"ready": true, "serving": true, "terminating": false}, "zone": "z1"},
            {"addresses": ["10.1.0.6"], "conditions": {"ready": true, "serving": true, "terminating": false}, "zone": "z1"},
        ],
        "ports": [{"name": "tcp", "port": 42, "protocol": "TCP"}, {"name": "udp", "port": 42, "protocol": "UDP"}],
    });
    for m in ["c1", "c2"] {
        let slices = set.slices(m);
        assert_eq!(slices.len(), 2, "one per source member");
        assert_eq!(slices[0], expected_c1);
        assert_eq!(
            slices[1]["metadata"]["labels"]["multicluster.kubernetes.io/source-cluster"],
            "c2"
        );
        assert!(slices.iter().all(|sl| {
            sl["metadata"]["labels"]
                .get("kubernetes.io/service-name")
                .is_none()
        }));
    }
    set.delete("c1", ObjectKind::ServiceExport, "hello");
    assert_eq!(
        set.slices("c2").len(),
        1,
        "c1's slices go when it unexports"
    );
    set.delete("c2", ObjectKind::ServiceExport, "hello");
    assert!(set.slices("c1").is_empty() && set.slices("c2").is_empty());
}

#[test]
fn service_deleted_while_exported() {
    let mut set = Set::new(2);
    set.apply("c1", exported_hello("c1", "10.0.0.1", T1));
    set.apply("c2", exported_hello("c2", "10.0.1.1", T2));
    set.delete("c1", ObjectKind::Service, "hello");
    assert_eq!(
        set.export_conditions("c1"),
        conds(&[
            ("Valid", "False", "NoService"),
            ("Ready", "False", "Failed")
        ])
    );
    assert_eq!(
        set.import("c1").unwrap()["status"]["clusters"],
        json!([{"cluster": "c2"}])
    );
    set.delete("c2", ObjectKind::Service, "hello");
    assert!(set.import("c1").is_none(), "no valid export left");
    assert_eq!(
        set.export_conditions("c2")[0],
        ("Valid".into(), "False".into(), "NoService".into()),
        "the user's export stays, with status"
    );
}

#[test]
fn member_leaving_withdraws_its_exports_and_its_writes() {
    let mut set = Set::new(2);
    set.apply("c1", exported_hello("c1", "10.0.0.1", T1));
    set.apply("c2", exported_hello("c2", "10.0.1.1", T2));
    set.registry
        .apply(applied("c2", vec![cluster_id("Not-Valid")]));
    set.reconcile();
    assert!(
        !set.outcome.writes.contains_key(&MemberName::new("c2")),
        "nothing is desired in a member that left"
    );
    assert_eq!(
        set.import("c1").unwrap()["status"]["clusters"],
        json!([{"cluster": "c1"}])
    );
    assert_eq!(set.slices("c1").len(), 1);
}

#[test]
fn restart_with_written_objects_keeps_cluster_set_ips() {
    let mut set = Set::new(2);
    set.apply(
        "c1",
        vec![
            hello("10.0.0.1").build(),
            export_at(NS, "hello", T1, &[], &[]),
        ],
    );
    set.apply(
        "c1",
        vec![
            service(NS, "other")
                .cluster_ips(&["10.0.0.2"])
                .port("http", 80)
                .build(),
            export_at(NS, "other", T2, &[], &[]),
        ],
    );
    let ips = |set: &Set, name: &str| {
        set.written("c2", WriteKind::ServiceImport, name).unwrap()["spec"]["ips"].clone()
    };
    let (hello_ip, other_ip) = (ips(&set, "hello"), ips(&set, "other"));
    assert_ne!(hello_ip, other_ip);

    // A new controller reading back what was written, seeing the services in another order.
    let written = flat(&set.outcome);
    let mut restarted = Controller::new(
        config(ExportDefault::None, &["241.0.0.0/16", "fd00:241::/112"]),
        written,
    );
    let mut snapshot = Snapshot::from_registry(&set.registry);
    snapshot.services.reverse();
    set.outcome = restarted.reconcile(&snapshot, NOW.parse().unwrap());
    assert_eq!(
        (ips(&set, "hello"), ips(&set, "other")),
        (hello_ip, other_ip)
    );
    let ready = &set
        .written("c2", WriteKind::ServiceImport, "hello")
        .unwrap()["status"]["conditions"][0];
    assert_eq!(ready["lastTransitionTime"], NOW);
}

/// After a restart the members' listings arrive one by one: a ClusterSetIP read back from a
/// member is not freed by a computation made before the member exporting the service is
/// listed, and a service that appeared meanwhile does not take it; nor does the import's
/// condition take a new transition time.
#[test]
fn restart_keeps_cluster_set_ips_of_services_whose_members_are_not_listed_yet() {
    let mut set = Set::new(2);
    set.apply(
        "c1",
        vec![
            hello("10.0.0.1").build(),
            export_at(NS, "hello", T1, &[], &[]),
        ],
    );
    let written = flat(&set.outcome);
    let hello_ip = set
        .written("c2", WriteKind::ServiceImport, "hello")
        .unwrap()["spec"]["ips"]
        .clone();

    // The restarted registry: c2 listed first (with a new service exported), c1 not yet.
    let mut registry = Registry::new(
        "set",
        ["c1", "c2"].map(|m| MemberConfig {
            name: member(m),
            id: Some(m.into()),
            network: Network::default(),
        }),
    );
    registry.apply(reset(
        "c2",
        vec![
            namespace(NS, &[]),
            service(NS, "aaa")
                .cluster_ips(&["10.0.0.9"])
                .port("http", 80)
                .build(),
            export_at(NS, "aaa", T2, &[], &[]),
        ],
    ));
    let mut restarted = Controller::new(
        config(ExportDefault::None, &["241.0.0.0/16", "fd00:241::/112"]),
        written,
    );
    let early = restarted.reconcile(&Snapshot::from_registry(&registry), LATER.parse().unwrap());
    let aaa_ip = early.writes[&member("c2")][&WriteKey::new(WriteKind::ServiceImport, NS, "aaa")]
        .to_value()["spec"]["ips"]
        .clone();
    assert_ne!(
        aaa_ip, hello_ip,
        "the newcomer does not take hello's address"
    );
    // Another newcomer before c1 is listed, computed on its own.
    registry.apply(applied(
        "c2",
        vec![
            service(NS, "bbb")
                .cluster_ips(&["10.0.0.8"])
                .port("http", 80)
                .build(),
            export_at(NS, "bbb", T2, &[], &[]),
        ],
    ));
    let early = restarted.reconcile(&Snapshot::from_registry(&registry), LATER.parse().unwrap());
    assert_ne!(
        early.writes[&member("c2")][&WriteKey::new(WriteKind::ServiceImport, NS, "bbb")].to_value()
            ["spec"]["ips"],
        hello_ip,
        "nor does a later one"
    );

    // c1 is listed: hello is back with the address it had.
    registry.apply(reset(
        "c1",
        vec![
            namespace(NS, &[]),
            hello("10.0.0.1").build(),
            export_at(NS, "hello", T1, &[], &[]),
        ],
    ));
    let later = restarted.reconcile(&Snapshot::from_registry(&registry), LATER.parse().unwrap());
    let hello = later.writes[&member("c2")][&WriteKey::new(WriteKind::ServiceImport, NS, "hello")]
        .to_value();
    assert_eq!(hello["spec"]["ips"], hello_ip);
    assert_eq!(
        hello["status"]["conditions"][0]["lastTransitionTime"], NOW,
        "its Ready condition keeps the transition time it had before the restart"
    );
}

#[test]
fn exhausted_pool_is_a_clear_condition_and_breaks_nothing_else() {
    let mut set = Set::with(1, config(ExportDefault::None, &["241.0.0.0/30"]));
    for (name, created) in [
        ("a", "2026-11-01T10:00:00Z"),
        ("b", "2026-11-01T10:00:01Z"),
        ("c", "2026-11-01T10:00:02Z"),
    ] {
        set.apply(
            "c1",
            vec![
                service(NS, name)
                    .cluster_ips(&["10.0.0.1"])
                    .port("http", 80)
                    .build(),
                export_at(NS, name, created, &[], &[]),
            ],
        );
    }
    let import = |name: &str| {
        set.written("c1", WriteKind::ServiceImport, name)
            .unwrap()
            .clone()
    };
    assert_eq!(import("a")["spec"]["ips"], json!(["241.0.0.1"]));
    assert_eq!(import("b")["spec"]["ips"], json!(["241.0.0.2"]));
    let c = import("c");
    assert!(c["spec"].get("ips").is_none());
    assert_eq!(
        c["status"]["conditions"][0]["reason"],
        "ClusterSetIPExhausted"
    );
    assert!(
        s(&c["status"]["conditions"][0]["message"]).contains("no free ClusterSetIP for [IPv4]")
    );
    assert_eq!(import("a")["status"]["conditions"][0]["reason"], "Ready");
}

#[test]
fn ipv6_only_export_into_an_ipv4_only_member_is_not_ready_there() {
    let mut set = Set::new(2);
    set.apply(
        "c2",
        vec![
            service(NS, "web")
                .cluster_ips(&["10.0.1.1"])
                .port("http", 80)
                .build(),
        ],
    );
    set.apply(
        "c1",
        vec![
            hello("fd00::1").build(),
            export_at(NS, "hello", T1, &[], &[]),
        ],
    );
    let ready = |m: &str| set.import(m).unwrap()["status"]["conditions"][0].clone();
    assert_eq!(ready("c1")["reason"], "Ready");
    assert_eq!(ready("c2")["status"], "False");
    assert_eq!(ready("c2")["reason"], "IPFamilyNotSupported");
}

#[test]
fn ip_family_conflict_when_some_backends_lack_a_family() {
    let mut set = Set::new(2);
    set.apply("c1", exported_hello("c1", "10.0.0.1", T1));
    set.apply(
        "c2",
        vec![
            hello("10.0.1.1")
                .cluster_ips(&["10.0.1.1", "fd00::1"])
                .build(),
            export_at(NS, "hello", T2, &[], &[]),
        ],
    );
    assert_eq!(
        set.import("c1").unwrap()["spec"]["ipFamilies"],
        json!(["IPv4", "IPv6"])
    );
    assert!(set.export_conditions("c1").contains(&(
        "Conflict".into(),
        "True".into(),
        "IPFamilyConflict".into()
    )));
    assert!(
        set.condition_message("c1", "Conflict")
            .contains("c1 has no IPv6")
    );
}

#[test]
fn auto_export_writes_labelled_exports_and_respects_opt_outs() {
    let mut set = Set::with(2, config(ExportDefault::All, &["241.0.0.0/16"]));
    set.apply(
        "c1",
        vec![
            service(NS, "hello")
                .cluster_ips(&["10.0.0.1"])
                .port("http", 80)
                .build(),
            service(NS, "private")
                .cluster_ips(&["10.0.0.2"])
                .port("http", 80)
                .label("bowline.io/export", "false")
                .build(),
        ],
    );
    let auto = set
        .written("c1", WriteKind::ServiceExport, "hello")
        .expect("auto-export wrote a ServiceExport");
    assert_eq!(
        auto["metadata"]["labels"],
        json!({"bowline.io/managed-by": "auto-export"})
    );
    assert_eq!(auto["metadata"]["creationTimestamp"], NOW);
    assert!(set.import("c2").is_some());
    assert!(
        set.written("c1", WriteKind::ServiceExport, "private")
            .is_none()
    );
    assert!(
        set.written("c2", WriteKind::ServiceImport, "private")
            .is_none()
    );
    let why = &set.outcome.exports[&bowline_model::ServiceKey::new(NS, "private")]
        [&bowline_model::ClusterId::new("c1").unwrap()];
    assert!(!why.exported);
    assert_eq!(
        why.why,
        "not exported: Service label bowline.io/export=false"
    );
}

/// Objects are compared by their text: an object rendered straight to text (imported
/// slices) must read exactly as its parsed form prints, or an equal object rendered the
/// other way would look changed.
#[test]
fn written_objects_are_held_in_their_canonical_text() {
    let mut set = Set::new(2);
    set.apply("c1", exported_hello("c1", "10.0.0.1", T1));
    set.apply("c2", exported_hello("c2", "10.0.1.1", T2));
    let mut slices = 0;
    for writes in set.outcome.writes.values() {
        for (key, object) in writes {
            slices += usize::from(key.kind == WriteKind::EndpointSlice);
            assert_eq!(
                object.json(),
                Rendered::new(&object.to_value()).json(),
                "{key:?}"
            );
        }
    }
    assert!(slices > 0, "imported slices were checked");
}

#[test]
fn written_objects_are_valid_kubernetes_objects() {
    let mut set = Set::new(2);
    set.apply("c1", exported_hello("c1", "10.0.0.1", T1));
    set.apply("c2", exported_hello("c2", "10.0.1.1", T2));
    for writes in set.outcome.writes.values() {
        for (key, object) in writes {
            let decoded = bowline_k8s_api::decode(object.to_value());
            assert!(
                matches!(decoded, Ok(Some(_))),
                "{key:?} does not decode: {decoded:?}"
            );
        }
    }
}

#[test]
fn three_members_conflict_counts_and_placement() {
    let mut set = Set::new(3);
    set.apply("c1", exported_hello("c1", "10.0.0.1", T1));
    set.apply(
        "c2",
        vec![
            hello("10.0.1.1").build(),
            export_at(NS, "hello", T2, &[], &[]),
        ],
    );
    set.apply(
        "c3",
        vec![
            service(NS, "hello")
                .cluster_ips(&["10.0.2.1"])
                .port_proto("tcp", 43, Protocol::Tcp)
                .client_ip_affinity(10)
                .build(),
            export_at(NS, "hello", "2026-11-01T10:00:04Z", &[], &[]),
        ],
    );
    for m in ["c1", "c2", "c3"] {
        assert_eq!(
            set.import(m).unwrap()["status"]["clusters"],
            json!([{"cluster": "c1"}, {"cluster": "c2"}, {"cluster": "c3"}]),
            "{m}"
        );
        assert!(
            set.export_conditions(m).contains(&(
                "Conflict".into(),
                "True".into(),
                "PortConflict".into()
            )),
            "{m}"
        );
    }
    assert!(
        set.condition_message("c2", "Conflict")
            .contains("1/3 members differ (c3)")
    );
    // c3 serves no port of the import; c1 and c2 both serve both ports.
    let sources: Vec<String> = set
        .slices("c3")
        .iter()
        .map(|sl| s(&sl["metadata"]["labels"]["multicluster.kubernetes.io/source-cluster"]))
        .collect();
    assert_eq!(
        sources,
        vec!["c1"],
        "c2 has no endpoints, c3 serves no import port"
    );

    // A member without the namespace gets no import; creating the namespace brings it.
    set.registry
        .apply(deleted("c3", vec![key(ObjectKind::Namespace, "", NS)]));
    set.reconcile();
    assert!(set.import("c3").is_none());
    set.apply("c3", vec![namespace(NS, &[])]);
    assert!(set.import("c3").is_some());
}

#[test]
fn unchanged_names_are_reused_and_changed_ones_recomputed() {
    let mut set = Set::new(2);
    set.apply("c1", exported_hello("c1", "10.0.0.1", T1));
    set.apply(
        "c1",
        vec![
            service(NS, "other")
                .cluster_ips(&["10.0.0.2"])
                .port("http", 80)
                .build(),
            export_at(NS, "other", T2, &[], &[]),
        ],
    );
    let before = set.controller.recomputed();
    set.reconcile();
    assert_eq!(
        set.controller.recomputed(),
        before,
        "nothing changed, nothing recomputed"
    );
    set.apply(
        "c1",
        vec![hello_endpoints("hello-c1", &["10.1.0.5", "10.1.0.7"])],
    );
    assert_eq!(set.controller.recomputed(), before + 1, "only hello");
    assert_eq!(
        set.slices("c2")[0]["endpoints"].as_array().unwrap().len(),
        2
    );
    // A member's namespace change touches every name of that namespace.
    set.apply("c2", vec![namespace(NS, &[("team", "x")])]);
    assert_eq!(set.controller.recomputed(), before + 3);
}

#[test]
fn an_exhausted_import_gets_an_address_once_one_is_freed() {
    let mut set = Set::with(1, config(ExportDefault::None, &["241.0.0.0/30"]));
    for (name, created) in [
        ("a", "2026-11-01T10:00:00Z"),
        ("b", "2026-11-01T10:00:01Z"),
        ("c", "2026-11-01T10:00:02Z"),
    ] {
        set.apply(
            "c1",
            vec![
                service(NS, name)
                    .cluster_ips(&["10.0.0.1"])
                    .port("http", 80)
                    .build(),
                export_at(NS, name, created, &[], &[]),
            ],
        );
    }
    assert!(
        set.written("c1", WriteKind::ServiceImport, "c").unwrap()["spec"]
            .get("ips")
            .is_none()
    );
    set.delete("c1", ObjectKind::ServiceExport, "a");
    let c = set.written("c1", WriteKind::ServiceImport, "c").unwrap();
    assert_eq!(
        c["spec"]["ips"],
        json!(["241.0.0.1"]),
        "c's own view did not change, yet it is served"
    );
    assert_eq!(c["status"]["conditions"][0]["reason"], "Ready");
}

/// What each member holds, as its writer reads it back after a restart.
fn flat(outcome: &Outcome) -> BTreeMap<MemberName, WriteSet> {
    outcome
        .writes
        .iter()
        .map(|(member, writes)| (member.clone(), writes.to_set()))
        .collect()
}

#[test]
fn a_service_import_the_same_in_every_member_is_held_once() {
    let mut set = Set::new(3);
    set.apply("c1", exported_hello("c1", "10.0.0.1", T1));
    let key = WriteKey::new(WriteKind::ServiceImport, NS, "hello");
    let held: Vec<&std::sync::Arc<Rendered>> = ["c1", "c2", "c3"]
        .iter()
        .map(|m| set.outcome.writes[&MemberName::new(*m)].get(&key).unwrap())
        .collect();
    assert!(
        held.windows(2).all(|w| std::sync::Arc::ptr_eq(w[0], w[1])),
        "one allocation for the three members' equal ServiceImports"
    );
}
