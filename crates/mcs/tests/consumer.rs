//! Consumer mode: another provider's ServiceImports and imported EndpointSlices are the view.

use bowline_mcs::{Snapshot, consumer::consume};
use bowline_model::{
    IpFamily, Network, Object, Protocol, ServiceKey, ServicePort,
    labels::{MCS_SERVICE_NAME, MCS_SOURCE_CLUSTER},
    objects::{ImportType, Meta, ServiceImport},
};
use bowline_registry::{MemberConfig, Registry};
use bowline_test_support::*;

fn provider_import() -> Object {
    Object::ServiceImport(Box::new(ServiceImport {
        meta: Meta::named("shop", "cart"),
        import_type: ImportType::ClusterSetIP,
        ips: vec!["242.1.0.7".parse().unwrap()],
        ip_families: vec![IpFamily::IPv4],
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            target_port: None,
            app_protocol: None,
        }],
        session_affinity: "None".into(),
        clusters: vec!["east".into(), "west".into()],
    }))
}

fn provider_slice(name: &str, source: &str, addr: &str) -> Object {
    let Object::EndpointSlice(s) = slice("shop", name, "unused")
        .port("http", 8080)
        .endpoint(ep(addr).hostname("h"))
        .build()
    else {
        unreachable!()
    };
    let mut s = std::sync::Arc::unwrap_or_clone(s);
    s.service_name = None;
    s.meta.labels.clear();
    s.meta.labels.insert(MCS_SERVICE_NAME.into(), "cart".into());
    s.meta
        .labels
        .insert(MCS_SOURCE_CLUSTER.into(), source.into());
    Object::EndpointSlice(s.into())
}

/// A ClusterSet of member `m`, whose id is `m`.
fn one_member() -> Registry {
    Registry::new(
        "set",
        [MemberConfig {
            name: member("m"),
            id: Some("m".into()),
            network: Network::default(),
        }],
    )
}

#[test]
fn provider_objects_become_the_cluster_set_view() {
    let mut registry = one_member();
    registry.apply(reset(
        "m",
        vec![
            namespace("shop", &[]),
            provider_import(),
            provider_slice("cart-east", "east", "10.1.0.1"),
            provider_slice("cart-west", "west", "10.2.0.1"),
            provider_slice("cart-bad", "Not_An_Id", "10.3.0.1"),
        ],
    ));
    let outcome = consume(&Snapshot::from_registry(&registry));
    assert!(outcome.writes.is_empty(), "consumers write nothing");
    let import = &outcome.imports[&ServiceKey::new("shop", "cart")];
    assert_eq!(
        import.ips,
        vec!["242.1.0.7".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(
        import
            .clusters
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>(),
        vec!["east", "west"]
    );
    let sources: Vec<(&str, String)> = import
        .sources
        .iter()
        .map(|(c, eps)| (c.as_str(), eps[0].addresses[0].to_string()))
        .collect();
    assert_eq!(
        sources,
        vec![
            ("east", "10.1.0.1".to_string()),
            ("west", "10.2.0.1".to_string())
        ]
    );
    assert_eq!(
        import.served_ports[&bowline_model::ClusterId::new("east").unwrap()],
        vec!["http"]
    );
    assert_eq!(
        import.sources[&bowline_model::ClusterId::new("east").unwrap()][0]
            .hostname
            .as_deref(),
        Some("h")
    );
}

fn provider_import_named(name: &str) -> Object {
    let Object::ServiceImport(mut import) = provider_import() else {
        unreachable!()
    };
    import.meta = Meta::named("shop", name);
    Object::ServiceImport(import)
}

#[test]
fn across_snapshots_only_the_changed_names_imports_are_recomputed() {
    let mut registry = one_member();
    registry.apply(reset(
        "m",
        vec![
            namespace("shop", &[]),
            provider_import(),
            provider_import_named("other"),
            provider_slice("cart-east", "east", "10.1.0.1"),
        ],
    ));
    let mut consumer = bowline_mcs::consumer::Consumer::default();
    let first = consumer.consume(&Snapshot::from_registry(&registry));
    registry.apply(applied(
        "m",
        vec![provider_slice("cart-west", "west", "10.2.0.1")],
    ));
    let snapshot = Snapshot::from_registry(&registry);
    let second = consumer.consume(&snapshot);

    let (cart, other) = (
        ServiceKey::new("shop", "cart"),
        ServiceKey::new("shop", "other"),
    );
    assert!(
        std::sync::Arc::ptr_eq(&first.imports[&other], &second.imports[&other]),
        "an unchanged name keeps its import"
    );
    assert_eq!(
        second.imports[&cart].sources.len(),
        2,
        "the new slice is seen"
    );
    assert_eq!(
        second.imports,
        consume(&snapshot).imports,
        "as from scratch"
    );

    registry.apply(deleted(
        "m",
        vec![key(
            bowline_model::ObjectKind::ServiceImport,
            "shop",
            "other",
        )],
    ));
    let third = consumer.consume(&Snapshot::from_registry(&registry));
    assert!(
        !third.imports.contains_key(&other),
        "a withdrawn import is gone"
    );
    assert!(std::sync::Arc::ptr_eq(
        &second.imports[&cart],
        &third.imports[&cart]
    ));
}
