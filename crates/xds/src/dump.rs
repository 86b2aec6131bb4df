//! `/debug/config_dump?node=ID`: the resources a connected proxy is served, as JSON.

use envoy_types::pb::{
    envoy::config::{
        cluster::v3::Cluster,
        core::v3::{Address, address},
        endpoint::v3::{ClusterLoadAssignment, lb_endpoint::HostIdentifier},
        listener::v3::Listener,
        route::v3::{RouteConfiguration, route::Action, route_action::ClusterSpecifier},
    },
    google::protobuf::Any,
};
use prost::Message;
use serde_json::{Value, json};

use bowline_views::ClusterSet;

use crate::{
    node::ProxyInfo,
    resources::{generate, type_url},
    status::ConnectionStatus,
};

fn socket(address: Option<&Address>) -> String {
    match address.and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(s)) => {
            let port = match s.port_specifier {
                Some(envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(p)) => p,
                _ => 0,
            };
            if s.address.contains(':') {
                format!("[{}]:{port}", s.address)
            } else {
                format!("{}:{port}", s.address)
            }
        }
        _ => String::new(),
    }
}

fn cluster(any: &Any) -> Value {
    let c = Cluster::decode(any.value.as_slice()).unwrap_or_default();
    let http2 = c
        .typed_extension_protocol_options
        .contains_key("envoy.extensions.upstreams.http.v3.HttpProtocolOptions");
    // The SNI of the mTLS socket, when the cluster originates Istio mTLS.
    let mtls_sni = c.transport_socket_matches.iter().find_map(|m| {
        use envoy_types::pb::envoy::{
            config::core::v3::transport_socket::ConfigType,
            extensions::transport_sockets::tls::v3::UpstreamTlsContext,
        };
        match m.transport_socket.as_ref()?.config_type.as_ref()? {
            ConfigType::TypedConfig(any) if any.type_url.ends_with("UpstreamTlsContext") => {
                Some(UpstreamTlsContext::decode(any.value.as_slice()).ok()?.sni)
            }
            _ => None,
        }
    });
    json!({"name": c.name, "edsServiceName": c.eds_cluster_config.map(|e| e.service_name), "http2": http2, "mtlsSni": mtls_sni})
}

fn assignment(any: &Any) -> Value {
    let cla = ClusterLoadAssignment::decode(any.value.as_slice()).unwrap_or_default();
    let localities: Vec<Value> = cla
        .endpoints
        .iter()
        .map(|l| {
            let locality = l.locality.as_ref().map(|l| format!("{}/{}/{}", l.region, l.zone, l.sub_zone)).unwrap_or_default();
            let endpoints: Vec<Value> = l
                .lb_endpoints
                .iter()
                .map(|e| {
                    let (address, additional) = match &e.host_identifier {
                        Some(HostIdentifier::Endpoint(ep)) => (
                            socket(ep.address.as_ref()),
                            ep.additional_addresses.iter().map(|a| socket(a.address.as_ref())).collect::<Vec<_>>(),
                        ),
                        _ => (String::new(), Vec::new()),
                    };
                    let bowline = e
                        .metadata
                        .as_ref()
                        .and_then(|m| m.typed_filter_metadata.get("bowline"))
                        .and_then(|any| <envoy_types::pb::google::protobuf::Struct as prost::Message>::decode(any.value.as_slice()).ok());
                    let mtls = e
                        .metadata
                        .as_ref()
                        .is_some_and(|m| m.filter_metadata.contains_key(crate::security::MATCH_KEY));
                    let meta = bowline
                        .as_ref()
                        .and_then(|s| s.fields.get("endpoint"))
                        .and_then(|v| match &v.kind {
                            Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(s)) => Some(s.clone()),
                            _ => None,
                        });
                    json!({
                        "address": address,
                        "additionalAddresses": additional,
                        "weight": e.load_balancing_weight.as_ref().map(|w| w.value),
                        "endpoint": meta,
                        "mtls": mtls,
                    })
                })
                .collect();
            json!({"locality": locality, "weight": l.load_balancing_weight.as_ref().map(|w| w.value), "endpoints": endpoints})
        })
        .collect();
    json!({"cluster": cla.cluster_name, "localities": localities})
}

fn listener(any: &Any) -> Value {
    let l = Listener::decode(any.value.as_slice()).unwrap_or_default();
    let chains: Vec<Value> = l
        .filter_chains
        .iter()
        .map(|c| {
            let m = c.filter_chain_match.clone().unwrap_or_default();
            json!({
                "serverNames": m.server_names,
                "transportProtocol": m.transport_protocol,
                "terminatesTls": c.transport_socket.is_some(),
                "filters": c.filters.iter().map(|f| f.name.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"name": l.name, "address": socket(l.address.as_ref()), "apiListener": l.api_listener.is_some(), "filterChains": chains})
}

fn routes(any: &Any) -> Value {
    let r = RouteConfiguration::decode(any.value.as_slice()).unwrap_or_default();
    let hosts: Vec<Value> = r
        .virtual_hosts
        .iter()
        .map(|v| {
            let clusters: Vec<String> = v
                .routes
                .iter()
                .filter_map(|r| match &r.action {
                    Some(Action::Route(a)) => match &a.cluster_specifier {
                        Some(ClusterSpecifier::Cluster(c)) => Some(c.clone()),
                        _ => None,
                    },
                    _ => None,
                })
                .collect();
            json!({"name": v.name, "domains": v.domains, "clusters": clusters})
        })
        .collect();
    json!({"name": r.name, "virtualHosts": hosts})
}

/// The summaries of every type's resources, as `of(type URL)` gives them.
fn summaries(mut head: Value, of: impl Fn(&str) -> Vec<Any>) -> Value {
    let render = |t: &str, render: fn(&Any) -> Value| -> Value {
        of(t).iter().map(render).collect::<Vec<_>>().into()
    };
    head["clusters"] = render(type_url::CLUSTER, cluster);
    head["endpoints"] = render(type_url::ENDPOINT, assignment);
    head["listeners"] = render(type_url::LISTENER, listener);
    head["routes"] = render(type_url::ROUTE, routes);
    head
}

/// What a connected proxy was last sent, per type, as JSON summaries.
pub fn sent_dump(connection: &ConnectionStatus) -> Value {
    let head = json!({"node": connection.proxy, "protocol": connection.protocol});
    summaries(head, |t| {
        let held = connection.sent.resources(t);
        held.iter().map(|(_, e)| e.any()).collect()
    })
}

/// What a connected proxy would be sent now, for what it subscribes to, in
/// [`sent_dump`]'s shape: the two differ exactly where the proxy is behind.
pub fn fresh_dump(connection: &ConnectionStatus, snapshot: &ClusterSet) -> Value {
    let head = json!({"node": connection.proxy, "protocol": connection.protocol});
    summaries(head, |t| {
        let Some(subscribed) = connection.types.get(t).map(|s| &s.subscribed) else {
            return Vec::new();
        };
        let names: Option<std::collections::BTreeSet<String>> = (!subscribed.is_empty()
            && !subscribed.iter().any(|n| n == "*"))
        .then(|| subscribed.iter().cloned().collect());
        let generated = generate(t, &connection.proxy, snapshot, names.as_ref());
        generated.into_values().collect()
    })
}

/// What `proxy` would be served now: every resource of every type, as JSON summaries.
pub fn config_dump(proxy: &ProxyInfo, snapshot: &ClusterSet) -> Value {
    summaries(json!({"node": proxy}), |t| {
        generate(t, proxy, snapshot, None).into_values().collect()
    })
}
