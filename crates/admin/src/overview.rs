//! `/debug/overview`: everything the status page draws, in one answer: networks with their
//! members and east-west gateways, each member's state, the service × member matrix, and the
//! connected proxies' sync state. The page polls it and redraws when `version` moves.

use std::collections::BTreeMap;

use bowline_views::{Admission, ClusterSet};
use serde_json::{Value, json};

/// One cell of the matrix: how member `id` stands with service `key`.
fn cell(
    snapshot: &ClusterSet,
    key: &bowline_model::ServiceKey,
    id: &str,
) -> (&'static str, String) {
    let info = snapshot.exports().get(key).and_then(|e| e.get(id));
    if let Some(info) = info {
        let conflict = info
            .conditions
            .iter()
            .find(|c| c.type_ == "Conflict" && c.status == "True");
        return match (info.exported, &info.decision, conflict) {
            (true, _, Some(c)) => ("conflict", format!("{}: {}", c.reason, c.message)),
            (true, _, None) => ("exported", info.why.clone()),
            (false, bowline_model::export::Decision::ClusterLocal { .. }, _) => {
                ("cluster-local", info.why.clone())
            }
            (false, _, _) => ("not-exported", info.why.clone()),
        };
    }
    let member = snapshot.admitted.iter().find(|m| m.id.as_str() == id);
    let has_namespace = member.is_some_and(|m| m.namespaces.contains_key(&key.namespace));
    match snapshot.import_for(key, Some(id)) {
        Some(seen) if has_namespace => (
            "imported",
            format!(
                "imported from {}",
                bowline_model::cluster::join_ids(&seen.clusters)
            ),
        ),
        _ => ("absent", String::new()),
    }
}

/// The overview of `snapshot`; `connections` is `/debug/connections`' answer when the xDS
/// server registered it.
pub fn overview(snapshot: &ClusterSet, connections: Option<Value>) -> Value {
    let members: Vec<Value> = snapshot
        .members
        .iter()
        .map(|m| {
            let (state, reason) = match &m.admission {
                Admission::Admitted { .. } if m.withdrawn => ("withdrawn", String::new()),
                Admission::Admitted { .. } if m.stale => ("stale", String::new()),
                Admission::Admitted { .. } => ("admitted", String::new()),
                Admission::Pending => ("pending", "waiting for its first listing or its id".into()),
                Admission::Refused { message, .. } => ("refused", message.clone()),
            };
            json!({
                "name": m.name,
                "id": m.admission.id(),
                "network": m.network,
                "state": state,
                "reason": reason,
                "synced": m.synced,
                "sourceError": m.source_error,
                "staleSince": m.stale_since,
                "objects": m.objects.values().sum::<usize>(),
                "endpoints": m.endpoints,
                "rejected": m.rejected,
            })
        })
        .collect();
    // Networks: those of members, and of gateways.
    let mut networks: BTreeMap<String, (Vec<String>, Vec<Value>)> = BTreeMap::new();
    for m in snapshot.members.iter() {
        networks
            .entry(m.network.as_str().to_string())
            .or_default()
            .0
            .push(m.name.to_string());
    }
    for (network, gateways) in snapshot.gateways.iter() {
        let entry = networks.entry(network.as_str().to_string()).or_default();
        for g in gateways {
            entry.1.push(json!({
                "address": std::net::SocketAddr::new(g.address, g.port).to_string(),
                "member": g.cluster,
                "service": g.service.to_string(),
            }));
        }
    }
    let networks: Vec<Value> = networks
        .into_iter()
        .map(|(name, (members, gateways))| json!({"name": name, "members": members, "gateways": gateways}))
        .collect();
    let ids: Vec<&str> = snapshot.admitted.iter().map(|m| m.id.as_str()).collect();
    let services: Vec<Value> = snapshot
        .services
        .keys()
        .map(|key| {
            let import = snapshot.imports().get(key);
            let cells: BTreeMap<&str, Value> = ids
                .iter()
                .map(|id| {
                    let (state, why) = cell(snapshot, key, id);
                    (*id, json!({"state": state, "why": why}))
                })
                .collect();
            json!({
                "key": key.to_string(),
                "namespace": &*key.namespace,
                "name": &*key.name,
                "imported": import.is_some(),
                "ips": import.map(|i| i.ips.clone()).unwrap_or_default(),
                "conflicts": import.map(|i| i.merged.conflicts.iter().map(|(r, _)| r.to_string()).collect::<Vec<_>>()).unwrap_or_default(),
                "members": cells,
            })
        })
        .collect();
    json!({
        "clusterSet": &*snapshot.name,
        "version": snapshot.version,
        "synced": snapshot.synced,
        "starting": snapshot.starting,
        "networks": networks,
        "members": members,
        "memberIds": ids,
        "services": services,
        "proxies": connections.unwrap_or(Value::Array(Vec::new())),
        "rejected": snapshot.rejections.len(),
    })
}
