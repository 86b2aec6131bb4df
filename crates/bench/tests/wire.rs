//! The driver's in-place reading of responses agrees with prost's decoding.

use envoy_types::pb::{
    envoy::{
        config::{
            core::v3::{Address, SocketAddress, address, socket_address::PortSpecifier},
            endpoint::v3::{
                ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
                lb_endpoint::HostIdentifier,
            },
        },
        service::discovery::v3::{DeltaDiscoveryResponse, DiscoveryResponse, Resource},
    },
    google::protobuf::{Any, UInt32Value},
};
use prost::Message;

use bowline_bench::{
    ads::{ENDPOINT_TYPE, Target},
    scenario::Seen,
    wire::Received,
};

fn target() -> Target {
    Target {
        cluster: "outbound|80||svc1.bench.svc.clusterset.local".into(),
        added: "10.0.9.9".into(),
        flipped: "10.0.0.2".into(),
    }
}

fn endpoint(ip: &str) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: ip.into(),
                    port_specifier: Some(PortSpecifier::PortValue(8080)),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        })),
        load_balancing_weight: Some(UInt32Value { value: 3 }),
        ..Default::default()
    }
}

fn assignment(cluster: &str, localities: &[&[&str]]) -> Any {
    let cla = ClusterLoadAssignment {
        cluster_name: cluster.into(),
        endpoints: localities
            .iter()
            .map(|ips| LocalityLbEndpoints {
                lb_endpoints: ips.iter().map(|ip| endpoint(ip)).collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    Any {
        type_url: ENDPOINT_TYPE.into(),
        value: cla.encode_to_vec(),
    }
}

fn seen_by_prost(any: &Any) -> Seen {
    target().seen(&ClusterLoadAssignment::decode(any.value.as_slice()).unwrap())
}

#[test]
fn a_sotw_response_is_read_as_prost_decodes_it() {
    let ours = assignment(
        &target().cluster,
        &[&["10.0.0.1", "10.0.9.9"], &["10.0.0.3"]],
    );
    let other = assignment("outbound|80||other", &[&["10.0.0.2"]]);
    let response = DiscoveryResponse {
        version_info: "17".into(),
        nonce: "42".into(),
        type_url: ENDPOINT_TYPE.into(),
        resources: vec![other, ours.clone()],
        ..Default::default()
    };
    let received = Received::read(&response.encode_to_vec(), false, &target()).unwrap();
    let expected = Seen {
        endpoints: 3,
        added: true,
        flipped: false,
    };
    assert_eq!(seen_by_prost(&ours), expected);
    assert_eq!(
        received,
        Received {
            version: "17".into(),
            nonce: "42".into(),
            seen: vec![expected],
        }
    );
}

#[test]
fn a_delta_response_is_read_as_prost_decodes_it() {
    let ours = assignment(&target().cluster, &[&["10.0.0.2"], &[]]);
    let response = DeltaDiscoveryResponse {
        system_version_info: "5".into(),
        nonce: "6".into(),
        type_url: ENDPOINT_TYPE.into(),
        resources: vec![
            Resource {
                name: target().cluster,
                version: "abc".into(),
                resource: Some(ours.clone()),
                ..Default::default()
            },
            Resource {
                name: "without a resource".into(),
                ..Default::default()
            },
        ],
        removed_resources: vec!["gone".into()],
        ..Default::default()
    };
    let received = Received::read(&response.encode_to_vec(), true, &target()).unwrap();
    assert_eq!(received.seen, vec![seen_by_prost(&ours)]);
    assert!(received.seen[0].flipped);
    assert_eq!(
        (received.version.as_str(), received.nonce.as_str()),
        ("5", "6")
    );
}

#[test]
fn a_truncated_response_is_an_error() {
    let response = DiscoveryResponse {
        resources: vec![assignment(&target().cluster, &[&["10.0.0.1"]])],
        ..Default::default()
    }
    .encode_to_vec();
    assert!(Received::read(&response[..response.len() - 3], false, &target()).is_err());
}
