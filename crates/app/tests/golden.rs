//! Golden files of the xDS resources generated for the demo ClusterSet, for proxies of each
//! kind, network and address family. Regenerate with `UPDATE_GOLDEN=1 cargo test -p bowline-app
//! --test golden`, and review the diff like code.

use std::path::Path;

use bowline_mcs::Snapshot;
use bowline_views::ClusterSet;
use bowline_xds::node::ProxyInfo;
use envoy_types::pb::{
    envoy::config::core::v3::Node,
    google::protobuf::{Struct, Value, value::Kind},
};

fn demo_snapshot() -> ClusterSet {
    let dir = tempfile::tempdir().unwrap();
    let (config, registry) = bowline_app::offline::demo(dir.path()).unwrap();
    let mut controller = bowline_app::offline::controller(&config);
    let outcome = controller.reconcile(
        &Snapshot::from_registry(&registry),
        "2026-11-22T00:00:00Z".parse().unwrap(),
    );
    (*bowline_views::from_scratch(&registry, outcome)).clone()
}

/// A proxy with the node agent's certificates (so it is sent gateways).
fn proxy(id: &str, agent: &str, member: &str, network: &str, ips: &str) -> ProxyInfo {
    proxy_with(id, agent, member, network, ips, &[("BOWLINE_SDS", "true")])
}

fn proxy_with(
    id: &str,
    agent: &str,
    member: &str,
    network: &str,
    ips: &str,
    extra: &[(&str, &str)],
) -> ProxyInfo {
    let s = |v: &str| Value {
        kind: Some(Kind::StringValue(v.into())),
    };
    ProxyInfo::from_node(&Node {
        id: id.into(),
        user_agent_name: agent.into(),
        metadata: Some(Struct {
            fields: [
                ("CLUSTER_ID", member),
                ("NETWORK", network),
                ("INSTANCE_IPS", ips),
            ]
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), s(v)))
            .collect(),
        }),
        ..Default::default()
    })
}

fn check(name: &str, actual: &serde_json::Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"));
    let rendered = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &rendered).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} is missing; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert!(
        expected == rendered,
        "{} differs from the generated resources; run with UPDATE_GOLDEN=1 and review the diff",
        path.display()
    );
}

#[test]
fn demo_resources_per_proxy() {
    let snapshot = demo_snapshot();
    let proxies = [
        // A gRPC client in east (net-east, IPv4 only): west's endpoints behind west's gateway.
        (
            "grpc-east-ipv4",
            proxy("grpc-east", "gRPC Python", "east", "net-east", "10.1.1.50"),
        ),
        // Envoy in west (net-west, dual stack): east and central behind east's gateway (central
        // shares net-east but has no gateway of its own), dual-stack endpoints with both addresses.
        (
            "envoy-west-dual",
            proxy(
                "envoy-west",
                "envoy",
                "west",
                "net-west",
                "10.2.1.50,fd00:2:1::50",
            ),
        ),
        // A gRPC client in central (net-east, IPv6 only): never an IPv4 address or gateway.
        (
            "grpc-central-ipv6",
            proxy(
                "grpc-central",
                "gRPC Python",
                "central",
                "net-east",
                "fd00:3:1::50",
            ),
        ),
        // An Envoy sidecar of an echo pod in east with the agent's SDS: mTLS clusters (SNI
        // `outbound_.<port>_._.<host>`), and inbound listeners for its pod's ports with an
        // mTLS and a plaintext chain.
        (
            "envoy-east-mtls",
            proxy_with(
                "envoy-east-mtls",
                "envoy",
                "east",
                "net-east",
                "10.1.1.51",
                &[
                    ("BOWLINE_SDS", "true"),
                    (
                        "POD_PORTS",
                        r#"[{"name":"http","containerPort":8080,"protocol":"TCP"},{"name":"tcp-echo","containerPort":9000}]"#,
                    ),
                ],
            ),
        ),
        // West's east-west gateway: one SNI filter chain per (service, port) it passes on
        // (no TLS terminated), and SNI-DNAT clusters of west's mTLS endpoints only.
        (
            "envoy-west-gateway",
            proxy_with(
                "gateway-west",
                "envoy",
                "west",
                "net-west",
                "10.2.0.200",
                &[("BOWLINE_GATEWAY", "eastwest")],
            ),
        ),
    ];
    for (name, proxy) in proxies {
        check(name, &bowline_xds::dump::config_dump(&proxy, &snapshot));
    }
}
