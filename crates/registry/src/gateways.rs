//! East-west gateways: Services labelled `topology.istio.io/network`, by network.

use bowline_model::{
    MemberName, Network, RejectReason, Rejection,
    labels::{DEFAULT_GATEWAY_PORT, GATEWAY_PORT, NETWORK},
    objects::Service,
};

use crate::{
    Member,
    view::{Gateway, Gateways},
};

/// Derives every admitted member's gateways, and the gateway Services that cannot be used.
pub(crate) fn derive(members: &[Member]) -> (Gateways, Vec<Rejection>) {
    let mut gateways = Gateways::new();
    let mut rejections = Vec::new();
    for member in members {
        let Some(id) = member.admission.id() else {
            continue;
        };
        for key in &member.store.gateway_services {
            let Some(svc) = member.store.services.get(key) else {
                continue;
            };
            match gateway_of(svc) {
                Ok(_) if svc.external_addresses.is_empty() => {
                    let message = "east-west gateway has no address yet: no status.loadBalancer.ingress IP and no spec.externalIPs";
                    rejections.push(rejection(&member.config.name, svc, message.into()));
                }
                Ok((network, port)) => gateways.entry(network.clone()).or_default().extend(
                    svc.external_addresses.iter().map(|&address| Gateway {
                        network: network.clone(),
                        cluster: id.clone(),
                        address,
                        port,
                        service: key.clone(),
                    }),
                ),
                Err(message) => rejections.push(rejection(&member.config.name, svc, message)),
            }
        }
    }
    for list in gateways.values_mut() {
        list.sort();
        list.dedup();
    }
    gateways.retain(|_, list| !list.is_empty());
    (gateways, rejections)
}

fn rejection(member: &MemberName, svc: &Service, message: String) -> Rejection {
    Rejection {
        member: member.clone(),
        origin: String::new(),
        object: Some(bowline_model::ObjectKey::new(
            bowline_model::ObjectKind::Service,
            svc.meta.namespace.clone(),
            svc.meta.name.clone(),
        )),
        reason: RejectReason::InvalidGateway,
        message,
    }
}

/// The network and mTLS port of a gateway Service, or why it cannot be one.
fn gateway_of(svc: &Service) -> Result<(Network, u16), String> {
    let network = svc
        .meta
        .labels
        .get(NETWORK)
        .map(String::as_str)
        .unwrap_or_default();
    if network.is_empty() {
        return Err(format!("label {NETWORK} is empty"));
    }
    let port = match svc.meta.labels.get(GATEWAY_PORT) {
        None => DEFAULT_GATEWAY_PORT,
        Some(v) => v
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("label {GATEWAY_PORT}: {v:?} is not a port number"))?,
    };
    if !svc.ports.iter().any(|p| p.port == port) {
        return Err(format!(
            "east-west gateway does not expose its mTLS port {port} (set label {GATEWAY_PORT} to use another)"
        ));
    }
    Ok((Network::new(network), port))
}
