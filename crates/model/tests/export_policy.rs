//! The auto-export precedence table.

use bowline_test_support::labels;

use bowline_model::{
    Labels, ServiceType,
    export::{Decision, ExportDefault, ExportPolicy, HostPattern},
    objects::{Meta, Service},
};

fn service(
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
    service_type: ServiceType,
) -> Service {
    let mut meta = Meta::named("shop", "cart");
    meta.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    meta.annotations = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Service {
        meta,
        service_type,
        cluster_ips: vec![],
        ip_families: vec![],
        ports: vec![],
        selector: None,
        external_name: None,
        external_addresses: vec![],
        external_hostnames: vec![],
        session_affinity: "None".into(),
        session_affinity_timeout: None,
        internal_traffic_policy: None,
        traffic_distribution: None,
    }
}

/// (name, policy, Service, namespace labels, user export, expected decision).
type Case<'a> = (
    &'a str,
    &'a ExportPolicy,
    Option<Service>,
    Labels,
    bool,
    Decision,
);

#[test]
fn precedence_table() {
    const L: &str = "bowline.io/export";
    let all = ExportPolicy {
        default: ExportDefault::All,
        cluster_local: vec![],
        ..Default::default()
    };
    let none = ExportPolicy {
        default: ExportDefault::None,
        cluster_local: vec![],
        ..Default::default()
    };
    let local_ns = ExportPolicy {
        default: ExportDefault::All,
        cluster_local: vec![HostPattern::new("*.shop.svc.cluster.local")],
        ..Default::default()
    };
    let local_with_exception = ExportPolicy {
        default: ExportDefault::All,
        cluster_local: vec![
            HostPattern::new("*.shop.svc.cluster.local"),
            HostPattern::new("!cart.shop.svc.cluster.local"),
        ],
        ..Default::default()
    };
    let ip = ServiceType::ClusterIP;
    let cases: Vec<Case<'_>> = vec![
        (
            "default all",
            &all,
            Some(service(&[], &[], ip)),
            labels(&[]),
            false,
            Decision::Default {
                default: ExportDefault::All,
            },
        ),
        (
            "default none",
            &none,
            Some(service(&[], &[], ip)),
            labels(&[]),
            false,
            Decision::Default {
                default: ExportDefault::None,
            },
        ),
        (
            "namespace opts in under none",
            &none,
            Some(service(&[], &[], ip)),
            labels(&[(L, "true")]),
            false,
            Decision::NamespaceLabel { export: true },
        ),
        (
            "namespace opts out under all",
            &all,
            Some(service(&[], &[], ip)),
            labels(&[(L, "false")]),
            false,
            Decision::NamespaceLabel { export: false },
        ),
        (
            "service annotation beats namespace",
            &all,
            Some(service(&[], &[(L, "true")], ip)),
            labels(&[(L, "false")]),
            false,
            Decision::ServiceAnnotation { export: true },
        ),
        (
            "service label beats annotation",
            &all,
            Some(service(&[(L, "false")], &[(L, "true")], ip)),
            labels(&[]),
            false,
            Decision::ServiceLabel { export: false },
        ),
        (
            "user export beats service opt-out",
            &all,
            Some(service(&[(L, "false")], &[], ip)),
            labels(&[(L, "false")]),
            true,
            Decision::ServiceExport,
        ),
        (
            "user export without a Service",
            &none,
            None,
            labels(&[]),
            true,
            Decision::ServiceExport,
        ),
        (
            "cluster-local beats user export",
            &local_ns,
            Some(service(&[], &[], ip)),
            labels(&[]),
            true,
            Decision::ClusterLocal {
                pattern: "*.shop.svc.cluster.local".into(),
            },
        ),
        (
            "cluster-local beats opt-in",
            &local_ns,
            Some(service(&[(L, "true")], &[], ip)),
            labels(&[]),
            false,
            Decision::ClusterLocal {
                pattern: "*.shop.svc.cluster.local".into(),
            },
        ),
        (
            "a more specific exception wins",
            &local_with_exception,
            Some(service(&[], &[], ip)),
            labels(&[]),
            false,
            Decision::Default {
                default: ExportDefault::All,
            },
        ),
        (
            "ExternalName is never auto-exported",
            &all,
            Some(service(&[(L, "true")], &[], ServiceType::ExternalName)),
            labels(&[]),
            false,
            Decision::ExternalName,
        ),
        (
            "garbage label values are no opinion",
            &none,
            Some(service(&[(L, "yes")], &[], ip)),
            labels(&[]),
            false,
            Decision::Default {
                default: ExportDefault::None,
            },
        ),
    ];
    for (name, policy, svc, ns_labels, user_export, want) in cases {
        let got = policy.decide("shop", "cart", svc.as_ref(), Some(&ns_labels), user_export);
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn pattern_specificity() {
    let p = |s: &str| HostPattern::new(s);
    assert_eq!(
        p("*.kube-system.svc.cluster.local").specificity("dns.kube-system.svc.cluster.local"),
        Some(29)
    );
    assert_eq!(
        p("*.kube-system.svc.cluster.local").specificity("kube-system.svc.cluster.local"),
        None
    );
    assert_eq!(
        p("*.svc.cluster.local").specificity("a.b.svc.cluster.local"),
        Some(17)
    );
    assert_eq!(
        p("a.b.svc.cluster.local").specificity("a.b.svc.cluster.local"),
        Some(usize::MAX)
    );
    assert_eq!(p("*").specificity("anything"), Some(0));
}
