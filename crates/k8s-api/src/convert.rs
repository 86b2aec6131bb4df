//! Wire types → model objects, checking the rules of each kind. Errors name the field.

use std::{net::IpAddr, sync::Arc};

use bowline_model::{
    EndpointPort, IpFamily, Labels, Object, Protocol, ServicePort, ServiceType, TargetPort,
    cluster::validate_property_value,
    echo::capped,
    labels,
    names::{self, validate_label, validate_subdomain},
    objects::{self, AddressType, Meta, ProbeCheck, ReadinessProbe, SliceEndpoint, WorkloadSpec},
};
use k8s_openapi::{
    api::{
        core::v1::{Namespace, Node, Pod, Service, ServiceSpec},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::{apis::meta::v1::ObjectMeta, util::intstr::IntOrString},
};

use crate::crds;

type Result<T> = std::result::Result<T, String>;

/// How an object's name is checked.
#[derive(Clone, Copy)]
enum Scope {
    /// Cluster-scoped, name is a DNS subdomain.
    Cluster,
    /// Cluster-scoped, name is a DNS label (Namespace).
    ClusterLabel,
    /// Namespaced, name is a DNS subdomain.
    Namespaced,
    /// Namespaced, name is a DNS label (Service).
    NamespacedLabel,
}

fn meta(m: ObjectMeta, scope: Scope) -> Result<Meta> {
    let name = m.name.unwrap_or_default();
    let name_check = match scope {
        Scope::ClusterLabel | Scope::NamespacedLabel => validate_label(&name),
        Scope::Cluster | Scope::Namespaced => validate_subdomain(&name),
    };
    name_check.map_err(|e| format!("metadata.name {:?} {e}", capped(&name, 256)))?;
    let namespace = match scope {
        Scope::Cluster | Scope::ClusterLabel => String::new(),
        Scope::Namespaced | Scope::NamespacedLabel => {
            let ns = m
                .namespace
                .filter(|ns| !ns.is_empty())
                .unwrap_or_else(|| "default".into());
            validate_label(&ns).map_err(|e| format!("metadata.namespace {ns:?} {e}"))?;
            ns
        }
    };
    let labels = m.labels.unwrap_or_default();
    for (key, value) in &labels {
        let at = || format!("metadata.labels[{:?}]", capped(key, 256));
        names::validate_qualified_name(key).map_err(|e| format!("{}: the key {e}", at()))?;
        names::validate_label_value(value)
            .map_err(|e| format!("{}: the value {:?} {e}", at(), capped(value, 256)))?;
    }
    let annotations = m.annotations.unwrap_or_default();
    for key in annotations.keys() {
        names::validate_qualified_name(key)
            .map_err(|e| format!("metadata.annotations[{:?}]: the key {e}", capped(key, 256)))?;
    }
    let size: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > names::MAX_ANNOTATIONS_BYTES {
        return Err(format!(
            "metadata.annotations: {size} bytes in all, more than the {} allowed",
            names::MAX_ANNOTATIONS_BYTES
        ));
    }
    Ok(Meta {
        namespace: namespace.into(),
        name: name.into(),
        uid: m.uid,
        labels: labels.into(),
        annotations: annotations.into(),
        created: m.creation_timestamp.map(|t| t.0),
    })
}

fn ip(field: &str, s: &str) -> Result<IpAddr> {
    s.parse()
        .map_err(|_| format!("{field}: {s:?} is not an IP address"))
}

fn port_number(field: &str, port: i64) -> Result<u16> {
    u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{field}: {port} is not a port number (1-65535)"))
}

fn protocol(field: &str, p: Option<&str>) -> Result<Protocol> {
    match p {
        None | Some("") => Ok(Protocol::Tcp),
        Some(s) => Protocol::parse(s)
            .ok_or_else(|| format!("{field}: unknown protocol {s:?} (TCP, UDP or SCTP)")),
    }
}

fn families(field: &str, names: &[String]) -> Result<Vec<IpFamily>> {
    let families = names
        .iter()
        .enumerate()
        .map(|(i, s)| {
            IpFamily::parse(s)
                .ok_or_else(|| format!("{field}[{i}]: unknown family {s:?} (IPv4 or IPv6)"))
        })
        .collect::<Result<Vec<_>>>()?;
    if families.len() > 2 || (families.len() == 2 && families[0] == families[1]) {
        return Err(format!(
            "{field}: at most one IPv4 and one IPv6, got {names:?}"
        ));
    }
    Ok(families)
}

pub(crate) fn namespace(ns: Namespace) -> Result<Object> {
    Ok(Object::Namespace(objects::Namespace {
        meta: meta(ns.metadata, Scope::ClusterLabel)?,
    }))
}

pub(crate) fn node(node: Node) -> Result<Object> {
    Ok(Object::Node(objects::Node {
        meta: meta(node.metadata, Scope::Cluster)?,
    }))
}

pub(crate) fn pod(pod: Pod) -> Result<Object> {
    Ok(Object::Pod(objects::Pod {
        meta: meta(pod.metadata, Scope::Namespaced)?,
    }))
}

pub(crate) fn service(svc: Service) -> Result<Object> {
    let meta = meta(svc.metadata, Scope::NamespacedLabel)?;
    let spec = svc.spec.unwrap_or_default();
    let service_type = match spec.type_.as_deref().unwrap_or("ClusterIP") {
        "ClusterIP" | "NodePort" | "LoadBalancer" => {
            if spec.cluster_ip.as_deref() == Some("None") {
                ServiceType::Headless
            } else {
                ServiceType::ClusterIP
            }
        }
        "ExternalName" => ServiceType::ExternalName,
        other => return Err(format!("spec.type: unknown type {other:?}")),
    };
    let cluster_ips = service_cluster_ips(&spec, service_type)?;
    let mut ip_families = families(
        "spec.ipFamilies",
        spec.ip_families.as_deref().unwrap_or_default(),
    )?;
    let ip_families_of_ips: Vec<IpFamily> = cluster_ips.iter().map(IpFamily::of).collect();
    if ip_families.is_empty() {
        ip_families = ip_families_of_ips;
    } else if !cluster_ips.is_empty()
        && ip_families_of_ips != ip_families[..ip_families_of_ips.len().min(ip_families.len())]
    {
        return Err(format!(
            "spec.clusterIPs {cluster_ips:?} do not match spec.ipFamilies {ip_families:?} (same families, same order)"
        ));
    }
    let external_name = spec.external_name.clone().filter(|n| !n.is_empty());
    if service_type == ServiceType::ExternalName && external_name.is_none() {
        return Err("spec.externalName is required for type ExternalName".into());
    }
    let ports = service_ports(&spec)?;
    let mut external_addresses = Vec::new();
    let mut external_hostnames = Vec::new();
    let ingress = svc
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .unwrap_or_default();
    for (i, entry) in ingress.into_iter().enumerate() {
        if let Some(addr) = entry.ip.filter(|s| !s.is_empty()) {
            external_addresses.push(ip(&format!("status.loadBalancer.ingress[{i}].ip"), &addr)?);
        }
        if let Some(host) = entry.hostname.filter(|s| !s.is_empty()) {
            external_hostnames.push(host);
        }
    }
    for (i, addr) in spec.external_ips.iter().flatten().enumerate() {
        external_addresses.push(ip(&format!("spec.externalIPs[{i}]"), addr)?);
    }
    Ok(Object::Service(Arc::new(objects::Service {
        meta,
        service_type,
        cluster_ips,
        ip_families,
        ports,
        selector: spec.selector.filter(|s| !s.is_empty()).map(Labels::from),
        external_name,
        external_addresses,
        external_hostnames,
        session_affinity: spec.session_affinity.unwrap_or_else(|| "None".into()),
        session_affinity_timeout: spec
            .session_affinity_config
            .and_then(|c| c.client_ip)
            .and_then(|c| c.timeout_seconds),
        internal_traffic_policy: spec.internal_traffic_policy,
        traffic_distribution: spec.traffic_distribution,
    })))
}

fn service_cluster_ips(spec: &ServiceSpec, service_type: ServiceType) -> Result<Vec<IpAddr>> {
    if service_type != ServiceType::ClusterIP {
        return Ok(Vec::new());
    }
    let listed = spec.cluster_ips.clone().unwrap_or_default();
    let single = spec.cluster_ip.clone().filter(|s| !s.is_empty());
    let (field, raw) = match (listed.is_empty(), single) {
        (true, None) => return Ok(Vec::new()),
        (true, Some(one)) => ("spec.clusterIP", vec![one]),
        (false, Some(one)) if one != listed[0] => {
            return Err(format!(
                "spec.clusterIP {one:?} must equal spec.clusterIPs[0] {:?}",
                listed[0]
            ));
        }
        (false, _) => ("spec.clusterIPs", listed),
    };
    let ips = raw
        .iter()
        .enumerate()
        .map(|(i, s)| ip(&format!("{field}[{i}]"), s))
        .collect::<Result<Vec<_>>>()?;
    if ips.len() > 2 || (ips.len() == 2 && IpFamily::of(&ips[0]) == IpFamily::of(&ips[1])) {
        return Err(format!(
            "{field}: at most one IPv4 and one IPv6 address, got {raw:?}"
        ));
    }
    Ok(ips)
}

fn service_ports(spec: &ServiceSpec) -> Result<Vec<ServicePort>> {
    let wire = spec.ports.as_deref().unwrap_or_default();
    let mut ports = Vec::with_capacity(wire.len());
    for (i, p) in wire.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        let name = p.name.clone().unwrap_or_default();
        if wire.len() > 1 && name.is_empty() {
            return Err(format!(
                "{field}.name: required when a Service has more than one port"
            ));
        }
        if !name.is_empty() {
            validate_label(&name).map_err(|e| format!("{field}.name {name:?} {e}"))?;
            if ports.iter().any(|q: &ServicePort| q.name == name) {
                return Err(format!("{field}.name: duplicate port name {name:?}"));
            }
        }
        let target_port = match &p.target_port {
            None => None,
            Some(IntOrString::Int(n)) => Some(TargetPort::Number(port_number(
                &format!("{field}.targetPort"),
                (*n).into(),
            )?)),
            Some(IntOrString::String(s)) => Some(TargetPort::Name(s.clone())),
        };
        ports.push(ServicePort {
            name,
            protocol: protocol(&format!("{field}.protocol"), p.protocol.as_deref())?,
            port: port_number(&format!("{field}.port"), p.port.into())?,
            target_port,
            app_protocol: p.app_protocol.clone(),
        });
    }
    Ok(ports)
}

pub(crate) fn endpoint_slice(slice: EndpointSlice) -> Result<Object> {
    let meta = meta(slice.metadata, Scope::Namespaced)?;
    let address_type = match slice.address_type.as_str() {
        "IPv4" => AddressType::IPv4,
        "IPv6" => AddressType::IPv6,
        "FQDN" => AddressType::FQDN,
        other => {
            return Err(format!(
                "addressType: unknown type {other:?} (IPv4, IPv6 or FQDN)"
            ));
        }
    };
    let service_name = meta
        .labels
        .get(labels::SERVICE_NAME)
        .map(|s| Arc::from(s.as_str()));
    let mut endpoints = Vec::with_capacity(slice.endpoints.len());
    // Node names, zones and targetRef kinds repeat across a slice's endpoints: one copy each.
    let mut strings = Shared::default();
    if address_type != AddressType::FQDN {
        for (i, ep) in slice.endpoints.into_iter().enumerate() {
            let field = format!("endpoints[{i}]");
            if ep.addresses.is_empty() {
                return Err(format!(
                    "{field}.addresses: at least one address is required"
                ));
            }
            let addresses = ep
                .addresses
                .iter()
                .enumerate()
                .map(|(j, a)| {
                    let addr = ip(&format!("{field}.addresses[{j}]"), a)?;
                    let family_ok = matches!(
                        (address_type, addr),
                        (AddressType::IPv4, IpAddr::V4(_)) | (AddressType::IPv6, IpAddr::V6(_))
                    );
                    family_ok.then_some(addr).ok_or_else(|| {
                        format!("{field}.addresses[{j}]: {a} is not an {address_type:?} address")
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let conditions = ep.conditions.unwrap_or_default();
            let ready = conditions.ready.unwrap_or(true);
            let target = ep.target_ref.and_then(|r| {
                let name = r.name.filter(|n| !n.is_empty())?;
                Some(objects::TargetRef {
                    kind: strings.get(r.kind.as_deref().unwrap_or("Pod")),
                    namespace: r
                        .namespace
                        .map_or_else(|| meta.namespace.clone(), |n| strings.get(&n)),
                    name: name.into(),
                })
            });
            endpoints.push(SliceEndpoint {
                addresses: addresses.into(),
                ready,
                serving: conditions.serving.unwrap_or(ready),
                terminating: conditions.terminating.unwrap_or(false),
                hostname: ep.hostname.filter(|h| !h.is_empty()).map(Arc::from),
                node_name: ep
                    .node_name
                    .filter(|n| !n.is_empty())
                    .map(|n| strings.get(&n)),
                zone: ep.zone.filter(|z| !z.is_empty()).map(|z| strings.get(&z)),
                target,
            });
        }
    }
    let mut ports = Vec::new();
    for (i, p) in slice.ports.into_iter().flatten().enumerate() {
        // A port without a number means "all ports"; it cannot be routed to, so it is skipped.
        let Some(number) = p.port else { continue };
        ports.push(EndpointPort {
            name: p.name.unwrap_or_default(),
            port: port_number(&format!("ports[{i}].port"), number.into())?,
            protocol: protocol(&format!("ports[{i}].protocol"), p.protocol.as_deref())?,
            app_protocol: p.app_protocol,
        });
    }
    Ok(Object::EndpointSlice(Arc::new(objects::EndpointSlice {
        meta,
        service_name,
        address_type,
        endpoints: endpoints.into(),
        ports: ports.into(),
    })))
}

/// The strings one conversion has seen, so that a value repeated across a slice's endpoints
/// is allocated once. A few distinct values per slice: a short list, searched linearly.
#[derive(Default)]
struct Shared(Vec<Arc<str>>);

impl Shared {
    /// At most this many distinct strings are remembered.
    const LIMIT: usize = 32;

    fn get(&mut self, value: &str) -> Arc<str> {
        if let Some(known) = self.0.iter().find(|s| s.as_ref() == value) {
            return known.clone();
        }
        let new: Arc<str> = value.into();
        if self.0.len() < Self::LIMIT {
            self.0.push(new.clone());
        }
        new
    }
}

pub(crate) fn service_export(export: crds::ServiceExport) -> Result<Object> {
    let spec = export.spec;
    Ok(Object::ServiceExport(objects::ServiceExport {
        meta: meta(export.metadata, Scope::NamespacedLabel)?,
        exported_labels: spec.exported_labels.unwrap_or_default().into(),
        exported_annotations: spec.exported_annotations.unwrap_or_default().into(),
    }))
}

pub(crate) fn service_import(import: crds::ServiceImport) -> Result<Object> {
    let meta = meta(import.metadata, Scope::NamespacedLabel)?;
    let spec = import.spec;
    let import_type = match spec.type_.as_deref() {
        Some("ClusterSetIP") => objects::ImportType::ClusterSetIP,
        Some("Headless") => objects::ImportType::Headless,
        other => {
            return Err(format!(
                "spec.type: {other:?} is neither ClusterSetIP nor Headless"
            ));
        }
    };
    let ports = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(ServicePort {
                name: p.name.unwrap_or_default(),
                protocol: protocol(&format!("spec.ports[{i}].protocol"), p.protocol.as_deref())?,
                port: port_number(
                    &format!("spec.ports[{i}].port"),
                    p.port.unwrap_or_default().into(),
                )?,
                target_port: None,
                app_protocol: p.app_protocol,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let ips = spec
        .ips
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, s)| ip(&format!("spec.ips[{i}]"), s))
        .collect::<Result<Vec<_>>>()?;
    Ok(Object::ServiceImport(Box::new(objects::ServiceImport {
        meta,
        import_type,
        ips,
        ip_families: families("spec.ipFamilies", &spec.ip_families.unwrap_or_default())?,
        ports,
        session_affinity: spec.session_affinity.unwrap_or_else(|| "None".into()),
        clusters: import
            .status
            .and_then(|s| s.clusters)
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.cluster.unwrap_or_default())
            .collect(),
    })))
}

pub(crate) fn cluster_claim(claim: crds::ClusterClaim) -> Result<Object> {
    let meta = meta(claim.metadata, Scope::Cluster)?;
    let value = claim.spec.value.unwrap_or_default();
    validate_property_value(&value)?;
    Ok(Object::ClusterClaim(objects::ClusterClaim { meta, value }))
}

pub(crate) fn cluster_property(property: crds::ClusterProperty) -> Result<Object> {
    let meta = meta(property.metadata, Scope::Cluster)?;
    let value = property.spec.value.unwrap_or_default();
    validate_property_value(&value)?;
    Ok(Object::ClusterProperty(objects::ClusterProperty {
        meta,
        value,
    }))
}

fn workload_spec(
    field: &str,
    spec: crds::WorkloadEntrySpec,
    require_address: bool,
) -> Result<WorkloadSpec> {
    let address = spec.address.unwrap_or_default();
    let network = spec.network.unwrap_or_default();
    if require_address && address.is_empty() && network.is_empty() {
        return Err(format!(
            "{field}.address: required unless {field}.network is set"
        ));
    }
    if address.chars().count() > 256 {
        return Err(format!("{field}.address: longer than 256 characters"));
    }
    let ports = spec.ports.unwrap_or_default();
    if let Some((name, port)) = ports.iter().find(|(_, p)| **p == 0 || **p > 65535) {
        return Err(format!(
            "{field}.ports[{name}]: {port} is not a port number (1-65535)"
        ));
    }
    Ok(WorkloadSpec {
        address,
        ports,
        labels: spec.labels.unwrap_or_default().into(),
        network,
        locality: spec.locality.unwrap_or_default(),
        weight: spec.weight.unwrap_or_default(),
        service_account: spec.service_account.unwrap_or_default(),
    })
}

pub(crate) fn workload_entry(entry: crds::WorkloadEntry) -> Result<Object> {
    let healthy = entry
        .status
        .and_then(|s| s.conditions)
        .into_iter()
        .flatten()
        .find(|c| c.type_.as_deref() == Some("Healthy"))
        .and_then(|c| match c.status.as_deref() {
            Some("True") => Some(true),
            Some("False") => Some(false),
            _ => None,
        });
    Ok(Object::WorkloadEntry(Box::new(objects::WorkloadEntry {
        meta: meta(entry.metadata, Scope::Namespaced)?,
        spec: workload_spec("spec", entry.spec.0, true)?,
        healthy,
    })))
}

pub(crate) fn workload_group(group: crds::WorkloadGroup) -> Result<Object> {
    let meta = meta(group.metadata, Scope::Namespaced)?;
    let spec = group.spec.0;
    let template = spec.template.ok_or("spec.template is required")?;
    let entry_meta = spec.metadata.unwrap_or_default();
    Ok(Object::WorkloadGroup(Box::new(objects::WorkloadGroup {
        meta,
        entry_labels: entry_meta.labels.unwrap_or_default().into(),
        entry_annotations: entry_meta.annotations.unwrap_or_default().into(),
        template: workload_spec("spec.template", template, false)?,
        probe: spec.probe.map(probe).transpose()?,
    })))
}

pub(crate) fn peer_authentication(policy: crds::PeerAuthentication) -> Result<Object> {
    let meta = meta(policy.metadata, Scope::Namespaced)?;
    let spec = policy.spec.0;
    let mode = |field: &str, mtls: Option<crds::Mtls>| -> Result<objects::MtlsMode> {
        use objects::MtlsMode;
        Ok(match mtls.and_then(|m| m.mode).as_deref() {
            None | Some("UNSET") => MtlsMode::Unset,
            Some("DISABLE") => MtlsMode::Disable,
            Some("PERMISSIVE") => MtlsMode::Permissive,
            Some("STRICT") => MtlsMode::Strict,
            Some(other) => {
                return Err(format!(
                    "{field}: {other:?} is not a mode: UNSET, DISABLE, PERMISSIVE or STRICT"
                ));
            }
        })
    };
    let selector = spec.selector.map(|s| s.match_labels.unwrap_or_default());
    let mut port_level = std::collections::BTreeMap::new();
    for (port, mtls) in spec.port_level_mtls.unwrap_or_default() {
        let field = format!("spec.portLevelMtls[{port}]");
        let number = port
            .parse::<u32>()
            .ok()
            .filter(|p| (1..=65535).contains(p))
            .ok_or_else(|| {
                format!("spec.portLevelMtls: {port:?} is not a port number (1-65535)")
            })?;
        port_level.insert(number, mode(&field, Some(mtls))?);
    }
    if !port_level.is_empty() && selector.as_ref().is_none_or(|s| s.is_empty()) {
        return Err("spec.portLevelMtls: needs spec.selector (Istio applies port-level modes to selected workloads only)".into());
    }
    Ok(Object::PeerAuthentication(Box::new(
        objects::PeerAuthentication {
            meta,
            selector: selector.map(Labels::from),
            mode: mode("spec.mtls.mode", spec.mtls)?,
            port_level,
        },
    )))
}

fn probe(p: crds::Probe) -> Result<ReadinessProbe> {
    let required_port = |field: &str, port: Option<u32>| {
        port.filter(|p| (1..=65535).contains(p))
            .ok_or_else(|| format!("spec.probe.{field}.port: a port number (1-65535) is required"))
    };
    let check = match (p.http_get, p.tcp_socket, p.exec, p.grpc) {
        (Some(h), None, None, None) => ProbeCheck::HttpGet {
            port: required_port("httpGet", h.port)?,
            path: h.path.unwrap_or_else(|| "/".into()),
            host: h.host.unwrap_or_default(),
            scheme: h.scheme.unwrap_or_else(|| "HTTP".into()),
        },
        (None, Some(t), None, None) => ProbeCheck::TcpSocket {
            port: required_port("tcpSocket", t.port)?,
            host: t.host.unwrap_or_default(),
        },
        (None, None, Some(e), None) => ProbeCheck::Exec {
            command: e.command.unwrap_or_default(),
        },
        (None, None, None, Some(g)) => ProbeCheck::Grpc {
            port: required_port("grpc", g.port)?,
            service: g.service.unwrap_or_default(),
        },
        (None, None, None, None) => ProbeCheck::None,
        _ => {
            return Err(
                "spec.probe: only one of httpGet, tcpSocket, exec and grpc may be set".into(),
            );
        }
    };
    Ok(ReadinessProbe {
        initial_delay_seconds: p.initial_delay_seconds.unwrap_or(0),
        timeout_seconds: p.timeout_seconds.unwrap_or(1),
        period_seconds: p.period_seconds.unwrap_or(10),
        success_threshold: p.success_threshold.unwrap_or(1),
        failure_threshold: p.failure_threshold.unwrap_or(1),
        check,
    })
}

pub(crate) fn service_entry(entry: crds::ServiceEntry) -> Result<Object> {
    let meta = meta(entry.metadata, Scope::Namespaced)?;
    let spec = entry.spec.0;
    let hosts = spec.hosts.unwrap_or_default();
    if hosts.is_empty() {
        return Err("spec.hosts: at least one host is required".into());
    }
    let ports = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let number = port_number(
                &format!("spec.ports[{i}].number"),
                p.number.unwrap_or_default().into(),
            )?;
            let name = p
                .name
                .filter(|n| !n.is_empty())
                .ok_or_else(|| format!("spec.ports[{i}].name is required"))?;
            Ok(objects::ServiceEntryPort {
                number: number.into(),
                protocol: p.protocol.unwrap_or_default(),
                name,
                target_port: p.target_port.unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let endpoints = spec
        .endpoints
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, e)| workload_spec(&format!("spec.endpoints[{i}]"), e, true))
        .collect::<Result<Vec<_>>>()?;
    Ok(Object::ServiceEntry(Box::new(objects::ServiceEntry {
        meta,
        hosts,
        addresses: spec.addresses.unwrap_or_default(),
        ports,
        location: spec.location.unwrap_or_else(|| "MESH_EXTERNAL".into()),
        resolution: spec.resolution.unwrap_or_else(|| "NONE".into()),
        endpoints,
        workload_selector: spec
            .workload_selector
            .and_then(|s| s.labels)
            .map(Labels::from),
    })))
}
