//! Builders for model objects and source events, so tests read like the manifests they stand for.
//!
//! ```
//! use bowline_test_support::*;
//! let svc = service("demo", "echo").cluster_ips(&["10.0.0.1"]).port("http", 80).build();
//! let slice = slice("demo", "echo-v4", "echo").port("http", 8080).endpoint(ep("10.1.0.5").pod("echo-0")).build();
//! let event = reset("east", vec![svc, slice]);
//! assert_eq!(event.member.as_str(), "east");
//! ```

pub mod ads;
pub mod arbitrary;

use std::{net::IpAddr, sync::Arc};

use bowline_model::{
    Change, EndpointPort, EventBody, IpFamily, Labels, MemberName, Object, ObjectKey, ObjectKind,
    Protocol, Rejection, ServicePort, ServiceType, SourceEvent, TargetPort,
    cluster::{CLUSTER_ID_PROPERTY, CLUSTERSET_PROPERTY},
    objects::{
        AddressType, ClusterProperty, EndpointSlice, HEALTH_CHECKS_ENABLED, Meta, Namespace, Node,
        Pod, Service, ServiceEntry, ServiceEntryPort, ServiceExport, SliceEndpoint, TargetRef,
        WorkloadEntry, WorkloadSpec,
    },
};

fn meta(namespace: &str, name: &str) -> Meta {
    Meta::named(namespace, name)
}

fn ip(s: &str) -> IpAddr {
    s.parse()
        .unwrap_or_else(|_| panic!("{s:?} is not an IP address"))
}

/// A member name.
pub fn member(name: &str) -> MemberName {
    MemberName::new(name)
}

/// A full listing of a member.
pub fn reset(member_name: &str, objects: Vec<Object>) -> SourceEvent {
    reset_with(member_name, objects, Vec::new())
}

/// A full listing of a member, with refused documents.
pub fn reset_with(
    member_name: &str,
    objects: Vec<Object>,
    rejections: Vec<Rejection>,
) -> SourceEvent {
    SourceEvent {
        member: member(member_name),
        body: EventBody::Reset {
            objects,
            rejections,
        },
    }
}

/// Objects created or updated in a member.
pub fn applied(member_name: &str, objects: Vec<Object>) -> SourceEvent {
    changes(
        member_name,
        objects.into_iter().map(Change::Apply).collect(),
    )
}

/// Objects deleted from a member.
pub fn deleted(member_name: &str, keys: Vec<ObjectKey>) -> SourceEvent {
    changes(member_name, keys.into_iter().map(Change::Delete).collect())
}

/// Changes in a member.
pub fn changes(member_name: &str, changes: Vec<Change>) -> SourceEvent {
    SourceEvent {
        member: member(member_name),
        body: EventBody::Changes {
            changes,
            rejections: None,
        },
    }
}

/// The key of a namespaced object.
pub fn key(kind: ObjectKind, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey::new(kind, namespace, name)
}

/// A ClusterProperty `cluster.clusterset.k8s.io`.
pub fn cluster_id(value: &str) -> Object {
    property(CLUSTER_ID_PROPERTY, value)
}

/// A ClusterProperty `clusterset.k8s.io`.
pub fn clusterset(value: &str) -> Object {
    property(CLUSTERSET_PROPERTY, value)
}

/// A ClusterProperty.
pub fn property(name: &str, value: &str) -> Object {
    Object::ClusterProperty(ClusterProperty {
        meta: meta("", name),
        value: value.into(),
    })
}

/// A Namespace with labels.
pub fn namespace(name: &str, labels: &[(&str, &str)]) -> Object {
    let mut meta = meta("", name);
    meta.labels = crate::labels(labels);
    Object::Namespace(Namespace { meta })
}

/// The `kube-system` Namespace with a UID.
pub fn kube_system(uid: &str) -> Object {
    let mut meta = meta("", "kube-system");
    meta.uid = Some(uid.into());
    Object::Namespace(Namespace { meta })
}

/// A Node with labels.
pub fn node(name: &str, labels: &[(&str, &str)]) -> Object {
    let mut meta = meta("", name);
    meta.labels = crate::labels(labels);
    Object::Node(Node { meta })
}

/// A Pod with labels.
pub fn pod(namespace: &str, name: &str, labels: &[(&str, &str)]) -> Object {
    let mut meta = meta(namespace, name);
    meta.labels = crate::labels(labels);
    Object::Pod(Pod { meta })
}

/// A ServiceExport.
pub fn export(namespace: &str, name: &str) -> Object {
    Object::ServiceExport(ServiceExport {
        meta: meta(namespace, name),
        exported_labels: Labels::new(),
        exported_annotations: Labels::new(),
    })
}

/// A ServiceExport created at `created` (RFC 3339), exporting labels and annotations.
pub fn export_at(
    namespace: &str,
    name: &str,
    created: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
) -> Object {
    let mut meta = meta(namespace, name);
    meta.created = Some(
        created
            .parse()
            .unwrap_or_else(|_| panic!("{created:?} is not RFC 3339")),
    );
    Object::ServiceExport(ServiceExport {
        meta,
        exported_labels: crate::labels(labels),
        exported_annotations: crate::labels(annotations),
    })
}

/// Labels from `(key, value)` pairs.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Builds a Service.
pub struct ServiceBuilder(Service);

/// A ClusterIP Service with no IPs and no ports yet.
pub fn service(namespace: &str, name: &str) -> ServiceBuilder {
    ServiceBuilder(Service {
        meta: meta(namespace, name),
        service_type: ServiceType::ClusterIP,
        cluster_ips: Vec::new(),
        ip_families: Vec::new(),
        ports: Vec::new(),
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

impl ServiceBuilder {
    /// Sets the cluster IPs (and the families from them).
    pub fn cluster_ips(mut self, ips: &[&str]) -> Self {
        self.0.cluster_ips = ips.iter().map(|s| ip(s)).collect();
        self.0.ip_families = self.0.cluster_ips.iter().map(IpFamily::of).collect();
        self
    }

    /// Makes it headless with the given families.
    pub fn headless(mut self, families: &[IpFamily]) -> Self {
        self.0.service_type = ServiceType::Headless;
        self.0.cluster_ips.clear();
        self.0.ip_families = families.to_vec();
        self
    }

    /// Adds a TCP port.
    pub fn port(mut self, name: &str, port: u16) -> Self {
        self.0.ports.push(ServicePort {
            name: name.into(),
            protocol: Protocol::Tcp,
            port,
            target_port: Some(TargetPort::Number(port)),
            app_protocol: None,
        });
        self
    }

    /// Adds a TCP port sent to a named target port (a container or WorkloadEntry port).
    pub fn port_named(mut self, name: &str, port: u16, target: &str) -> Self {
        self = self.port(name, port);
        self.0.ports.last_mut().expect("just added").target_port =
            Some(TargetPort::Name(target.into()));
        self
    }

    /// Sets the selector.
    pub fn selector(mut self, labels: &[(&str, &str)]) -> Self {
        self.0.selector = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        self
    }

    /// Adds a port with a protocol.
    pub fn port_proto(mut self, name: &str, port: u16, protocol: Protocol) -> Self {
        self = self.port(name, port);
        self.0.ports.last_mut().expect("just added").protocol = protocol;
        self
    }

    /// Sets `sessionAffinity: ClientIP` with a timeout.
    pub fn client_ip_affinity(mut self, timeout: i32) -> Self {
        self.0.session_affinity = "ClientIP".into();
        self.0.session_affinity_timeout = Some(timeout);
        self
    }

    /// Sets `internalTrafficPolicy`.
    pub fn internal_traffic_policy(mut self, policy: &str) -> Self {
        self.0.internal_traffic_policy = Some(policy.into());
        self
    }

    /// Sets `trafficDistribution`.
    pub fn traffic_distribution(mut self, distribution: &str) -> Self {
        self.0.traffic_distribution = Some(distribution.into());
        self
    }

    /// Makes it an ExternalName Service.
    pub fn external_name(mut self, name: &str) -> Self {
        self.0.service_type = ServiceType::ExternalName;
        self.0.cluster_ips.clear();
        self.0.external_name = Some(name.into());
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0.meta.labels.insert(key.into(), value.into());
        self
    }

    /// Adds an annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0.meta.annotations.insert(key.into(), value.into());
        self
    }

    /// Adds an external (load-balancer) address.
    pub fn external(mut self, address: &str) -> Self {
        self.0.external_addresses.push(ip(address));
        self
    }

    /// The object.
    pub fn build(self) -> Object {
        Object::Service(self.0.into())
    }
}

/// Builds a WorkloadEntry (a VM).
pub struct WorkloadEntryBuilder(WorkloadEntry);

/// A WorkloadEntry at `address`, without labels (add them with `label`).
pub fn workload_entry(namespace: &str, name: &str, address: &str) -> WorkloadEntryBuilder {
    WorkloadEntryBuilder(WorkloadEntry {
        meta: meta(namespace, name),
        spec: WorkloadSpec {
            address: address.into(),
            ..WorkloadSpec::default()
        },
        healthy: None,
    })
}

impl WorkloadEntryBuilder {
    /// Adds a label of the workload (`spec.labels`).
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0.spec.labels.insert(key.into(), value.into());
        self
    }

    /// Adds a named port.
    pub fn port(mut self, name: &str, port: u32) -> Self {
        self.0.spec.ports.insert(name.into(), port);
        self
    }

    /// Sets the network.
    pub fn network(mut self, network: &str) -> Self {
        self.0.spec.network = network.into();
        self
    }

    /// Turns health checking on (`proxy.istio.io/health-checks-enabled: "true"`) with the
    /// given `Healthy` condition, if any.
    pub fn health_checked(mut self, healthy: Option<bool>) -> Self {
        self.0
            .meta
            .annotations
            .insert(HEALTH_CHECKS_ENABLED.into(), "true".into());
        self.0.healthy = healthy;
        self
    }

    /// Sets the load-balancing weight.
    pub fn weight(mut self, weight: u32) -> Self {
        self.0.spec.weight = weight;
        self
    }

    /// Sets the locality (`region/zone/subzone`).
    pub fn locality(mut self, locality: &str) -> Self {
        self.0.spec.locality = locality.into();
        self
    }

    /// Sets the service account (`spec.serviceAccount`).
    pub fn service_account(mut self, account: &str) -> Self {
        self.0.spec.service_account = account.into();
        self
    }

    /// The object.
    pub fn build(self) -> Object {
        Object::WorkloadEntry(Box::new(self.0))
    }
}

/// Builds a ServiceEntry.
pub struct ServiceEntryBuilder(ServiceEntry);

/// A ServiceEntry (`MESH_INTERNAL`, `STATIC`) with no hosts, ports or endpoints yet.
pub fn service_entry(namespace: &str, name: &str) -> ServiceEntryBuilder {
    ServiceEntryBuilder(ServiceEntry {
        meta: meta(namespace, name),
        hosts: Vec::new(),
        addresses: Vec::new(),
        ports: Vec::new(),
        location: "MESH_INTERNAL".into(),
        resolution: "STATIC".into(),
        endpoints: Vec::new(),
        workload_selector: None,
    })
}

/// An inline endpoint of a ServiceEntry at `address` (a WorkloadEntry spec; its namespace and
/// name are not used), for [`ServiceEntryBuilder::endpoint`].
pub fn inline_endpoint(address: &str) -> WorkloadEntryBuilder {
    workload_entry("", "", address)
}

impl ServiceEntryBuilder {
    /// Adds a host.
    pub fn host(mut self, host: &str) -> Self {
        self.0.hosts.push(host.into());
        self
    }

    /// Adds a virtual address.
    pub fn address(mut self, address: &str) -> Self {
        self.0.addresses.push(address.into());
        self
    }

    /// Adds an `HTTP` port without a target port.
    pub fn port(self, name: &str, number: u32) -> Self {
        self.port_full(name, number, "HTTP", 0)
    }

    /// Adds a port with a protocol (`HTTP`, `GRPC`, `TCP`, `UDP`...) and a target port (0: none).
    pub fn port_full(mut self, name: &str, number: u32, protocol: &str, target: u32) -> Self {
        self.0.ports.push(ServiceEntryPort {
            number,
            protocol: protocol.into(),
            name: name.into(),
            target_port: target,
        });
        self
    }

    /// Sets `workloadSelector.labels`.
    pub fn selector(mut self, labels: &[(&str, &str)]) -> Self {
        self.0.workload_selector = Some(crate::labels(labels));
        self
    }

    /// Adds an inline endpoint (see [`inline_endpoint`]).
    pub fn endpoint(mut self, endpoint: WorkloadEntryBuilder) -> Self {
        self.0.endpoints.push(endpoint.0.spec);
        self
    }

    /// Sets the creation time (RFC 3339).
    pub fn created(mut self, created: &str) -> Self {
        self.0.meta.created = Some(
            created
                .parse()
                .unwrap_or_else(|_| panic!("{created:?} is not RFC 3339")),
        );
        self
    }

    /// Adds a label of the ServiceEntry itself.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0.meta.labels.insert(key.into(), value.into());
        self
    }

    /// The object.
    pub fn build(self) -> Object {
        Object::ServiceEntry(Box::new(self.0))
    }
}

/// Builds an EndpointSlice endpoint.
pub struct EndpointBuilder(SliceEndpoint);

/// A ready endpoint at `address`.
pub fn ep(address: &str) -> EndpointBuilder {
    EndpointBuilder(SliceEndpoint {
        addresses: vec![ip(address)].into(),
        ready: true,
        serving: true,
        terminating: false,
        hostname: None,
        node_name: None,
        zone: None,
        target: None,
    })
}

impl EndpointBuilder {
    /// Backed by the pod `name` (in the slice's namespace, filled in by the slice builder).
    pub fn pod(mut self, name: &str) -> Self {
        self.0.target = Some(TargetRef {
            kind: "Pod".into(),
            namespace: "".into(),
            name: name.into(),
        });
        self
    }

    /// On node `name`.
    pub fn node(mut self, name: &str) -> Self {
        self.0.node_name = Some(name.into());
        self
    }

    /// In zone `zone`.
    pub fn zone(mut self, zone: &str) -> Self {
        self.0.zone = Some(zone.into());
        self
    }

    /// With hostname `name`.
    pub fn hostname(mut self, name: &str) -> Self {
        self.0.hostname = Some(name.into());
        self
    }

    /// Not ready (nor serving).
    pub fn not_ready(mut self) -> Self {
        self.0.ready = false;
        self.0.serving = false;
        self
    }
}

/// Builds an EndpointSlice.
pub struct SliceBuilder {
    slice: EndpointSlice,
    endpoints: Vec<SliceEndpoint>,
    ports: Vec<EndpointPort>,
}

/// An EndpointSlice `name` of service `service`; its address type follows its first endpoint.
pub fn slice(namespace: &str, name: &str, service: &str) -> SliceBuilder {
    let mut meta = meta(namespace, name);
    meta.labels
        .insert(bowline_model::labels::SERVICE_NAME.into(), service.into());
    SliceBuilder {
        slice: EndpointSlice {
            meta,
            service_name: Some(service.into()),
            address_type: AddressType::IPv4,
            endpoints: Arc::new([]),
            ports: Arc::new([]),
        },
        endpoints: Vec::new(),
        ports: Vec::new(),
    }
}

impl SliceBuilder {
    /// Adds a TCP port.
    pub fn port(mut self, name: &str, port: u16) -> Self {
        self.ports.push(EndpointPort {
            name: name.into(),
            port,
            protocol: Protocol::Tcp,
            app_protocol: None,
        });
        self
    }

    /// Adds a port with a protocol.
    pub fn port_proto(mut self, name: &str, port: u16, protocol: Protocol) -> Self {
        self.ports.push(EndpointPort {
            name: name.into(),
            port,
            protocol,
            app_protocol: None,
        });
        self
    }

    /// Adds an endpoint.
    pub fn endpoint(mut self, endpoint: EndpointBuilder) -> Self {
        let mut ep = endpoint.0;
        if let Some(target) = &mut ep.target {
            target.namespace = self.slice.meta.namespace.clone();
        }
        if self.endpoints.is_empty() {
            self.slice.address_type = match IpFamily::of(&ep.addresses[0]) {
                IpFamily::IPv4 => AddressType::IPv4,
                IpFamily::IPv6 => AddressType::IPv6,
            };
        }
        self.endpoints.push(ep);
        self
    }

    /// The object.
    pub fn build(mut self) -> Object {
        self.slice.ports = self.ports.into();
        self.slice.endpoints = self.endpoints.into();
        Object::EndpointSlice(self.slice.into())
    }
}

/// A synthetic ClusterSet for benchmarks: `members` members (`m0`, `m1`...), each with
/// `services` services in namespace `bench`, each with `endpoints` dual-stack-free IPv4
/// endpoints backed by pods on 10 nodes, in slices of at most 100 endpoints.
pub fn scale_events(members: usize, services: usize, endpoints: usize) -> Vec<SourceEvent> {
    (0..members)
        .map(|m| {
            let mut objects = vec![cluster_id(&format!("m{m}")), namespace("bench", &[])];
            objects.extend(
                (0..10).map(|n| node(&format!("node{n}"), &[(bowline_model::labels::ZONE, "z1")])),
            );
            for s in 0..services {
                let name = format!("svc{s}");
                objects.push(
                    service("bench", &name)
                        .cluster_ips(&["10.96.0.1"])
                        .port("http", 80)
                        .build(),
                );
                for chunk in 0..endpoints.div_ceil(100) {
                    objects.push(scale_slice(m, s, chunk, endpoints, false));
                }
            }
            reset(&format!("m{m}"), objects)
        })
        .collect()
}

/// Slice `chunk` of service `s` in member `m` as [`scale_events`] builds it; `flip` marks its
/// first endpoint not ready, to make a one-endpoint change.
pub fn scale_slice(m: usize, s: usize, chunk: usize, endpoints: usize, flip: bool) -> Object {
    let name = format!("svc{s}");
    let mut builder = slice("bench", &format!("{name}-{chunk}"), &name).port("http", 8080);
    for e in chunk * 100..endpoints.min(chunk * 100 + 100) {
        let addr = format!(
            "10.{}.{}.{}",
            m,
            (s * endpoints + e) / 256 % 256,
            (s * endpoints + e) % 256
        );
        let mut endpoint = ep(&addr)
            .pod(&format!("{name}-{e}"))
            .node(&format!("node{}", e % 10));
        if flip && e == chunk * 100 {
            endpoint = endpoint.not_ready();
        }
        builder = builder.endpoint(endpoint);
    }
    builder.build()
}

/// A plain HTTP/1.1 GET on loopback, for end-to-end tests of the admin server:
/// returns the status code and the body.
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((code, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// How long [`eventually`] and [`eventually_async`] wait before they fail: a guard against a
/// hang, never a timing assertion.
pub const EVENTUALLY: std::time::Duration = std::time::Duration::from_secs(30);

/// Polls `check` every 50 ms on this thread until it gives a value; panics naming `what`
/// after [`EVENTUALLY`].
pub fn eventually<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    eventually_within(EVENTUALLY, what, check)
}

/// [`eventually`] with its own guard, for work that is large by design (reading 200,000
/// documents in a debug build on a loaded machine).
pub fn eventually_within<T>(
    guard: std::time::Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + guard;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Polls `check` every 50 ms on the runtime until it holds; panics naming `what` after
/// [`EVENTUALLY`].
pub async fn eventually_async(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
