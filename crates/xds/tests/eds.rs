//! Table tests of the network-aware EDS weights.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use bowline_model::{ClusterId, Endpoint, Locality, Network, ServiceKey, WorkloadRef};
use bowline_registry::{Gateway, Gateways};
use bowline_xds::eds::{LbEndpoint, ProxyFamilies, ProxyView, Target, Via, assign, scale_factor};

fn ep(cluster: &str, network: &str, addrs: &[&str]) -> Endpoint {
    Endpoint {
        cluster: ClusterId::new(cluster).unwrap(),
        network: Network::new(network),
        locality: Locality::parse_slashed("r/z").into(),
        addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        ports: Arc::new([]),
        hostname: None,
        node_name: None,
        workload: Some(WorkloadRef {
            kind: "Pod".into(),
            name: format!("pod-{}", addrs[0]).into(),
        }),
        ready: true,
        serving: true,
        terminating: false,
        weight: 1,
        service_account: None,
        mtls: true,
    }
}

fn gw(network: &str, cluster: &str, address: &str) -> Gateway {
    Gateway {
        network: Network::new(network),
        cluster: ClusterId::new(cluster).unwrap(),
        address: address.parse().unwrap(),
        port: 15443,
        service: ServiceKey::new("istio-system", "eastwest"),
    }
}

fn gateways(list: &[Gateway]) -> Gateways {
    let mut out: Gateways = BTreeMap::new();
    for g in list {
        out.entry(g.network.clone()).or_default().push(g.clone());
    }
    out
}

fn proxy(network: &str, families: ProxyFamilies) -> ProxyView {
    ProxyView {
        network: Network::new(network),
        families,
        local_only: false,
        mtls: true,
    }
}

/// (address, weight, via gateway) of every endpoint sent.
fn summary(endpoints: &[Endpoint], gws: &Gateways, p: &ProxyView) -> Vec<(String, u32, bool)> {
    let targets: Vec<Target<'_>> = endpoints
        .iter()
        .map(|e| Target {
            endpoint: e,
            port: 8080,
        })
        .collect();
    let localities = assign(&targets, gws, p);
    localities
        .iter()
        .flat_map(|l| {
            assert_eq!(
                l.weight,
                l.endpoints.iter().map(|e| e.weight).sum::<u32>(),
                "locality weight is the sum"
            );
            l.endpoints.iter()
        })
        .map(|e: &LbEndpoint| (e.address.to_string(), e.weight, e.via == Via::Gateway))
        .collect()
}

fn s(addr: &str, weight: u32, gateway: bool) -> (String, u32, bool) {
    (addr.to_string(), weight, gateway)
}

#[test]
fn without_gateways_everything_is_direct() {
    let eps = [
        ep("a", "net-a", &["10.0.0.1"]),
        ep("b", "net-b", &["10.1.0.1"]),
    ];
    let got = summary(&eps, &Gateways::new(), &proxy("net-a", ProxyFamilies::V4));
    assert_eq!(got, vec![s("10.0.0.1", 1, false), s("10.1.0.1", 1, false)]);
}

#[test]
fn remote_networks_collapse_into_gateways_with_even_weights() {
    // net-a: 2 local endpoints. net-b: 3 endpoints behind 1 gateway. net-c: 4 endpoints behind
    // 2 gateways of the same member. S = lcm(1, 2) = 2.
    let mut eps = vec![
        ep("a", "net-a", &["10.0.0.1"]),
        ep("a", "net-a", &["10.0.0.2"]),
    ];
    eps.extend((1..=3).map(|i| ep("b", "net-b", &[&format!("10.1.0.{i}")])));
    eps.extend((1..=4).map(|i| ep("c", "net-c", &[&format!("10.2.0.{i}")])));
    let gws = gateways(&[
        gw("net-b", "b", "192.0.2.1"),
        gw("net-c", "c", "192.0.2.2"),
        gw("net-c", "c", "192.0.2.3"),
    ]);
    assert_eq!(scale_factor(&gws), 2);
    let got = summary(&eps, &gws, &proxy("net-a", ProxyFamilies::V4));
    assert_eq!(
        got,
        vec![
            s("10.0.0.1", 2, false),
            s("10.0.0.2", 2, false),
            s("192.0.2.1", 6, true),
            s("192.0.2.2", 4, true),
            s("192.0.2.3", 4, true),
        ]
    );
    // Every real endpoint carries the same weight: 2 + 2 + 6 + 4 + 4 = 18 = 9 endpoints × 2.
    assert_eq!(got.iter().map(|g| g.1).sum::<u32>(), 9 * 2);
}

#[test]
fn own_member_gateways_are_preferred_over_the_networks_others() {
    // net-b has gateways in members b1 and b2; b1's endpoints go through b1's gateway only.
    let eps = [
        ep("b1", "net-b", &["10.1.0.1"]),
        ep("b2", "net-b", &["10.1.1.1"]),
        ep("b3", "net-b", &["10.1.2.1"]),
    ];
    let gws = gateways(&[
        gw("net-b", "b1", "192.0.2.1"),
        gw("net-b", "b2", "192.0.2.2"),
    ]);
    // lcm(2 per network, 1 per member) = 2; b3 has no gateway of its own: split over both.
    let got = summary(&eps, &gws, &proxy("net-a", ProxyFamilies::V4));
    assert_eq!(
        got,
        vec![s("192.0.2.1", 2 + 1, true), s("192.0.2.2", 2 + 1, true)]
    );
}

#[test]
fn unready_and_terminating_endpoints_are_not_sent() {
    let mut down = ep("a", "net-a", &["10.0.0.2"]);
    down.ready = false;
    let mut leaving = ep("a", "net-a", &["10.0.0.3"]);
    leaving.terminating = true;
    let mut remote_down = ep("b", "net-b", &["10.1.0.2"]);
    remote_down.ready = false;
    let eps = [
        ep("a", "net-a", &["10.0.0.1"]),
        down,
        leaving,
        ep("b", "net-b", &["10.1.0.1"]),
        remote_down,
    ];
    let gws = gateways(&[gw("net-b", "b", "192.0.2.1")]);
    let got = summary(&eps, &gws, &proxy("net-a", ProxyFamilies::V4));
    assert_eq!(
        got,
        vec![s("10.0.0.1", 1, false), s("192.0.2.1", 1, true)],
        "the gateway weighs only ready endpoints"
    );
}

#[test]
fn single_stack_proxies_never_get_the_other_family() {
    let eps = [
        ep("a", "net-a", &["10.0.0.1", "fd00::1"]),
        ep("a", "net-a", &["fd00::2"]),
        ep("b", "net-b", &["10.1.0.1"]),
    ];
    let gws = gateways(&[
        gw("net-b", "b", "192.0.2.1"),
        gw("net-b", "b", "2001:db8::1"),
    ]);
    let v4 = summary(&eps, &gws, &proxy("net-a", ProxyFamilies::V4));
    assert_eq!(
        v4,
        vec![s("10.0.0.1", 2, false), s("192.0.2.1", 2, true)],
        "no IPv6 address, no IPv6 gateway"
    );
    let v6 = summary(&eps, &gws, &proxy("net-a", ProxyFamilies::V6));
    assert_eq!(
        v6,
        vec![
            s("fd00::1", 2, false),
            s("fd00::2", 2, false),
            s("2001:db8::1", 2, true)
        ]
    );
    let dual = summary(&eps, &gws, &proxy("net-a", ProxyFamilies::Dual));
    assert_eq!(
        dual,
        vec![
            s("10.0.0.1", 2, false),
            s("fd00::2", 2, false),
            s("192.0.2.1", 1, true),
            s("2001:db8::1", 1, true)
        ]
    );
}

#[test]
fn dual_stack_endpoints_carry_the_other_address() {
    let eps = [ep("a", "net-a", &["10.0.0.1", "fd00::1"])];
    let targets = [Target {
        endpoint: &eps[0],
        port: 80,
    }];
    let for_dual = assign(
        &targets,
        &Gateways::new(),
        &proxy("net-a", ProxyFamilies::Dual),
    );
    let e = &for_dual[0].endpoints[0];
    assert_eq!(
        (e.address, e.additional.clone()),
        (
            "10.0.0.1".parse::<IpAddr>().unwrap(),
            vec!["fd00::1".parse().unwrap()]
        )
    );
    let for_v6 = assign(
        &targets,
        &Gateways::new(),
        &proxy("net-a", ProxyFamilies::V6),
    );
    assert_eq!(
        for_v6[0].endpoints[0].address,
        "fd00::1".parse::<IpAddr>().unwrap()
    );
    assert!(for_v6[0].endpoints[0].additional.is_empty());
}

#[test]
fn a_proxy_without_network_goes_through_gateways() {
    let eps = [ep("b", "net-b", &["10.1.0.1"])];
    let gws = gateways(&[gw("net-b", "b", "192.0.2.1")]);
    assert_eq!(
        summary(&eps, &gws, &proxy("", ProxyFamilies::Unknown)),
        vec![s("192.0.2.1", 1, true)]
    );
    // Endpoints without a network are reachable from everywhere.
    let local = [ep("a", "", &["10.0.0.1"])];
    assert_eq!(
        summary(&local, &gws, &proxy("net-a", ProxyFamilies::V4)),
        vec![s("10.0.0.1", 1, false)]
    );
}

#[test]
fn networks_without_gateways_are_reached_directly_even_when_others_have_them() {
    let eps = [
        ep("b", "net-b", &["10.1.0.1"]),
        ep("c", "net-c", &["10.2.0.1"]),
    ];
    let gws = gateways(&[gw("net-b", "b", "192.0.2.1")]);
    assert_eq!(
        summary(&eps, &gws, &proxy("net-a", ProxyFamilies::V4)),
        vec![s("10.2.0.1", 1, false), s("192.0.2.1", 1, true)]
    );
}

#[test]
fn an_east_west_gateway_gets_only_its_networks_endpoints_directly() {
    let eps = [
        ep("b", "net-b", &["10.1.0.1"]),
        ep("b", "net-b", &["10.1.0.2"]),
        ep("a", "net-a", &["10.0.0.1"]),
    ];
    let gws = gateways(&[gw("net-a", "a", "192.0.2.9"), gw("net-b", "b", "192.0.2.1")]);
    let gateway = ProxyView {
        network: Network::new("net-b"),
        families: ProxyFamilies::V4,
        local_only: true,
        mtls: false,
    };
    assert_eq!(
        summary(&eps, &gws, &gateway),
        vec![s("10.1.0.1", 1, false), s("10.1.0.2", 1, false)]
    );
}

#[test]
fn a_gateway_is_listed_once_whatever_the_localities_behind_it() {
    let mut z1 = ep("b", "net-b", &["10.1.0.1"]);
    z1.locality = Locality::parse_slashed("r/z1").into();
    let mut z2 = ep("b", "net-b", &["10.1.0.2"]);
    z2.locality = Locality::parse_slashed("r/z2").into();
    let eps = [z1, z2, ep("a", "net-a", &["10.0.0.1"])];
    let gws = gateways(&[gw("net-b", "b", "192.0.2.1")]);
    let targets: Vec<Target<'_>> = eps
        .iter()
        .map(|e| Target {
            endpoint: e,
            port: 80,
        })
        .collect();
    let localities = assign(&targets, &gws, &proxy("net-a", ProxyFamilies::V4));
    let gateway_entries: Vec<(String, u32)> = localities
        .iter()
        .flat_map(|l| {
            l.endpoints
                .iter()
                .filter(|e| e.via == Via::Gateway)
                .map(move |e| (l.locality.to_string(), e.weight))
        })
        .collect();
    assert_eq!(
        gateway_entries,
        vec![("//".to_string(), 2)],
        "one entry, carrying both endpoints"
    );
}

#[test]
fn a_weighted_endpoint_counts_as_that_many_directly_and_through_gateways() {
    // A VM of weight 3 in the proxy's network, one of weight 2 behind two gateways of its
    // network, and a pod.
    let mut vm_here = ep("east", "net-east", &["10.0.0.1"]);
    vm_here.weight = 3;
    let mut vm_there = ep("west", "net-west", &["10.1.0.1"]);
    vm_there.weight = 2;
    let pod = ep("east", "net-east", &["10.0.0.2"]);
    let gws = gateways(&[
        gw("net-west", "west", "192.0.2.1"),
        gw("net-west", "west", "192.0.2.2"),
    ]);
    let sent = summary(
        &[vm_here, vm_there, pod],
        &gws,
        &proxy("net-east", ProxyFamilies::V4),
    );
    // Scale 2 (two gateways): the pod 2, the local VM 3×2, the remote VM 2×2 split in two.
    assert_eq!(
        sent,
        [
            s("10.0.0.1", 6, false),
            s("10.0.0.2", 2, false),
            s("192.0.2.1", 2, true),
            s("192.0.2.2", 2, true),
        ]
    );
}

#[test]
fn endpoints_without_a_proxy_are_never_sent_through_a_gateway_nor_by_one() {
    let plain = |e: Endpoint| Endpoint { mtls: false, ..e };
    let endpoints = vec![
        ep("east", "net-east", &["10.1.0.1"]),
        plain(ep("east", "net-east", &["10.1.0.2"])),
        ep("west", "net-west", &["10.2.0.1"]),
        plain(ep("west", "net-west", &["10.2.0.2"])),
    ];
    let gws = gateways(&[gw("net-west", "west", "192.0.2.20")]);
    // East's own plaintext endpoint stays direct; west's cannot go through the gateway (it
    // routes by the SNI of an mTLS handshake) and is dropped, as Istio drops it.
    assert_eq!(
        summary(&endpoints, &gws, &proxy("net-east", ProxyFamilies::V4)),
        vec![
            s("10.1.0.1", 1, false),
            s("10.1.0.2", 1, false),
            s("192.0.2.20", 1, true),
        ]
    );
    // West's gateway passes on only what can take the client's mTLS.
    let gateway = ProxyView {
        local_only: true,
        ..proxy("net-west", ProxyFamilies::V4)
    };
    assert_eq!(
        summary(&endpoints, &gws, &gateway),
        vec![s("10.2.0.1", 1, false)]
    );
    // A proxy without certificates could not cross the gateway: it is not sent it.
    let plain_proxy = ProxyView {
        mtls: false,
        ..proxy("net-east", ProxyFamilies::V4)
    };
    assert_eq!(
        summary(&endpoints, &gws, &plain_proxy),
        vec![s("10.1.0.1", 1, false), s("10.1.0.2", 1, false)]
    );
    // Without gateways the plaintext endpoints of other networks stay direct.
    assert_eq!(
        summary(
            &endpoints,
            &Gateways::new(),
            &proxy("net-east", ProxyFamilies::V4)
        )
        .len(),
        4
    );
}
