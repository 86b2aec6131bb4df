//! Endpoint derivation through the registry: dual-stack merging, networks, localities,
//! gateways, and which subscribers wake.

use std::{net::IpAddr, sync::Arc};

use bowline_model::{IpFamily, Network, ObjectKind, RejectReason, ServiceKey, labels};
use bowline_registry::{MemberConfig, Registry, ServiceView};
use bowline_test_support::*;

fn registry(members: &[(&str, &str)]) -> Registry {
    Registry::new(
        "demo",
        members.iter().map(|(name, network)| MemberConfig {
            name: member(name),
            id: Some(format!("{name}-id")),
            network: Network::new(*network),
        }),
    )
}

fn view(reg: &Registry, ns: &str, name: &str) -> Arc<ServiceView> {
    reg.service(&ServiceKey::new(ns, name))
        .unwrap_or_else(|| panic!("no view of {ns}/{name}"))
}

fn addrs(list: &[&str]) -> std::sync::Arc<[IpAddr]> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn dual_stack_pod_is_one_endpoint_with_primary_family_first() {
    for (families, want) in [
        (vec!["10.0.0.1", "fd00::1"], vec!["10.1.0.5", "fd00:1::5"]),
        (vec!["fd00::1", "10.0.0.1"], vec!["fd00:1::5", "10.1.0.5"]),
    ] {
        let mut reg = registry(&[("west", "net-west")]);
        reg.apply(reset(
            "west",
            vec![
                service("demo", "echo")
                    .cluster_ips(&families)
                    .port("http", 80)
                    .build(),
                slice("demo", "echo-v4", "echo")
                    .port("http", 8080)
                    .endpoint(ep("10.1.0.5").pod("echo-0"))
                    .build(),
                slice("demo", "echo-v6", "echo")
                    .port("http", 8080)
                    .endpoint(ep("fd00:1::5").pod("echo-0"))
                    .build(),
                slice("demo", "echo-v4b", "echo")
                    .port("http", 8080)
                    .endpoint(ep("10.1.0.6"))
                    .build(),
            ],
        ));
        let view = view(&reg, "demo", "echo");
        let eps: Vec<_> = view.endpoints().collect();
        assert_eq!(
            eps.len(),
            2,
            "the dual-stack pod is one endpoint, the address-only one another"
        );
        let dual = eps
            .iter()
            .find(|e| e.addresses.len() == 2)
            .expect("a dual-stack endpoint");
        assert_eq!(dual.addresses, addrs(&want));
        assert_eq!(dual.workload.as_ref().map(|w| &*w.name), Some("echo-0"));
        assert_eq!(dual.cluster.as_str(), "west-id");
    }
}

#[test]
fn dual_stack_merge_is_ready_only_when_every_slice_says_so() {
    let mut reg = registry(&[("west", "")]);
    reg.apply(reset(
        "west",
        vec![
            slice("demo", "a-v4", "a")
                .endpoint(ep("10.1.0.5").pod("a-0"))
                .build(),
            slice("demo", "a-v6", "a")
                .endpoint(ep("fd00::5").pod("a-0").not_ready())
                .build(),
        ],
    ));
    let view = view(&reg, "demo", "a");
    let ep = view.endpoints().next().unwrap();
    assert_eq!(ep.addresses.len(), 2);
    assert!(!ep.ready);
}

#[test]
fn network_follows_pod_then_namespace_then_member_default_and_late_arrivals() {
    let mut reg = registry(&[("east", "net-east")]);
    reg.apply(reset(
        "east",
        vec![
            namespace("labelled", &[(labels::NETWORK, "net-ns")]),
            slice("plain", "s", "svc")
                .endpoint(ep("10.0.0.1").pod("p1"))
                .build(),
            slice("labelled", "s", "svc")
                .endpoint(ep("10.0.0.2").pod("p2"))
                .endpoint(ep("10.0.0.3").pod("p3"))
                .build(),
            pod("labelled", "p3", &[(labels::NETWORK, "net-pod")]),
        ],
    ));
    let network_of = |reg: &Registry, ns: &str, addr: &str| {
        let view = view(reg, ns, "svc");
        let ep = view
            .endpoints()
            .find(|e| e.addresses[0].to_string() == addr)
            .unwrap();
        ep.network.as_str().to_string()
    };
    assert_eq!(
        network_of(&reg, "plain", "10.0.0.1"),
        "net-east",
        "member default"
    );
    assert_eq!(
        network_of(&reg, "labelled", "10.0.0.2"),
        "net-ns",
        "namespace label"
    );
    assert_eq!(
        network_of(&reg, "labelled", "10.0.0.3"),
        "net-pod",
        "pod label"
    );

    // A pod that arrives after its slice, and a namespace label that changes, both re-derive.
    let changes = reg.apply(applied(
        "east",
        vec![pod("plain", "p1", &[(labels::NETWORK, "net-late")])],
    ));
    assert_eq!(
        changes.services.into_iter().collect::<Vec<_>>(),
        vec![ServiceKey::new("plain", "svc")]
    );
    assert_eq!(network_of(&reg, "plain", "10.0.0.1"), "net-late");
    reg.apply(applied(
        "east",
        vec![namespace("labelled", &[(labels::NETWORK, "net-ns2")])],
    ));
    assert_eq!(network_of(&reg, "labelled", "10.0.0.2"), "net-ns2");
    assert_eq!(network_of(&reg, "labelled", "10.0.0.3"), "net-pod");
}

#[test]
fn locality_from_node_labels_or_slice_zone() {
    let mut reg = registry(&[("east", "")]);
    reg.apply(reset(
        "east",
        vec![
            slice("demo", "s", "svc")
                .endpoint(ep("10.0.0.1").node("n1").zone("z-slice"))
                .endpoint(ep("10.0.0.2").zone("z-only"))
                .build(),
        ],
    ));
    let localities = |reg: &Registry| -> Vec<String> {
        view(reg, "demo", "svc")
            .endpoints()
            .map(|e| e.locality.to_string())
            .collect()
    };
    assert_eq!(localities(&reg), vec!["/z-slice/", "/z-only/"]);
    reg.apply(applied(
        "east",
        vec![node(
            "n1",
            &[
                (labels::REGION, "eu"),
                (labels::ZONE, "eu-1a"),
                (labels::SUBZONE, "r1"),
            ],
        )],
    ));
    assert_eq!(
        localities(&reg),
        vec!["eu/eu-1a/r1", "/z-only/"],
        "a node arriving later re-derives"
    );
}

#[test]
fn one_endpoint_change_recomputes_one_contribution_and_wakes_one_subscriber() {
    let mut reg = registry(&[("east", ""), ("west", "")]);
    for m in ["east", "west"] {
        reg.apply(reset(
            m,
            vec![
                slice("demo", "a", "a").endpoint(ep("10.0.0.1")).build(),
                slice("demo", "b", "b").endpoint(ep("10.0.0.2")).build(),
            ],
        ));
    }
    let mut rx_a = reg.subscribe(&ServiceKey::new("demo", "a"));
    let mut rx_b = reg.subscribe(&ServiceKey::new("demo", "b"));
    rx_a.mark_unchanged();
    rx_b.mark_unchanged();
    let changes = reg.apply(applied(
        "east",
        vec![slice("demo", "a", "a").endpoint(ep("10.0.0.9")).build()],
    ));
    assert_eq!(changes.recomputed, 1);
    assert_eq!(changes.services.len(), 1);
    assert!(rx_a.has_changed().unwrap());
    assert!(!rx_b.has_changed().unwrap());
    // Re-applying the same object changes nothing and wakes nobody.
    rx_a.mark_unchanged();
    let changes = reg.apply(applied(
        "east",
        vec![slice("demo", "a", "a").endpoint(ep("10.0.0.9")).build()],
    ));
    assert!(changes.services.is_empty());
    assert!(!rx_a.has_changed().unwrap());
}

#[test]
fn reset_deletes_what_is_no_longer_listed() {
    let mut reg = registry(&[("east", "")]);
    reg.apply(reset(
        "east",
        vec![service("demo", "a").build(), service("demo", "b").build()],
    ));
    assert_eq!(reg.services().len(), 2);
    let changes = reg.apply(reset("east", vec![service("demo", "a").build()]));
    assert_eq!(
        changes.services.into_iter().collect::<Vec<_>>(),
        vec![ServiceKey::new("demo", "b")]
    );
    assert!(reg.service(&ServiceKey::new("demo", "b")).is_none());
}

#[test]
fn slices_moving_between_services_and_deletes() {
    let mut reg = registry(&[("east", "")]);
    reg.apply(reset(
        "east",
        vec![slice("demo", "s", "a").endpoint(ep("10.0.0.1")).build()],
    ));
    reg.apply(applied(
        "east",
        vec![slice("demo", "s", "b").endpoint(ep("10.0.0.1")).build()],
    ));
    assert!(reg.service(&ServiceKey::new("demo", "a")).is_none());
    assert_eq!(view(&reg, "demo", "b").endpoints().count(), 1);
    reg.apply(deleted(
        "east",
        vec![key(ObjectKind::EndpointSlice, "demo", "s")],
    ));
    assert!(reg.services().is_empty());
}

#[test]
fn gateways_by_network_with_port_rules() {
    let mut reg = registry(&[("east", "net-east"), ("west", "net-west")]);
    reg.apply(reset(
        "east",
        vec![
            service("istio-system", "eastwest")
                .label(labels::NETWORK, "net-east")
                .port("tls", 15443)
                .external("192.0.2.10")
                .build(),
        ],
    ));
    reg.apply(reset(
        "west",
        vec![
            service("istio-system", "eastwest")
                .label(labels::NETWORK, "net-west")
                .label(labels::GATEWAY_PORT, "16443")
                .port("tls", 16443)
                .external("198.51.100.10")
                .external("2001:db8::10")
                .build(),
            service("istio-system", "broken")
                .label(labels::NETWORK, "net-west")
                .port("http", 80)
                .external("198.51.100.11")
                .build(),
        ],
    ));
    let gateways = reg.gateways();
    let summary: Vec<(String, String, String, u16)> = gateways
        .values()
        .flatten()
        .map(|g| {
            (
                g.network.to_string(),
                g.cluster.to_string(),
                g.address.to_string(),
                g.port,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "net-east".into(),
                "east-id".into(),
                "192.0.2.10".into(),
                15443
            ),
            (
                "net-west".into(),
                "west-id".into(),
                "198.51.100.10".into(),
                16443
            ),
            (
                "net-west".into(),
                "west-id".into(),
                "2001:db8::10".into(),
                16443
            ),
        ]
    );
    let rejected: Vec<_> = reg
        .rejections()
        .into_iter()
        .filter(|r| r.reason == RejectReason::InvalidGateway)
        .collect();
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0]
            .message
            .contains("does not expose its mTLS port 15443"),
        "{}",
        rejected[0].message
    );

    // Removing the label removes the gateway.
    let changes = reg.apply(applied(
        "east",
        vec![
            service("istio-system", "eastwest")
                .port("tls", 15443)
                .build(),
        ],
    ));
    assert!(changes.gateways);
    assert!(!reg.gateways().contains_key(&Network::new("net-east")));
}

#[test]
fn headless_families_are_kept() {
    let mut reg = registry(&[("east", "")]);
    reg.apply(reset(
        "east",
        vec![
            service("demo", "db")
                .headless(&[IpFamily::IPv6])
                .port("pg", 5432)
                .build(),
        ],
    ));
    let view = view(&reg, "demo", "db");
    let svc = view
        .members
        .values()
        .next()
        .unwrap()
        .service
        .clone()
        .unwrap();
    assert_eq!(svc.ip_families, vec![IpFamily::IPv6]);
}

#[test]
fn an_unreachable_member_is_stale_then_withdrawn_then_restored_by_its_next_listing() {
    use bowline_model::{EventBody, SourceEvent};
    let objects = || {
        vec![
            service("demo", "echo")
                .cluster_ips(&["10.0.0.1"])
                .port("http", 80)
                .build(),
            slice("demo", "echo-1", "echo")
                .port("http", 8080)
                .endpoint(ep("10.1.0.5"))
                .build(),
        ]
    };
    let event = |body| SourceEvent {
        member: member("west"),
        body,
    };
    let mut reg = registry(&[("west", "")]);
    reg.apply(reset("west", objects()));
    reg.apply(event(EventBody::SourceError("connection refused".into())));
    let status = &reg.members()[0];
    assert!(status.stale && !status.withdrawn);
    assert_eq!(
        view(&reg, "demo", "echo").endpoints().count(),
        1,
        "a stale member's last known endpoints keep being served"
    );

    let changes = reg.apply(event(EventBody::Withdraw));
    assert!(changes.services.contains(&ServiceKey::new("demo", "echo")));
    assert!(reg.members()[0].withdrawn);
    let view_now = view(&reg, "demo", "echo");
    assert_eq!(view_now.endpoints().count(), 0, "endpoints withdrawn");
    assert!(
        view_now.members.values().next().unwrap().service.is_some(),
        "the service itself stays known"
    );

    reg.apply(reset("west", objects()));
    let status = &reg.members()[0];
    assert!(!status.stale && !status.withdrawn);
    assert_eq!(view(&reg, "demo", "echo").endpoints().count(), 1);
}

#[test]
fn missing_kinds_are_reported_and_replaced_as_a_set() {
    use bowline_model::{EventBody, SourceEvent};
    let mut reg = registry(&[("west", "")]);
    let missing = std::collections::BTreeMap::from([(
        ObjectKind::ServiceExport,
        "CRD serviceexports.multicluster.x-k8s.io is not installed".to_string(),
    )]);
    let changes = reg.apply(SourceEvent {
        member: member("west"),
        body: EventBody::Missing(missing.clone()),
    });
    assert!(changes.members);
    assert_eq!(reg.members()[0].missing, missing);
    reg.apply(SourceEvent {
        member: member("west"),
        body: EventBody::Missing(Default::default()),
    });
    assert!(reg.members()[0].missing.is_empty());
}

#[test]
fn a_service_selects_workload_entries_in_its_namespace_as_endpoints() {
    let mut reg = registry(&[("east", "net-east")]);
    reg.apply(reset(
        "east",
        vec![
            service("demo", "legacy")
                .cluster_ips(&["10.0.0.30"])
                .selector(&[("app", "legacy")])
                .port_named("http", 80, "web")
                .port("metrics", 9090)
                .build(),
            // Named port resolved through the entry's ports; network and locality its own.
            workload_entry("demo", "vm-1", "192.0.2.50")
                .label("app", "legacy")
                .port("web", 8080)
                .network("net-vm")
                .locality("us-east/us-east-1a")
                .weight(5)
                .build(),
            // IPv6, no `web` port: only the numeric target port is served.
            workload_entry("demo", "vm-2", "2001:db8::7")
                .label("app", "legacy")
                .build(),
            // Not selected: other labels, another namespace, a host name.
            workload_entry("demo", "other", "192.0.2.60")
                .label("app", "other")
                .build(),
            workload_entry("prod", "vm-3", "192.0.2.70")
                .label("app", "legacy")
                .build(),
            workload_entry("demo", "named", "vm.example.com")
                .label("app", "legacy")
                .build(),
        ],
    ));
    let legacy = view(&reg, "demo", "legacy");
    let eps: Vec<_> = legacy.endpoints().collect();
    assert_eq!(eps.len(), 2, "{eps:?}");
    let vm1 = eps
        .iter()
        .find(|e| e.addresses == addrs(&["192.0.2.50"]))
        .unwrap();
    assert_eq!(
        vm1.ports
            .iter()
            .map(|p| (p.name.as_str(), p.port))
            .collect::<Vec<_>>(),
        [("http", 8080), ("metrics", 9090)]
    );
    assert_eq!(vm1.network.as_str(), "net-vm");
    assert_eq!(vm1.locality.to_string(), "us-east/us-east-1a/");
    let workload = vm1.workload.as_ref().unwrap();
    assert_eq!(
        (&*workload.kind, &*workload.name),
        ("WorkloadEntry", "vm-1")
    );
    let vm2 = eps
        .iter()
        .find(|e| e.addresses == addrs(&["2001:db8::7"]))
        .unwrap();
    assert_eq!(
        vm2.ports
            .iter()
            .map(|p| (p.name.as_str(), p.port))
            .collect::<Vec<_>>(),
        [("metrics", 9090)],
        "a named target port the entry lacks is left out"
    );
    assert_eq!(
        vm2.network.as_str(),
        "net-east",
        "the member's network by default"
    );

    // An entry added, relabelled or deleted later changes the view.
    reg.apply(applied(
        "east",
        vec![
            workload_entry("demo", "other", "192.0.2.60")
                .label("app", "legacy")
                .build(),
        ],
    ));
    assert_eq!(view(&reg, "demo", "legacy").endpoints().count(), 3);
    reg.apply(deleted(
        "east",
        vec![key(ObjectKind::WorkloadEntry, "demo", "vm-1")],
    ));
    assert_eq!(view(&reg, "demo", "legacy").endpoints().count(), 2);
}

#[test]
fn a_health_checked_workload_entry_is_a_ready_endpoint_only_while_healthy() {
    let entry = |healthy| {
        workload_entry("demo", "vm-1", "192.0.2.50")
            .label("app", "legacy")
            .health_checked(healthy)
            .build()
    };
    let svc = || {
        service("demo", "legacy")
            .cluster_ips(&["10.0.0.30"])
            .selector(&[("app", "legacy")])
            .port("http", 80)
            .build()
    };
    // Not ready, as a Pod failing its readiness probe: served nowhere, but there (MCS exports
    // it as not ready, and `explain` names the failing health check).
    let ready = |reg: &bowline_registry::Registry| -> Vec<bool> {
        view(reg, "demo", "legacy")
            .endpoints()
            .map(|e| e.ready)
            .collect()
    };
    let mut reg = registry(&[("east", "")]);
    reg.apply(reset("east", vec![svc(), entry(None)]));
    assert_eq!(ready(&reg), [false], "new: not yet healthy");
    reg.apply(applied("east", vec![entry(Some(true))]));
    assert_eq!(ready(&reg), [true]);
    reg.apply(applied("east", vec![entry(Some(false))]));
    assert_eq!(ready(&reg), [false]);
}
