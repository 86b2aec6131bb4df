//! VM endpoints: the WorkloadEntries a selector picks, and the endpoint of a VM (a
//! WorkloadEntry or a ServiceEntry's inline endpoint), shared by Services and ServiceEntries.

use std::net::IpAddr;

use bowline_model::{
    ClusterId, Endpoint, EndpointPort, Labels, Locality, Network, Strng, WorkloadRef,
    objects::{WorkloadEntry, WorkloadSpec},
};
use parking_lot::Mutex;

use crate::{
    store::Store,
    topology::{Localities, locality, network},
};

/// What the member knows about its network layout.
pub(crate) struct MemberContext<'a> {
    pub id: &'a ClusterId,
    pub default_network: &'a Network,
    pub store: &'a Store,
    /// The member's localities, shared by its endpoints.
    pub localities: &'a Mutex<Localities>,
    /// Unreachable past its TTL: contributes no endpoints of its own.
    pub withdrawn: bool,
}

/// The member's WorkloadEntries in `namespace` whose labels include `selector`, by name. An
/// entry whose health check fails ([`WorkloadEntry::serves`] false) is still selected: its
/// endpoint is not ready (as a Pod failing its readiness probe), so that MCS exports it as
/// not ready and `explain` can say why no traffic reaches it.
pub(crate) fn selected_entries<'a>(
    store: &'a Store,
    namespace: &'a Strng,
    selector: &'a Labels,
) -> impl Iterator<Item = (&'a Strng, &'a WorkloadEntry)> + 'a {
    store
        .workload_entries
        .range((namespace.clone(), Strng::from(""))..)
        .take_while(move |((ns, _), _)| ns == namespace)
        .filter(move |(_, e)| {
            selector
                .iter()
                .all(|(k, v)| e.spec.labels.get(k) == Some(v))
        })
        .map(|((_, name), e)| (name, e))
}

/// The endpoint of a VM (a WorkloadEntry, or a ServiceEntry's inline endpoint) serving `ports`,
/// or `None` when its address is not an IP (a host name or a Unix socket) or it serves no port.
/// The network is the entry's `network`, else its `topology.istio.io/network` label, its
/// namespace's, the member's; the locality its `locality`, else its `topology.istio.io/locality`
/// label; the weight its `weight` (0 read as 1); the service account its `serviceAccount`.
pub(crate) fn vm_endpoint(
    cx: &MemberContext<'_>,
    namespace_labels: Option<&Labels>,
    spec: &WorkloadSpec,
    workload: WorkloadRef,
    ports: Vec<EndpointPort>,
) -> Option<Endpoint> {
    let address = spec.address.parse::<IpAddr>().ok()?;
    if ports.is_empty() {
        return None;
    }
    let network = match spec.network.as_str() {
        "" => network(Some(&spec.labels), namespace_labels, cx.default_network),
        n => Network::new(n),
    };
    let locality = match spec.locality.as_str() {
        "" => locality(Some(&spec.labels), None, None),
        l => Locality::parse_slashed(l),
    };
    Some(Endpoint {
        cluster: cx.id.clone(),
        network,
        locality: cx.localities.lock().share(locality),
        addresses: std::sync::Arc::from([address]),
        ports: ports.into(),
        hostname: None,
        node_name: None,
        workload: Some(workload),
        ready: true,
        serving: true,
        terminating: false,
        weight: spec.weight.max(1),
        service_account: (!spec.service_account.is_empty())
            .then(|| spec.service_account.as_str().into()),
        // Istio's rule: the label, else a service account means a proxy.
        mtls: match spec.labels.get(bowline_model::labels::TLS_MODE) {
            Some(mode) => mode == bowline_model::labels::TLS_MODE_ISTIO,
            None => !spec.service_account.is_empty(),
        },
    })
}
