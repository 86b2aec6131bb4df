//! Why a proxy does or does not reach each endpoint of a ClusterSet service
//! (`/debug/explain`, `bowline explain`).
//!
//! For every endpoint of every member of the service, one verdict: sent directly (with its
//! weight), stood for by east-west gateways (with the weight each carries for it), or left
//! out with the rule that left it out, in the order the pipeline applies them: the member's
//! state, its export decision, the export's scope, the strict port rule, then the EDS rule
//! ([`crate::eds::route`], the very function assignments are built with). Beside them, what
//! the assignment holds now and what the proxy was last sent, so that an explanation that
//! disagrees with what the proxy has shows.

use std::collections::BTreeSet;

use bowline_model::{Endpoint, ServiceKey};
use bowline_views::{Admission, ClusterSet, Import};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use prost::Message;
use serde_json::{Value, json};

use crate::{
    eds::{self, Route, Target},
    node::ProxyInfo,
    resources::{generate, type_url},
    status::Held,
};

/// The explanation for `proxy` of every port of `key`'s ClusterSet service (or only `port`),
/// with what `sent` holds when the proxy is connected.
pub fn explain(
    proxy: &ProxyInfo,
    snapshot: &ClusterSet,
    key: &ServiceKey,
    port: Option<u16>,
    sent: Option<&Held>,
) -> Value {
    let host = format!("{}.{}.svc.clusterset.local", key.name, key.namespace);
    let scope = match proxy.gateway_port {
        Some(_) => None,
        None => proxy.member.as_deref(),
    };
    let whole = snapshot.imports().get(key);
    let seen = snapshot.import_for(key, scope);
    let import = match (whole, seen) {
        (None, _) => format!("{key} is not imported: no member exports it validly"),
        (Some(_), None) => format!(
            "no export of {key} reaches member {}",
            scope.unwrap_or_default()
        ),
        (Some(_), Some(seen)) => format!(
            "imported from {}",
            bowline_model::cluster::join_ids(&seen.clusters)
        ),
    };
    // The ports of the import the proxy sees, else of the whole set's, else of the members'
    // Services (to explain why not).
    let ports: Vec<(u16, String)> = match seen.or(whole.map(|w| &**w)) {
        Some(i) => i
            .merged
            .ports
            .iter()
            .map(|p| (p.port, p.name.clone()))
            .collect(),
        None => {
            let services = snapshot.service(key).into_iter().flat_map(|v| {
                v.members
                    .values()
                    .filter_map(|c| c.service.as_deref())
                    .flat_map(|s| s.ports.iter().map(|p| (p.port, p.name.clone())))
            });
            let unique: BTreeSet<(u16, String)> = services.collect();
            unique.into_iter().collect()
        }
    };
    let clusters: Vec<Value> = ports
        .iter()
        .filter(|(number, _)| port.is_none_or(|p| p == *number))
        .map(|(number, name)| {
            let cluster = format!("outbound|{number}||{host}");
            let endpoints = endpoints(proxy, snapshot, key, seen, scope, name);
            let now = generate(
                type_url::ENDPOINT,
                proxy,
                snapshot,
                Some(&BTreeSet::from([cluster.clone()])),
            );
            let expected = now.get(&cluster).map(|any| totals(&any.value));
            let sent = sent.map(|held| {
                let held = held.resources(type_url::ENDPOINT);
                let found = held.iter().find(|(n, _)| *n == cluster);
                found.map(|(_, e)| totals(&e.any().value))
            });
            json!({
                "cluster": cluster,
                "port": number,
                "portName": name,
                "endpoints": endpoints,
                "now": expected,
                "connected": sent.is_some(),
                "sent": sent.flatten(),
            })
        })
        .collect();
    let members: Vec<Value> = snapshot
        .members
        .iter()
        .filter_map(|m| {
            let note = match &m.admission {
                Admission::Admitted { .. } if m.withdrawn => {
                    "withdrawn: unreachable for longer than staleEndpointTTL; its endpoints are not served until it is listed again".to_string()
                }
                Admission::Admitted { .. } if m.stale => {
                    "stale: its source is failing; its last known endpoints are served".to_string()
                }
                Admission::Admitted { .. } => return None,
                Admission::Pending => {
                    "pending: not admitted yet (no first listing, or no id): nothing of it is in the ClusterSet".to_string()
                }
                Admission::Refused { message, .. } => {
                    format!("refused: {message}: nothing of it is in the ClusterSet")
                }
            };
            Some(json!({"member": m.name, "note": note}))
        })
        .collect();
    json!({
        "proxy": {
            "id": proxy.id,
            "member": proxy.member,
            "network": proxy.network,
            "instanceIps": proxy.instance_ips,
            "mtls": proxy.sds,
            "gateway": proxy.gateway_port.is_some(),
        },
        "service": key.to_string(),
        "host": host,
        "import": import,
        "clusters": clusters,
        "members": members,
    })
}

/// Endpoints and total weight of an encoded assignment.
fn totals(encoded: &[u8]) -> Value {
    let cla = ClusterLoadAssignment::decode(encoded).unwrap_or_default();
    let endpoints = cla.endpoints.iter().flat_map(|l| &l.lb_endpoints);
    let (count, weight) = endpoints.fold((0u64, 0u64), |(n, w), e| {
        let weight = e.load_balancing_weight.as_ref().map_or(1, |w| w.value);
        (n + 1, w + u64::from(weight))
    });
    json!({"endpoints": count, "weight": weight})
}

/// The verdict on every endpoint of every member's contribution to `key`, for port `name`.
fn endpoints(
    proxy: &ProxyInfo,
    snapshot: &ClusterSet,
    key: &ServiceKey,
    seen: Option<&Import>,
    scope: Option<&str>,
    port_name: &str,
) -> Vec<Value> {
    let Some(view) = snapshot.service(key) else {
        return Vec::new();
    };
    let exports = snapshot.exports().get(key);
    let view_of_proxy = proxy.view();
    let scale = eds::scale_for(&snapshot.gateways, &view_of_proxy);
    let mut out = Vec::new();
    for (id, contribution) in &view.members {
        let info = exports.and_then(|e| e.get(id));
        let status = snapshot
            .members
            .iter()
            .find(|m| m.admission.id() == Some(id));
        // What leaves out every endpoint of this member.
        let member_rule: Option<(String, String)> = if status.is_some_and(|m| m.withdrawn) {
            Some((
                "member withdrawn: unreachable for longer than staleEndpointTTL".into(),
                "staleEndpointTTL".into(),
            ))
        } else if let Some(info) = info.filter(|i| !i.exported) {
            Some((info.why.clone(), "export policy".into()))
        } else if info.is_none() {
            Some((
                format!("not exported: member {id} has no export decision for {key}"),
                "export policy".into(),
            ))
        } else {
            match seen {
                None => Some((
                    format!(
                        "no export of {key} reaches member {}",
                        scope.unwrap_or_default()
                    ),
                    "export scope".into(),
                )),
                Some(seen) if !seen.clusters.contains(id) => Some((
                    format!(
                        "the export of member {id} does not reach member {}{}",
                        scope.unwrap_or_default(),
                        info.and_then(|i| i.scope.as_ref())
                            .map(|s| format!(" ({s})"))
                            .unwrap_or_default()
                    ),
                    "export scope".into(),
                )),
                Some(seen)
                    if !seen
                        .served_ports
                        .get(id)
                        .is_some_and(|p| p.iter().any(|n| n == port_name)) =>
                {
                    Some((
                        format!(
                            "member {id} does not serve port {port_name:?} as the winning definition has it (see the Conflict condition of its ServiceExport)"
                        ),
                        "strict port rule".into(),
                    ))
                }
                Some(_) => None,
            }
        };
        for endpoint in contribution.endpoints.iter() {
            out.push(verdict(
                endpoint,
                member_rule.as_ref(),
                port_name,
                (&snapshot.gateways, &view_of_proxy, scale),
            ));
        }
    }
    out
}

fn verdict(
    endpoint: &Endpoint,
    member_rule: Option<&(String, String)>,
    port_name: &str,
    (gateways, proxy, scale): (&bowline_views::Gateways, &eds::ProxyView, u32),
) -> Value {
    let mut out = json!({
        "member": endpoint.cluster,
        "network": endpoint.network,
        "addresses": endpoint.addresses,
        "workload": endpoint.workload.as_ref().map(|w| format!("{} {}", w.kind, w.name)),
    });
    let excluded = |out: &mut Value, reason: &str, rule: &str| {
        out["verdict"] = "excluded".into();
        out["reason"] = reason.into();
        out["rule"] = rule.into();
    };
    if let Some((reason, rule)) = member_rule {
        excluded(&mut out, reason, rule);
        return out;
    }
    let port = if port_name.is_empty() && endpoint.ports.len() == 1 {
        Some(endpoint.ports[0].port)
    } else {
        endpoint
            .ports
            .iter()
            .find(|p| p.name == port_name)
            .map(|p| p.port)
    };
    let Some(port) = port else {
        excluded(
            &mut out,
            &format!("the endpoint has no port named {port_name:?}"),
            "EndpointSlice ports",
        );
        return out;
    };
    let target = Target { endpoint, port };
    match eds::route(&target, gateways, proxy, scale) {
        Route::Direct {
            address, weight, ..
        } => {
            out["verdict"] = "direct".into();
            out["address"] = format!("{}", std::net::SocketAddr::new(address, port)).into();
            out["weight"] = weight.into();
        }
        Route::Gateways { gateways, share } => {
            out["verdict"] = "gateway".into();
            out["gateways"] = gateways
                .iter()
                .map(|g| {
                    format!(
                        "{} ({})",
                        std::net::SocketAddr::new(g.address, g.port),
                        g.cluster
                    )
                })
                .collect::<Vec<_>>()
                .into();
            out["weight"] = share.into();
        }
        // A VM's readiness is its health check.
        Route::Excluded(eds::Excluded::NotReady)
            if endpoint
                .workload
                .as_ref()
                .is_some_and(|w| &*w.kind == "WorkloadEntry") =>
        {
            excluded(
                &mut out,
                "health check failing: the WorkloadEntry is not reported Healthy (its group probes it)",
                "health",
            );
        }
        Route::Excluded(why) => {
            let rule = match why {
                eds::Excluded::NotReady | eds::Excluded::Terminating => "readiness",
                eds::Excluded::NoAddressOfFamily | eds::Excluded::NoGatewayOfFamily => "IP family",
                _ => "network and gateways",
            };
            excluded(&mut out, why.reason(), rule);
        }
    }
    out
}
