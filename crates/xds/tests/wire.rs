//! Responses assembled from shared encoded resources are the messages a client decodes: the
//! same as prost's own encoding of the response, framed as one gRPC message.

use std::sync::Arc;

use bytes::Buf;
use envoy_types::pb::{
    envoy::service::discovery::v3::{DeltaDiscoveryResponse, DiscoveryResponse, Resource},
    google::protobuf::Any,
};
use prost::Message;

use bowline_xds::{cache::Encoded, wire};

const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

fn any(name: &str, size: usize) -> Any {
    Any {
        type_url: CLUSTER.into(),
        value: name.bytes().cycle().take(size).collect(),
    }
}

/// Small resources (copied into the response's chunk) and large ones (shared) together.
fn resources() -> Vec<(String, Arc<Encoded>)> {
    [
        ("a", 10),
        ("big", 200_000),
        ("b", 1023),
        ("c", 1024),
        ("d", 0),
    ]
    .into_iter()
    .map(|(name, size)| (name.to_string(), Arc::new(Encoded::new(&any(name, size)))))
    .collect()
}

/// The protobuf message of one gRPC message, checking its 5-byte header.
fn unframe(mut bytes: bytes::Bytes) -> bytes::Bytes {
    assert_eq!(bytes.get_u8(), 0, "not compressed");
    let len = bytes.get_u32() as usize;
    assert_eq!(len, bytes.len(), "the header gives the message's length");
    bytes
}

#[test]
fn a_sotw_response_decodes_to_its_resources() {
    let resources = resources();
    let message = wire::sotw(
        "7".into(),
        CLUSTER,
        "12".into(),
        &resources.iter().map(|(_, e)| &**e).collect::<Vec<_>>(),
    )
    .unwrap();
    let decoded = DiscoveryResponse::decode(unframe(message.to_bytes())).unwrap();
    let expected = DiscoveryResponse {
        version_info: "7".into(),
        type_url: CLUSTER.into(),
        nonce: "12".into(),
        resources: resources.iter().map(|(_, e)| e.any()).collect(),
        ..Default::default()
    };
    assert_eq!(decoded, expected);
    assert_eq!(decoded.resources[1], any("big", 200_000));
}

#[test]
fn a_delta_response_decodes_to_its_resources_and_removals() {
    let resources = resources();
    let message = wire::delta(
        "3".into(),
        CLUSTER,
        "4".into(),
        &resources,
        vec!["gone".into(), "also-gone".into()],
    )
    .unwrap();
    let decoded = DeltaDiscoveryResponse::decode(unframe(message.to_bytes())).unwrap();
    let expected = DeltaDiscoveryResponse {
        system_version_info: "3".into(),
        type_url: CLUSTER.into(),
        nonce: "4".into(),
        removed_resources: vec!["gone".into(), "also-gone".into()],
        resources: resources
            .iter()
            .map(|(name, e)| Resource {
                name: name.clone(),
                version: format!("{:x}", e.digest),
                resource: Some(e.any()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    assert_eq!(decoded, expected);
}

#[test]
fn an_empty_response_is_still_a_message() {
    let message = wire::sotw("1".into(), "t", "1".into(), &[]).unwrap();
    let decoded = DiscoveryResponse::decode(unframe(message.to_bytes())).unwrap();
    assert_eq!(
        (decoded.version_info.as_str(), decoded.resources.len()),
        ("1", 0)
    );
}

#[test]
fn equal_resources_have_equal_digests_and_different_ones_do_not() {
    let a = Encoded::new(&any("a", 100));
    assert_eq!(a.digest, Encoded::new(&any("a", 100)).digest);
    assert_ne!(a.digest, Encoded::new(&any("a", 101)).digest);
    assert_eq!(a.any(), any("a", 100));
}
