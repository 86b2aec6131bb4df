//! Random input never panics the decoder: every outcome is an object, "not ours", or a refusal.

use bowline_k8s_api::decode;
use proptest::prelude::*;
use serde_json::{Value, json};

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-zA-Z0-9:./_-]{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("10.0.0.1"),
            Just("fd00::1"),
            Just("None"),
            Just("IPv4"),
            Just("IPv6"),
            Just("TCP"),
            Just("ClusterSetIP")
        ]
        .prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let keys = prop_oneof![
        Just("spec"),
        Just("metadata"),
        Just("name"),
        Just("namespace"),
        Just("ports"),
        Just("port"),
        Just("clusterIP"),
        Just("clusterIPs"),
        Just("ipFamilies"),
        Just("endpoints"),
        Just("addresses"),
        Just("addressType"),
        Just("value"),
        Just("template"),
        Just("hosts"),
        Just("type"),
        Just("targetRef"),
        Just("conditions"),
        Just("labels"),
        Just("status"),
    ];
    leaf().prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone().prop_map(String::from), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn kind() -> impl Strategy<Value = (&'static str, &'static str)> {
    prop_oneof![
        Just(("v1", "Service")),
        Just(("v1", "Namespace")),
        Just(("v1", "Pod")),
        Just(("v1", "Node")),
        Just(("discovery.k8s.io/v1", "EndpointSlice")),
        Just(("multicluster.x-k8s.io/v1beta1", "ServiceExport")),
        Just(("multicluster.x-k8s.io/v1alpha1", "ServiceImport")),
        Just(("about.k8s.io/v1beta1", "ClusterProperty")),
        Just(("networking.istio.io/v1", "WorkloadEntry")),
        Just(("networking.istio.io/v1", "WorkloadGroup")),
        Just(("networking.istio.io/v1", "ServiceEntry")),
    ]
}

proptest! {
    #[test]
    fn decode_never_panics((api_version, kind) in kind(), body in value()) {
        let mut object = match body {
            Value::Object(map) => map,
            other => [("spec".to_string(), other)].into_iter().collect(),
        };
        object.insert("apiVersion".into(), api_version.into());
        object.insert("kind".into(), kind.into());
        let _ = decode(Value::Object(object));
    }
}
