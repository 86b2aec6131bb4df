//! Push benchmark: N state-of-the-world streams subscribed to one cluster's endpoints in a
//! ClusterSet of 100,000 endpoints; one endpoint of that cluster changes; how long until every
//! stream has received the new ClusterLoadAssignment, and how much memory a stream costs.
//!
//! Run: `cargo bench -p bowline-xds --bench push` (prints a table; not criterion, because the
//! measured unit is a fan-out to many streams).

#![allow(clippy::print_stdout)]

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use bowline_mcs::{Controller, McsConfig};
use bowline_model::{
    Network,
    export::{ExportDefault, ExportPolicy},
};
use bowline_registry::{MemberConfig, Registry};
use bowline_test_support::{ads, applied, member, scale_events, scale_slice};
use bowline_views::{ClusterSet, Input, Views};
use bowline_xds::{resources::type_url, server::Ads, status::Connections};
use envoy_types::pb::envoy::{
    config::core::v3::Node,
    service::discovery::v3::{
        DiscoveryRequest, aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
    },
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

const MEMBERS: usize = 10;
const SERVICES: usize = 100;
const ENDPOINTS: usize = 100;
const CLUSTER: &str = "outbound|80||svc42.bench.svc.clusterset.local";

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The next snapshot of the views stage: one registry read, the MCS outcome from it.
fn snapshot(
    registry: &Registry,
    controller: &mut Controller,
    views: &mut Views,
) -> Arc<ClusterSet> {
    let input = Input::read(registry);
    let outcome = controller.reconcile(&input.mcs, "2026-11-22T00:00:00Z".parse().unwrap());
    views.next(input, outcome)
}

fn node(i: usize) -> Node {
    ads::node(&format!("bench-{i}"), "gRPC bench")
        .at("m0", "net", "10.0.0.1")
        .build()
}

async fn run(n: usize) {
    let mut registry = Registry::new(
        "bench",
        (0..MEMBERS).map(|m| MemberConfig {
            name: member(&format!("m{m}")),
            id: None,
            network: Network::new("net"),
        }),
    );
    registry.apply_all(scale_events(MEMBERS, SERVICES, ENDPOINTS));
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
    let mut views = Views::default();
    let (snapshots, rx) = watch::channel(snapshot(&registry, &mut controller, &mut views));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ads = Ads::new(rx, Connections::default());
    let cache = ads.cache().clone();
    tokio::spawn(bowline_xds::serve(listener, ads, std::future::pending()));

    let before = rss_kib();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<usize>();
    let mut senders = Vec::new();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    for i in 0..n {
        let mut client = AggregatedDiscoveryServiceClient::new(channel.clone());
        let (tx, requests) = mpsc::channel(4);
        tx.send(DiscoveryRequest {
            node: Some(node(i)),
            type_url: type_url::ENDPOINT.into(),
            resource_names: vec![CLUSTER.into()],
            ..Default::default()
        })
        .await
        .unwrap();
        let mut responses = client
            .stream_aggregated_resources(ReceiverStream::new(requests))
            .await
            .unwrap()
            .into_inner();
        let done = done_tx.clone();
        let ack = tx.clone();
        tokio::spawn(async move {
            while let Ok(Some(r)) = responses.message().await {
                let _ = ack
                    .send(DiscoveryRequest {
                        type_url: r.type_url.clone(),
                        resource_names: vec![CLUSTER.into()],
                        version_info: r.version_info.clone(),
                        response_nonce: r.nonce.clone(),
                        ..Default::default()
                    })
                    .await;
                let _ = done.send(i);
            }
        });
        senders.push(tx);
    }
    for _ in 0..n {
        done_rx.recv().await.unwrap();
    }
    let per_stream = (rss_kib().saturating_sub(before)) as f64 / n as f64;

    let (mut fan_out, mut end_to_end) = (Vec::new(), Vec::new());
    let stats = cache.stats();
    for round in 0..10 {
        let flip = round % 2 == 0;
        let change = applied("m3", vec![scale_slice(3, 42, 0, ENDPOINTS, flip)]);
        let changed = Instant::now();
        registry.apply(change);
        let next = snapshot(&registry, &mut controller, &mut views);
        let published = Instant::now();
        snapshots.send(next).unwrap();
        for _ in 0..n {
            done_rx.recv().await.unwrap();
        }
        fan_out.push(published.elapsed());
        end_to_end.push(changed.elapsed());
    }
    let work = cache.stats();
    let eds = |s: &bowline_xds::cache::Stats| s.generated.get(type_url::ENDPOINT).copied();
    let generated = eds(&work).unwrap_or(0) - eds(&stats).unwrap_or(0);
    let diffs = work.lookups - stats.lookups;
    let median = |v: &mut Vec<std::time::Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e3
    };
    println!(
        "| {n} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} KiB | {} / {} |",
        median(&mut end_to_end),
        median(&mut fan_out),
        fan_out.iter().max().unwrap().as_secs_f64() * 1e3,
        per_stream,
        generated / 10,
        diffs / 10,
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "| streams | registry change to all streams, median of 10 | snapshot to all streams, median | slowest | memory per stream (client and server) | per change: assignments generated / streams diffing |"
    );
    println!("|---|---|---|---|---|---|");
    for n in [100, 1_000] {
        runtime.block_on(run(n));
    }
}
