//! The ADS client: N streams over a few HTTP/2 connections, each subscribed to one EDS
//! cluster, ACKing every response and reporting what each ClusterLoadAssignment holds.
//!
//! ```text
//!  connection 0 ─┬─ stream 0 ──┐
//!                ├─ ...        ├─ Report { stream, seen, at } ──► driver (mpsc)
//!  connection k ─┴─ stream N-1 ┘
//! ```

use std::time::{Duration, Instant};

use envoy_types::pb::{
    envoy::{
        config::{
            core::v3::{Node, address::Address as AddressKind},
            endpoint::v3::{ClusterLoadAssignment, lb_endpoint::HostIdentifier},
        },
        service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest},
    },
    google::protobuf::{Struct, Value, value::Kind},
};
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::{
    scenario::Seen,
    wire::{RawResponses, Received},
};

/// The EDS type URL.
pub const ENDPOINT_TYPE: &str =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// Which ADS variant the streams speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// State of the world (`StreamAggregatedResources`).
    Sotw,
    /// Incremental (`DeltaAggregatedResources`).
    Delta,
}

/// A ClusterLoadAssignment of the subscribed cluster, as one stream received it.
#[derive(Clone, Copy, Debug)]
pub struct Report {
    /// The stream's index.
    pub stream: usize,
    /// What it holds.
    pub seen: Seen,
    /// When the response carrying it was received (before decoding).
    pub at: Instant,
}

/// What a stream must recognize in the assignments it receives.
#[derive(Clone, Debug)]
pub struct Target {
    /// The EDS cluster name.
    pub cluster: String,
    /// The address [`Seen::added`] looks for.
    pub added: String,
    /// The address [`Seen::flipped`] looks for.
    pub flipped: String,
}

impl Target {
    /// Reduces an assignment to what the changes move.
    pub fn seen(&self, cla: &ClusterLoadAssignment) -> Seen {
        let mut seen = Seen {
            endpoints: 0,
            added: false,
            flipped: false,
        };
        for lb in cla.endpoints.iter().flat_map(|l| &l.lb_endpoints) {
            seen.endpoints += 1;
            let Some(HostIdentifier::Endpoint(endpoint)) = &lb.host_identifier else {
                continue;
            };
            let Some(AddressKind::SocketAddress(socket)) =
                endpoint.address.as_ref().and_then(|a| a.address.as_ref())
            else {
                continue;
            };
            seen.added |= socket.address == self.added;
            seen.flipped |= socket.address == self.flipped;
        }
        seen
    }
}

/// The node of stream `i`: an Envoy in member `m0` on network `net`.
fn node(i: usize) -> Node {
    let s = |v: &str| Value {
        kind: Some(Kind::StringValue(v.into())),
    };
    Node {
        id: format!("bench-{i}"),
        user_agent_name: "envoy".into(),
        metadata: Some(Struct {
            fields: [
                ("CLUSTER_ID", s("m0")),
                ("NETWORK", s("net")),
                ("INSTANCE_IPS", s("10.255.0.1")),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        }),
        ..Default::default()
    }
}

/// Connects to `addr` until it accepts (the server may still be starting).
async fn connect(addr: &str, deadline: Instant) -> anyhow::Result<Channel> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2));
    loop {
        match endpoint.connect().await {
            Ok(channel) => return Ok(channel),
            Err(e) if Instant::now() > deadline => anyhow::bail!("cannot connect to {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Opens `n` streams, `per_connection` to an HTTP/2 connection, and returns their tasks
/// (abort them to close the streams). Each report goes to `reports`.
pub async fn open(
    addr: &str,
    n: usize,
    per_connection: usize,
    protocol: Protocol,
    target: &Target,
    reports: mpsc::UnboundedSender<Report>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut tasks = Vec::with_capacity(n);
    let mut channel = None;
    for i in 0..n {
        if i % per_connection.max(1) == 0 {
            channel = Some(connect(addr, deadline).await?);
        }
        let connection = channel.clone().expect("connected");
        let (target, reports) = (target.clone(), reports.clone());
        tasks.push(tokio::spawn(async move {
            let result = match protocol {
                Protocol::Sotw => sotw(connection, i, &target, &reports).await,
                Protocol::Delta => delta(connection, i, &target, &reports).await,
            };
            if let Err(e) = result {
                log_failure(i, &e);
            }
        }));
    }
    Ok(tasks)
}

/// A stream that fails is reported on stderr (the driver sees it as a stream that never
/// receives the expected assignment).
#[allow(clippy::print_stderr)]
fn log_failure(stream: usize, e: &anyhow::Error) {
    eprintln!("stream {stream}: {e:#}");
}

/// The ADS methods' paths.
const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// Opens an ADS stream sending `requests`, with the responses as their bytes.
async fn call<T: prost::Message + Send + Sync + 'static>(
    channel: Channel,
    path: &'static str,
    requests: mpsc::Receiver<T>,
) -> anyhow::Result<tonic::Streaming<bytes::Bytes>> {
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(64 << 20);
    grpc.ready().await?;
    let request = tonic::Request::new(ReceiverStream::new(requests));
    let path = http::uri::PathAndQuery::from_static(path);
    let response = grpc
        .streaming(request, path, RawResponses::<T>::default())
        .await?;
    Ok(response.into_inner())
}

/// Reports the assignments of the target cluster in `received`.
fn report(received: &Received, i: usize, at: Instant, reports: &mpsc::UnboundedSender<Report>) {
    for seen in &received.seen {
        let _ = reports.send(Report {
            stream: i,
            seen: *seen,
            at,
        });
    }
}

async fn sotw(
    channel: Channel,
    i: usize,
    target: &Target,
    reports: &mpsc::UnboundedSender<Report>,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel(4);
    let request = |version: String, nonce: String| DiscoveryRequest {
        type_url: ENDPOINT_TYPE.into(),
        resource_names: vec![target.cluster.clone()],
        version_info: version,
        response_nonce: nonce,
        ..Default::default()
    };
    tx.send(DiscoveryRequest {
        node: Some(node(i)),
        ..request(String::new(), String::new())
    })
    .await?;
    let mut responses = call(channel, SOTW_PATH, rx).await?;
    while let Some(response) = responses.message().await? {
        let at = Instant::now();
        let received = Received::read(&response, false, target)?;
        tx.send(request(received.version.clone(), received.nonce.clone()))
            .await?;
        report(&received, i, at, reports);
    }
    Ok(())
}

async fn delta(
    channel: Channel,
    i: usize,
    target: &Target,
    reports: &mpsc::UnboundedSender<Report>,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(DeltaDiscoveryRequest {
        node: Some(node(i)),
        type_url: ENDPOINT_TYPE.into(),
        resource_names_subscribe: vec![target.cluster.clone()],
        ..Default::default()
    })
    .await?;
    let mut responses = call(channel, DELTA_PATH, rx).await?;
    while let Some(response) = responses.message().await? {
        let at = Instant::now();
        let received = Received::read(&response, true, target)?;
        tx.send(DeltaDiscoveryRequest {
            type_url: ENDPOINT_TYPE.into(),
            response_nonce: received.nonce.clone(),
            ..Default::default()
        })
        .await?;
        report(&received, i, at, reports);
    }
    Ok(())
}
