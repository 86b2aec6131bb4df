//! Valid inputs for each target, which the fuzzer starts from (mutating a request that
//! reaches the stream's subscription logic finds more than random bytes would).

use bowline_test_support::ads::node;
use envoy_types::pb::{
    envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest},
    google::rpc::Status,
};
use prost::Message;

use crate::frame_request;

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const RDS: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const ECHO: &str = "outbound|80||echo.demo.svc.clusterset.local";

/// The seed inputs of `target`.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "manifest" => manifests(),
        "dns" => dns(),
        "xds" => xds(),
        "config" => configs(),
        _ => Vec::new(),
    }
}

fn manifests() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = bowline_app::demo::files()
        .into_iter()
        .filter(|(path, _)| path.starts_with("members"))
        .map(|(_, bytes)| bytes.to_vec())
        .collect();
    out.push(
        b"apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a, namespace: demo}\n  spec: {ports: [{port: 80}]}\n"
            .to_vec(),
    );
    out
}

fn configs() -> Vec<Vec<u8>> {
    let demo = bowline_app::demo::files()
        .into_iter()
        .find(|(path, _)| path.as_os_str() == "bowline.yaml")
        .map(|(_, bytes)| bytes.to_vec())
        .expect("the demo has a bowline.yaml");
    let kube = b"clusterSet: prod\nmembers:\n  - name: east\n    kubeconfig: east.kubeconfig\n    network: net-east\nleaderElection:\n  namespace: bowline-system\nlimits:\n  xds: {maxConnections: 100, handshakeTimeout: 5s, idleTimeout: 10m}\nxds:\n  debounce: 100ms\n".to_vec();
    vec![demo, kube]
}

/// A query for `name` of `qtype`, with an EDNS OPT record of `payload` when given.
fn query(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    out.extend([1, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(u8::try_from(label.len()).expect("a short label"));
        out.extend(label.as_bytes());
    }
    out.push(0);
    out.extend(qtype.to_be_bytes());
    out.extend([0, 1]);
    if let Some(payload) = edns {
        out.extend([0, 0, 41]);
        out.extend(payload.to_be_bytes());
        out.extend([0, 0, 0x80, 0, 0, 0]);
    }
    out
}

fn dns() -> Vec<Vec<u8>> {
    let names = [
        "echo.demo.svc.clusterset.local",
        "db.demo.svc.clusterset.local",
        "reviews.demo.svc.clusterset.local",
        "_http._tcp.echo.demo.svc.clusterset.local",
        "echo.demo.svc.cluster.local",
        "nothing.demo.svc.clusterset.local",
        "clusterset.local",
    ];
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let id = u16::try_from(i).expect("few names");
        for (qtype, edns) in [(1, None), (28, Some(1232)), (33, Some(4096)), (6, None)] {
            out.push(query(id, name, qtype, edns));
        }
    }
    out
}

fn sotw(type_url: &str, names: &[&str], version: &str, nonce: &str, with_node: bool) -> Vec<u8> {
    DiscoveryRequest {
        version_info: version.into(),
        node: with_node.then(|| {
            node(
                "sidecar~10.1.1.5~echo-1.demo~demo.svc.cluster.local",
                "envoy",
            )
            .at("east", "net-east", "10.1.1.5")
            .build()
        }),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        type_url: type_url.into(),
        response_nonce: nonce.into(),
        error_detail: None,
        ..Default::default()
    }
    .encode_to_vec()
}

fn delta(type_url: &str, subscribe: &[&str], unsubscribe: &[&str], nonce: &str) -> Vec<u8> {
    DeltaDiscoveryRequest {
        node: nonce.is_empty().then(|| {
            node("grpc-client", "gRPC Python")
                .at("west", "net-west", "10.2.1.5")
                .build()
        }),
        type_url: type_url.into(),
        resource_names_subscribe: subscribe.iter().map(|n| n.to_string()).collect(),
        resource_names_unsubscribe: unsubscribe.iter().map(|n| n.to_string()).collect(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
    .encode_to_vec()
}

fn xds() -> Vec<Vec<u8>> {
    let mut state_of_the_world = vec![0];
    for request in [
        sotw(CDS, &[], "", "", true),
        sotw(CDS, &[], "1", "1", false),
        sotw(EDS, &[ECHO], "", "", false),
        sotw(LDS, &[], "", "", false),
        sotw(RDS, &["80"], "", "", false),
    ] {
        frame_request(&mut state_of_the_world, &request);
    }
    state_of_the_world.push(3); // snapshot 1
    let nack = DiscoveryRequest {
        type_url: EDS.into(),
        response_nonce: "6".into(),
        resource_names: vec![ECHO.into(), "made-up".into()],
        error_detail: Some(Status {
            code: 3,
            message: "rejected".into(),
            details: Vec::new(),
        }),
        ..Default::default()
    };
    frame_request(&mut state_of_the_world, &nack.encode_to_vec());

    let mut incremental = vec![1];
    for request in [
        delta(LDS, &["echo.demo.svc.clusterset.local:80"], &[], ""),
        delta(RDS, &["echo.demo.svc.clusterset.local:80"], &[], "1"),
        delta(CDS, &[ECHO], &[], "2"),
        delta(EDS, &[ECHO, "*"], &[], "3"),
        delta(EDS, &[], &[ECHO], "4"),
    ] {
        frame_request(&mut incremental, &request);
    }
    incremental.push(3);
    vec![state_of_the_world, incremental]
}
