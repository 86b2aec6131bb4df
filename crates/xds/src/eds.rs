//! Network-aware endpoint selection and weighting (Istio's sidecar-mode EDS rule).
//!
//! Endpoints in the proxy's network, or in a network without gateways, are sent directly.
//! Endpoints in another network that has east-west gateways are replaced by those gateways
//! (the endpoint's own member's gateways first) when they can do mutual TLS and the proxy
//! originates it (the gateway routes by the SNI of the client's mTLS handshake; others are
//! dropped, as Istio drops the endpoints; a proxy without certificates, which Istio does not
//! have, would only fail through a gateway), and
//! every real endpoint contributes the same
//! weight `S` (the least common multiple of all gateway counts), split evenly over the gateways
//! that reach it. Load is therefore even over all endpoints of all members (in proportion to
//! an endpoint's own weight, which is 1 but for a WorkloadEntry's `weight`).

use std::{collections::BTreeMap, net::IpAddr};

use bowline_model::{ClusterId, Endpoint, IpFamily, Locality, Network};
use bowline_views::{Gateway, Gateways};

/// The address families a proxy can use, from its `INSTANCE_IPS`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProxyFamilies {
    /// No instance IPs known: every family.
    #[default]
    Unknown,
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
    /// Both.
    Dual,
}

impl ProxyFamilies {
    /// From the proxy's instance IPs.
    pub fn of(ips: &[IpAddr]) -> Self {
        match (
            ips.iter().any(IpAddr::is_ipv4),
            ips.iter().any(IpAddr::is_ipv6),
        ) {
            (true, true) => Self::Dual,
            (true, false) => Self::V4,
            (false, true) => Self::V6,
            (false, false) => Self::Unknown,
        }
    }

    fn allows(self, family: IpFamily) -> bool {
        match self {
            Self::Unknown | Self::Dual => true,
            Self::V4 => family == IpFamily::IPv4,
            Self::V6 => family == IpFamily::IPv6,
        }
    }

    /// The family the proxy prefers as an endpoint's primary address.
    fn preferred(self) -> Option<IpFamily> {
        match self {
            Self::V4 | Self::Dual => Some(IpFamily::IPv4),
            Self::V6 => Some(IpFamily::IPv6),
            Self::Unknown => None,
        }
    }
}

/// The proxy the assignment is for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyView {
    /// Its network (empty: reaches every network directly).
    pub network: Network,
    /// Its address families.
    pub families: ProxyFamilies,
    /// An east-west gateway: it is sent only the endpoints of its own network, directly, and
    /// only those that can do mutual TLS (it passes the client's handshake through by SNI).
    pub local_only: bool,
    /// The proxy originates Istio mTLS (it has the node agent's certificates): only such a
    /// proxy can cross a gateway, so only it is sent gateways.
    pub mtls: bool,
}

/// One candidate endpoint with the port it serves this cluster on.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// The endpoint.
    pub endpoint: &'a Endpoint,
    /// Its port for the cluster's service port.
    pub port: u16,
}

/// What an endpoint sent to a proxy stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// The real endpoint, reached directly.
    Direct {
        /// Its workload name, when known.
        workload: Option<String>,
    },
    /// An east-west gateway standing for the endpoints of its network behind it.
    Gateway,
}

/// An endpoint as sent: primary address, the others, port, weight and what it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbEndpoint {
    /// Primary address.
    pub address: IpAddr,
    /// Other addresses (dual stack), same port.
    pub additional: Vec<IpAddr>,
    /// Port.
    pub port: u16,
    /// Load-balancing weight (≥ 1).
    pub weight: u32,
    /// Member it belongs to.
    pub cluster: ClusterId,
    /// Network it belongs to.
    pub network: Network,
    /// Direct or through a gateway.
    pub via: Via,
    /// Proxies originate Istio mutual TLS to it: the endpoint's workload has a proxy, or it is
    /// a gateway (which passes the handshake to one).
    pub mtls: bool,
}

/// Endpoints of one locality.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalityEndpoints {
    /// The locality.
    pub locality: Locality,
    /// Sum of the endpoints' weights (≥ 1).
    pub weight: u32,
    /// Direct endpoints first, then gateways sorted by (address, port).
    pub endpoints: Vec<LbEndpoint>,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The scale factor: the least common multiple of the gateway counts per network and per
/// (network, member); 1 without gateways.
pub fn scale_factor(gateways: &Gateways) -> u32 {
    let mut counts: Vec<u64> = gateways.values().map(|g| g.len() as u64).collect();
    let mut per_cluster: BTreeMap<(&Network, &ClusterId), u64> = BTreeMap::new();
    for g in gateways.values().flatten() {
        *per_cluster.entry((&g.network, &g.cluster)).or_default() += 1;
    }
    counts.extend(per_cluster.into_values());
    let lcm = counts
        .into_iter()
        .filter(|c| *c > 0)
        .fold(1u64, |acc, c| acc / gcd(acc, c) * c);
    u32::try_from(lcm).unwrap_or(u32::MAX)
}

/// The gateways that reach `endpoint`, for this proxy: its own member's gateways in its
/// network, else any of the network's; only addresses of families the proxy can use.
fn reaching<'g>(
    gateways: &'g Gateways,
    endpoint: &Endpoint,
    proxy: &ProxyView,
) -> (bool, Vec<&'g Gateway>) {
    let Some(network) = gateways.get(&endpoint.network) else {
        return (false, Vec::new());
    };
    let own: Vec<&Gateway> = network
        .iter()
        .filter(|g| g.cluster == endpoint.cluster)
        .collect();
    let chosen = if own.is_empty() {
        network.iter().collect()
    } else {
        own
    };
    let reach = chosen
        .into_iter()
        .filter(|g| proxy.families.allows(IpFamily::of(&g.address)))
        .collect();
    (true, reach)
}

/// Orders an endpoint's addresses for the proxy: its preferred family first, families it
/// cannot use dropped. `None` when nothing usable is left.
fn addresses_for(endpoint: &Endpoint, proxy: &ProxyView) -> Option<(IpAddr, Vec<IpAddr>)> {
    let mut usable: Vec<IpAddr> = endpoint
        .addresses
        .iter()
        .copied()
        .filter(|a| proxy.families.allows(IpFamily::of(a)))
        .collect();
    if let Some(preferred) = proxy.families.preferred() {
        usable.sort_by_key(|a| IpFamily::of(a) != preferred);
    }
    let mut rest = usable.into_iter();
    Some((rest.next()?, rest.collect()))
}

/// Why an endpoint of a cluster is not sent to a proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Excluded {
    /// Not ready (its readiness probe, or a VM's health check, fails).
    NotReady,
    /// Terminating.
    Terminating,
    /// The proxy is an east-west gateway, which is sent only its own network's endpoints
    /// that can do mutual TLS.
    NotForGateway,
    /// The endpoint has no address of a family the proxy uses.
    NoAddressOfFamily,
    /// Its network's gateways have no address of a family the proxy uses.
    NoGatewayOfFamily,
    /// In another network behind gateways, but it has no proxy to take Istio mTLS, which is
    /// all a gateway passes on.
    NoMtls,
    /// In another network behind gateways, but the proxy does not originate mTLS (it has no
    /// node agent certificates), so it cannot cross a gateway.
    ProxyNoMtls,
}

impl Excluded {
    /// The rule, in words.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotReady => "not ready: its readiness probe (for a VM, its health check) fails",
            Self::Terminating => "terminating",
            Self::NotForGateway => {
                "an east-west gateway is sent only its own network's endpoints that can take mTLS"
            }
            Self::NoAddressOfFamily => "it has no address of the proxy's IP family",
            Self::NoGatewayOfFamily => {
                "its network's east-west gateways have no address of the proxy's IP family"
            }
            Self::NoMtls => {
                "in another network, behind a gateway, but it has no proxy (tlsMode istio) to take the mTLS a gateway passes on"
            }
            Self::ProxyNoMtls => {
                "in another network, behind a gateway, but this proxy does not originate mTLS (no node agent certificates)"
            }
        }
    }
}

/// How one endpoint reaches a proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route<'g> {
    /// Sent as itself.
    Direct {
        /// Primary address.
        address: IpAddr,
        /// Other addresses.
        additional: Vec<IpAddr>,
        /// Its weight.
        weight: u32,
    },
    /// Stood for by gateways, each of which gains `share` of weight for it.
    Gateways {
        /// The gateways reaching it, for this proxy.
        gateways: Vec<&'g Gateway>,
        /// Weight each gateway carries for this endpoint.
        share: u64,
    },
    /// Not sent.
    Excluded(Excluded),
}

/// The weight scale of assignments for `proxy`: see [`scale_factor`].
pub fn scale_for(gateways: &Gateways, proxy: &ProxyView) -> u32 {
    if gateways.is_empty() || proxy.local_only {
        1
    } else {
        scale_factor(gateways)
    }
}

/// How `target` reaches `proxy` (the rule [`assign`] applies to each endpoint).
pub fn route<'g>(
    target: &Target<'_>,
    gateways: &'g Gateways,
    proxy: &ProxyView,
    scale: u32,
) -> Route<'g> {
    let ep = target.endpoint;
    if !ep.ready {
        return Route::Excluded(Excluded::NotReady);
    }
    if ep.terminating {
        return Route::Excluded(Excluded::Terminating);
    }
    let local =
        !proxy.local_only || (ep.mtls && (ep.network == proxy.network || ep.network.is_empty()));
    if !local {
        return Route::Excluded(Excluded::NotForGateway);
    }
    let (network_has_gateways, reach) = if proxy.local_only {
        (false, Vec::new())
    } else {
        reaching(gateways, ep, proxy)
    };
    let in_network =
        proxy.network == ep.network || proxy.network.is_empty() || ep.network.is_empty();
    let force = proxy.network.is_empty() && !ep.network.is_empty() && network_has_gateways;
    if !force && (in_network || !network_has_gateways) {
        return match addresses_for(ep, proxy) {
            Some((address, additional)) => Route::Direct {
                address,
                additional,
                weight: scale.saturating_mul(ep.weight.max(1)),
            },
            None => Route::Excluded(Excluded::NoAddressOfFamily),
        };
    }
    if reach.is_empty() {
        return Route::Excluded(Excluded::NoGatewayOfFamily);
    }
    if !ep.mtls {
        return Route::Excluded(Excluded::NoMtls);
    }
    if !proxy.mtls {
        return Route::Excluded(Excluded::ProxyNoMtls);
    }
    let share = u64::from(scale) * u64::from(ep.weight.max(1)) / reach.len() as u64;
    Route::Gateways {
        gateways: reach,
        share,
    }
}

/// Builds the localities of a cluster load assignment for `proxy`.
pub fn assign(
    targets: &[Target<'_>],
    gateways: &Gateways,
    proxy: &ProxyView,
) -> Vec<LocalityEndpoints> {
    let scale = scale_for(gateways, proxy);
    let mut by_locality: BTreeMap<&Locality, Vec<LbEndpoint>> = BTreeMap::new();
    // Gateways are summed over every locality: one entry per gateway address in the whole
    // assignment (gRPC refuses an address listed twice), in the locality of no region.
    let mut through: BTreeMap<(IpAddr, u16), (u64, &Gateway)> = BTreeMap::new();
    for target in targets {
        let ep = target.endpoint;
        match route(target, gateways, proxy, scale) {
            Route::Excluded(_) => {}
            Route::Direct {
                address,
                additional,
                weight,
            } => by_locality
                .entry(&ep.locality)
                .or_default()
                .push(LbEndpoint {
                    address,
                    additional,
                    port: target.port,
                    weight,
                    cluster: ep.cluster.clone(),
                    network: ep.network.clone(),
                    via: Via::Direct {
                        workload: ep.workload.as_ref().map(|w| w.name.to_string()),
                    },
                    mtls: ep.mtls,
                }),
            Route::Gateways { gateways, share } => {
                for g in gateways {
                    through.entry((g.address, g.port)).or_insert((0, g)).0 += share;
                }
            }
        }
    }
    let mut out: Vec<LocalityEndpoints> = by_locality
        .into_iter()
        .map(|(locality, endpoints)| LocalityEndpoints {
            locality: locality.clone(),
            weight: 0,
            endpoints,
        })
        .collect();
    let gateway_endpoints = through
        .into_iter()
        .map(|((address, port), (weight, g))| LbEndpoint {
            address,
            additional: Vec::new(),
            port,
            weight: u32::try_from(weight).unwrap_or(u32::MAX).max(1),
            cluster: g.cluster.clone(),
            network: g.network.clone(),
            via: Via::Gateway,
            mtls: true,
        });
    let nowhere = Locality::default();
    match out.iter_mut().find(|l| l.locality == nowhere) {
        Some(group) => group.endpoints.extend(gateway_endpoints),
        None => {
            let endpoints: Vec<LbEndpoint> = gateway_endpoints.collect();
            if !endpoints.is_empty() {
                out.push(LocalityEndpoints {
                    locality: nowhere,
                    weight: 0,
                    endpoints,
                });
            }
        }
    }
    for group in &mut out {
        let weight = group
            .endpoints
            .iter()
            .map(|e| u64::from(e.weight))
            .sum::<u64>();
        group.weight = u32::try_from(weight).unwrap_or(u32::MAX).max(1);
    }
    out
}
