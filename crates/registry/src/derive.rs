//! One member's contribution to one service: endpoints merged across address families, with
//! their network and locality.

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use bowline_model::{
    ClusterId, Endpoint, EndpointPort, IpFamily, Labels, Locality, Network, ServiceKey, Strng,
    WorkloadRef, labels,
    objects::{AddressType, SliceEndpoint, TargetRef},
};

use crate::{
    service_entry,
    store::{NsName, Store},
    topology::{locality, network},
    view::MemberService,
    workloads::{MemberContext, selected_entries, vm_endpoint},
};

/// A member's contribution to a service and what it was derived from, so that a change to a
/// pod or node finds the services to recompute.
#[derive(Debug)]
pub(crate) struct Derived {
    pub view: Arc<MemberService>,
    pub pods: Box<[NsName]>,
    pub nodes: Box<[Strng]>,
}

/// The identity under which slice endpoints of one workload are merged into one endpoint.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Identity {
    Target(TargetRef),
    Address(IpAddr),
}

/// Derives the member's contribution to `key`, or `None` when it has nothing of that name.
pub(crate) fn member_service(cx: &MemberContext<'_>, key: &ServiceKey) -> Option<Derived> {
    let store = cx.store;
    let entries = service_entry::naming(store, key);
    let service = store
        .services
        .get(key)
        .cloned()
        .or_else(|| service_entry::stand_in(key, &entries).map(Arc::new));
    let export = store.exports.get(key).cloned();
    let import = store.imports.get(key).cloned();
    let slice_names = store.slices_by_service.get(key);
    let imported_names = store.imported_by_service.get(key);
    if service.is_none()
        && export.is_none()
        && import.is_none()
        && slice_names.is_none()
        && imported_names.is_none()
        && entries.is_empty()
    {
        return None;
    }
    let primary = service
        .as_ref()
        .and_then(|s| s.ip_families.first().copied())
        .unwrap_or(IpFamily::IPv4);

    // Endpoints are large: keep them in place in a Vec, indexed by workload identity.
    let mut endpoints: Vec<Endpoint> = Vec::new();
    let mut by_identity: HashMap<Identity, usize> = HashMap::new();
    let mut localities = LocalityCache::default();
    let namespace_labels = store
        .namespaces
        .get(&key.namespace)
        .map(|ns| &ns.meta.labels);
    let mut pods = Vec::new();
    let mut nodes = Vec::new();
    let slice_names = slice_names.filter(|_| !cx.withdrawn);
    for name in slice_names.into_iter().flatten() {
        let Some(slice) = store.slices.get(&(key.namespace.clone(), name.clone())) else {
            continue;
        };
        if slice.address_type == AddressType::FQDN {
            continue;
        }
        for ep in slice.endpoints.iter() {
            let identity = match &ep.target {
                Some(target) => Identity::Target(target.clone()),
                None => Identity::Address(ep.addresses[0]),
            };
            if let Some(target) = ep.target.as_ref().filter(|t| &*t.kind == "Pod") {
                pods.push((target.namespace.clone(), target.name.clone()));
            }
            nodes.extend(ep.node_name.clone());
            match by_identity.get(&identity) {
                Some(&i) => merge_into(&mut endpoints[i], ep, &slice.ports),
                None => {
                    by_identity.insert(identity, endpoints.len());
                    endpoints.push(new_endpoint(
                        cx,
                        namespace_labels,
                        ep,
                        &slice.ports,
                        &mut localities,
                    ));
                }
            }
        }
    }
    if let Some(service) = service.as_deref().filter(|_| !cx.withdrawn) {
        endpoints.extend(workload_entry_endpoints(cx, key, service, namespace_labels));
        if service.service_type != bowline_model::ServiceType::ExternalName {
            let vms = service_entry::endpoints(cx, key, &entries, namespace_labels, &endpoints);
            endpoints.extend(vms);
        }
    }
    for ep in &mut endpoints {
        if ep.addresses.len() > 1 {
            let mut addresses = ep.addresses.to_vec();
            addresses.sort_by_key(|a| (IpFamily::of(a) != primary, *a));
            addresses.dedup();
            ep.addresses = addresses.into();
        }
    }
    endpoints.sort_by(|a, b| (&a.addresses, &a.workload).cmp(&(&b.addresses, &b.workload)));
    pods.sort();
    pods.dedup();
    nodes.sort();
    nodes.dedup();
    Some(Derived {
        view: Arc::new(MemberService {
            cluster: cx.id.clone(),
            service,
            service_entries: entries.iter().map(|e| e.meta.name.clone()).collect(),
            export,
            import,
            endpoints: endpoints.into(),
            imported: imported_endpoints(store, key, imported_names.filter(|_| !cx.withdrawn)),
        }),
        pods: pods.into(),
        nodes: nodes.into(),
    })
}

/// Endpoints of the member's WorkloadEntries (VMs) that the Service selects: entries in the
/// Service's namespace whose labels include its selector, as Istio selects them
/// (`PILOT_ENABLE_K8S_SELECT_WORKLOAD_ENTRIES`). A numeric `targetPort` is used as is, a named
/// one is looked up in the entry's `ports` (the port is left out when the entry lacks it, the
/// entry when it serves none). Only IP addresses are endpoints (a host name or a Unix socket is
/// not). Network, locality, weight and service account as [`vm_endpoint`] has them. An entry
/// whose health is checked (`proxy.istio.io/health-checks-enabled: "true"`) is an endpoint only
/// while its `Healthy` condition is `True`.
fn workload_entry_endpoints(
    cx: &MemberContext<'_>,
    key: &ServiceKey,
    service: &bowline_model::objects::Service,
    namespace_labels: Option<&Labels>,
) -> Vec<Endpoint> {
    let Some(selector) = service.selector.as_ref().filter(|s| !s.is_empty()) else {
        return Vec::new();
    };
    if service.service_type == bowline_model::ServiceType::ExternalName {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (name, entry) in selected_entries(cx.store, &key.namespace, selector) {
        let spec = &entry.spec;
        let ports = service
            .ports
            .iter()
            .filter_map(|p| {
                let port = match &p.target_port {
                    None => p.port,
                    Some(bowline_model::TargetPort::Number(n)) => *n,
                    Some(bowline_model::TargetPort::Name(n)) => {
                        u16::try_from(*spec.ports.get(n)?).ok()?
                    }
                };
                Some(EndpointPort {
                    name: p.name.clone(),
                    port,
                    protocol: p.protocol,
                    app_protocol: p.app_protocol.clone(),
                })
            })
            .collect();
        let workload = WorkloadRef {
            kind: "WorkloadEntry".into(),
            name: name.clone(),
        };
        out.extend(
            vm_endpoint(cx, namespace_labels, spec, workload, ports).map(|mut ep| {
                ep.ready = entry.serves();
                ep.serving = ep.ready;
                ep
            }),
        );
    }
    out
}

/// Endpoints an MCS provider imported into this member, one per slice endpoint, carrying the
/// slice's `multicluster.kubernetes.io/source-cluster` as their cluster (slices whose source
/// is not a valid cluster id are skipped). Their network is unknown here: empty.
fn imported_endpoints(
    store: &Store,
    key: &ServiceKey,
    names: Option<&std::collections::BTreeSet<Strng>>,
) -> Arc<[Endpoint]> {
    let mut out = Vec::new();
    for name in names.into_iter().flatten() {
        let Some(slice) = store.slices.get(&(key.namespace.clone(), name.clone())) else {
            continue;
        };
        let source = slice.meta.labels.get(labels::MCS_SOURCE_CLUSTER);
        let Some(cluster) = source.and_then(|s| ClusterId::new(s).ok()) else {
            continue;
        };
        out.extend(slice.endpoints.iter().map(|ep| Endpoint {
            cluster: cluster.clone(),
            network: Network::default(),
            locality: Arc::new(locality(None, None, ep.zone.as_deref())),
            addresses: ep.addresses.clone(),
            ports: slice.ports.clone(),
            hostname: ep.hostname.clone(),
            node_name: None,
            workload: None,
            ready: ep.ready,
            serving: ep.serving,
            terminating: ep.terminating,
            weight: 1,
            service_account: None,
            // Another provider's slices say nothing of proxies.
            mtls: false,
        }));
    }
    out.sort_by(|a, b| (&a.cluster, &a.addresses).cmp(&(&b.cluster, &b.addresses)));
    out.into()
}

/// Localities already derived in this recomputation, by (node, slice zone): endpoints share a
/// handful of nodes, so each is derived once (and shared with the member's other services).
#[derive(Default)]
struct LocalityCache(HashMap<(Option<Strng>, Option<Strng>), Arc<Locality>>);

fn new_endpoint(
    cx: &MemberContext<'_>,
    namespace_labels: Option<&Labels>,
    ep: &SliceEndpoint,
    ports: &Arc<[EndpointPort]>,
    localities: &mut LocalityCache,
) -> Endpoint {
    let store = cx.store;
    let pod_labels = ep
        .target
        .as_ref()
        .filter(|t| &*t.kind == "Pod")
        .and_then(|t| store.pods.get(&(t.namespace.clone(), t.name.clone())))
        .map(|p| &p.meta.labels);
    let node_labels = ep
        .node_name
        .as_ref()
        .and_then(|n| store.nodes.get(n))
        .map(|n| &n.meta.labels);
    Endpoint {
        cluster: cx.id.clone(),
        network: network(pod_labels, namespace_labels, cx.default_network),
        locality: match pod_labels.is_some_and(|l| l.contains_key(labels::POD_LOCALITY)) {
            true => {
                cx.localities
                    .lock()
                    .share(locality(pod_labels, node_labels, ep.zone.as_deref()))
            }
            false => localities
                .0
                .entry((ep.node_name.clone(), ep.zone.clone()))
                .or_insert_with(|| {
                    let derived = locality(None, node_labels, ep.zone.as_deref());
                    cx.localities.lock().share(derived)
                })
                .clone(),
        },
        addresses: ep.addresses.clone(),
        ports: ports.clone(),
        hostname: ep.hostname.clone(),
        node_name: ep.node_name.clone(),
        workload: ep.target.as_ref().map(|t| WorkloadRef {
            kind: t.kind.clone(),
            name: t.name.clone(),
        }),
        ready: ep.ready,
        serving: ep.serving,
        terminating: ep.terminating,
        weight: 1,
        service_account: None,
        mtls: pod_labels
            .and_then(|l| l.get(labels::TLS_MODE))
            .is_some_and(|m| m == labels::TLS_MODE_ISTIO),
    }
}

/// The same workload seen in another slice (its other address family, or another port set).
fn merge_into(existing: &mut Endpoint, ep: &SliceEndpoint, ports: &Arc<[EndpointPort]>) {
    let both = existing.addresses.iter().chain(ep.addresses.iter());
    existing.addresses = both.copied().collect();
    if !Arc::ptr_eq(&existing.ports, ports) && existing.ports != *ports {
        let mut union: Vec<EndpointPort> =
            existing.ports.iter().chain(ports.iter()).cloned().collect();
        union.sort();
        union.dedup();
        existing.ports = union.into();
    }
    existing.ready &= ep.ready;
    existing.serving &= ep.serving;
    existing.terminating |= ep.terminating;
    if existing.hostname.is_none() {
        existing.hostname = ep.hostname.clone();
    }
    if existing.node_name.is_none() {
        existing.node_name = ep.node_name.clone();
    }
}
