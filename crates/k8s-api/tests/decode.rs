//! Table tests of manifest decoding: every kind, the versions read, and the rules enforced.

use std::net::IpAddr;

use bowline_k8s_api::decode;
use bowline_model::{IpFamily, Object, ObjectKind, RejectReason, ServiceType};
use serde_json::json;

fn decode_ok(v: serde_json::Value) -> Object {
    decode(v).expect("decodes").expect("a kind Bowline reads")
}

fn decode_err(v: serde_json::Value) -> (RejectReason, String) {
    let e = decode(v).expect_err("refused");
    (e.reason, e.to_string())
}

#[test]
fn dual_stack_service() {
    let svc = decode_ok(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "echo", "namespace": "demo"},
        "spec": {"clusterIP": "10.0.0.10", "clusterIPs": ["10.0.0.10", "fd00::10"],
                 "ipFamilies": ["IPv4", "IPv6"],
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "grpc", "port": 9090, "targetPort": "grpc"}]}
    }));
    let Object::Service(svc) = svc else {
        panic!("not a service")
    };
    assert_eq!(svc.service_type, ServiceType::ClusterIP);
    assert_eq!(
        svc.cluster_ips,
        vec![
            "10.0.0.10".parse::<IpAddr>().unwrap(),
            "fd00::10".parse().unwrap()
        ]
    );
    assert_eq!(svc.ip_families, vec![IpFamily::IPv4, IpFamily::IPv6]);
    assert_eq!(svc.ports.len(), 2);
}

#[test]
fn service_families_follow_cluster_ips_when_absent() {
    let Object::Service(svc) = decode_ok(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "v6"},
        "spec": {"clusterIP": "fd00::1", "ports": [{"port": 80}]}
    })) else {
        panic!()
    };
    assert_eq!(svc.ip_families, vec![IpFamily::IPv6]);
    assert_eq!(
        &*svc.meta.namespace, "default",
        "namespaced objects default to `default`"
    );
}

#[test]
fn headless_and_external_name() {
    let Object::Service(svc) = decode_ok(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "demo"},
        "spec": {"clusterIP": "None", "ipFamilies": ["IPv4"], "ports": [{"name": "pg", "port": 5432}]}
    })) else {
        panic!()
    };
    assert_eq!(svc.service_type, ServiceType::Headless);
    assert!(svc.cluster_ips.is_empty());
    let Object::Service(svc) = decode_ok(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext", "namespace": "demo"},
        "spec": {"type": "ExternalName", "externalName": "example.com"}
    })) else {
        panic!()
    };
    assert_eq!(svc.service_type, ServiceType::ExternalName);
}

#[test]
fn refusals_name_the_field_and_rule() {
    let cases = [
        (
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"clusterIP": "10.0.0.300"}}),
            RejectReason::InvalidObject,
            "spec.clusterIP[0]: \"10.0.0.300\" is not an IP address",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"ports": [{"port": 80}, {"port": 81}]}}),
            RejectReason::InvalidObject,
            "spec.ports[0].name: required when a Service has more than one port",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"ports": [{"name": "x", "port": 70000}]}}),
            RejectReason::InvalidObject,
            "spec.ports[0].port",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"type": "ExternalName"}}),
            RejectReason::InvalidObject,
            "spec.externalName is required",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "Bad_Name"}}),
            RejectReason::InvalidObject,
            "metadata.name \"Bad_Name\"",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"},
                "spec": {"clusterIPs": ["10.0.0.1"], "ipFamilies": ["IPv6"]}}),
            RejectReason::InvalidObject,
            "do not match spec.ipFamilies",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"ports": "eighty"}}),
            RejectReason::InvalidObject,
            "spec.ports",
        ),
        (
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "s"},
                "addressType": "IPv4", "endpoints": [{"addresses": ["fd00::1"]}]}),
            RejectReason::InvalidObject,
            "endpoints[0].addresses[0]: fd00::1 is not an IPv4 address",
        ),
        (
            json!({"apiVersion": "discovery.k8s.io/v1beta1", "kind": "EndpointSlice", "metadata": {"name": "s"}, "addressType": "IPv4", "endpoints": []}),
            RejectReason::UnsupportedApiVersion,
            "discovery.k8s.io/v1beta1",
        ),
        (
            json!({"apiVersion": "multicluster.x-k8s.io/v1", "kind": "ServiceExport", "metadata": {"name": "s"}}),
            RejectReason::UnsupportedApiVersion,
            "is not read for ServiceExport",
        ),
        (
            json!({"metadata": {"name": "s"}}),
            RejectReason::InvalidObject,
            "apiVersion and kind are required",
        ),
        (
            json!({"apiVersion": "about.k8s.io/v1alpha1", "kind": "ClusterProperty", "metadata": {"name": "cluster.clusterset.k8s.io"},
                "spec": {"value": "x".repeat(128_001)}}),
            RejectReason::InvalidObject,
            "128001 code points",
        ),
        (
            json!({"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry", "metadata": {"name": "vm"}, "spec": {"labels": {"app": "x"}}}),
            RejectReason::InvalidObject,
            "spec.address: required unless spec.network is set",
        ),
        (
            json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "WorkloadGroup", "metadata": {"name": "g"}, "spec": {}}),
            RejectReason::InvalidObject,
            "spec.template is required",
        ),
        (
            json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "ServiceEntry", "metadata": {"name": "se"}, "spec": {"hosts": []}}),
            RejectReason::InvalidObject,
            "spec.hosts",
        ),
    ];
    for (input, reason, needle) in cases {
        let (got_reason, message) = decode_err(input.clone());
        assert_eq!(got_reason, reason, "{input}: {message}");
        assert!(
            message.contains(needle),
            "{input}: {message:?} should contain {needle:?}"
        );
    }
}

#[test]
fn unknown_kinds_are_ignored_and_likely_typos_of_read_kinds_reported() {
    for (api_version, kind) in [
        ("apps/v1", "Deployment"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("rbac.authorization.k8s.io/v1", "Role"),
    ] {
        assert_eq!(
            decode(json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "d"}})),
            Ok(None),
            "{kind}"
        );
    }
    for (api_version, kind, near) in [
        ("v1", "Servise", "Service"),
        ("v1", "service", "Service"),
        ("discovery.k8s.io/v1", "EndpointSlices", "EndpointSlice"),
        (
            "multicluster.x-k8s.io/v1alpha1",
            "ServiceExpor",
            "ServiceExport",
        ),
    ] {
        let (reason, message) =
            decode_err(json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "d"}}));
        assert_eq!(reason, RejectReason::InvalidObject);
        assert!(
            message.contains(&format!("did you mean {near}?")),
            "{message}"
        );
    }
}

#[test]
fn every_kind_and_version_decodes() {
    let docs = [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system", "uid": "u-1"}}),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "z"}}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "demo"}}),
        json!({"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport", "metadata": {"name": "echo", "namespace": "demo"}}),
        json!({"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceExport", "metadata": {"name": "echo", "namespace": "demo"}}),
        json!({"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport", "metadata": {"name": "echo", "namespace": "demo"},
               "spec": {"type": "ClusterSetIP", "ips": ["241.0.0.1"], "ports": [{"name": "http", "port": 80}]}}),
        json!({"apiVersion": "about.k8s.io/v1beta1", "kind": "ClusterProperty", "metadata": {"name": "cluster.clusterset.k8s.io"}, "spec": {"value": "east"}}),
        json!({"apiVersion": "about.k8s.io/v1alpha1", "kind": "ClusterProperty", "metadata": {"name": "clusterset.k8s.io"}, "spec": {"value": "demo"}}),
        json!({"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry", "metadata": {"name": "vm", "namespace": "demo"},
               "spec": {"address": "fd00::5", "labels": {"app": "legacy"}, "ports": {"http": 8080}}}),
        json!({"apiVersion": "networking.istio.io/v1", "kind": "WorkloadGroup", "metadata": {"name": "g", "namespace": "demo"},
               "spec": {"template": {"serviceAccount": "legacy"}, "probe": {"httpGet": {"port": 8080, "path": "/ready"}}}}),
        json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "se", "namespace": "demo"},
               "spec": {"hosts": ["legacy.example"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                        "workloadSelector": {"labels": {"app": "legacy"}}}}),
        json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "default", "namespace": "istio-system"},
               "spec": {"mtls": {"mode": "STRICT"}}}),
    ];
    let kinds: Vec<ObjectKind> = docs.into_iter().map(|d| decode_ok(d).kind()).collect();
    assert_eq!(kinds.len(), 12);
}

#[test]
fn peer_authentications_read_istios_shape_and_refuse_what_istio_refuses() {
    use bowline_model::objects::MtlsMode;
    let Object::PeerAuthentication(p) = decode_ok(json!({
        "apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
        "metadata": {"name": "echo", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "echo"}}, "mtls": {"mode": "PERMISSIVE"},
                 "portLevelMtls": {"9000": {"mode": "DISABLE"}}}
    })) else {
        panic!("not a PeerAuthentication")
    };
    assert_eq!(p.mode, MtlsMode::Permissive);
    assert_eq!(p.port_level.get(&9000), Some(&MtlsMode::Disable));
    assert_eq!(
        p.selector.unwrap().get("app").map(String::as_str),
        Some("echo")
    );
    for (spec, needle) in [
        (
            json!({"mtls": {"mode": "strict"}}),
            "spec.mtls.mode: \"strict\" is not a mode",
        ),
        (
            json!({"portLevelMtls": {"9000": {"mode": "STRICT"}}}),
            "spec.portLevelMtls: needs spec.selector",
        ),
        (
            json!({"selector": {"matchLabels": {"a": "b"}}, "portLevelMtls": {"http": {"mode": "STRICT"}}}),
            "\"http\" is not a port number",
        ),
    ] {
        let (reason, message) = decode_err(json!({
            "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": "p", "namespace": "shop"}, "spec": spec
        }));
        assert_eq!(reason, RejectReason::InvalidObject);
        assert!(message.contains(needle), "{message}");
    }
}

#[test]
fn crd_objects_stay_leniently_read() {
    // No spec, null metadata fields and a status written by an old mcs-api (v0.1.0 conditions
    // had no lastTransitionTime): the export still reads.
    let Object::ServiceExport(export) = decode_ok(json!({
        "apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
        "metadata": {"name": "echo", "namespace": "demo", "labels": null},
        "status": {"conditions": [{"type": "Valid", "status": "True"}]}
    })) else {
        panic!("not an export")
    };
    assert!(export.exported_labels.is_empty());
    // A ServiceImport keeps its `status.clusters`; other status fields are not read.
    let Object::ServiceImport(import) = decode_ok(json!({
        "apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
        "metadata": {"name": "echo", "namespace": "demo"},
        "spec": {"type": "Headless", "ports": []},
        "status": {"clusters": [{"cluster": "east"}], "conditions": [{"type": "Ready"}],
                   "endpointSliceObjects": "Present"}
    })) else {
        panic!("not an import")
    };
    assert_eq!(import.clusters, vec!["east".to_string()]);
    // Istio status is Istio's; a WorkloadEntry without metadata still names what is wrong.
    let (reason, message) = decode_err(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
        "spec": {"address": "10.0.0.1"}, "status": {"observedGeneration": {"odd": true}}
    }));
    assert_eq!(reason, RejectReason::InvalidObject);
    assert!(message.contains("metadata.name"), "{message}");
    // A ServiceImport without a spec is refused, as before.
    let (_, message) = decode_err(json!({
        "apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport",
        "metadata": {"name": "echo", "namespace": "demo"}
    }));
    assert!(message.contains("spec is required"), "{message}");
    // Wrong types in fields Bowline does not use are refused like the API server would.
    let (_, message) = decode_err(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
        "metadata": {"name": "se", "namespace": "demo"},
        "spec": {"hosts": ["a.example"], "exportTo": "."}
    }));
    assert!(message.contains("spec.exportTo"), "{message}");
}

#[test]
fn a_workload_entry_keeps_its_healthy_condition() {
    let entry = |conditions: serde_json::Value| {
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
            "metadata": {"name": "vm", "namespace": "demo",
                         "annotations": {"proxy.istio.io/health-checks-enabled": "true"}},
            "spec": {"address": "192.0.2.5", "labels": {"app": "x"}},
            "status": {"conditions": conditions, "observedGeneration": "3"},
        })
    };
    let healthy = |v| match decode_ok(v) {
        Object::WorkloadEntry(e) => (e.healthy, e.serves()),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        healthy(entry(json!([{"type": "Healthy", "status": "True",
                               "lastProbeTime": "2026-11-30T10:00:00Z"}]))),
        (Some(true), true)
    );
    assert_eq!(
        healthy(entry(
            json!([{"type": "Healthy", "status": "False", "message": "probe failed"}])
        )),
        (Some(false), false)
    );
    assert_eq!(
        healthy(entry(json!([{"type": "Other", "status": "True"}]))),
        (None, false),
        "health checked and never reported healthy: not serving"
    );
}

#[test]
fn labels_and_annotations_are_checked_as_the_api_server_does_and_echoes_are_capped() {
    let service = |metadata: serde_json::Value| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata,
               "spec": {"ports": [{"port": 80}]}})
    };
    let huge = "v".repeat(1 << 20);
    let (reason, message) = decode_err(service(
        json!({"name": "web", "namespace": "demo", "labels": {"app": huge}}),
    ));
    assert_eq!(reason, RejectReason::InvalidObject);
    assert!(
        message.contains(r#"metadata.labels["app"]"#) && message.contains("more than the 63"),
        "{message}"
    );
    assert!(
        message.len() < 1024,
        "the 1 MB value is not echoed whole: {} bytes",
        message.len()
    );

    let (_, message) = decode_err(service(
        json!({"name": "web", "namespace": "demo", "labels": {"bad key!": "x"}}),
    ));
    assert!(message.contains("the key contains ' '"), "{message}");

    let (_, message) = decode_err(service(json!({
        "name": "web", "namespace": "demo",
        "annotations": {"a": "x".repeat(300 * 1024)}
    })));
    assert!(
        message.contains("more than the 262144 allowed"),
        "{message}"
    );

    let (_, message) = decode_err(service(
        json!({"name": "N".repeat(1 << 20), "namespace": "demo"}),
    ));
    assert!(
        message.len() < 1024,
        "the 1 MB name is not echoed whole: {} bytes",
        message.len()
    );

    decode_ok(service(json!({
        "name": "web", "namespace": "demo",
        "labels": {"app.kubernetes.io/name": "web", "tier": ""},
        "annotations": {"sidecar.istio.io/inject": "true"}
    })));
}
