//! Table tests of clusterset.local answers: the records of the MCS DNS specification and the
//! parsing and error rules of CoreDNS's multicluster plugin, for IPv4, IPv6 and dual-stack
//! services, headless with and without hostnames.

use std::{collections::BTreeMap, sync::Arc};

use bowline_dns::answer::{Answer, LocalZone, QType, RData, Rcode, View, answer, dashed};
use bowline_mcs::{Controller, McsConfig, Snapshot};
use bowline_model::{
    ClusterId, IpFamily, Network, Protocol,
    export::{ExportDefault, ExportPolicy},
};
use bowline_registry::{MemberConfig, Registry};
use bowline_test_support::*;

const T: &str = "2026-11-01T10:00:00Z";

fn view(synced: bool) -> View {
    view_with(synced, None)
}

/// The ClusterSet below, with `cluster.local` answered for `local` when given.
fn view_with(synced: bool, local: Option<&str>) -> View {
    let mut reg = Registry::new(
        "set",
        ["c1", "c2"].map(|m| MemberConfig {
            name: member(m),
            id: None,
            network: Network::default(),
        }),
    );
    reg.apply(reset(
        "c1",
        vec![
            cluster_id("c1"),
            namespace("shop", &[]),
            service("shop", "web")
                .cluster_ips(&["10.0.0.1", "fd00::1"])
                .port_proto("http", 80, Protocol::Tcp)
                .port_proto("dns", 53, Protocol::Udp)
                .build(),
            export_at("shop", "web", T, &[], &[]),
            service("shop", "v4")
                .cluster_ips(&["10.0.0.2"])
                .port("http", 80)
                .build(),
            export_at("shop", "v4", T, &[], &[]),
            service("shop", "db")
                .headless(&[IpFamily::IPv4])
                .port("pg", 5432)
                .build(),
            slice("shop", "db-1", "db")
                .port("pg", 15432)
                .endpoint(ep("10.1.0.5").pod("db-0").hostname("db-0"))
                .endpoint(ep("10.1.0.9").pod("db-2").hostname("db-2").not_ready())
                .build(),
            export_at("shop", "db", T, &[], &[]),
            service("shop", "anon")
                .headless(&[IpFamily::IPv4, IpFamily::IPv6])
                .port("http", 80)
                .build(),
            slice("shop", "anon-4", "anon")
                .port("http", 8080)
                .endpoint(ep("10.1.0.7").pod("a0"))
                .build(),
            slice("shop", "anon-6", "anon")
                .port("http", 8080)
                .endpoint(ep("fd00:1::7").pod("a0"))
                .build(),
            export_at("shop", "anon", T, &[], &[]),
            service("shop", "down")
                .headless(&[IpFamily::IPv4])
                .port("http", 80)
                .build(),
            slice("shop", "down", "down")
                .port("http", 80)
                .endpoint(ep("10.1.0.8").not_ready())
                .build(),
            export_at("shop", "down", T, &[], &[]),
            // Not exported: only cluster.local has it.
            service("shop", "private")
                .cluster_ips(&["10.0.0.9"])
                .port("grpc", 9000)
                .build(),
            service("shop", "ext")
                .external_name("db.example.com")
                .build(),
        ],
    ));
    reg.apply(reset(
        "c2",
        vec![
            cluster_id("c2"),
            namespace("shop", &[]),
            service("shop", "db")
                .headless(&[IpFamily::IPv4])
                .port("pg", 5432)
                .build(),
            slice("shop", "db-2", "db")
                .port("pg", 15432)
                .endpoint(ep("10.2.0.5").pod("db-1").hostname("db-1"))
                .build(),
            export_at("shop", "db", "2026-11-01T10:00:05Z", &[], &[]),
        ],
    ));
    let mut controller = Controller::new(
        McsConfig {
            policy: ExportPolicy {
                default: ExportDefault::None,
                cluster_local: vec![],
                ..Default::default()
            },
            pools: vec![
                "241.0.0.0/16".parse().unwrap(),
                "fd00:241::/112".parse().unwrap(),
            ],
        },
        BTreeMap::new(),
    );
    let outcome = controller.reconcile(
        &Snapshot::from_registry(&reg),
        "2026-11-22T00:00:00Z".parse().unwrap(),
    );
    let set = bowline_views::from_scratch(&reg, outcome.clone());
    View {
        imports: Arc::new(outcome.imports),
        namespaces: ["shop".to_string()].into(),
        synced,
        local: local.map(|id| LocalZone::from_cluster_set(&set, &ClusterId::new(id).unwrap())),
    }
}

/// A compact rendering: rcode, then each answer's data, then additional names.
fn show(a: &Answer) -> String {
    let rdata = |d: &RData| match d {
        RData::Address(ip) => ip.to_string(),
        RData::Srv {
            priority,
            weight,
            port,
            target,
        } => format!("{priority} {weight} {port} {target}"),
        RData::Txt(t) => format!("\"{t}\""),
        RData::Cname(t) => format!("CNAME {t}"),
        RData::Soa => "SOA".into(),
    };
    let mut out = format!("{:?}", a.rcode);
    for r in &a.answers {
        out += &format!(" | {}", rdata(&r.data));
    }
    if !a.additionals.is_empty() {
        let extra: Vec<String> = a
            .additionals
            .iter()
            .map(|r| format!("{} {}", r.name, rdata(&r.data)))
            .collect();
        out += &format!(" + {}", extra.join(", "));
    }
    if a.soa_in_authority {
        out += " (soa)";
    }
    out
}

#[test]
fn records_and_rules() {
    let v = view(true);
    let z = "svc.clusterset.local";
    let cases: Vec<(&str, QType, String)> = vec![
        // Zone records.
        (
            "dns-version.clusterset.local",
            QType::Txt,
            "NoError | \"1.0.0\"".into(),
        ),
        ("clusterset.local", QType::Soa, "NoError | SOA".into()),
        ("clusterset.local", QType::A, "NoError (soa)".into()),
        // ClusterSetIP, dual stack: one address per family; SRV per named port.
        (
            "web.shop.svc.clusterset.local",
            QType::A,
            "NoError | 241.0.0.2".into(),
        ),
        (
            "WEB.Shop.SVC.ClusterSet.Local.",
            QType::Aaaa,
            "NoError | fd00:241::1".into(),
        ),
        (
            "_http._tcp.web.shop.svc.clusterset.local",
            QType::Srv,
            format!(
                "NoError | 0 100 80 web.shop.{z}. + web.shop.{z}. 241.0.0.2, web.shop.{z}. fd00:241::1"
            ),
        ),
        (
            "_dns._udp.web.shop.svc.clusterset.local",
            QType::Srv,
            format!(
                "NoError | 0 100 53 web.shop.{z}. + web.shop.{z}. 241.0.0.2, web.shop.{z}. fd00:241::1"
            ),
        ),
        (
            "_http._udp.web.shop.svc.clusterset.local",
            QType::Srv,
            "NxDomain (soa)".into(),
        ),
        (
            "_http._tcp.web.shop.svc.clusterset.local",
            QType::A,
            "NoError (soa)".into(),
        ),
        // Bare-name SRV: every port, deduplicated by (target, port).
        (
            "web.shop.svc.clusterset.local",
            QType::Srv,
            format!(
                "NoError | 0 50 53 web.shop.{z}. | 0 50 80 web.shop.{z}. + web.shop.{z}. 241.0.0.2, web.shop.{z}. fd00:241::1"
            ),
        ),
        // IPv4-only service: AAAA is NODATA.
        (
            "v4.shop.svc.clusterset.local",
            QType::A,
            "NoError | 241.0.0.1".into(),
        ),
        (
            "v4.shop.svc.clusterset.local",
            QType::Aaaa,
            "NoError (soa)".into(),
        ),
        (
            "v4.shop.svc.clusterset.local",
            QType::Txt,
            "NoError (soa)".into(),
        ),
        // Headless with hostnames, across members: ready endpoints only.
        (
            "db.shop.svc.clusterset.local",
            QType::A,
            "NoError | 10.1.0.5 | 10.2.0.5".into(),
        ),
        (
            "db-0.c1.db.shop.svc.clusterset.local",
            QType::A,
            "NoError | 10.1.0.5".into(),
        ),
        (
            "db-1.c2.db.shop.svc.clusterset.local",
            QType::A,
            "NoError | 10.2.0.5".into(),
        ),
        (
            "db-1.c1.db.shop.svc.clusterset.local",
            QType::A,
            "NxDomain (soa)".into(),
        ),
        (
            "db-2.c1.db.shop.svc.clusterset.local",
            QType::A,
            "NxDomain (soa)".into(),
        ),
        (
            "_pg._tcp.db.shop.svc.clusterset.local",
            QType::Srv,
            format!(
                "NoError | 0 50 15432 db-0.c1.db.shop.{z}. | 0 50 15432 db-1.c2.db.shop.{z}. + db-0.c1.db.shop.{z}. 10.1.0.5, db-1.c2.db.shop.{z}. 10.2.0.5"
            ),
        ),
        // Headless without hostnames: dashed addresses, one name per family.
        (
            "anon.shop.svc.clusterset.local",
            QType::Aaaa,
            "NoError | fd00:1::7".into(),
        ),
        (
            "10-1-0-7.c1.anon.shop.svc.clusterset.local",
            QType::A,
            "NoError | 10.1.0.7".into(),
        ),
        (
            "fd00-1--7.c1.anon.shop.svc.clusterset.local",
            QType::Aaaa,
            "NoError | fd00:1::7".into(),
        ),
        // A dashed name is one address's: the other family is NODATA.
        (
            "10-1-0-7.c1.anon.shop.svc.clusterset.local",
            QType::Aaaa,
            "NoError (soa)".into(),
        ),
        (
            "fd00-1--7.c1.anon.shop.svc.clusterset.local",
            QType::A,
            "NoError (soa)".into(),
        ),
        (
            "anon.shop.svc.clusterset.local",
            QType::Srv,
            format!(
                "NoError | 0 50 8080 10-1-0-7.c1.anon.shop.{z}. | 0 50 8080 fd00-1--7.c1.anon.shop.{z}. + 10-1-0-7.c1.anon.shop.{z}. 10.1.0.7, fd00-1--7.c1.anon.shop.{z}. fd00:1::7"
            ),
        ),
        // No ready endpoint: NXDOMAIN.
        (
            "down.shop.svc.clusterset.local",
            QType::A,
            "NxDomain (soa)".into(),
        ),
        // Parsing rules.
        (
            "c1.db.shop.svc.clusterset.local",
            QType::A,
            "NxDomain (soa)".into(),
        ),
        (
            "shop.svc.clusterset.local",
            QType::A,
            "NoError (soa)".into(),
        ),
        ("svc.clusterset.local", QType::A, "NoError (soa)".into()),
        (
            "nope.svc.clusterset.local",
            QType::A,
            "NxDomain (soa)".into(),
        ),
        (
            "web.nope.svc.clusterset.local",
            QType::A,
            "NxDomain (soa)".into(),
        ),
        (
            "ghost.shop.svc.clusterset.local",
            QType::A,
            "NxDomain (soa)".into(),
        ),
        (
            "web.shop.pod.clusterset.local",
            QType::A,
            "NxDomain (soa)".into(),
        ),
        (
            "a.b.c.web.shop.svc.clusterset.local",
            QType::A,
            "NxDomain (soa)".into(),
        ),
        ("web.shop.svc.cluster.local", QType::A, "Refused".into()),
    ];
    for (name, qtype, want) in cases {
        assert_eq!(show(&answer(&v, name, qtype)), want, "{name} {qtype:?}");
    }
}

#[test]
fn before_the_first_sync_nxdomain_is_servfail() {
    let v = view(false);
    assert_eq!(
        answer(&v, "ghost.shop.svc.clusterset.local", QType::A).rcode,
        Rcode::ServFail
    );
    assert_eq!(
        answer(&v, "web.shop.svc.clusterset.local", QType::A).rcode,
        Rcode::NoError
    );
}

#[test]
fn dashed_names() {
    assert_eq!(dashed(&"10.1.2.3".parse().unwrap()), "10-1-2-3");
    assert_eq!(dashed(&"fd00::1".parse().unwrap()), "fd00--1");
}

#[test]
fn cluster_local_answers_the_configured_members_own_services() {
    let v = view_with(true, Some("c1"));
    let z = "svc.cluster.local";
    let cases: Vec<(&str, QType, String)> = vec![
        (
            "dns-version.cluster.local",
            QType::Txt,
            "NoError | \"1.1.0\"".into(),
        ),
        ("cluster.local", QType::Soa, "NoError | SOA".into()),
        // The member's cluster IPs, not the ClusterSetIPs.
        (
            "web.shop.svc.cluster.local",
            QType::A,
            "NoError | 10.0.0.1".into(),
        ),
        (
            "Web.Shop.svc.Cluster.Local.",
            QType::Aaaa,
            "NoError | fd00::1".into(),
        ),
        (
            "v4.shop.svc.cluster.local",
            QType::Aaaa,
            "NoError (soa)".into(),
        ),
        (
            "_http._tcp.web.shop.svc.cluster.local",
            QType::Srv,
            format!(
                "NoError | 0 100 80 web.shop.{z}. + web.shop.{z}. 10.0.0.1, web.shop.{z}. fd00::1"
            ),
        ),
        (
            "web.shop.svc.cluster.local",
            QType::Srv,
            format!(
                "NoError | 0 50 80 web.shop.{z}. | 0 50 53 web.shop.{z}. + web.shop.{z}. 10.0.0.1, web.shop.{z}. fd00::1"
            ),
        ),
        // Not exported, still local.
        (
            "private.shop.svc.cluster.local",
            QType::A,
            "NoError | 10.0.0.9".into(),
        ),
        (
            "private.shop.svc.clusterset.local",
            QType::A,
            "NxDomain (soa)".into(),
        ),
        // Headless: this member's ready endpoints only, named <hostname>.<svc>.
        (
            "db.shop.svc.cluster.local",
            QType::A,
            "NoError | 10.1.0.5".into(),
        ),
        (
            "db-0.db.shop.svc.cluster.local",
            QType::A,
            "NoError | 10.1.0.5".into(),
        ),
        (
            "db-1.db.shop.svc.cluster.local",
            QType::A,
            "NxDomain (soa)".into(),
        ),
        (
            "db-0.c1.db.shop.svc.cluster.local",
            QType::A,
            "NxDomain (soa)".into(),
        ),
        (
            "_pg._tcp.db.shop.svc.cluster.local",
            QType::Srv,
            format!("NoError | 0 100 15432 db-0.db.shop.{z}. + db-0.db.shop.{z}. 10.1.0.5"),
        ),
        (
            "fd00-1--7.anon.shop.svc.cluster.local",
            QType::Aaaa,
            "NoError | fd00:1::7".into(),
        ),
        (
            "down.shop.svc.cluster.local",
            QType::A,
            "NxDomain (soa)".into(),
        ),
        // ExternalName: an alias whatever the type.
        (
            "ext.shop.svc.cluster.local",
            QType::A,
            "NoError | CNAME db.example.com.".into(),
        ),
        (
            "ext.shop.svc.cluster.local",
            QType::Srv,
            "NoError | CNAME db.example.com.".into(),
        ),
        // Parsing rules as in clusterset.local.
        ("shop.svc.cluster.local", QType::A, "NoError (soa)".into()),
        (
            "web.nope.svc.cluster.local",
            QType::A,
            "NxDomain (soa)".into(),
        ),
        (
            "web.shop.pod.cluster.local",
            QType::A,
            "NxDomain (soa)".into(),
        ),
        ("example.com", QType::A, "Refused".into()),
    ];
    for (name, qtype, want) in cases {
        assert_eq!(show(&answer(&v, name, qtype)), want, "{name} {qtype:?}");
    }
    // The SOA of the zone asked about.
    assert_eq!(
        answer(&v, "nope.svc.cluster.local", QType::A).zone,
        "cluster.local"
    );
    assert_eq!(
        answer(&v, "nope.svc.clusterset.local", QType::A).zone,
        "clusterset.local"
    );
}

#[test]
fn cluster_local_is_servfail_until_its_member_is_admitted() {
    let v = view_with(true, Some("c9"));
    assert_eq!(
        answer(&v, "web.shop.svc.cluster.local", QType::A).rcode,
        Rcode::ServFail
    );
    assert_eq!(
        answer(
            &view_with(false, Some("c1")),
            "web.shop.svc.cluster.local",
            QType::A
        )
        .rcode,
        Rcode::ServFail
    );
    assert_eq!(
        answer(&view(true), "web.shop.svc.cluster.local", QType::A).rcode,
        Rcode::Refused
    );
}

#[test]
fn zone_files_hold_every_record_served() {
    let v = view_with(true, Some("c1"));
    // Ready endpoints only (db-2 is not); `down` has none and is absent; the ExternalName is
    // an alias; each dashed name holds its own address.
    let want = r#"$ORIGIN cluster.local.
10-1-0-7.anon.shop.svc.cluster.local. 5 IN A 10.1.0.7
_dns._udp.web.shop.svc.cluster.local. 5 IN SRV 0 100 53 web.shop.svc.cluster.local.
_grpc._tcp.private.shop.svc.cluster.local. 5 IN SRV 0 100 9000 private.shop.svc.cluster.local.
_http._tcp.anon.shop.svc.cluster.local. 5 IN SRV 0 50 8080 10-1-0-7.anon.shop.svc.cluster.local.
_http._tcp.anon.shop.svc.cluster.local. 5 IN SRV 0 50 8080 fd00-1--7.anon.shop.svc.cluster.local.
_http._tcp.v4.shop.svc.cluster.local. 5 IN SRV 0 100 80 v4.shop.svc.cluster.local.
_http._tcp.web.shop.svc.cluster.local. 5 IN SRV 0 100 80 web.shop.svc.cluster.local.
_pg._tcp.db.shop.svc.cluster.local. 5 IN SRV 0 100 15432 db-0.db.shop.svc.cluster.local.
anon.shop.svc.cluster.local. 5 IN A 10.1.0.7
anon.shop.svc.cluster.local. 5 IN AAAA fd00:1::7
anon.shop.svc.cluster.local. 5 IN SRV 0 50 8080 10-1-0-7.anon.shop.svc.cluster.local.
anon.shop.svc.cluster.local. 5 IN SRV 0 50 8080 fd00-1--7.anon.shop.svc.cluster.local.
cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5
cluster.local. 5 IN NS ns.dns.cluster.local.
db-0.db.shop.svc.cluster.local. 5 IN A 10.1.0.5
db.shop.svc.cluster.local. 5 IN A 10.1.0.5
db.shop.svc.cluster.local. 5 IN SRV 0 100 15432 db-0.db.shop.svc.cluster.local.
dns-version.cluster.local. 28800 IN TXT "1.1.0"
ext.shop.svc.cluster.local. 5 IN CNAME db.example.com.
fd00-1--7.anon.shop.svc.cluster.local. 5 IN AAAA fd00:1::7
private.shop.svc.cluster.local. 5 IN A 10.0.0.9
private.shop.svc.cluster.local. 5 IN SRV 0 100 9000 private.shop.svc.cluster.local.
v4.shop.svc.cluster.local. 5 IN A 10.0.0.2
v4.shop.svc.cluster.local. 5 IN SRV 0 100 80 v4.shop.svc.cluster.local.
web.shop.svc.cluster.local. 5 IN A 10.0.0.1
web.shop.svc.cluster.local. 5 IN AAAA fd00::1
web.shop.svc.cluster.local. 5 IN SRV 0 50 80 web.shop.svc.cluster.local.
web.shop.svc.cluster.local. 5 IN SRV 0 50 53 web.shop.svc.cluster.local.
"#;
    assert_eq!(bowline_dns::zone::zone_file(&v, "cluster.local", 5), want);
    let clusterset = bowline_dns::zone::zone_file(&v, "clusterset.local", 5);
    for line in [
        "clusterset.local. 5 IN SOA ns.dns.clusterset.local. hostmaster.clusterset.local. 1 7200 1800 86400 5",
        "dns-version.clusterset.local. 28800 IN TXT \"1.0.0\"",
        "db.shop.svc.clusterset.local. 5 IN A 10.2.0.5",
        "db-1.c2.db.shop.svc.clusterset.local. 5 IN A 10.2.0.5",
        "_dns._udp.web.shop.svc.clusterset.local. 5 IN SRV 0 100 53 web.shop.svc.clusterset.local.",
    ] {
        assert!(
            clusterset.lines().any(|l| l == line),
            "{line} in\n{clusterset}"
        );
    }
    assert!(
        !clusterset.contains("private."),
        "not exported: {clusterset}"
    );
    assert!(
        bowline_dns::zone::records(&view(true), "cluster.local").is_empty(),
        "cluster.local is not served without a member"
    );
}
