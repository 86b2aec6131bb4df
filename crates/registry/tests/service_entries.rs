//! ServiceEntries through the registry: the services their hosts name, the Service one stands
//! in for, the endpoints of the WorkloadEntries they select and of their inline endpoints, the
//! hosts refused, and what a change recomputes.

use std::{net::IpAddr, sync::Arc};

use bowline_model::{
    Endpoint, Network, ObjectKind, RejectReason, ServiceKey, ServiceType, TargetPort,
};
use bowline_registry::{MemberConfig, Registry, ServiceView};
use bowline_test_support::*;

fn registry() -> Registry {
    Registry::new(
        "demo",
        [MemberConfig {
            name: member("east"),
            id: Some("east-id".into()),
            network: Network::new("net-east"),
        }],
    )
}

fn view(reg: &Registry, name: &str) -> Arc<ServiceView> {
    reg.service(&ServiceKey::new("demo", name))
        .unwrap_or_else(|| panic!("no view of demo/{name}"))
}

/// Each endpoint as (address, workload kind/name, [(port name, port)], network, account).
type Row = (String, String, Vec<(String, u16)>, String, Option<String>);

fn rows(view: &ServiceView) -> Vec<Row> {
    let row = |e: &Endpoint| {
        let w = e
            .workload
            .as_ref()
            .expect("VM endpoints name their workload");
        (
            e.addresses
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(","),
            format!("{}/{}", w.kind, w.name),
            e.ports.iter().map(|p| (p.name.clone(), p.port)).collect(),
            e.network.to_string(),
            e.service_account.as_deref().map(str::to_string),
        )
    };
    let mut out: Vec<Row> = view.endpoints().map(row).collect();
    out.sort();
    out
}

fn row(addr: &str, workload: &str, ports: &[(&str, u16)], network: &str, sa: Option<&str>) -> Row {
    (
        addr.into(),
        workload.into(),
        ports.iter().map(|(n, p)| (n.to_string(), *p)).collect(),
        network.into(),
        sa.map(str::to_string),
    )
}

const HOST: &str = "legacy.demo.svc.cluster.local";

#[test]
fn a_service_entry_selects_workload_entries_and_has_inline_endpoints_one_port_each() {
    let mut reg = registry();
    reg.apply(reset(
        "east",
        vec![
            service_entry("demo", "legacy")
                .host(HOST)
                .address("10.0.0.40")
                .port("http", 80)
                .port_full("grpc", 9000, "GRPC", 9090)
                .port_full("metrics", 9100, "TCP", 0)
                .selector(&[("app", "legacy")])
                .endpoint(
                    inline_endpoint("192.0.2.80")
                        .port("http", 8081)
                        .service_account("inline"),
                )
                .endpoint(inline_endpoint("db.example.com"))
                .endpoint(inline_endpoint("unix:///var/run/legacy.sock"))
                .endpoint(inline_endpoint("192.0.2.81").network("net-vm"))
                .build(),
            // http through the entry's ports, grpc through targetPort, metrics by number.
            workload_entry("demo", "vm-1", "192.0.2.50")
                .label("app", "legacy")
                .port("http", 8080)
                .network("net-vm")
                .service_account("legacy")
                .build(),
            // IPv6, its own grpc port.
            workload_entry("demo", "vm-2", "2001:db8::7")
                .label("app", "legacy")
                .port("grpc", 7070)
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
    let legacy = view(&reg, "legacy");
    let all = [("http", 80), ("grpc", 9090), ("metrics", 9100)];
    assert_eq!(
        rows(&legacy),
        [
            row(
                "192.0.2.50",
                "WorkloadEntry/vm-1",
                &[("http", 8080), ("grpc", 9090), ("metrics", 9100)],
                "net-vm",
                Some("legacy")
            ),
            row(
                "192.0.2.80",
                "ServiceEntry/legacy-0",
                &[("http", 8081), ("grpc", 9090), ("metrics", 9100)],
                "net-east",
                Some("inline")
            ),
            row("192.0.2.81", "ServiceEntry/legacy-3", &all, "net-vm", None),
            row(
                "2001:db8::7",
                "WorkloadEntry/vm-2",
                &[("http", 80), ("grpc", 7070), ("metrics", 9100)],
                "net-east",
                None
            ),
        ]
    );
    let east = &legacy.members[&bowline_model::ClusterId::new("east-id").unwrap()];
    assert_eq!(east.service_entries, ["legacy".into()]);
    // The Service the ServiceEntry stands in for.
    let svc = east.service.as_deref().expect("a stand-in Service");
    assert_eq!(svc.service_type, ServiceType::ClusterIP);
    assert_eq!(svc.cluster_ips, ["10.0.0.40".parse::<IpAddr>().unwrap()]);
    assert_eq!(
        svc.ports
            .iter()
            .map(|p| (
                p.name.as_str(),
                p.port,
                p.target_port.clone(),
                p.app_protocol.as_deref()
            ))
            .collect::<Vec<_>>(),
        [
            ("http", 80, None, Some("http")),
            ("grpc", 9000, Some(TargetPort::Number(9090)), Some("grpc")),
            ("metrics", 9100, None, None),
        ]
    );
    assert!(reg.rejections().is_empty(), "{:?}", reg.rejections());
    // As `/debug/services/demo/legacy` shows it.
    let json = serde_json::to_value(&*legacy).unwrap();
    let east = &json["members"]["east-id"];
    assert_eq!(east["serviceEntries"], serde_json::json!(["legacy"]));
    assert_eq!(east["endpoints"][0]["serviceAccount"], "legacy");
    assert_eq!(east["endpoints"][0]["workload"]["name"], "vm-1");
}

#[test]
fn without_addresses_the_stand_in_is_headless() {
    let mut reg = registry();
    reg.apply(reset(
        "east",
        vec![
            service_entry("demo", "legacy")
                .host(HOST)
                .port("http", 80)
                .endpoint(inline_endpoint("192.0.2.80"))
                .build(),
        ],
    ));
    let legacy = view(&reg, "legacy");
    let svc = legacy.members.values().next().unwrap().service.clone();
    assert_eq!(svc.unwrap().service_type, ServiceType::Headless);
}

#[test]
fn with_a_service_of_the_same_name_the_service_wins_and_entries_add_endpoints() {
    let mut reg = registry();
    reg.apply(reset(
        "east",
        vec![
            service("demo", "legacy")
                .cluster_ips(&["10.0.0.30"])
                .selector(&[("app", "legacy")])
                .port_named("http", 80, "web")
                .build(),
            service_entry("demo", "legacy-se")
                .host(HOST)
                .address("10.9.9.9")
                .port("http", 8000)
                .selector(&[("tier", "vm")])
                .build(),
            // Selected by both: one endpoint, as the Service has it.
            workload_entry("demo", "vm-1", "192.0.2.50")
                .label("app", "legacy")
                .label("tier", "vm")
                .port("web", 8080)
                .service_account("legacy")
                .build(),
            // Selected by the ServiceEntry only.
            workload_entry("demo", "vm-2", "192.0.2.51")
                .label("tier", "vm")
                .build(),
        ],
    ));
    let legacy = view(&reg, "legacy");
    assert_eq!(
        rows(&legacy),
        [
            row(
                "192.0.2.50",
                "WorkloadEntry/vm-1",
                &[("http", 8080)],
                "net-east",
                Some("legacy")
            ),
            row(
                "192.0.2.51",
                "WorkloadEntry/vm-2",
                &[("http", 8000)],
                "net-east",
                None
            ),
        ]
    );
    let east = legacy.members.values().next().unwrap();
    let svc = east.service.as_deref().unwrap();
    assert_eq!(svc.cluster_ips, ["10.0.0.30".parse::<IpAddr>().unwrap()]);
    assert_eq!(svc.ports[0].port, 80, "the Service's ports win");

    // Without the Service, the ServiceEntry stands in for it.
    reg.apply(deleted(
        "east",
        vec![key(ObjectKind::Service, "demo", "legacy")],
    ));
    let legacy = view(&reg, "legacy");
    let svc = legacy.members.values().next().unwrap().service.clone();
    assert_eq!(
        svc.unwrap().cluster_ips,
        ["10.9.9.9".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(legacy.endpoints().count(), 2);
}

#[test]
fn the_oldest_of_two_entries_stands_in_and_both_add_endpoints() {
    let newer = || {
        service_entry("demo", "a-newer")
            .host(HOST)
            .address("10.0.0.2")
            .port("http", 80)
            .created("2026-02-01T00:00:00Z")
            .endpoint(inline_endpoint("192.0.2.2"))
            .build()
    };
    let mut reg = registry();
    reg.apply(reset(
        "east",
        vec![
            newer(),
            service_entry("demo", "b-older")
                .host(HOST)
                .address("10.0.0.1")
                .port("http", 80)
                .created("2026-01-01T00:00:00Z")
                .endpoint(inline_endpoint("192.0.2.1"))
                .build(),
        ],
    ));
    let east = view(&reg, "legacy")
        .members
        .values()
        .next()
        .unwrap()
        .clone();
    assert_eq!(east.service_entries, ["b-older".into(), "a-newer".into()]);
    let ips = &east.service.as_deref().unwrap().cluster_ips;
    assert_eq!(ips, &["10.0.0.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(east.endpoints.len(), 2);
    reg.apply(deleted(
        "east",
        vec![key(ObjectKind::ServiceEntry, "demo", "b-older")],
    ));
    let east = view(&reg, "legacy")
        .members
        .values()
        .next()
        .unwrap()
        .clone();
    let ips = &east.service.as_deref().unwrap().cluster_ips;
    assert_eq!(ips, &["10.0.0.2".parse::<IpAddr>().unwrap()]);
    assert_eq!(east.endpoints.len(), 1);
}

#[test]
fn hosts_other_than_a_service_of_its_namespace_or_a_dns_name_are_refused_by_name() {
    let mut reg = registry();
    reg.apply(reset(
        "east",
        vec![
            service_entry("demo", "mixed")
                .host("vm.example.com")
                .host("legacy.prod.svc.cluster.local")
                .host(HOST)
                .host("*.demo.svc.cluster.local")
                .host("legacy.demo.svc.clusterset.local")
                .host("*.example.com")
                .port("http", 80)
                .endpoint(inline_endpoint("192.0.2.80"))
                .build(),
        ],
    ));
    assert_eq!(
        reg.services()
            .iter()
            .map(|v| v.key.to_string())
            .collect::<Vec<_>>(),
        ["demo/legacy"],
        "the service host is served as that service"
    );
    assert_eq!(
        reg.host_services()
            .iter()
            .map(|h| h.host.as_str())
            .collect::<Vec<_>>(),
        ["vm.example.com"],
        "a DNS name outside the Kubernetes zones is served under its own name"
    );
    let rejected = reg.rejections();
    let hosts = [
        "legacy.prod.svc.cluster.local",
        "*.demo.svc.cluster.local",
        "legacy.demo.svc.clusterset.local",
        "*.example.com",
    ];
    assert_eq!(rejected.len(), hosts.len(), "{rejected:?}");
    for (r, host) in rejected.iter().zip(hosts) {
        assert_eq!(r.reason, RejectReason::UnsupportedHost);
        assert_eq!(
            r.object,
            Some(key(ObjectKind::ServiceEntry, "demo", "mixed"))
        );
        assert!(r.message.contains(&format!("{host:?}")), "{}", r.message);
    }
    assert!(rejected[0].message.contains("its own namespace \"demo\""));
    assert_eq!(reg.members()[0].rejected, hosts.len());

    // Fixing the entry clears the rejections.
    reg.apply(applied(
        "east",
        vec![
            service_entry("demo", "mixed")
                .host(HOST)
                .port("http", 80)
                .build(),
        ],
    ));
    assert!(reg.rejections().is_empty());
    assert!(reg.host_services().is_empty(), "the host is gone with it");
}

#[test]
fn a_dns_name_host_is_a_service_of_its_member_with_the_entries_endpoints() {
    let mut reg = registry();
    reg.apply(reset(
        "east",
        vec![
            workload_entry("demo", "vm-1", "192.0.2.50")
                .label("app", "billing")
                .port("api", 9443)
                .build(),
            workload_entry("demo", "vm-2", "2001:db8::51")
                .label("app", "billing")
                .build(),
            service_entry("demo", "billing")
                .host("billing.example.com")
                .port_full("api", 443, "HTTPS", 8443)
                .selector(&[("app", "billing")])
                .endpoint(inline_endpoint("192.0.2.52"))
                .build(),
        ],
    ));
    let hosts = reg.host_services();
    let [billing] = hosts.as_slice() else {
        panic!("one host service: {hosts:?}");
    };
    assert_eq!(billing.host, "billing.example.com");
    assert_eq!(billing.cluster.as_str(), "east-id");
    assert_eq!(billing.service.ports[0].port, 443);
    let mut endpoints: Vec<(String, u16)> = billing
        .endpoints
        .iter()
        .map(|e| (e.addresses[0].to_string(), e.ports[0].port))
        .collect();
    endpoints.sort();
    assert_eq!(
        endpoints,
        [
            ("192.0.2.50".to_string(), 9443),
            ("192.0.2.52".to_string(), 8443),
            ("2001:db8::51".to_string(), 8443),
        ],
        "the entry's named port, else targetPort"
    );
    assert!(reg.services().is_empty(), "not a Kubernetes service");

    // A relabelled WorkloadEntry leaves it; deleting the ServiceEntry removes the host.
    reg.apply(applied(
        "east",
        vec![
            workload_entry("demo", "vm-1", "192.0.2.50")
                .label("app", "other")
                .build(),
        ],
    ));
    assert_eq!(reg.host_services()[0].endpoints.len(), 2);
    reg.apply(deleted(
        "east",
        vec![key(ObjectKind::ServiceEntry, "demo", "billing")],
    ));
    assert!(reg.host_services().is_empty());
}

#[test]
fn entry_and_workload_changes_recompute_the_services_they_name() {
    let entry = |host: &str, app: &str| {
        service_entry("demo", "legacy")
            .host(host)
            .port("http", 80)
            .selector(&[("app", app)])
            .build()
    };
    let vm = |app: &str| {
        workload_entry("demo", "vm-1", "192.0.2.50")
            .label("app", app)
            .build()
    };
    let mut reg = registry();
    // The entry arrives before the workload it selects.
    reg.apply(reset(
        "east",
        vec![entry(HOST, "legacy"), service("demo", "unrelated").build()],
    ));
    assert_eq!(view(&reg, "legacy").endpoints().count(), 0);
    let changes = reg.apply(applied("east", vec![vm("legacy")]));
    assert_eq!(view(&reg, "legacy").endpoints().count(), 1);
    assert_eq!(
        changes
            .services
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["demo/legacy"]
    );
    // Relabelled away and back.
    reg.apply(applied("east", vec![vm("other")]));
    assert_eq!(view(&reg, "legacy").endpoints().count(), 0);
    reg.apply(applied("east", vec![vm("legacy")]));
    assert_eq!(view(&reg, "legacy").endpoints().count(), 1);
    // The entry's selector changes.
    reg.apply(applied("east", vec![entry(HOST, "other")]));
    assert_eq!(view(&reg, "legacy").endpoints().count(), 0);
    // The entry moves to another host: the old service goes, the new one comes.
    let changes = reg.apply(applied(
        "east",
        vec![entry("moved.demo.svc.cluster.local", "legacy")],
    ));
    assert!(reg.service(&ServiceKey::new("demo", "legacy")).is_none());
    assert_eq!(view(&reg, "moved").endpoints().count(), 1);
    assert_eq!(
        changes
            .services
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["demo/legacy", "demo/moved"]
    );
    assert_eq!(changes.recomputed, 2, "only the services the entry names");
    // Deleted.
    reg.apply(deleted(
        "east",
        vec![key(ObjectKind::ServiceEntry, "demo", "legacy")],
    ));
    assert!(reg.service(&ServiceKey::new("demo", "moved")).is_none());
}

#[test]
fn a_health_checked_entry_is_a_ready_endpoint_of_a_service_entry_only_while_healthy() {
    let vm = |healthy| {
        workload_entry("demo", "vm-1", "192.0.2.50")
            .label("app", "legacy")
            .health_checked(healthy)
            .build()
    };
    let mut reg = registry();
    let se = service_entry("demo", "legacy")
        .host(HOST)
        .port("http", 80)
        .selector(&[("app", "legacy")])
        .build();
    let ready = |reg: &bowline_registry::Registry| -> Vec<bool> {
        view(reg, "legacy").endpoints().map(|e| e.ready).collect()
    };
    reg.apply(reset("east", vec![se, vm(None)]));
    assert_eq!(ready(&reg), [false], "new: unhealthy, so not ready");
    reg.apply(applied("east", vec![vm(Some(true))]));
    assert_eq!(ready(&reg), [true]);
    reg.apply(applied("east", vec![vm(Some(false))]));
    assert_eq!(ready(&reg), [false]);
}
