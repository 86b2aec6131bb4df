//! The resources a proxy is sent: for every service port it can reach, a CDS cluster
//! `outbound|<port>||<host>` of type EDS over ADS and its ClusterLoadAssignment; for proxyless
//! gRPC, an LDS `api_listener` `<host>:<port>` and its RouteConfiguration.
//!
//! Hosts: `<svc>.<ns>.svc.clusterset.local` for every import (endpoints of the members that
//! export it and serve the port), `<svc>.<ns>.svc.cluster.local` for every Service of the
//! proxy's own member (its own endpoints plus those of members that export the service), and
//! the ServiceEntry hosts of the proxy's own member served under their own name
//! (`vm.example.com`: that member's endpoints).

use std::{collections::BTreeMap, sync::Arc};

use bowline_model::{ClusterId, Endpoint, ServiceKey};
use bowline_views::{ClusterSet, HostService, Import, ServiceView};
use envoy_types::pb::{
    envoy::{
        config::{
            cluster::v3::{
                Cluster,
                cluster::{ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, LbPolicy},
            },
            core::v3::{
                Address, AggregatedConfigSource, ApiVersion, ConfigSource, Locality as PbLocality,
                Metadata, SocketAddress, address, config_source::ConfigSourceSpecifier,
                socket_address::PortSpecifier,
            },
            endpoint::v3::{
                ClusterLoadAssignment, Endpoint as PbEndpoint, LbEndpoint, LocalityLbEndpoints,
                endpoint::AdditionalAddress, lb_endpoint::HostIdentifier,
            },
            listener::v3::{
                ApiListener, Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter,
                filter, listener_filter,
            },
            route::v3::{
                NonForwardingAction, Route, RouteAction, RouteConfiguration, RouteMatch,
                VirtualHost, route::Action, route_action::ClusterSpecifier,
                route_match::PathSpecifier,
            },
        },
        extensions::filters::{
            http::router::v3::Router,
            network::http_connection_manager::v3::{
                HttpConnectionManager, HttpFilter, Rds, http_connection_manager::RouteSpecifier,
                http_filter::ConfigType,
            },
        },
    },
    google::protobuf::{Any, Duration, Struct, UInt32Value, Value, value::Kind},
};
use envoy_types::util::pack_any;

use crate::{
    eds::{self, Target, Via},
    node::{ProxyInfo, ProxyKind},
};

/// Type URLs served.
pub mod type_url {
    /// Clusters.
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    /// Cluster load assignments.
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    /// Listeners.
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    /// Route configurations.
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
}

/// One port of one host a proxy can reach, and who serves it.
#[derive(Clone, Debug)]
struct HostPort {
    host: String,
    /// The namespace of the service (the servers' identities are checked against it).
    namespace: String,
    port: u16,
    port_name: String,
    /// The port speaks HTTP/2 (gRPC): named `grpc`/`http2` (or `grpc-…`/`http2-…`), or with
    /// appProtocol `grpc`, `http2`, `h2c` or `kubernetes.io/h2c`.
    http2: bool,
    /// The port carries raw TCP: Envoy's outbound listener proxies TCP, not HTTP.
    tcp: bool,
    sources: Vec<(ClusterId, Arc<[Endpoint]>)>,
}

fn speaks_http2(name: &str, app_protocol: Option<&str>) -> bool {
    let by_name = ["grpc", "http2"]
        .iter()
        .any(|p| name == *p || name.starts_with(&format!("{p}-")));
    let by_protocol = matches!(
        app_protocol,
        Some("grpc" | "http2" | "h2c" | "kubernetes.io/h2c")
    );
    by_name || by_protocol
}

/// The port carries raw TCP, not HTTP: named `tcp` (or `tcp-…`), or with appProtocol `tcp`.
fn speaks_tcp(name: &str, app_protocol: Option<&str>) -> bool {
    name == "tcp" || name.starts_with("tcp-") || app_protocol == Some("tcp")
}

impl HostPort {
    fn cluster_name(&self) -> String {
        format!("outbound|{}||{}", self.port, self.host)
    }

    /// The name of its SNI-DNAT cluster at an east-west gateway (and the SNI clients send).
    fn sni(&self) -> String {
        crate::security::sni(self.port, &self.host)
    }

    fn listener_name(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The host ports of an import (`<svc>.<ns>.svc.clusterset.local`): the endpoints of the
/// members that export it and serve the port; only port `only` when given.
fn import_ports(import: &Import, only: Option<u16>) -> Vec<HostPort> {
    let host = format!(
        "{}.{}.svc.clusterset.local",
        import.key.name, import.key.namespace
    );
    let ports = import.merged.ports.iter();
    ports
        .filter(|port| only.is_none_or(|p| p == port.port))
        .map(|port| {
            let sources = import
                .sources
                .iter()
                .filter(|(cluster, _)| {
                    import
                        .served_ports
                        .get(*cluster)
                        .is_some_and(|p| p.contains(&port.name))
                })
                .map(|(c, eps)| (c.clone(), eps.clone()))
                .collect();
            HostPort {
                host: host.clone(),
                namespace: import.key.namespace.to_string(),
                port: port.port,
                port_name: port.name.clone(),
                http2: speaks_http2(&port.name, port.app_protocol.as_deref()),
                tcp: speaks_tcp(&port.name, port.app_protocol.as_deref()),
                sources,
            }
        })
        .collect()
}

/// The host ports of `member`'s own Service of a view (`<svc>.<ns>.svc.cluster.local`): its own
/// endpoints plus those of the members that export the service; only port `only` when given.
fn own_ports(
    view: &ServiceView,
    member: &str,
    snapshot: &ClusterSet,
    only: Option<u16>,
) -> Vec<HostPort> {
    let Some((own_id, own)) = view.members.iter().find(|(id, _)| id.as_str() == member) else {
        return Vec::new();
    };
    let Some(service) = own.service.as_deref() else {
        return Vec::new();
    };
    let exports = snapshot.outcome.exports.get(&view.key);
    let mut sources = vec![(own_id.clone(), own.endpoints.clone())];
    sources.extend(
        view.members
            .iter()
            .filter(|(id, _)| {
                *id != own_id && exports.and_then(|e| e.get(*id)).is_some_and(|e| e.exported)
            })
            .map(|(id, m)| (id.clone(), m.endpoints.clone())),
    );
    let host = format!("{}.{}.svc.cluster.local", view.key.name, view.key.namespace);
    service
        .ports
        .iter()
        .filter(|port| only.is_none_or(|p| p == port.port))
        .map(|port| HostPort {
            host: host.clone(),
            namespace: view.key.namespace.to_string(),
            port: port.port,
            port_name: port.name.clone(),
            http2: speaks_http2(&port.name, port.app_protocol.as_deref()),
            tcp: speaks_tcp(&port.name, port.app_protocol.as_deref()),
            sources: sources.clone(),
        })
        .collect()
}

/// The host ports of a ServiceEntry host served under its own name: its member's endpoints.
fn entry_ports(entry: &HostService, only: Option<u16>) -> Vec<HostPort> {
    entry
        .service
        .ports
        .iter()
        .filter(|port| only.is_none_or(|p| p == port.port))
        .map(|port| HostPort {
            host: entry.host.clone(),
            namespace: entry.service.meta.namespace.to_string(),
            port: port.port,
            port_name: port.name.clone(),
            http2: speaks_http2(&port.name, port.app_protocol.as_deref()),
            tcp: speaks_tcp(&port.name, port.app_protocol.as_deref()),
            sources: vec![(entry.cluster.clone(), entry.endpoints.clone())],
        })
        .collect()
}

/// Every host port the proxy can reach, by cluster name (a later source wins a name: imports,
/// then the member's own Services, then its ServiceEntry hosts).
fn host_ports(proxy: &ProxyInfo, snapshot: &ClusterSet) -> BTreeMap<String, HostPort> {
    let mut out = BTreeMap::new();
    let mut add = |ports: Vec<HostPort>| {
        for hp in ports {
            out.insert(hp.cluster_name(), hp);
        }
    };
    let scope = scope_of(proxy);
    for import in snapshot.outcome.imports.values() {
        let seen = match scope {
            Some(member) => import.for_member(member),
            None => Some(&**import),
        };
        if let Some(import) = seen {
            add(import_ports(import, None));
        }
    }
    if let Some(member) = proxy.member.as_deref() {
        for view in snapshot.services.values() {
            add(own_ports(view, member, snapshot, None));
        }
        for entry in snapshot
            .hosts
            .iter()
            .filter(|h| h.cluster.as_str() == member)
        {
            add(entry_ports(entry, None));
        }
    }
    out
}

/// The member whose view of scoped exports a proxy gets: its own, except at an east-west
/// gateway, which forwards to its network's endpoints for whichever member the client is in.
fn scope_of(proxy: &ProxyInfo) -> Option<&str> {
    match proxy.gateway_port {
        Some(_) => None,
        None => proxy.member.as_deref(),
    }
}

/// The service a `<svc>.<ns><zone>` host names.
fn service_of(host: &str, zone: &str) -> Option<ServiceKey> {
    let (name, namespace) = host.strip_suffix(zone)?.split_once('.')?;
    Some(ServiceKey::new(namespace, name))
}

/// The host port named `cluster` (`outbound|<port>||<host>`), as [`host_ports`] would hold it,
/// found by looking up only the import, Service and ServiceEntry host the name can stand for.
fn host_port(proxy: &ProxyInfo, snapshot: &ClusterSet, cluster: &str) -> Option<HostPort> {
    let (port, host) = match crate::security::parse_sni(cluster) {
        Some((port, host)) => (port, host),
        None => {
            let (port, host) = cluster.strip_prefix("outbound|")?.split_once("||")?;
            (port.parse().ok()?, host)
        }
    };
    let mut found = service_of(host, ".svc.clusterset.local")
        .and_then(|key| snapshot.import_for(&key, scope_of(proxy)))
        .and_then(|import| import_ports(import, Some(port)).pop());
    if let Some(member) = proxy.member.as_deref() {
        let view = service_of(host, ".svc.cluster.local").and_then(|k| snapshot.services.get(&k));
        if let Some(hp) = view.and_then(|v| own_ports(v, member, snapshot, Some(port)).pop()) {
            found = Some(hp);
        }
        let entries = snapshot.hosts.iter();
        for entry in entries.filter(|h| h.cluster.as_str() == member && h.host == host) {
            if let Some(hp) = entry_ports(entry, Some(port)).pop() {
                found = Some(hp);
            }
        }
    }
    found.filter(|hp| hp.cluster_name() == cluster || hp.sni() == cluster)
}

fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    }
}

fn cluster(hp: &HostPort, proxy: &ProxyInfo) -> Cluster {
    let name = match proxy.gateway_port {
        Some(_) => hp.sni(),
        None => hp.cluster_name(),
    };
    // A sidecar with the agent's SDS originates Istio mTLS to endpoints with a proxy; an
    // east-west gateway passes the client's bytes on untouched.
    let transport_socket_matches = match proxy.sds && proxy.gateway_port.is_none() {
        true => crate::security::upstream_matches(
            &proxy.mesh.trust_domain,
            &hp.namespace,
            &hp.host,
            hp.port,
            hp.http2,
        ),
        false => Vec::new(),
    };
    let mut options = std::collections::HashMap::new();
    if hp.http2 && proxy.kind == ProxyKind::Envoy && proxy.gateway_port.is_none() {
        use envoy_types::pb::envoy::{
            config::core::v3::Http2ProtocolOptions,
            extensions::upstreams::http::v3::{
                HttpProtocolOptions,
                http_protocol_options::{
                    ExplicitHttpConfig, UpstreamProtocolOptions,
                    explicit_http_config::ProtocolConfig,
                },
            },
        };
        let http2 = HttpProtocolOptions {
            upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                ExplicitHttpConfig {
                    protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                        Http2ProtocolOptions::default(),
                    )),
                },
            )),
            ..Default::default()
        };
        options.insert(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
            pack_any(http2),
        );
    }
    // A proxyless gRPC client with certificates reaches every service with mTLS.
    let transport_socket = (proxy.sds && proxy.kind == ProxyKind::Grpc)
        .then(|| crate::security::grpc_upstream(&proxy.mesh.trust_domain, &hp.namespace));
    Cluster {
        typed_extension_protocol_options: options,
        transport_socket_matches,
        transport_socket,
        name: name.clone(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: name,
        }),
        connect_timeout: Some(Duration {
            seconds: 5,
            nanos: 0,
        }),
        lb_policy: LbPolicy::RoundRobin as i32,
        ..Default::default()
    }
}

fn socket(address: std::net::IpAddr, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: address.to_string(),
            port_specifier: Some(PortSpecifier::PortValue(port.into())),
            ..Default::default()
        })),
    }
}

/// Endpoint metadata: `typed_filter_metadata["bowline"]` a Struct with `endpoint =
/// "<member>;<network>;<workload>;<direct|gateway>"` (like Istio's `istio.workload`), and for
/// an endpoint proxies reach with mTLS `filter_metadata["envoy.transport_socket_match"] =
/// {tlsMode: istio}`. One key in each map: protobuf maps encode in hash order, and single
/// entries keep the encoding (and so change detection) deterministic.
fn metadata(cluster: &str, network: &str, workload: &str, via: &str, mtls: bool) -> Metadata {
    let value = Value {
        kind: Some(Kind::StringValue(format!(
            "{cluster};{network};{workload};{via}"
        ))),
    };
    let bowline = Struct {
        fields: [("endpoint".to_string(), value)].into_iter().collect(),
    };
    let filter_metadata = match mtls {
        true => [(
            crate::security::MATCH_KEY.to_string(),
            crate::security::tls_mode_istio(),
        )]
        .into_iter()
        .collect(),
        false => Default::default(),
    };
    Metadata {
        filter_metadata,
        typed_filter_metadata: [("bowline".to_string(), pack_any(bowline))]
            .into_iter()
            .collect(),
    }
}

fn load_assignment(
    name: String,
    hp: &HostPort,
    proxy: &ProxyInfo,
    snapshot: &ClusterSet,
) -> ClusterLoadAssignment {
    let targets: Vec<Target<'_>> = hp
        .sources
        .iter()
        .flat_map(|(_, eps)| eps.iter())
        .filter_map(|endpoint| {
            let port = if hp.port_name.is_empty() && endpoint.ports.len() == 1 {
                endpoint.ports[0].port
            } else {
                endpoint.ports.iter().find(|p| p.name == hp.port_name)?.port
            };
            Some(Target { endpoint, port })
        })
        .collect();
    let localities = eds::assign(&targets, &snapshot.gateways, &proxy.view());
    ClusterLoadAssignment {
        cluster_name: name,
        endpoints: localities
            .into_iter()
            .map(|l| LocalityLbEndpoints {
                locality: Some(PbLocality {
                    region: l.locality.region.to_string(),
                    zone: l.locality.zone.to_string(),
                    sub_zone: l.locality.subzone.to_string(),
                }),
                load_balancing_weight: Some(UInt32Value { value: l.weight }),
                lb_endpoints: l
                    .endpoints
                    .into_iter()
                    .map(|e| {
                        let workload = match &e.via {
                            Via::Direct { workload } => workload.clone().unwrap_or_default(),
                            Via::Gateway => String::new(),
                        };
                        let via = if e.via == Via::Gateway {
                            "gateway"
                        } else {
                            "direct"
                        };
                        LbEndpoint {
                            host_identifier: Some(HostIdentifier::Endpoint(PbEndpoint {
                                address: Some(socket(e.address, e.port)),
                                additional_addresses: e
                                    .additional
                                    .iter()
                                    .map(|a| AdditionalAddress {
                                        address: Some(socket(*a, e.port)),
                                    })
                                    .collect(),
                                ..Default::default()
                            })),
                            load_balancing_weight: Some(UInt32Value { value: e.weight }),
                            metadata: Some(metadata(
                                e.cluster.as_str(),
                                e.network.as_str(),
                                &workload,
                                via,
                                e.mtls,
                            )),
                            ..Default::default()
                        }
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn hcm(route_config_name: String) -> HttpConnectionManager {
    HttpConnectionManager {
        stat_prefix: route_config_name.clone(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name,
        })),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(ConfigType::TypedConfig(pack_any(Router::default()))),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn api_listener(hp: &HostPort) -> Listener {
    Listener {
        name: hp.listener_name(),
        api_listener: Some(ApiListener {
            api_listener: Some(pack_any(hcm(hp.listener_name()))),
        }),
        ..Default::default()
    }
}

fn route_config(hp: &HostPort) -> RouteConfiguration {
    RouteConfiguration {
        name: hp.listener_name(),
        virtual_hosts: vec![VirtualHost {
            name: hp.listener_name(),
            domains: vec![hp.host.clone(), hp.listener_name()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(Action::Route(RouteAction {
                    cluster_specifier: Some(ClusterSpecifier::Cluster(hp.cluster_name())),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Envoy's outbound listener for a port: `outbound_<port>` on the proxy's listen address,
/// an HTTP connection manager whose routes (RDS `<port>`) hold one virtual host per host.
fn envoy_listener(port: u16, proxy: &ProxyInfo) -> Listener {
    let hcm = hcm(port.to_string());
    Listener {
        name: format!("outbound_{port}"),
        address: Some(socket(proxy.listen_address, port)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Envoy's routes for a port: one virtual host per host served on it.
fn envoy_routes(port: u16, hosts: &[&HostPort]) -> RouteConfiguration {
    RouteConfiguration {
        name: port.to_string(),
        virtual_hosts: hosts
            .iter()
            .map(|hp| route_config(hp).virtual_hosts.remove(0))
            .collect(),
        ..Default::default()
    }
}

/// Prefix of the listeners proxyless gRPC servers ask for (gRFC A36).
pub const SERVER_LISTENER_PREFIX: &str = "grpc/server?xds.resource.listening_address=";

/// The listener of a proxyless gRPC server: its address, one filter chain with an HTTP
/// connection manager whose inline routes accept every RPC (`non_forwarding_action`) and end
/// in the router filter. `None` when the name does not hold an `IP:PORT`.
fn server_listener(name: &str, proxy: &ProxyInfo, snapshot: &ClusterSet) -> Option<Listener> {
    let address: std::net::SocketAddr = name.strip_prefix(SERVER_LISTENER_PREFIX)?.parse().ok()?;
    // With certificates, the server takes mTLS unless its PeerAuthentication says DISABLE
    // (gRPC cannot tell TLS from plaintext on one port, so PERMISSIVE is served as mTLS:
    // its clients with certificates all originate it).
    let transport_socket = proxy
        .sds
        .then(|| {
            let mode = bowline_model::objects::effective_mtls(
                member_policies(proxy, snapshot)
                    .as_deref()
                    .unwrap_or_default(),
                &proxy.mesh.root_namespace,
                proxy.namespace.as_deref().unwrap_or_default(),
                &proxy.labels,
                u32::from(address.port()),
            );
            mode != bowline_model::objects::MtlsMode::Disable
        })
        .filter(|tls| *tls)
        .map(|_| crate::security::grpc_downstream());
    let mut hcm = hcm(String::new());
    hcm.stat_prefix = "grpc_server".into();
    hcm.route_specifier = Some(RouteSpecifier::RouteConfig(RouteConfiguration {
        name: "inbound".into(),
        virtual_hosts: vec![VirtualHost {
            name: "inbound".into(),
            domains: vec!["*".into()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(Action::NonForwardingAction(NonForwardingAction {})),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }));
    Some(Listener {
        name: name.to_string(),
        address: Some(socket(address.ip(), address.port())),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm))),
            }],
            transport_socket,
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// The PeerAuthentications of `proxy`'s member.
fn member_policies(
    proxy: &ProxyInfo,
    snapshot: &ClusterSet,
) -> Option<Arc<[bowline_model::objects::PeerAuthentication]>> {
    let id = ClusterId::new(proxy.member.as_deref()?).ok()?;
    snapshot.policies.get(&id).cloned()
}

fn network_filter<M: prost::Name>(name: &str, config: M) -> Filter {
    Filter {
        name: name.into(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(config))),
    }
}

fn tcp_proxy(stat_prefix: &str, cluster: String) -> Filter {
    use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
        TcpProxy, tcp_proxy::ClusterSpecifier as TcpCluster,
    };
    network_filter(
        "envoy.filters.network.tcp_proxy",
        TcpProxy {
            stat_prefix: stat_prefix.into(),
            cluster_specifier: Some(TcpCluster::Cluster(cluster)),
            ..Default::default()
        },
    )
}

fn tls_inspector() -> ListenerFilter {
    use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
    ListenerFilter {
        name: "envoy.filters.listener.tls_inspector".into(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(pack_any(
            TlsInspector::default(),
        ))),
        ..Default::default()
    }
}

/// An east-west gateway's listener (Istio's AUTO_PASSTHROUGH): `tls_inspector` reads the SNI
/// of the client sidecar's mTLS handshake, and one filter chain per (service, port) matching
/// `outbound_.<port>_._.<host>` proxies the bytes, still encrypted, to the SNI-DNAT cluster of
/// that name (the service's mTLS endpoints in this network). No TLS is terminated here.
fn gateway_listener(
    name: String,
    port: u16,
    proxy: &ProxyInfo,
    ports: &BTreeMap<String, HostPort>,
) -> Listener {
    let mut by_sni: BTreeMap<String, &HostPort> = BTreeMap::new();
    for hp in ports.values() {
        by_sni.insert(hp.sni(), hp);
    }
    let filter_chains = by_sni
        .into_keys()
        .map(|sni| FilterChain {
            filter_chain_match: Some(FilterChainMatch {
                server_names: vec![sni.clone()],
                transport_protocol: "tls".into(),
                ..Default::default()
            }),
            filters: vec![tcp_proxy(&sni, sni.clone())],
            name: sni,
            ..Default::default()
        })
        .collect();
    Listener {
        name,
        address: Some(socket(proxy.listen_address, port)),
        listener_filters: vec![tls_inspector()],
        filter_chains,
        ..Default::default()
    }
}

/// Envoy's outbound listener for a raw TCP port: `outbound_<port>`, proxying to the cluster
/// of the port's one TCP host.
fn envoy_tcp_listener(port: u16, hp: &HostPort, proxy: &ProxyInfo) -> Listener {
    Listener {
        name: format!("outbound_{port}"),
        address: Some(socket(proxy.listen_address, port)),
        filter_chains: vec![FilterChain {
            filters: vec![tcp_proxy(&hp.cluster_name(), hp.cluster_name())],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The cluster of a sidecar's inbound port: the application on `app_address:port`.
fn inbound_cluster(inbound: &crate::node::Inbound, port: u16) -> Cluster {
    let name = format!("inbound|{port}||");
    Cluster {
        name: name.clone(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(Duration {
            seconds: 5,
            nanos: 0,
        }),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name,
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(HostIdentifier::Endpoint(PbEndpoint {
                        address: Some(socket(inbound.app_address, port)),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The mTLS mode of `proxy`'s inbound `port`: its member's PeerAuthentications for its
/// namespace and labels (PERMISSIVE when none applies).
fn inbound_mode(
    proxy: &ProxyInfo,
    inbound: &crate::node::Inbound,
    snapshot: &ClusterSet,
    port: u16,
) -> bowline_model::objects::MtlsMode {
    let policies = member_policies(proxy, snapshot);
    bowline_model::objects::effective_mtls(
        policies.as_deref().unwrap_or_default(),
        &proxy.mesh.root_namespace,
        &inbound.namespace,
        &inbound.labels,
        u32::from(port),
    )
}

/// A sidecar's inbound listener for `port` at its inbound address, by its mode: STRICT a
/// filter chain for Istio mTLS only (TLS with the mTLS ALPNs, a client certificate of the
/// trust domain required), PERMISSIVE (the default) that and one for plaintext, DISABLE
/// plaintext only. Every chain ends in the application's cluster, through an HTTP
/// connection manager that sets `x-forwarded-client-cert` to the client's identity for HTTP
/// ports, or a TCP proxy for the others.
fn inbound_listener(
    proxy: &ProxyInfo,
    inbound: &crate::node::Inbound,
    port: u16,
    name: &str,
    mode: bowline_model::objects::MtlsMode,
) -> Listener {
    use bowline_model::objects::MtlsMode;
    let cluster = format!("inbound|{port}||");
    let http = !speaks_tcp(name, None);
    let terminal = |prefix: &str| -> Filter {
        if !http {
            return tcp_proxy(prefix, cluster.clone());
        }
        use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::{
            ForwardClientCertDetails, SetCurrentClientCertDetails,
        };
        let mut manager = hcm(String::new());
        manager.stat_prefix = prefix.to_string();
        manager.forward_client_cert_details = ForwardClientCertDetails::SanitizeSet as i32;
        manager.set_current_client_cert_details = Some(SetCurrentClientCertDetails {
            uri: true,
            ..Default::default()
        });
        manager.route_specifier = Some(RouteSpecifier::RouteConfig(RouteConfiguration {
            name: cluster.clone(),
            virtual_hosts: vec![VirtualHost {
                name: cluster.clone(),
                domains: vec!["*".into()],
                routes: vec![Route {
                    r#match: Some(RouteMatch {
                        path_specifier: Some(PathSpecifier::Prefix("/".into())),
                        ..Default::default()
                    }),
                    action: Some(Action::Route(RouteAction {
                        cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.clone())),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }));
        network_filter("envoy.filters.network.http_connection_manager", manager)
    };
    let mtls = FilterChain {
        name: format!("inbound_{port}_mtls"),
        filter_chain_match: Some(FilterChainMatch {
            transport_protocol: "tls".into(),
            ..Default::default()
        }),
        transport_socket: Some(crate::security::downstream(&proxy.mesh.trust_domain, http)),
        filters: vec![terminal(&format!("inbound_{port}_mtls"))],
        ..Default::default()
    };
    let plaintext = FilterChain {
        name: format!("inbound_{port}_plaintext"),
        filter_chain_match: Some(FilterChainMatch {
            transport_protocol: "raw_buffer".into(),
            ..Default::default()
        }),
        filters: vec![terminal(&format!("inbound_{port}_plaintext"))],
        ..Default::default()
    };
    let filter_chains = match mode {
        MtlsMode::Strict => vec![mtls],
        MtlsMode::Disable => vec![plaintext],
        MtlsMode::Permissive | MtlsMode::Unset => vec![mtls, plaintext],
    };
    Listener {
        name: format!("inbound_{port}"),
        address: Some(socket(inbound.address, port)),
        listener_filters: vec![tls_inspector()],
        filter_chains,
        ..Default::default()
    }
}

/// The resources of `type_url` for `proxy`: all of them when `names` is `None` (wildcard),
/// else those named that exist.
pub fn generate(
    type_url: &str,
    proxy: &ProxyInfo,
    snapshot: &ClusterSet,
    names: Option<&std::collections::BTreeSet<String>>,
) -> BTreeMap<String, Any> {
    let wanted = |name: &str| names.is_none_or(|n| n.contains(name));
    if let (type_url::ENDPOINT, Some(names)) = (type_url, names) {
        // Named assignments (what Envoy and gRPC ask for): one lookup per name, not every
        // host port of the proxy.
        let found = names.iter().filter_map(|name| {
            let hp = host_port(proxy, snapshot, name)?;
            Some((
                name.clone(),
                pack_any(load_assignment(name.clone(), &hp, proxy, snapshot)),
            ))
        });
        return found.collect();
    }
    let ports = host_ports(proxy, snapshot);
    let mut out = BTreeMap::new();
    if type_url == type_url::LISTENER && proxy.kind == ProxyKind::Grpc {
        for name in names
            .into_iter()
            .flatten()
            .filter(|n| n.starts_with(SERVER_LISTENER_PREFIX))
        {
            if let Some(listener) = server_listener(name, proxy, snapshot) {
                out.insert(name.clone(), pack_any(listener));
            }
        }
    }
    if let Some(gateway_port) = proxy.gateway_port {
        // An east-west gateway: its SNI listener, and per (service, port) an SNI-DNAT cluster.
        let name = format!("eastwest_{gateway_port}");
        match type_url {
            type_url::LISTENER if wanted(&name) => {
                let listener = gateway_listener(name.clone(), gateway_port, proxy, &ports);
                out.insert(name, pack_any(listener));
            }
            type_url::CLUSTER => {
                for hp in ports.values().filter(|hp| wanted(&hp.sni())) {
                    out.insert(hp.sni(), pack_any(cluster(hp, proxy)));
                }
            }
            type_url::ENDPOINT => {
                for hp in ports.values().filter(|hp| wanted(&hp.sni())) {
                    let assignment = load_assignment(hp.sni(), hp, proxy, snapshot);
                    out.insert(hp.sni(), pack_any(assignment));
                }
            }
            _ => {}
        }
        return out;
    }
    if proxy.kind == ProxyKind::Envoy && matches!(type_url, type_url::LISTENER | type_url::ROUTE) {
        let mut by_port: BTreeMap<u16, Vec<&HostPort>> = BTreeMap::new();
        for hp in ports.values() {
            by_port.entry(hp.port).or_default().push(hp);
        }
        for (port, hosts) in by_port {
            // A port whose every host is raw TCP gets a TCP proxy to the first of them (one
            // listener per port: a second TCP host on the port is not reachable through it).
            let tcp = hosts.iter().all(|hp| hp.tcp).then(|| hosts[0]);
            if type_url == type_url::LISTENER && wanted(&format!("outbound_{port}")) {
                let listener = match tcp {
                    Some(hp) => envoy_tcp_listener(port, hp, proxy),
                    None => envoy_listener(port, proxy),
                };
                out.insert(format!("outbound_{port}"), pack_any(listener));
            }
            if type_url == type_url::ROUTE && tcp.is_none() && wanted(&port.to_string()) {
                out.insert(port.to_string(), pack_any(envoy_routes(port, &hosts)));
            }
        }
        if let (type_url::LISTENER, Some(inbound)) = (type_url, proxy.inbound.as_deref()) {
            for (port, name) in &inbound.ports {
                let listener_name = format!("inbound_{port}");
                if wanted(&listener_name) {
                    let mode = inbound_mode(proxy, inbound, snapshot, *port);
                    let listener = inbound_listener(proxy, inbound, *port, name, mode);
                    out.insert(listener_name, pack_any(listener));
                }
            }
        }
        return out;
    }
    if let (type_url::CLUSTER, Some(inbound)) = (type_url, proxy.inbound.as_deref()) {
        for (port, _) in &inbound.ports {
            let name = format!("inbound|{port}||");
            if wanted(&name) {
                out.insert(name, pack_any(inbound_cluster(inbound, *port)));
            }
        }
    }
    for hp in ports.values() {
        match type_url {
            type_url::CLUSTER if wanted(&hp.cluster_name()) => {
                out.insert(hp.cluster_name(), pack_any(cluster(hp, proxy)));
            }
            type_url::ENDPOINT if wanted(&hp.cluster_name()) => {
                out.insert(
                    hp.cluster_name(),
                    pack_any(load_assignment(hp.cluster_name(), hp, proxy, snapshot)),
                );
            }
            type_url::LISTENER if proxy.kind == ProxyKind::Grpc && wanted(&hp.listener_name()) => {
                out.insert(hp.listener_name(), pack_any(api_listener(hp)));
            }
            type_url::ROUTE if proxy.kind == ProxyKind::Grpc && wanted(&hp.listener_name()) => {
                out.insert(hp.listener_name(), pack_any(route_config(hp)));
            }
            _ => {}
        }
    }
    out
}
