//! The resource cache across snapshots of the views stage: what a change regenerates (counted),
//! what it makes streams diff, and that per-name generation equals the wildcard one.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use bowline_mcs::{Controller, McsConfig};
use bowline_model::{
    Network, Object,
    export::{ExportDefault, ExportPolicy},
    labels,
};
use bowline_registry::{MemberConfig, Registry};
use bowline_test_support::*;
use bowline_views::{ClusterSet, Input, Views};
use bowline_xds::{
    cache::{Cache, Names, Touched},
    node::ProxyInfo,
    resources::{generate, type_url},
    server::Ads,
    status::Connections,
};
use envoy_types::pb::envoy::{
    config::core::v3::Node,
    service::discovery::v3::{
        DiscoveryRequest, DiscoveryResponse,
        aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
    },
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

const ECHO: &str = "outbound|80||echo.demo.svc.clusterset.local";
const ECHO_LOCAL: &str = "outbound|80||echo.demo.svc.cluster.local";
const OTHER: &str = "outbound|80||other.demo.svc.clusterset.local";

/// A ClusterSet of two members built through the views stage, changed step by step.
struct Set {
    registry: Registry,
    controller: Controller,
    views: Views,
}

fn echo_slice(endpoints: &[&str]) -> Object {
    let mut slice = slice("demo", "echo-w", "echo").port("http", 8080);
    for (i, address) in endpoints.iter().enumerate() {
        slice = slice.endpoint(ep(address).pod(&format!("w{i}")).zone("z2"));
    }
    slice.build()
}

impl Set {
    fn new() -> Self {
        let mut registry = Registry::new(
            "demo",
            [("east", "net-east"), ("west", "net-west")].map(|(m, n)| MemberConfig {
                name: member(m),
                id: Some(m.into()),
                network: Network::new(n),
            }),
        );
        for (m, ip, address) in [
            ("east", "10.96.0.10", "10.1.0.1"),
            ("west", "10.97.0.10", ""),
        ] {
            let mut objects = vec![
                namespace("demo", &[]),
                service("demo", "echo")
                    .cluster_ips(&[ip])
                    .port("http", 80)
                    .build(),
                service("demo", "other").port("http", 80).build(),
                slice("demo", &format!("other-{m}"), "other")
                    .port("http", 8080)
                    .endpoint(ep(if m == "east" { "10.1.1.1" } else { "10.2.1.1" }).pod("o"))
                    .build(),
            ];
            if m == "east" {
                objects.push(
                    slice("demo", "echo-e", "echo")
                        .port("http", 8080)
                        .endpoint(ep(address).pod("e1").zone("z1"))
                        .build(),
                );
            } else {
                objects.push(echo_slice(&["10.2.0.1"]));
                // West's pods have sidecars: east reaches them through the gateway, with mTLS.
                for name in ["w0", "w1", "w2", "o", "o0", "o1", "o2"] {
                    objects.push(pod(
                        "demo",
                        name,
                        &[(labels::TLS_MODE, labels::TLS_MODE_ISTIO)],
                    ));
                }
                objects.push(
                    service("istio-system", "eastwest")
                        .label(labels::NETWORK, "net-west")
                        .port("tls", 15443)
                        .external("192.0.2.20")
                        .build(),
                );
            }
            registry.apply(reset(m, objects));
        }
        let controller = Controller::new(
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
        Self {
            registry,
            controller,
            views: Views::default(),
        }
    }

    fn snapshot(&mut self) -> Arc<ClusterSet> {
        let input = Input::read(&self.registry);
        let outcome = self
            .controller
            .reconcile(&input.mcs, "2026-11-22T00:00:00Z".parse().unwrap());
        self.views.next(input, outcome)
    }

    fn apply(&mut self, member: &str, objects: Vec<Object>) -> Arc<ClusterSet> {
        self.registry.apply(applied(member, objects));
        self.snapshot()
    }
}

/// A proxy with the node agent's certificates (it crosses gateways).
fn node(id: &str, agent: &str, member: &str, network: &str) -> Node {
    ads::node(id, agent)
        .at(member, network, "10.1.0.99")
        .meta("BOWLINE_SDS", "true")
        .build()
}

fn proxy(agent: &str, member: &str) -> ProxyInfo {
    ProxyInfo::from_node(&node("p", agent, member, &format!("net-{member}")))
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

const TYPES: [&str; 4] = [
    type_url::CLUSTER,
    type_url::ENDPOINT,
    type_url::LISTENER,
    type_url::ROUTE,
];

/// Asks for everything an Envoy of east holds: the wildcard types and three assignments.
fn ask_all(cache: &Cache, proxy: &ProxyInfo, snapshot: &Arc<ClusterSet>) {
    for t in TYPES {
        let subscribed = names(&[ECHO, ECHO_LOCAL, OTHER]);
        let named = (t == type_url::ENDPOINT).then_some(&subscribed);
        cache.get(t, proxy, snapshot, named);
    }
}

fn generated(cache: &Cache) -> Vec<u64> {
    let stats = cache.stats();
    TYPES
        .iter()
        .map(|t| stats.generated.get(t).copied().unwrap_or(0))
        .collect()
}

#[test]
fn an_endpoint_change_regenerates_only_the_assignments_of_its_service() {
    let mut set = Set::new();
    let cache = Cache::default();
    let envoy = proxy("envoy", "east");
    let first = set.snapshot();
    ask_all(&cache, &envoy, &first);
    // CDS, EDS (one per name), LDS, RDS.
    assert_eq!(generated(&cache), [1, 3, 1, 1]);
    ask_all(&cache, &envoy, &first);
    assert_eq!(generated(&cache), [1, 3, 1, 1], "cached");

    // One more endpoint of echo in west: echo's two assignments, nothing else.
    let second = set.apply("west", vec![echo_slice(&["10.2.0.1", "10.2.0.2"])]);
    let touched = cache.touched(&envoy, first.version, &second);
    assert_eq!(
        touched,
        Touched {
            shape: false,
            eds: Names::Some(names(&[ECHO, ECHO_LOCAL])),
        }
    );
    ask_all(&cache, &envoy, &second);
    assert_eq!(generated(&cache), [1, 5, 1, 1]);
    assert_eq!(
        touched.of(type_url::ENDPOINT, Some(&names(&[OTHER]))),
        None,
        "a stream of other only has nothing to diff"
    );
    assert_eq!(touched.of(type_url::CLUSTER, None), None);

    // A new port of echo in east: east's clusters, listeners and routes change.
    let service = service("demo", "echo")
        .cluster_ips(&["10.96.0.10"])
        .port("http", 80)
        .port("grpc", 9090)
        .build();
    let third = set.apply("east", vec![service]);
    let touched = cache.touched(&envoy, second.version, &third);
    assert!(touched.shape, "{touched:?}");
    ask_all(&cache, &envoy, &third);
    let [cds, _, lds, rds] = generated(&cache)[..] else {
        unreachable!()
    };
    assert_eq!((cds, lds, rds), (2, 2, 2));
    // And a stream that skipped the middle snapshot sees both changes.
    let skipped = cache.touched(&envoy, first.version, &third);
    assert!(skipped.shape);
    assert!(matches!(&skipped.eds, Names::Some(n) if n.contains(ECHO)));

    // Every cached resource equals what is generated from scratch.
    for t in TYPES {
        let subscribed = names(&[ECHO, ECHO_LOCAL, OTHER]);
        let named = (t == type_url::ENDPOINT).then_some(&subscribed);
        let cached = cache.get(t, &envoy, &third, named);
        let fresh = generate(t, &envoy, &third, named);
        let cached: BTreeMap<String, _> =
            cached.iter().map(|(n, e)| (n.clone(), e.any())).collect();
        assert_eq!(cached, fresh, "{t}");
    }
}

#[test]
fn a_gateway_change_regenerates_every_assignment_but_no_cluster() {
    let mut set = Set::new();
    let cache = Cache::default();
    let envoy = proxy("envoy", "east");
    let first = set.snapshot();
    ask_all(&cache, &envoy, &first);
    let gateway = service("istio-system", "eastwest")
        .label(labels::NETWORK, "net-west")
        .port("tls", 15443)
        .external("192.0.2.21")
        .build();
    let second = set.apply("west", vec![gateway]);
    assert_eq!(
        cache.touched(&envoy, first.version, &second),
        Touched {
            shape: false,
            eds: Names::All
        }
    );
    ask_all(&cache, &envoy, &second);
    assert_eq!(generated(&cache), [1, 6, 1, 1]);
}

#[test]
fn a_class_keeps_its_entries_until_its_last_stream_leaves() {
    let mut set = Set::new();
    let cache = Cache::default();
    let snapshot = set.snapshot();
    let (envoy, grpc) = (proxy("envoy", "east"), proxy("gRPC Python", "east"));
    for p in [&envoy, &envoy, &grpc] {
        cache.join(p);
        ask_all(&cache, p, &snapshot);
    }
    assert_eq!(cache.stats().classes, 2);
    cache.leave(&envoy);
    assert_eq!(cache.stats().classes, 2, "one envoy stream is left");
    cache.leave(&envoy);
    assert_eq!(cache.stats().classes, 1);
    cache.leave(&grpc);
    assert_eq!(cache.stats().classes, 0);
}

#[test]
fn made_up_names_leave_the_cache_as_it_was() {
    let mut set = Set::new();
    let cache = Cache::default();
    let snapshot = set.snapshot();
    let envoy = proxy("envoy", "east");
    cache.join(&envoy);
    ask_all(&cache, &envoy, &snapshot);
    let before = cache.stats().entries;
    let made_up: BTreeSet<String> = (0..10_000)
        .map(|i| format!("outbound|80||made-up-{i}.demo.svc.cluster.local"))
        .collect();
    let got = cache.get(type_url::ENDPOINT, &envoy, &snapshot, Some(&made_up));
    assert!(got.is_empty(), "no such clusters");
    assert_eq!(
        cache.stats().entries,
        before,
        "nothing kept for names that resolve to nothing"
    );
    cache.leave(&envoy);
    assert_eq!(
        cache.stats().entries,
        0,
        "the class's entries leave with its last stream"
    );
}

#[test]
fn named_assignments_equal_those_of_the_wildcard() {
    let mut set = Set::new();
    let snapshot = set.snapshot();
    for proxy in [
        proxy("envoy", "east"),
        proxy("envoy", "west"),
        proxy("gRPC Python", "east"),
        ProxyInfo::from_node(&node("p", "envoy", "", "")),
    ] {
        let all = generate(type_url::ENDPOINT, &proxy, &snapshot, None);
        assert!(all.len() >= 3, "{:?}", all.keys());
        for (name, any) in &all {
            let one = generate(type_url::ENDPOINT, &proxy, &snapshot, Some(&names(&[name])));
            assert_eq!(one.get(name), Some(any), "{name} for {proxy:?}");
        }
        let unknown = names(&[
            "outbound|81||echo.demo.svc.clusterset.local",
            "outbound|080||x",
        ]);
        assert!(generate(type_url::ENDPOINT, &proxy, &snapshot, Some(&unknown)).is_empty());
    }
}

struct Client {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: tonic::Streaming<DiscoveryResponse>,
}

impl Client {
    async fn open(addr: std::net::SocketAddr, id: &str, cluster: &str) -> Self {
        let mut grpc = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let (tx, requests) = mpsc::channel(16);
        let rx = grpc
            .stream_aggregated_resources(ReceiverStream::new(requests))
            .await
            .unwrap()
            .into_inner();
        let mut client = Self { tx, rx };
        client
            .send(Some(node(id, "gRPC Python", "east", "net-east")), cluster)
            .await;
        assert_eq!(client.recv().await.version_info, "1");
        client
    }

    async fn send(&self, node: Option<Node>, cluster: &str) {
        let request = DiscoveryRequest {
            node,
            type_url: type_url::ENDPOINT.into(),
            resource_names: vec![cluster.into()],
            ..Default::default()
        };
        self.tx.send(request).await.unwrap();
    }

    async fn recv(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(Duration::from_secs(10), self.rx.message())
            .await
            .expect("a response")
            .unwrap()
            .unwrap()
    }
}

/// Two streams of one class, subscribed to different assignments: a change of one's service
/// is diffed and sent by that stream only (the clients do not ACK, so that every diff counted
/// is a push's).
#[tokio::test]
async fn only_the_streams_subscribed_to_a_changed_assignment_diff_it() {
    let mut set = Set::new();
    let (snapshots, rx) = watch::channel(set.snapshot());
    let ads = Ads::new(rx, Connections::default());
    let cache = ads.cache().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(bowline_xds::serve(listener, ads, std::future::pending()));
    let mut echo = Client::open(addr, "echo-client", ECHO).await;
    let mut other = Client::open(addr, "other-client", OTHER).await;
    let before = cache.stats();

    let echo_change = |endpoints: &[&str]| echo_slice(endpoints);
    // West's endpoints are behind its gateway for east's proxies: a change shows in the
    // gateway's weight, the number of endpoints behind it.
    let other_change = |addresses: &[&str]| {
        let mut slice = slice("demo", "other-west", "other").port("http", 8080);
        for (i, address) in addresses.iter().enumerate() {
            slice = slice.endpoint(ep(address).pod(&format!("o{i}")));
        }
        slice.build()
    };
    // Each stream's next response is the one for its own change: the version counts them.
    snapshots
        .send(set.apply("west", vec![echo_change(&["10.2.0.1", "10.2.0.2"])]))
        .unwrap();
    assert_eq!(echo.recv().await.version_info, "2");
    snapshots
        .send(set.apply("west", vec![other_change(&["10.2.1.1", "10.2.1.2"])]))
        .unwrap();
    assert_eq!(other.recv().await.version_info, "2");
    snapshots
        .send(set.apply("west", vec![echo_change(&["10.2.0.1"])]))
        .unwrap();
    assert_eq!(echo.recv().await.version_info, "3");
    snapshots
        .send(set.apply("west", vec![other_change(&["10.2.1.1"])]))
        .unwrap();
    assert_eq!(other.recv().await.version_info, "3");

    let after = cache.stats();
    assert_eq!(
        after.lookups - before.lookups,
        4,
        "one diff per change, by the stream subscribed"
    );
    let eds = |s: &bowline_xds::cache::Stats| s.generated[type_url::ENDPOINT];
    assert_eq!(eds(&after) - eds(&before), 4, "one assignment per change");
}

fn peer_authentication(
    namespace: &str,
    name: &str,
    selector: Option<&[(&str, &str)]>,
    mode: bowline_model::objects::MtlsMode,
) -> Object {
    Object::PeerAuthentication(Box::new(bowline_model::objects::PeerAuthentication {
        meta: bowline_model::objects::Meta::named(namespace, name),
        selector: selector.map(|s| {
            s.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        }),
        mode,
        port_level: BTreeMap::new(),
    }))
}

/// The filter chains' transport protocols of each inbound listener.
fn inbound_chains(
    cache: &Cache,
    proxy: &ProxyInfo,
    snapshot: &Arc<ClusterSet>,
) -> Vec<(String, Vec<String>)> {
    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use prost::Message as _;
    cache
        .get(type_url::LISTENER, proxy, snapshot, None)
        .iter()
        .filter(|(name, _)| name.starts_with("inbound_"))
        .map(|(name, encoded)| {
            let listener = Listener::decode(encoded.any().value.as_slice()).unwrap();
            let chains = listener
                .filter_chains
                .iter()
                .map(|c| {
                    c.filter_chain_match
                        .clone()
                        .unwrap_or_default()
                        .transport_protocol
                })
                .collect();
            (name.clone(), chains)
        })
        .collect()
}

#[test]
fn a_peer_authentication_reshapes_only_its_members_inbound_listeners() {
    use bowline_model::objects::MtlsMode;
    let mut set = Set::new();
    let cache = Cache::default();
    // An echo pod's sidecar in east, with the agent's SDS and two ports.
    let sidecar = ProxyInfo::from_node(
        &ads::node("echo-e1", "envoy")
            .at("east", "net-east", "10.1.0.1")
            .meta("BOWLINE_SDS", "true")
            .meta("NAMESPACE", "demo")
            .labels(&[("app", "echo")])
            .meta(
                "POD_PORTS",
                r#"[{"name":"http","containerPort":8080},{"name":"tcp-admin","containerPort":9000}]"#,
            )
            .build(),
    );
    let first = set.snapshot();
    let both = || vec!["tls".to_string(), "raw_buffer".to_string()];
    assert_eq!(
        inbound_chains(&cache, &sidecar, &first),
        [
            ("inbound_8080".into(), both()),
            ("inbound_9000".into(), both())
        ],
        "PERMISSIVE by default"
    );
    // The mesh goes STRICT from the root namespace: only the mTLS chain is left.
    let strict = set.apply(
        "east",
        vec![peer_authentication(
            "istio-system",
            "default",
            None,
            MtlsMode::Strict,
        )],
    );
    assert!(cache.touched(&sidecar, first.version, &strict).shape);
    assert_eq!(
        inbound_chains(&cache, &sidecar, &strict),
        [
            ("inbound_8080".into(), vec!["tls".into()]),
            ("inbound_9000".into(), vec!["tls".into()])
        ]
    );
    // A workload policy with a port exception: that port takes plaintext only.
    let mut workload =
        peer_authentication("demo", "echo", Some(&[("app", "echo")]), MtlsMode::Unset);
    if let Object::PeerAuthentication(p) = &mut workload {
        p.port_level.insert(9000, MtlsMode::Disable);
    }
    let excepted = set.apply("east", vec![workload]);
    assert_eq!(
        inbound_chains(&cache, &sidecar, &excepted),
        [
            ("inbound_8080".into(), vec!["tls".into()]),
            ("inbound_9000".into(), vec!["raw_buffer".into()])
        ]
    );
    // West's policies are west's: east's sidecars keep their shape.
    let west = set.apply(
        "west",
        vec![peer_authentication(
            "demo",
            "default",
            None,
            MtlsMode::Disable,
        )],
    );
    assert!(!cache.touched(&sidecar, excepted.version, &west).shape);
}

/// The addresses of each assignment `proxy` gets (endpoints, or the gateway for them).
fn assignment_addresses(
    proxy: &ProxyInfo,
    snapshot: &Arc<ClusterSet>,
) -> BTreeMap<String, Vec<String>> {
    use envoy_types::pb::envoy::config::{
        core::v3::address::Address as Kind, endpoint::v3::ClusterLoadAssignment,
        endpoint::v3::lb_endpoint::HostIdentifier,
    };
    use prost::Message;
    let all = generate(type_url::ENDPOINT, proxy, snapshot, None);
    all.into_iter()
        .map(|(name, any)| {
            let cla = ClusterLoadAssignment::decode(any.value.as_slice()).unwrap();
            let mut addresses: Vec<String> = cla
                .endpoints
                .iter()
                .flat_map(|l| &l.lb_endpoints)
                .filter_map(|e| match e.host_identifier.as_ref()? {
                    HostIdentifier::Endpoint(e) => match e.address.as_ref()?.address.as_ref()? {
                        Kind::SocketAddress(s) => Some(s.address.clone()),
                        _ => None,
                    },
                    _ => None,
                })
                .collect();
            addresses.sort();
            (name, addresses)
        })
        .collect()
}

/// Export scope: a proxy gets a clusterset service only when an export reaches its member,
/// with the endpoints of the exports that do; moving a member in reshapes that member's
/// proxies only, and the cache then equals generation from scratch.
#[test]
fn a_scoped_export_reaches_only_the_proxies_of_its_members() {
    use bowline_model::scope::EXPORT_TO;
    const SOLO: &str = "outbound|80||solo.demo.svc.clusterset.local";
    let mut set = Set::new();
    let cache = Cache::default();
    let (east, west) = (proxy("envoy", "east"), proxy("envoy", "west"));
    let first = set.snapshot();
    ask_all(&cache, &east, &first);
    ask_all(&cache, &west, &first);
    assert_eq!(
        assignment_addresses(&east, &first)[OTHER],
        ["10.1.1.1", "192.0.2.20"],
        "unscoped: east's own endpoint and west's through its gateway"
    );

    // West's `other` goes to west only; east's `solo` to east only.
    let scoped_other = service("demo", "other")
        .port("http", 80)
        .annotation(EXPORT_TO, "west")
        .build();
    set.apply("west", vec![scoped_other]);
    let solo = |to: &str| {
        vec![
            service("demo", "solo")
                .port("http", 80)
                .annotation(EXPORT_TO, to)
                .build(),
            slice("demo", "solo-e", "solo")
                .port("http", 8080)
                .endpoint(ep("10.1.2.1").pod("s"))
                .build(),
        ]
    };
    let second = set.apply("east", solo("east"));
    let (for_east, for_west) = (
        assignment_addresses(&east, &second),
        assignment_addresses(&west, &second),
    );
    assert_eq!(
        for_east[OTHER],
        ["10.1.1.1"],
        "west's export does not reach east"
    );
    assert_eq!(for_east[SOLO], ["10.1.2.1"]);
    assert!(
        !for_west.contains_key(SOLO),
        "no cluster for west: {for_west:?}"
    );
    let clusters = |proxy: &ProxyInfo, snapshot: &Arc<ClusterSet>| -> BTreeSet<String> {
        generate(type_url::CLUSTER, proxy, snapshot, None)
            .into_keys()
            .collect()
    };
    assert!(clusters(&east, &second).contains(SOLO));
    assert!(!clusters(&west, &second).contains(SOLO));
    assert!(cache.touched(&west, first.version, &second).shape);

    // Moving west in reshapes west's proxies, not east's.
    ask_all(&cache, &east, &second);
    ask_all(&cache, &west, &second);
    let third = set.apply("east", solo("east,west"));
    assert!(cache.touched(&west, second.version, &third).shape);
    assert!(!cache.touched(&east, second.version, &third).shape);
    assert!(clusters(&west, &third).contains(SOLO));
    for proxy in [&east, &west] {
        for t in TYPES {
            let cached = cache.get(t, proxy, &third, None);
            let fresh = generate(t, proxy, &third, None);
            let cached: BTreeMap<String, _> =
                cached.iter().map(|(n, e)| (n.clone(), e.any())).collect();
            assert_eq!(cached, fresh, "{t} for {proxy:?}");
        }
    }
}
