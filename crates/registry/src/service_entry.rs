//! ServiceEntries: the services their hosts name, the Service one stands in for, and the
//! endpoints of the WorkloadEntries it selects and of its inline endpoints.
//!
//! A host `<svc>.<ns>.svc.cluster.local` in the ServiceEntry's own namespace contributes to the
//! service `ns/svc`, exactly as a Service of that name would. A DNS name outside the Kubernetes
//! zones (`vm.example.com`) is a service of its own, keyed by host, served to the proxies of
//! the member that holds the ServiceEntry ([`HostService`](crate::view::HostService)). Every
//! other host (wildcards, another namespace's service, `clusterset.local`) is refused with
//! [`RejectReason::UnsupportedHost`].

use std::{
    collections::{BTreeMap, HashSet},
    net::IpAddr,
};

use bowline_model::{
    Endpoint, EndpointPort, IpFamily, Labels, MemberName, ObjectKey, ObjectKind, Protocol,
    RejectReason, Rejection, ServiceKey, ServicePort, ServiceType, TargetPort, WorkloadRef,
    objects::{Meta, Service, ServiceEntry, ServiceEntryPort, WorkloadSpec},
};

use crate::{
    hosts::{external_host, host_service},
    store::Store,
    workloads::{MemberContext, selected_entries, vm_endpoint},
};

/// The hosts of a member's ServiceEntries served under their own name, each with its
/// ServiceEntries, oldest first.
pub(crate) fn external_hosts(store: &Store) -> BTreeMap<String, Vec<&ServiceEntry>> {
    let mut out: BTreeMap<String, Vec<&ServiceEntry>> = BTreeMap::new();
    for entry in store.service_entries.values() {
        for host in entry.hosts.iter().filter(|h| external_host(h)) {
            out.entry(host.clone()).or_default().push(entry);
        }
    }
    for entries in out.values_mut() {
        entries.sort_by(|a, b| {
            (a.meta.created, &a.meta.namespace, &a.meta.name).cmp(&(
                b.meta.created,
                &b.meta.namespace,
                &b.meta.name,
            ))
        });
    }
    out
}

/// Every host of a member's ServiceEntries that Bowline cannot serve.
pub(crate) fn rejections(member: &MemberName, store: &Store) -> Vec<Rejection> {
    let mut out = Vec::new();
    for entry in store.service_entries.values() {
        for host in entry.hosts.iter().filter(|h| !external_host(h)) {
            if let Err(message) = host_service(entry, host) {
                out.push(Rejection {
                    member: member.clone(),
                    origin: String::new(),
                    object: Some(ObjectKey::new(
                        ObjectKind::ServiceEntry,
                        entry.meta.namespace.clone(),
                        entry.meta.name.clone(),
                    )),
                    reason: RejectReason::UnsupportedHost,
                    message,
                });
            }
        }
    }
    out
}

/// The member's ServiceEntries naming `key`, oldest first (creation time, then name).
pub(crate) fn naming<'a>(store: &'a Store, key: &ServiceKey) -> Vec<&'a ServiceEntry> {
    let mut entries: Vec<&ServiceEntry> = store
        .entries_by_service
        .get(key)
        .into_iter()
        .flatten()
        .filter_map(|name| {
            store
                .service_entries
                .get(&(key.namespace.clone(), name.clone()))
        })
        .collect();
    entries.sort_by(|a, b| (a.meta.created, &a.meta.name).cmp(&(b.meta.created, &b.meta.name)));
    entries
}

/// The Service the oldest ServiceEntry stands in for when the member has no Service `key`:
/// its ports (number, protocol, `targetPort`), its IP `addresses` as cluster IPs (headless when
/// it has none), its labels, annotations and creation time.
pub(crate) fn stand_in(key: &ServiceKey, entries: &[&ServiceEntry]) -> Option<Service> {
    let entry = entries.first()?;
    let mut cluster_ips: Vec<IpAddr> = Vec::new();
    for ip in entry.addresses.iter().filter_map(|a| a.parse().ok()) {
        if !cluster_ips.contains(&ip) {
            cluster_ips.push(ip);
        }
    }
    let mut ip_families: Vec<IpFamily> = cluster_ips.iter().map(IpFamily::of).collect();
    ip_families.dedup();
    let ports = entry
        .ports
        .iter()
        .filter_map(|p| {
            Some(ServicePort {
                name: p.name.clone(),
                protocol: protocol(&p.protocol),
                port: u16::try_from(p.number).ok()?,
                target_port: u16::try_from(p.target_port)
                    .ok()
                    .filter(|t| *t != 0)
                    .map(TargetPort::Number),
                app_protocol: app_protocol(&p.protocol),
            })
        })
        .collect();
    Some(Service {
        meta: Meta {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            uid: None,
            labels: entry.meta.labels.clone(),
            annotations: entry.meta.annotations.clone(),
            created: entry.meta.created,
        },
        service_type: match cluster_ips.is_empty() {
            true => ServiceType::Headless,
            false => ServiceType::ClusterIP,
        },
        cluster_ips,
        ip_families,
        ports,
        selector: None,
        external_name: None,
        external_addresses: Vec::new(),
        external_hostnames: Vec::new(),
        session_affinity: "None".into(),
        session_affinity_timeout: None,
        internal_traffic_policy: None,
        traffic_distribution: None,
    })
}

/// Endpoints of the ServiceEntries naming a service: the WorkloadEntries each selects
/// (`workloadSelector.labels`, in its namespace, while they may serve) and its inline
/// `endpoints` (workload `<serviceentry>-<index>`), one port per ServiceEntry port (see
/// [`endpoint_ports`]), network, locality and weight as [`vm_endpoint`] has them. A
/// WorkloadEntry that is already an endpoint (selected by the Service of that name, or by an
/// older ServiceEntry) is not added twice.
pub(crate) fn endpoints(
    cx: &MemberContext<'_>,
    key: &ServiceKey,
    entries: &[&ServiceEntry],
    namespace_labels: Option<&Labels>,
    existing: &[Endpoint],
) -> Vec<Endpoint> {
    if entries.is_empty() {
        return Vec::new();
    }
    let mut seen: HashSet<WorkloadRef> = existing
        .iter()
        .filter_map(|e| e.workload.as_ref().filter(|w| &*w.kind != "Pod").cloned())
        .collect();
    let mut out = Vec::new();
    for entry in entries {
        let mut add = |spec: &WorkloadSpec, workload: WorkloadRef, ready: bool| {
            if seen.contains(&workload) {
                return;
            }
            let ports = endpoint_ports(&entry.ports, spec);
            if let Some(mut ep) = vm_endpoint(cx, namespace_labels, spec, workload.clone(), ports) {
                ep.ready = ready;
                ep.serving = ready;
                seen.insert(workload);
                out.push(ep);
            }
        };
        if let Some(selector) = entry.workload_selector.as_ref().filter(|s| !s.is_empty()) {
            for (name, we) in selected_entries(cx.store, &key.namespace, selector) {
                let workload = WorkloadRef {
                    kind: "WorkloadEntry".into(),
                    name: name.clone(),
                };
                add(&we.spec, workload, we.serves());
            }
        }
        for (i, spec) in entry.endpoints.iter().enumerate() {
            let workload = WorkloadRef {
                kind: "ServiceEntry".into(),
                name: format!("{}-{i}", entry.meta.name).into(),
            };
            add(spec, workload, true);
        }
    }
    out
}

/// The ports a workload serves for a ServiceEntry, as Istio has them: for each ServiceEntry
/// port, the workload's `ports[<port name>]`, else the port's `targetPort`, else its number
/// (a port that does not fit in 16 bits, or is 0, is left out).
fn endpoint_ports(ports: &[ServiceEntryPort], spec: &WorkloadSpec) -> Vec<EndpointPort> {
    ports
        .iter()
        .filter_map(|p| {
            let number = [spec.ports.get(&p.name).copied(), Some(p.target_port)]
                .into_iter()
                .flatten()
                .find(|n| *n != 0)
                .unwrap_or(p.number);
            Some(EndpointPort {
                name: p.name.clone(),
                port: u16::try_from(number).ok().filter(|n| *n != 0)?,
                protocol: protocol(&p.protocol),
                app_protocol: app_protocol(&p.protocol),
            })
        })
        .collect()
}

/// The transport of an Istio port protocol: UDP for `UDP`, TCP for everything else.
fn protocol(istio: &str) -> Protocol {
    match istio.eq_ignore_ascii_case("UDP") {
        true => Protocol::Udp,
        false => Protocol::Tcp,
    }
}

/// The application protocol of an Istio port protocol (`HTTP` → `http`, `GRPC` → `grpc`...),
/// `None` for plain `TCP`/`UDP`.
fn app_protocol(istio: &str) -> Option<String> {
    match istio.to_ascii_uppercase().as_str() {
        "" | "TCP" | "UDP" => None,
        other => Some(other.to_ascii_lowercase()),
    }
}
