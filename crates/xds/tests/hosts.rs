//! ServiceEntry hosts served under their own name (`billing.example.com`): a cluster, its
//! endpoints and routes for the proxies of the member holding the ServiceEntry, nothing for
//! the others.

use std::sync::Arc;

use bowline_model::Network;
use bowline_registry::{MemberConfig, Registry};
use bowline_test_support::*;
use bowline_views::ClusterSet;
use bowline_xds::{
    node::ProxyInfo,
    resources::{generate, type_url},
};
use envoy_types::pb::{
    envoy::config::{
        core::v3::{Node, address::Address as AddressKind},
        endpoint::v3::{ClusterLoadAssignment, lb_endpoint::HostIdentifier},
        route::v3::RouteConfiguration,
    },
    google::protobuf::{Struct, Value, value::Kind},
};
use prost::Message;

const CLUSTER: &str = "outbound|443||billing.example.com";

fn snapshot() -> ClusterSet {
    let mut reg = Registry::new(
        "set",
        ["east", "west"].map(|m| MemberConfig {
            name: member(m),
            id: Some(m.into()),
            network: Network::new("net-a"),
        }),
    );
    reg.apply(reset(
        "east",
        vec![
            service_entry("demo", "billing")
                .host("billing.example.com")
                .port_full("https", 443, "HTTPS", 8443)
                .endpoint(inline_endpoint("192.0.2.52"))
                .build(),
        ],
    ));
    reg.apply(reset("west", vec![]));
    (*bowline_views::from_scratch(&reg, Default::default())).clone()
}

fn proxy(member: &str, agent: &str) -> ProxyInfo {
    let s = |v: &str| Value {
        kind: Some(Kind::StringValue(v.into())),
    };
    ProxyInfo::from_node(&Node {
        id: format!("{agent}-{member}"),
        user_agent_name: agent.into(),
        metadata: Some(Struct {
            fields: [("CLUSTER_ID", s(member)), ("INSTANCE_IPS", s("10.0.0.1"))]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }),
        ..Default::default()
    })
}

#[test]
fn the_members_proxies_reach_the_host_and_others_do_not() {
    let snapshot = Arc::new(snapshot());
    let east = proxy("east", "envoy");
    let clusters = generate(type_url::CLUSTER, &east, &snapshot, None);
    assert!(clusters.contains_key(CLUSTER), "{:?}", clusters.keys());
    let endpoints = generate(type_url::ENDPOINT, &east, &snapshot, None);
    let assignment = ClusterLoadAssignment::decode(endpoints[CLUSTER].value.as_slice()).unwrap();
    let addresses: Vec<String> = assignment
        .endpoints
        .iter()
        .flat_map(|l| &l.lb_endpoints)
        .filter_map(|e| match &e.host_identifier {
            Some(HostIdentifier::Endpoint(ep)) => match ep.address.as_ref()?.address.as_ref()? {
                AddressKind::SocketAddress(s) => {
                    Some(format!("{}:{:?}", s.address, s.port_specifier))
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(addresses.len(), 1, "{addresses:?}");
    assert!(
        addresses[0].starts_with("192.0.2.52:") && addresses[0].contains("8443"),
        "{addresses:?}"
    );
    let routes = generate(type_url::ROUTE, &east, &snapshot, None);
    let route = RouteConfiguration::decode(routes["443"].value.as_slice()).unwrap();
    assert!(
        route
            .virtual_hosts
            .iter()
            .any(|v| v.domains.iter().any(|d| d == "billing.example.com")),
        "{route:?}"
    );

    let west = proxy("west", "envoy");
    assert!(
        !generate(type_url::CLUSTER, &west, &snapshot, None).contains_key(CLUSTER),
        "another member's proxies do not get it"
    );
    let grpc = proxy("east", "gRPC Python");
    assert!(
        generate(type_url::LISTENER, &grpc, &snapshot, None)
            .contains_key("billing.example.com:443"),
        "proxyless gRPC: xds:///billing.example.com:443"
    );
}
