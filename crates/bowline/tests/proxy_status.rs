//! `bowline proxy-status` against the release binary: a proxy that ACKs is SYNCED, one that
//! has not ACKed yet is STALE, a NACK is shown with the proxy's error, and the per-node diff
//! says whether what was sent is what would be sent now.

mod common;

use std::process::Command;

use bowline_test_support::eventually;
use envoy_types::pb::{
    envoy::service::discovery::v3::{
        DiscoveryRequest, DiscoveryResponse,
        aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
    },
    google::rpc::Status,
};

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const NODE: &str = "sidecar~10.1.1.7~probe.demo~demo";

fn proxy_status(admin: &str, node: Option<&str>) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bowline"));
    command.args(["proxy-status", "--admin", admin]);
    command.args(node);
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The cells of the table's line for `NODE` (NOT SENT is one cell).
fn row(admin: &str) -> Vec<String> {
    let table = proxy_status(admin, None);
    let line = table
        .lines()
        .find(|l| l.starts_with(NODE))
        .unwrap_or_else(|| panic!("{NODE} in\n{table}"));
    line.replace("NOT SENT", "NOT_SENT")
        .split_whitespace()
        .map(|c| c.replace('_', " "))
        .collect()
}

#[test]
fn proxies_are_listed_with_their_sync_state_and_a_node_is_diffed() {
    let dir = tempfile::tempdir().unwrap();
    bowline_app::demo::write_to(dir.path()).unwrap();
    let bowline = common::start(&common::demo_config(dir.path(), ""), None);
    let admin = bowline.admin.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let xds = bowline.xds;
    let mut responses = runtime.block_on(async move {
        let node = bowline_test_support::ads::node(NODE, "envoy")
            .at("east", "net-east", "10.1.1.7")
            .build();
        tx.send(DiscoveryRequest {
            node: Some(node),
            type_url: CDS.into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let responses = AggregatedDiscoveryServiceClient::connect(format!("http://{xds}"))
            .await
            .unwrap()
            .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        (tx, responses)
    });
    let first: DiscoveryResponse = runtime.block_on(responses.1.message()).unwrap().unwrap();

    // Sent, not ACKed yet.
    let cells = row(&admin);
    assert_eq!(cells[1..3], ["east", "net-east"], "{cells:?}");
    assert!(!cells[3].is_empty(), "the replica: {cells:?}");
    assert_eq!(
        cells[4..],
        ["sotw", "STALE", "NOT SENT", "NOT SENT", "NOT SENT"],
        "CDS sent, not ACKed: {cells:?}"
    );

    // ACKed: SYNCED, and the diff finds nothing.
    let reply = |to: &DiscoveryResponse, error: Option<&str>| DiscoveryRequest {
        type_url: CDS.into(),
        version_info: match error {
            None => to.version_info.clone(),
            Some(_) => String::new(),
        },
        response_nonce: to.nonce.clone(),
        error_detail: error.map(|m| Status {
            code: 3,
            message: m.into(),
            details: vec![],
        }),
        ..Default::default()
    };
    // ACK the latest response: the ClusterSet may still have been settling after the first.
    let mut latest = first.clone();
    while let Ok(Ok(Some(response))) = runtime.block_on(async {
        tokio::time::timeout(std::time::Duration::from_millis(500), responses.1.message()).await
    }) {
        latest = response;
    }
    runtime
        .block_on(responses.0.send(reply(&latest, None)))
        .unwrap();
    eventually("SYNCED after the ACK", || {
        (row(&admin)[5] == "SYNCED").then_some(())
    });
    let diff = proxy_status(&admin, Some(NODE));
    assert!(diff.starts_with(&format!("{NODE}: in sync")), "{diff}");
    let clusters = |diff: &str| -> usize {
        let line = diff.lines().find(|l| l.starts_with("Clusters: ")).unwrap();
        line["Clusters: ".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let before = clusters(&diff);
    assert!(before > 3, "{diff}");

    // `bowline explain` of the connected proxy: what it would get, and what it was sent
    // (it subscribed to no assignment).
    let out = Command::new(env!("CARGO_BIN_EXE_bowline"))
        .args([
            "explain",
            "--admin",
            &admin,
            "--node",
            NODE,
            "--service",
            "demo/echo",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with(&format!("proxy {NODE} (member east, network net-east")),
        "{text}"
    );
    assert!(
        text.contains("outbound|80||echo.demo.svc.clusterset.local (port http 80): assignment now: 2 endpoint(s), weight 4; last sent: nothing"),
        "{text}"
    );
    assert!(
        text.contains("this proxy does not originate mTLS"),
        "no node agent: west's pods are out of reach: {text}"
    );

    // A new Service: the stream is pushed its cluster, and holds what it would get now.
    std::fs::write(
        dir.path().join("members/east/extra.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: extra, namespace: demo}\nspec:\n  clusterIP: 10.96.9.9\n  ports: [{name: http, port: 80}]\n",
    )
    .unwrap();
    eventually("the new Service's clusters are sent", || {
        let diff = proxy_status(&admin, Some(NODE));
        (diff.starts_with(&format!("{NODE}: in sync")) && clusters(&diff) > before).then_some(())
    });
    // The last response of the stream, to refuse it.
    let mut pushed: Option<DiscoveryResponse> = None;
    while let Ok(Ok(Some(response))) = runtime.block_on(async {
        tokio::time::timeout(std::time::Duration::from_millis(500), responses.1.message()).await
    }) {
        pushed = Some(response);
    }
    let pushed = pushed.expect("a push after the change");

    // Refused: NACKED, with the proxy's error.
    runtime
        .block_on(
            responses
                .0
                .send(reply(&pushed, Some("cluster refused: test"))),
        )
        .unwrap();
    eventually("the NACK is shown", || {
        let table = proxy_status(&admin, None);
        (row(&admin)[5] == "NACKED"
            && table.contains(&format!("{NODE} NACKed CDS {}", pushed.version_info))
            && table.contains("cluster refused: test"))
        .then_some(())
    });
    drop(responses);
    drop(bowline);
}
