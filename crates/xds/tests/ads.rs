//! The ADS server scripted message by message from a real gRPC client on loopback.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use bowline_mcs::{Controller, McsConfig, Snapshot};
use bowline_model::{
    Network,
    export::{ExportDefault, ExportPolicy},
    labels,
};
use bowline_registry::{MemberConfig, Registry};
use bowline_test_support::*;
use bowline_views::ClusterSet;
use bowline_xds::{resources::type_url, server::Ads, status::Connections};
use envoy_types::pb::{
    envoy::{
        config::{
            cluster::v3::Cluster,
            core::v3::Node,
            endpoint::v3::{ClusterLoadAssignment, lb_endpoint::HostIdentifier},
            listener::v3::Listener,
            route::v3::RouteConfiguration,
        },
        service::discovery::v3::{
            DiscoveryRequest, DiscoveryResponse,
            aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
        },
    },
    google::rpc::Status as RpcStatus,
};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

fn registry(extra_west_endpoint: bool) -> Registry {
    let mut reg = Registry::new(
        "demo",
        [("east", "net-east"), ("west", "net-west")].map(|(m, n)| MemberConfig {
            name: member(m),
            id: Some(m.into()),
            network: Network::new(n),
        }),
    );
    reg.apply(reset(
        "east",
        vec![
            namespace("demo", &[]),
            service("demo", "echo")
                .cluster_ips(&["10.96.0.10"])
                .port("http", 80)
                .build(),
            slice("demo", "echo-e", "echo")
                .port("http", 8080)
                .endpoint(ep("10.1.0.1").pod("e1").zone("z1"))
                .build(),
        ],
    ));
    let mut west_slice = slice("demo", "echo-w", "echo")
        .port("http", 8080)
        .endpoint(ep("10.2.0.1").pod("w1").zone("z2"));
    if extra_west_endpoint {
        west_slice = west_slice.endpoint(ep("10.2.0.2").pod("w2").zone("z2"));
    }
    reg.apply(reset(
        "west",
        vec![
            namespace("demo", &[]),
            service("demo", "echo")
                .cluster_ips(&["10.97.0.10"])
                .port("http", 80)
                .build(),
            west_slice.build(),
            // Sidecar-injected pods: reached through the gateway with mTLS.
            pod("demo", "w1", &[(labels::TLS_MODE, labels::TLS_MODE_ISTIO)]),
            pod("demo", "w2", &[(labels::TLS_MODE, labels::TLS_MODE_ISTIO)]),
            service("istio-system", "eastwest")
                .label(labels::NETWORK, "net-west")
                .port("tls", 15443)
                .external("192.0.2.20")
                .build(),
        ],
    ));
    reg
}

fn snapshot(extra_west_endpoint: bool) -> Arc<ClusterSet> {
    let reg = registry(extra_west_endpoint);
    let mut controller = Controller::new(
        McsConfig {
            policy: ExportPolicy {
                default: ExportDefault::All,
                cluster_local: vec![],
                ..Default::default()
            },
            pools: vec!["241.0.0.0/16".parse().unwrap()],
        },
        BTreeMap::new(),
    );
    let outcome = controller.reconcile(
        &Snapshot::from_registry(&reg),
        "2026-11-22T00:00:00Z".parse().unwrap(),
    );
    let snapshot = bowline_views::from_scratch(&reg, outcome);
    Arc::new(
        (*snapshot)
            .clone()
            .at_version(1 + u64::from(extra_west_endpoint)),
    )
}

/// A proxyless gRPC client with the node agent's certificates: it crosses gateways.
fn node() -> Node {
    ads::node("client-1", "gRPC Python")
        .at("east", "net-east", "10.1.0.99")
        .meta("BOWLINE_SDS", "true")
        .build()
}

struct Client {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: tonic::Streaming<DiscoveryResponse>,
}

/// An ADS server on loopback reading `snapshots`, and one stream to it.
async fn serve(snapshots: watch::Receiver<Arc<ClusterSet>>) -> (Client, Connections) {
    let connections = Connections::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(bowline_xds::serve(
        listener,
        Ads::new(snapshots, connections.clone()),
        std::future::pending(),
    ));
    let mut grpc = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let (tx, requests) = mpsc::channel(16);
    let rx = grpc
        .stream_aggregated_resources(ReceiverStream::new(requests))
        .await
        .unwrap()
        .into_inner();
    (Client { tx, rx }, connections)
}

impl Client {
    async fn send(
        &self,
        type_url: &str,
        names: &[&str],
        ack: Option<&DiscoveryResponse>,
        error: Option<&str>,
    ) {
        self.tx
            .send(DiscoveryRequest {
                node: Some(node()),
                type_url: type_url.into(),
                resource_names: names.iter().map(|s| s.to_string()).collect(),
                version_info: ack.map(|r| r.version_info.clone()).unwrap_or_default(),
                response_nonce: ack.map(|r| r.nonce.clone()).unwrap_or_default(),
                error_detail: error.map(|m| RpcStatus {
                    code: 3,
                    message: m.into(),
                    details: vec![],
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    async fn recv(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(Duration::from_secs(10), self.rx.message())
            .await
            .expect("a response")
            .unwrap()
            .unwrap()
    }

    async fn nothing(&mut self) {
        let got = tokio::time::timeout(Duration::from_millis(300), self.rx.message()).await;
        assert!(got.is_err(), "expected no response, got {got:?}");
    }
}

const EDS_NAME: &str = "outbound|80||echo.demo.svc.clusterset.local";

#[tokio::test]
async fn grpc_client_conversation() {
    let (snapshots, rx) = watch::channel(snapshot(false));
    let (mut client, connections) = serve(rx).await;

    // LDS for the target, as gRPC asks first: an api_listener with RDS over ADS and the router.
    let listener_name = "echo.demo.svc.clusterset.local:80";
    client
        .send(type_url::LISTENER, &[listener_name], None, None)
        .await;
    let lds = client.recv().await;
    assert_eq!(lds.resources.len(), 1);
    let listener = Listener::decode(lds.resources[0].value.as_slice()).unwrap();
    assert_eq!(listener.name, listener_name);
    assert!(listener.api_listener.is_some());
    client
        .send(type_url::LISTENER, &[listener_name], Some(&lds), None)
        .await;

    client
        .send(type_url::ROUTE, &[listener_name], None, None)
        .await;
    let rds = client.recv().await;
    let routes = RouteConfiguration::decode(rds.resources[0].value.as_slice()).unwrap();
    assert_eq!(
        routes.virtual_hosts[0].domains,
        vec!["echo.demo.svc.clusterset.local", listener_name]
    );
    client
        .send(type_url::ROUTE, &[listener_name], Some(&rds), None)
        .await;

    // CDS: the cluster, EDS over ADS.
    client
        .send(type_url::CLUSTER, &[EDS_NAME], None, None)
        .await;
    let cds = client.recv().await;
    let clusters: Vec<String> = cds
        .resources
        .iter()
        .map(|r| Cluster::decode(r.value.as_slice()).unwrap().name)
        .collect();
    assert_eq!(clusters, vec![EDS_NAME]);
    client
        .send(type_url::CLUSTER, &[EDS_NAME], Some(&cds), None)
        .await;

    // EDS: east's endpoint directly, west's behind its gateway, every locality weighted.
    client
        .send(type_url::ENDPOINT, &[EDS_NAME], None, None)
        .await;
    let eds = client.recv().await;
    let weights = |r: &DiscoveryResponse| -> Vec<(String, u32, u32)> {
        let cla = ClusterLoadAssignment::decode(r.resources[0].value.as_slice()).unwrap();
        cla.endpoints
            .iter()
            .flat_map(|l| {
                let lw = l.load_balancing_weight.as_ref().unwrap().value;
                l.lb_endpoints.iter().map(move |e| {
                    let Some(HostIdentifier::Endpoint(ep)) = &e.host_identifier else {
                        panic!()
                    };
                    let Some(
                        envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(
                            sa,
                        ),
                    ) = &ep.address.as_ref().unwrap().address
                    else {
                        panic!()
                    };
                    (
                        sa.address.clone(),
                        e.load_balancing_weight.as_ref().unwrap().value,
                        lw,
                    )
                })
            })
            .collect()
    };
    assert_eq!(
        weights(&eds),
        vec![("10.1.0.1".into(), 1, 1), ("192.0.2.20".into(), 1, 1)]
    );
    client
        .send(type_url::ENDPOINT, &[EDS_NAME], Some(&eds), None)
        .await;
    client.nothing().await;

    // A second endpoint in west: only EDS is pushed, the gateway now weighs 2.
    snapshots.send(snapshot(true)).unwrap();
    let push = client.recv().await;
    assert_eq!(push.type_url, type_url::ENDPOINT);
    assert_eq!(
        weights(&push),
        vec![("10.1.0.1".into(), 1, 1), ("192.0.2.20".into(), 2, 2)]
    );
    client.nothing().await;

    // The config dump shows what this stream was last sent.
    let dump = bowline_xds::dump::sent_dump(&connections.list()[0]);
    let sent: Vec<(String, u64)> = dump["endpoints"][0]["localities"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["endpoints"].as_array().unwrap().iter())
        .map(|e| {
            (
                e["address"].as_str().unwrap().to_string(),
                e["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        vec![
            ("10.1.0.1:8080".to_string(), 1),
            ("192.0.2.20:15443".to_string(), 2)
        ]
    );
    assert_eq!(dump["listeners"][0]["name"], listener_name);

    // A NACK is recorded and not answered with the same content.
    client
        .send(
            type_url::ENDPOINT,
            &[EDS_NAME],
            Some(&push),
            Some("bad endpoint"),
        )
        .await;
    client.nothing().await;
    assert_eq!(connections.nacks(), 1);
    let status = &connections.list()[0];
    assert_eq!(status.proxy.member.as_deref(), Some("east"));
    assert!(
        status.types[type_url::ENDPOINT]
            .last_nack
            .as_deref()
            .unwrap()
            .contains("bad endpoint")
    );
    assert_eq!(
        status.types[type_url::CLUSTER].acked_version.as_deref(),
        Some("1")
    );
}

#[tokio::test]
async fn delta_subscriptions_survive_a_crossing_push() {
    use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
    let (snapshots, rx) = watch::channel(snapshot(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(bowline_xds::serve(
        listener,
        Ads::new(rx, Connections::default()),
        std::future::pending(),
    ));
    let mut grpc = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let (tx, requests) = mpsc::channel(16);
    let mut rx = grpc
        .delta_aggregated_resources(ReceiverStream::new(requests))
        .await
        .unwrap()
        .into_inner();
    let mut envoy_node = node();
    envoy_node.user_agent_name = "envoy".into();
    let request = |subscribe: &[&str], nonce: &str| DeltaDiscoveryRequest {
        node: Some(envoy_node.clone()),
        type_url: type_url::ENDPOINT.into(),
        resource_names_subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
        response_nonce: nonce.into(),
        ..Default::default()
    };
    let cluster_local = "outbound|80||echo.demo.svc.cluster.local";
    tx.send(request(&[EDS_NAME], "")).await.unwrap();
    let first = next_delta(&mut rx).await;
    assert_eq!(first.resources[0].name, EDS_NAME);

    // The ClusterSet changes and the server pushes while the client, not having seen that push
    // yet, subscribes to another cluster with the older nonce.
    snapshots.send(snapshot(true)).unwrap();
    let pushed = next_delta(&mut rx).await;
    assert_eq!(pushed.resources[0].name, EDS_NAME);
    tx.send(request(&[cluster_local], &first.nonce))
        .await
        .unwrap();
    let answer = next_delta(&mut rx).await;
    assert_eq!(
        answer
            .resources
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        vec![cluster_local]
    );
}

async fn next_delta(
    rx: &mut tonic::Streaming<
        envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse,
    >,
) -> envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse {
    tokio::time::timeout(Duration::from_secs(10), rx.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

/// Records what the server tells the VM registration.
#[derive(Default)]
struct Recorder {
    events: parking_lot::Mutex<Vec<String>>,
}

impl bowline_xds::server::Workloads for Recorder {
    fn connected(&self, c: bowline_xds::server::Connecting<'_>) -> Result<(), tonic::Status> {
        self.events.lock().push(format!("connected {}", c.stream));
        Ok(())
    }
    fn health(&self, stream: u64, healthy: bool, _message: Option<String>) {
        self.events
            .lock()
            .push(format!("health {stream} {healthy}"));
    }
    fn disconnected(&self, stream: u64) {
        self.events.lock().push(format!("disconnected {stream}"));
    }
}

/// A proxy that stops reading while pushes keep coming, then goes away: the stream's end is
/// still reported (a VM's entry must be marked disconnected), and health reports are passed on
/// without being answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_proxy_that_goes_away_is_reported_disconnected() {
    let (snapshots, rx) = watch::channel(snapshot(false));
    let recorder = Arc::new(Recorder::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(bowline_xds::serve(
        listener,
        Ads::new(rx, Connections::default()).with_workloads(recorder.clone()),
        std::future::pending(),
    ));
    // Small flow-control windows: a client that stops reading backs the server up soon.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .initial_stream_window_size(Some(1024))
        .initial_connection_window_size(Some(1024))
        .connect()
        .await
        .unwrap();
    let mut grpc = AggregatedDiscoveryServiceClient::new(channel);
    let (tx, requests) = mpsc::channel(16);
    let rx = grpc
        .stream_aggregated_resources(ReceiverStream::new(requests))
        .await
        .unwrap()
        .into_inner();
    let mut client = Client { tx, rx };
    client
        .send(type_url::ENDPOINT, &[EDS_NAME], None, None)
        .await;
    let first = client.recv().await;
    client
        .send(type_url::ENDPOINT, &[EDS_NAME], Some(&first), None)
        .await;
    client
        .send(
            bowline_xds::server::HEALTH_INFORMATION,
            &[],
            None,
            Some("probe failed"),
        )
        .await;
    client.nothing().await;
    assert_eq!(
        recorder.events.lock().clone(),
        ["connected 1", "health 1 false"],
        "a health report is passed on, not answered"
    );

    // The client stops reading; every snapshot makes a push until the stream backs up.
    let toggles = snapshot(true);
    let back = snapshot(false);
    for i in 0..6000 {
        snapshots.send_replace(if i % 2 == 0 {
            toggles.clone()
        } else {
            back.clone()
        });
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
    drop(client);
    drop(grpc);
    for i in 0..400 {
        if recorder.events.lock().iter().any(|e| e == "disconnected 1") {
            return;
        }
        snapshots.send_replace(snapshot(i % 2 == 0));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never reported disconnected: {:?}", recorder.events.lock());
}

/// Opens a state-of-the-world stream to a fresh server, sends `request`, and returns the
/// status the stream ends with.
async fn refused(request: DiscoveryRequest) -> tonic::Status {
    let (_snapshots, rx) = watch::channel(snapshot(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(bowline_xds::serve(
        listener,
        Ads::new(rx, Connections::default()),
        std::future::pending(),
    ));
    let mut grpc = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
        .max_encoding_message_size(64 << 20);
    let mut rx = grpc
        .stream_aggregated_resources(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.message())
            .await
            .expect("the stream ends")
        {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => return status,
        }
    }
}

#[tokio::test]
async fn a_huge_node_or_subscription_ends_the_stream_with_a_status_naming_the_bound() {
    let mut big = node();
    big.metadata
        .as_mut()
        .unwrap()
        .fields
        .insert("PADDING".into(), prost_types_value("x".repeat(100 * 1024)));
    let status = refused(DiscoveryRequest {
        node: Some(big),
        type_url: type_url::CLUSTER.into(),
        ..Default::default()
    })
    .await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("65536 allowed"), "{status:?}");

    let status = refused(DiscoveryRequest {
        node: Some(node()),
        type_url: type_url::ENDPOINT.into(),
        resource_names: (0..100_001).map(|i| format!("outbound|80||n{i}")).collect(),
        ..Default::default()
    })
    .await;
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("100001 names"), "{status:?}");
}

fn prost_types_value(text: String) -> envoy_types::pb::google::protobuf::Value {
    envoy_types::pb::google::protobuf::Value {
        kind: Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(
            text,
        )),
    }
}

/// The snapshot of [`snapshot`], but built while Bowline is starting.
fn starting_snapshot() -> Arc<ClusterSet> {
    let reg = registry(false);
    let outcome = snapshot(false).outcome.clone();
    bowline_views::Views::starting().next(bowline_views::Input::read(&reg), outcome)
}

#[tokio::test]
async fn requests_made_while_bowline_is_starting_are_answered_once_it_has_started() {
    let (snapshots, rx) = watch::channel(Arc::new(ClusterSet::before_start()));
    let (mut client, connections) = serve(rx).await;

    // An empty or incomplete ClusterSet is not served: a proxy would drop what it has.
    client
        .send(type_url::CLUSTER, &[EDS_NAME], None, None)
        .await;
    client
        .send(type_url::ENDPOINT, &[EDS_NAME], None, None)
        .await;
    client.nothing().await;
    snapshots.send_replace(starting_snapshot());
    client.nothing().await;
    assert!(
        connections.list().is_empty(),
        "a held stream is not identified yet"
    );

    // Started: both requests are answered, in order, from the complete snapshot.
    snapshots.send_replace(snapshot(false));
    let cds = client.recv().await;
    assert_eq!(cds.type_url, type_url::CLUSTER);
    let cluster = Cluster::decode(cds.resources[0].value.as_slice()).unwrap();
    assert_eq!(cluster.name, EDS_NAME);
    let eds = client.recv().await;
    assert_eq!(eds.type_url, type_url::ENDPOINT);
    let assignment = ClusterLoadAssignment::decode(eds.resources[0].value.as_slice()).unwrap();
    assert_eq!(assignment.cluster_name, EDS_NAME);
    assert!(!assignment.endpoints.is_empty());
    client.nothing().await;
    assert_eq!(connections.list().len(), 1);
}
