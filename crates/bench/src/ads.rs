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
        service::discovery::v3::{
            DeltaDiscoveryRequest, DiscoveryRequest,
            aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
        },
    },
    google::protobuf::{Struct, Value, value::Kind},
};
use prost::Message;
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::scenario::Seen;

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
        let client = AggregatedDiscoveryServiceClient::new(channel.clone().expect("connected"))
            .max_decoding_message_size(64 << 20);
        let (target, reports) = (target.clone(), reports.clone());
        tasks.push(tokio::spawn(async move {
            let result = match protocol {
                Protocol::Sotw => sotw(client, i, &target, &reports).await,
                Protocol::Delta => delta(client, i, &target, &reports).await,
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

async fn sotw(
    mut client: AggregatedDiscoveryServiceClient<Channel>,
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
    let mut responses = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await?
        .into_inner();
    while let Some(response) = responses.message().await? {
        let at = Instant::now();
        tx.send(request(
            response.version_info.clone(),
            response.nonce.clone(),
        ))
        .await?;
        for any in &response.resources {
            let cla = ClusterLoadAssignment::decode(any.value.as_slice())?;
            if cla.cluster_name == target.cluster {
                let seen = target.seen(&cla);
                let _ = reports.send(Report {
                    stream: i,
                    seen,
                    at,
                });
            }
        }
    }
    Ok(())
}

async fn delta(
    mut client: AggregatedDiscoveryServiceClient<Channel>,
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
    let mut responses = client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await?
        .into_inner();
    while let Some(response) = responses.message().await? {
        let at = Instant::now();
        tx.send(DeltaDiscoveryRequest {
            type_url: ENDPOINT_TYPE.into(),
            response_nonce: response.nonce.clone(),
            ..Default::default()
        })
        .await?;
        for resource in &response.resources {
            let Some(any) = &resource.resource else {
                continue;
            };
            let cla = ClusterLoadAssignment::decode(any.value.as_slice())?;
            if cla.cluster_name == target.cluster {
                let seen = target.seen(&cla);
                let _ = reports.send(Report {
                    stream: i,
                    seen,
                    at,
                });
            }
        }
    }
    Ok(())
}
