//! Export scope (kubernetes/enhancements#6329): an export names the members it reaches; each
//! member's ServiceImport combines its own export with the exports that reach it, conflicts
//! are resolved among those only, and moving one member in or out touches only its objects
//! (and the exporter's status, which reports where the export went).

use std::collections::BTreeMap;

use bowline_mcs::{Controller, McsConfig, Outcome, Snapshot, WriteKey, WriteKind};
use bowline_model::{
    ClusterId, MemberName, Network, Object, ObjectKind, ServiceKey,
    export::{ExportDefault, ExportPolicy},
    objects::{Namespace, ServiceExport},
    scope::{EXPORT_TO, EXPORT_TO_SELECTOR, ExportTo, ScopeConfig},
};
use bowline_registry::{MemberConfig, Registry};
use bowline_test_support::*;
use serde_json::{Value, json};

const NS: &str = "shop";
const T1: &str = "2026-11-01T10:00:00Z";
const T2: &str = "2026-11-01T10:00:02Z";
const NOW: &str = "2026-11-22T00:00:00Z";

struct Set {
    registry: Registry,
    controller: Controller,
    outcome: Outcome,
}

impl Set {
    /// Members `c1`..`cn` (id = name) with namespace `shop`, `export.default: none`.
    fn new(n: usize, scope: ScopeConfig) -> Self {
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
        let config = McsConfig {
            policy: ExportPolicy {
                default: ExportDefault::None,
                cluster_local: vec![],
                scope,
            },
            pools: vec!["241.0.0.0/16".parse().unwrap()],
        };
        let mut set = Self {
            registry,
            controller: Controller::new(config, BTreeMap::new()),
            outcome: Outcome::default(),
        };
        set.reconcile();
        set
    }

    fn apply(&mut self, m: &str, objects: Vec<Object>) -> &mut Self {
        self.registry.apply(applied(m, objects));
        self.reconcile()
    }

    fn reconcile(&mut self) -> &mut Self {
        let snapshot = Snapshot::from_registry(&self.registry);
        self.outcome = self.controller.reconcile(&snapshot, NOW.parse().unwrap());
        self
    }

    fn written(&self, m: &str, kind: WriteKind) -> Option<Value> {
        self.outcome
            .writes
            .get(&MemberName::new(m))?
            .get(&WriteKey::new(kind, NS, "cart"))
            .map(|v| v.to_value())
    }

    fn import(&self, m: &str) -> Option<Value> {
        self.written(m, WriteKind::ServiceImport)
    }

    /// The exporting clusters of `m`'s ServiceImport (`status.clusters`).
    fn sources(&self, m: &str) -> Option<Vec<String>> {
        let import = self.import(m)?;
        Some(clusters(&import["status"]["clusters"]))
    }

    /// The imported EndpointSlices `m` holds: (source cluster, addresses).
    fn slices(&self, m: &str) -> Vec<(String, Vec<String>)> {
        let writes = &self.outcome.writes[&MemberName::new(m)];
        writes
            .iter()
            .filter(|(k, _)| k.kind == WriteKind::EndpointSlice)
            .map(|(_, v)| {
                let v = v.to_value();
                let source = v["metadata"]["labels"]["multicluster.kubernetes.io/source-cluster"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let addresses = v["endpoints"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|e| e["addresses"].as_array().unwrap().clone())
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect();
                (source, addresses)
            })
            .collect()
    }

    /// `m`'s user ServiceExport status: conditions by type as (status, reason, message), and
    /// `status.clusters`.
    fn export_status(&self, m: &str) -> (Conditions, Vec<String>) {
        let object = self
            .written(m, WriteKind::ServiceExportStatus)
            .or_else(|| self.written(m, WriteKind::ServiceExport))
            .unwrap_or_else(|| panic!("no ServiceExport status in {m}"));
        let conditions = object["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    text(&c["type"]),
                    (text(&c["status"]), text(&c["reason"]), text(&c["message"])),
                )
            })
            .collect();
        (conditions, clusters(&object["status"]["clusters"]))
    }
}

/// Conditions by type: (status, reason, message).
type Conditions = BTreeMap<String, (String, String, String)>;

/// Annotations, the reason expected and a part of the message.
type BadCase<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn clusters(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|c| text(&c["cluster"])).collect())
        .unwrap_or_default()
}

fn key() -> ServiceKey {
    ServiceKey::new(NS, "cart")
}

/// Member `m`'s `cart`: port `http` (80 unless given), two endpoints, a ServiceExport created
/// at `created` with `annotations`.
fn cart(m: &str, port: u16, created: &str, annotations: &[(&str, &str)]) -> Vec<Object> {
    let n: u8 = m[1..].parse().unwrap();
    let mut meta = export_at(NS, "cart", created, &[], &[]).meta().clone();
    meta.annotations = labels(annotations);
    vec![
        service(NS, "cart")
            .cluster_ips(&[&format!("10.{n}.255.1")])
            .port("http", port)
            .build(),
        slice(NS, &format!("cart-{m}"), "cart")
            .port("http", 8080)
            .endpoint(ep(&format!("10.{n}.0.1")).pod("a"))
            .endpoint(ep(&format!("10.{n}.0.2")).pod("b"))
            .build(),
        Object::ServiceExport(ServiceExport {
            meta,
            exported_labels: Default::default(),
            exported_annotations: Default::default(),
        }),
    ]
}

#[test]
fn an_export_to_a_list_reaches_those_members_and_its_own_only() {
    let mut set = Set::new(4, ScopeConfig::default());
    set.apply("c1", cart("c1", 80, T1, &[(EXPORT_TO, "c2")]));

    assert_eq!(set.sources("c1"), Some(vec!["c1".into()]), "its own member");
    assert_eq!(set.sources("c2"), Some(vec!["c1".into()]), "the one named");
    assert_eq!(set.import("c3"), None, "not named: no ServiceImport");
    assert_eq!(set.import("c4"), None);
    assert!(set.slices("c3").is_empty() && set.slices("c4").is_empty());
    assert_eq!(set.slices("c2").len(), 1);

    let (conditions, to) = set.export_status("c1");
    assert_eq!(
        to,
        ["c1", "c2"],
        "status.clusters: where the service is available"
    );
    let (status, reason, message) = &conditions["Ready"];
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Exported"));
    assert!(
        message.starts_with("exported to c1, c2;"),
        "the Ready message names the consumers: {message}"
    );
    assert!(
        conditions["Valid"].2.contains(EXPORT_TO),
        "Valid says what scoped it: {:?}",
        conditions["Valid"]
    );

    // Proxies and DNS read the import per member.
    let import = &set.outcome.imports[&key()];
    let id = |s: &str| ClusterId::new(s).unwrap();
    assert!(import.for_member("c2").is_some());
    assert!(import.for_member("c3").is_none());
    let info = &set.outcome.exports[&key()][&id("c1")];
    assert_eq!(info.consumers, [id("c1"), id("c2")]);

    // The annotation gone: every member, as without scopes.
    set.apply("c1", cart("c1", 80, T1, &[]));
    for m in ["c1", "c2", "c3", "c4"] {
        assert_eq!(set.sources(m), Some(vec!["c1".into()]), "{m}");
    }
    assert_eq!(set.export_status("c1").1, ["c1", "c2", "c3", "c4"]);
    assert!(set.outcome.imports[&key()].consumers.is_none());
}

#[test]
fn each_member_merges_only_the_exports_that_reach_it() {
    let mut set = Set::new(4, ScopeConfig::default());
    // c1 exports to everyone; c2, newer and with another port number, only to c3.
    set.apply("c1", cart("c1", 80, T1, &[]));
    set.apply("c2", cart("c2", 81, T2, &[(EXPORT_TO, "c3")]));

    assert_eq!(set.sources("c4"), Some(vec!["c1".into()]));
    assert_eq!(set.sources("c1"), Some(vec!["c1".into()]));
    assert_eq!(set.sources("c3"), Some(vec!["c1".into(), "c2".into()]));
    assert_eq!(set.sources("c2"), Some(vec!["c1".into(), "c2".into()]));
    let addresses = |m: &str| -> Vec<String> {
        let mut all: Vec<String> = set.slices(m).into_iter().flat_map(|(_, a)| a).collect();
        all.sort();
        all
    };
    assert_eq!(addresses("c4"), ["10.1.0.1", "10.1.0.2"]);
    // c2's endpoints serve port 81, which the winning (oldest) definition lacks.
    assert_eq!(addresses("c3"), addresses("c4"));

    // One ClusterSetIP for the name, whichever exports a member sees.
    let ips = |m: &str| set.import(m).unwrap()["spec"]["ips"].clone();
    assert_eq!(ips("c4"), json!(["241.0.0.1"]));
    assert_eq!(ips("c3"), ips("c4"));

    // The port conflict exists only where both exports meet: c2's export and c1's (which
    // reaches c2 and c3 too) report it; c4 sees one port.
    let conflict = |m: &str| set.export_status(m).0["Conflict"].clone();
    assert_eq!(conflict("c2").0, "True", "{:?}", conflict("c2"));
    assert_eq!(conflict("c1").0, "True", "{:?}", conflict("c1"));
    let ports = |m: &str| set.import(m).unwrap()["spec"]["ports"].clone();
    assert_eq!(
        ports("c4"),
        json!([{"name": "http", "protocol": "TCP", "port": 80}])
    );
    assert_eq!(
        ports("c3"),
        ports("c4"),
        "the oldest export's port wins where they meet"
    );

    // The whole-set import (shared DNS listener, gateways) still has both sources.
    let import = &set.outcome.imports[&key()];
    assert_eq!(import.clusters.len(), 2);
    let c4 = import.for_member("c4").unwrap();
    assert_eq!(c4.clusters, [ClusterId::new("c1").unwrap()]);
    assert_eq!(c4.ips, import.ips);
}

#[test]
fn moving_one_member_in_or_out_changes_only_that_members_objects() {
    let mut set = Set::new(4, ScopeConfig::default());
    set.apply("c1", cart("c1", 80, T1, &[]));
    set.apply("c2", cart("c2", 80, T2, &[(EXPORT_TO, "c3")]));
    let before = set.outcome.writes.clone();
    let ip = set.import("c4").unwrap()["spec"]["ips"].clone();

    set.apply("c2", cart("c2", 80, T2, &[(EXPORT_TO, "c3, c4")]));
    let after = set.outcome.writes.clone();
    let same = |m: &str| before[&MemberName::new(m)] == after[&MemberName::new(m)];
    assert!(
        same("c1"),
        "c1 exports to everyone and sees only its own export"
    );
    assert!(same("c3"), "c3 saw both exports before and after");
    assert!(!same("c4"), "c4 moved in");
    assert_eq!(set.sources("c4"), Some(vec!["c1".into(), "c2".into()]));
    assert_eq!(
        set.import("c4").unwrap()["spec"]["ips"],
        ip,
        "the address stays"
    );
    // c2's own objects: only its ServiceExport status changed (it reports c4 now).
    let changed: Vec<&WriteKey> = before[&MemberName::new("c2")]
        .iter()
        .filter(|(k, v)| after[&MemberName::new("c2")].get(k) != Some(v))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        changed,
        [&WriteKey::new(WriteKind::ServiceExportStatus, NS, "cart")]
    );
    assert_eq!(set.export_status("c2").1, ["c2", "c3", "c4"]);

    // And out again: c4 is back to what it held, nothing else moves.
    set.apply("c2", cart("c2", 80, T2, &[(EXPORT_TO, "c3")]));
    for m in ["c1", "c3", "c4"] {
        assert!(
            before[&MemberName::new(m)] == set.outcome.writes[&MemberName::new(m)],
            "{m}"
        );
    }
}

#[test]
fn bad_scopes_are_reported_on_valid_naming_the_value_and_the_rule() {
    let mut set = Set::new(2, ScopeConfig::default());
    let cases: [BadCase<'_>; 4] = [
        (&[(EXPORT_TO, "c2,nosuch")], "UnknownMember", "\"nosuch\""),
        (
            &[(EXPORT_TO_SELECTOR, "team=billing")],
            "NoMatchingMember",
            "selects no admitted member",
        ),
        (
            &[(EXPORT_TO, "c2"), (EXPORT_TO_SELECTOR, "team=billing")],
            "InvalidExportScope",
            "use one",
        ),
        (
            &[(EXPORT_TO_SELECTOR, "team in billing")],
            "InvalidExportScope",
            "parentheses",
        ),
    ];
    for (annotations, reason, needle) in cases {
        set.apply("c1", cart("c1", 80, T1, annotations));
        let (conditions, to) = set.export_status("c1");
        let valid = &conditions["Valid"];
        assert_eq!((valid.0.as_str(), valid.1.as_str()), ("False", reason));
        assert!(valid.2.contains(needle), "{annotations:?}: {}", valid.2);
        assert!(
            valid.2.contains("ServiceExport annotation"),
            "names the object: {}",
            valid.2
        );
        assert_eq!(conditions["Ready"].0, "False");
        assert!(to.is_empty());
        assert_eq!(set.import("c1"), None, "an invalid export is not imported");
        assert_eq!(set.import("c2"), None);
    }
}

#[test]
fn selectors_service_and_namespace_annotations_and_the_config_default_scope_auto_exports() {
    let scope = ScopeConfig {
        namespaces: [(NS.to_string(), ExportTo::Members(vec!["c2".into()]))].into(),
        member_labels: [
            ("c3".to_string(), labels(&[("team", "billing")])),
            ("c4".to_string(), labels(&[("team", "web")])),
        ]
        .into(),
    };
    let mut set = Set::new(4, scope);
    // Auto-export by the Service's label; the configured default sends it to c2.
    let auto = |annotations: &[(&str, &str)]| {
        let mut b = service(NS, "cart")
            .cluster_ips(&["10.1.255.1"])
            .port("http", 80)
            .label("bowline.io/export", "true");
        for (k, v) in annotations {
            b = b.annotation(k, v);
        }
        vec![
            b.build(),
            slice(NS, "cart-c1", "cart")
                .port("http", 8080)
                .endpoint(ep("10.1.0.1").pod("a"))
                .build(),
        ]
    };
    set.apply("c1", auto(&[]));
    let reached = |set: &Set| -> Vec<&str> {
        ["c1", "c2", "c3", "c4"]
            .into_iter()
            .filter(|m| set.import(m).is_some())
            .collect()
    };
    assert_eq!(reached(&set), ["c1", "c2"], "export.namespaces");
    let (conditions, _) = set.export_status("c1");
    assert!(
        conditions["Valid"]
            .2
            .contains("bowline.yaml export.namespaces")
    );

    // The Namespace's annotation beats the configuration.
    let mut ns = Namespace {
        meta: namespace(NS, &[]).meta().clone(),
    };
    ns.meta.annotations = labels(&[(EXPORT_TO_SELECTOR, "team in (billing, web)")]);
    set.apply("c1", vec![Object::Namespace(ns)]);
    assert_eq!(reached(&set), ["c1", "c3", "c4"], "Namespace annotation");

    // The Service's beats the Namespace's.
    set.apply("c1", auto(&[(EXPORT_TO_SELECTOR, "team=web")]));
    assert_eq!(reached(&set), ["c1", "c4"], "Service annotation");
    let info = &set.outcome.exports[&key()][&ClusterId::new("c1").unwrap()];
    assert_eq!(
        info.scope.as_ref().map(|s| s.to_string()).as_deref(),
        Some(format!("Service annotation {EXPORT_TO_SELECTOR}=\"team=web\"").as_str())
    );

    // A member leaving the set it was named in: the export becomes invalid, not wider.
    set.apply("c1", auto(&[(EXPORT_TO, "c4")]));
    assert_eq!(reached(&set), ["c1", "c4"]);
    set.registry.apply(deleted(
        "c4",
        vec![key_of(
            ObjectKind::ClusterProperty,
            "cluster.clusterset.k8s.io",
        )],
    ));
    set.reconcile();
    assert_eq!(reached(&set), Vec::<&str>::new());
    assert_eq!(set.export_status("c1").0["Valid"].1, "UnknownMember");
}

fn key_of(kind: ObjectKind, name: &str) -> bowline_model::ObjectKey {
    bowline_test_support::key(kind, "", name)
}
