//! The answer to one question, computed from a [`View`] with no IO.
//!
//! Two zones share one set of rules:
//! - `clusterset.local`: the ClusterSet's imported services. Records are the digest's §3.1,
//!   and the parsing and error rules are CoreDNS's (§3.2). Names are case-insensitive.
//!   `<ns>.svc` is NODATA when the namespace exists. `_<port>._<proto>.<svc>` and
//!   `<hostname>.<clusterid>.<svc>` are the only five-label names, and
//!   `<clusterid>.<svc>...` never resolves. An unknown namespace or service is NXDOMAIN,
//!   which becomes SERVFAIL before the first sync. NXDOMAIN and NODATA carry the SOA.
//! - `cluster.local`, when configured: one member's own Services, per the Kubernetes DNS
//!   specification, for VMs that join that member. `<hostname>.<svc>` names its endpoints,
//!   and an ExternalName service is a CNAME.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::Arc,
};

use bowline_model::{
    ClusterId, Endpoint, IpFamily, Protocol, ServiceKey, ServicePort, ServiceType,
    objects::ImportType, objects::Service,
};
use bowline_views::{ClusterSet, Import};

/// The ClusterSet's zone.
pub const ZONE: &str = "clusterset.local";
/// The member-local zone answered for one member when `dns.clusterLocalMember` is set.
pub const LOCAL_ZONE: &str = "cluster.local";
/// The schema version answered at `dns-version.clusterset.local` (TXT): the MCS DNS
/// specification's, whose records Bowline serves. CoreDNS answers 1.1.0 for the same records.
pub const SCHEMA_VERSION: &str = "1.0.0";
/// The schema version answered at `dns-version.cluster.local`: the Kubernetes DNS-Based
/// Service Discovery specification's.
pub const LOCAL_SCHEMA_VERSION: &str = "1.1.0";

/// What the DNS server answers from.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// Imported services.
    pub imports: Arc<BTreeMap<ServiceKey, Arc<Import>>>,
    /// Namespaces that exist in the ClusterSet (in any admitted member).
    pub namespaces: BTreeSet<String>,
    /// Every member completed its first sync: before that, NXDOMAIN is SERVFAIL.
    pub synced: bool,
    /// `cluster.local` of one member, when configured; without it that zone is refused.
    pub local: Option<LocalZone>,
}

/// One member's own services, answered under `cluster.local`.
#[derive(Clone, Debug, Default)]
pub struct LocalZone {
    /// The member's cluster id (`dns.clusterLocalMember`).
    pub member: String,
    /// An admitted member has that id. Until one does, every answer in the zone is SERVFAIL.
    pub admitted: bool,
    /// The member's namespaces.
    pub namespaces: BTreeSet<String>,
    /// The member's Services, with their endpoints in that member.
    pub services: BTreeMap<ServiceKey, LocalService>,
}

impl LocalZone {
    /// `cluster.local` as the member with cluster id `id` sees it: its namespaces and its own
    /// Services (exported or not) with their endpoints in it.
    pub fn from_cluster_set(set: &ClusterSet, id: &ClusterId) -> Self {
        let Some(member) = set.member(id) else {
            return Self {
                member: id.to_string(),
                ..LocalZone::default()
            };
        };
        let services = set
            .services
            .values()
            .filter_map(|view| {
                let contribution = view.members.get(id)?;
                let service = LocalService {
                    service: contribution.service.clone()?,
                    endpoints: contribution.endpoints.clone(),
                };
                Some((view.key.clone(), service))
            })
            .collect();
        Self {
            member: id.to_string(),
            admitted: true,
            namespaces: member.namespaces.keys().map(|n| n.to_string()).collect(),
            services,
        }
    }
}

/// A Service of the local member and its endpoints.
#[derive(Clone, Debug)]
pub struct LocalService {
    /// The Service.
    pub service: Arc<Service>,
    /// Its endpoints in the member (ready or not).
    pub endpoints: Arc<[Endpoint]>,
}

/// Question types answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QType {
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
    /// Service location.
    Srv,
    /// Text.
    Txt,
    /// Start of authority.
    Soa,
    /// Anything else: NXDOMAIN or NODATA as an A lookup would decide.
    Other,
}

/// Record data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RData {
    /// An address (A or AAAA by its family).
    Address(IpAddr),
    /// SRV.
    Srv {
        /// Priority (0).
        priority: u16,
        /// Weight (100 / number of records, at least 1).
        weight: u16,
        /// Port.
        port: u16,
        /// Target name, absolute.
        target: String,
    },
    /// TXT.
    Txt(String),
    /// An alias: an ExternalName service's external name, absolute.
    Cname(String),
    /// The zone's SOA.
    Soa,
}

/// A record: owner name (absolute, lowercase) and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Owner.
    pub name: String,
    /// Data.
    pub data: RData,
}

/// Response code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rcode {
    /// Found (possibly NODATA: no answers).
    NoError,
    /// The name does not exist.
    NxDomain,
    /// Not answered: the first sync has not completed, or the `cluster.local` member is not
    /// admitted.
    ServFail,
    /// Not our zone.
    Refused,
}

/// An answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Response code.
    pub rcode: Rcode,
    /// The zone the question is in (empty when refused).
    pub zone: &'static str,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Additional section (addresses of SRV targets).
    pub additionals: Vec<Record>,
    /// True when the zone's SOA goes in the authority section (NXDOMAIN and NODATA).
    pub soa_in_authority: bool,
}

impl Answer {
    fn records(zone: &'static str, answers: Vec<Record>, additionals: Vec<Record>) -> Self {
        let soa_in_authority = answers.is_empty();
        Self {
            rcode: Rcode::NoError,
            zone,
            answers,
            additionals,
            soa_in_authority,
        }
    }

    fn nodata(zone: &'static str) -> Self {
        Self::records(zone, Vec::new(), Vec::new())
    }

    fn code(zone: &'static str, rcode: Rcode) -> Self {
        Self {
            rcode,
            zone,
            answers: Vec::new(),
            additionals: Vec::new(),
            soa_in_authority: rcode == Rcode::NxDomain,
        }
    }
}

/// The TTL a record is served with when answers have `ttl`: the `dns-version` TXT has
/// 28800 (as in the specification's example), the SOA min(300, `ttl`).
pub fn ttl_of(data: &RData, ttl: u32) -> u32 {
    match data {
        RData::Txt(_) => 28_800,
        RData::Soa => ttl.min(300),
        _ => ttl,
    }
}

/// The dashed form of an address used as a hostname: `10.1.2.3` → `10-1-2-3`, `fd00::1` →
/// `fd00--1`.
pub fn dashed(ip: &IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

fn address_records(
    name: &str,
    addresses: impl IntoIterator<Item = IpAddr>,
    qtype: QType,
) -> Vec<Record> {
    let family = match qtype {
        QType::A => IpFamily::IPv4,
        _ => IpFamily::IPv6,
    };
    let mut seen = BTreeSet::new();
    addresses
        .into_iter()
        .filter(|a| IpFamily::of(a) == family && seen.insert(*a))
        .map(|a| Record {
            name: name.to_string(),
            data: RData::Address(a),
        })
        .collect()
}

/// A ready endpoint, with the name it answers to.
pub(crate) struct Backend<'a> {
    pub(crate) endpoint: &'a Endpoint,
    /// The cluster-id label of its names (`clusterset.local`); none in `cluster.local`.
    cluster: Option<&'a str>,
}

impl Backend<'_> {
    /// `<hostname>[.<clusterid>].<svc>.<ns>.svc.<zone>` for one of its addresses.
    pub(crate) fn target(&self, service_name: &str, address: &IpAddr) -> String {
        let host = self
            .endpoint
            .hostname
            .as_deref()
            .map_or_else(|| dashed(address), str::to_string);
        match self.cluster {
            Some(cluster) => format!("{host}.{cluster}.{service_name}"),
            None => format!("{host}.{service_name}"),
        }
    }

    /// The addresses `host` names: all of them under the endpoint's hostname; without one,
    /// the address whose dashed form it is (each family's address has its own name, as each
    /// family's EndpointSlice lists its own endpoint).
    fn addresses_named(&self, host: &str) -> Vec<IpAddr> {
        match self.endpoint.hostname.as_deref() {
            Some(h) if h.eq_ignore_ascii_case(host) => self.endpoint.addresses.to_vec(),
            Some(_) => Vec::new(),
            None => self
                .endpoint
                .addresses
                .iter()
                .filter(|a| dashed(a) == host)
                .copied()
                .collect(),
        }
    }
}

/// A service as its zone answers it.
pub(crate) struct Entry<'a> {
    kind: ServiceType,
    /// `<svc>.<ns>.svc.<zone>`, without the final dot.
    pub(crate) name: String,
    /// Virtual addresses (ClusterSetIPs or cluster IPs).
    ips: &'a [IpAddr],
    /// Ports: name (empty when unnamed), protocol, number.
    pub(crate) ports: Vec<(&'a str, Protocol, u16)>,
    pub(crate) backends: Vec<Backend<'a>>,
    /// `spec.externalName` of an ExternalName service.
    external_name: Option<&'a str>,
}

impl<'a> Entry<'a> {
    pub(crate) fn from_import(import: &'a Import, name: String) -> Self {
        let backends = import
            .sources
            .iter()
            .flat_map(|(cluster, eps)| {
                eps.iter().filter(|e| e.ready).map(move |e| Backend {
                    endpoint: e,
                    cluster: Some(cluster.as_str()),
                })
            })
            .collect();
        Self {
            kind: match import.merged.import_type {
                ImportType::ClusterSetIP => ServiceType::ClusterIP,
                ImportType::Headless => ServiceType::Headless,
            },
            name,
            ips: &import.ips,
            ports: import
                .merged
                .ports
                .iter()
                .map(|p| (p.name.as_str(), p.protocol, p.port))
                .collect(),
            backends,
            external_name: None,
        }
    }

    pub(crate) fn from_local(local: &'a LocalService, name: String) -> Self {
        Self {
            kind: local.service.service_type,
            name,
            ips: &local.service.cluster_ips,
            ports: local.service.ports.iter().map(port).collect(),
            backends: local
                .endpoints
                .iter()
                .filter(|e| e.ready)
                .map(|endpoint| Backend {
                    endpoint,
                    cluster: None,
                })
                .collect(),
            external_name: local.service.external_name.as_deref(),
        }
    }

    fn headless(&self) -> bool {
        self.kind == ServiceType::Headless
    }
}

fn port(p: &ServicePort) -> (&str, Protocol, u16) {
    (p.name.as_str(), p.protocol, p.port)
}

/// One zone's data, borrowed from the view.
struct Zone<'a> {
    apex: &'static str,
    version: &'static str,
    synced: bool,
    namespaces: &'a BTreeSet<String>,
    /// Names carry the endpoint's cluster id: `<hostname>.<clusterid>.<svc>`.
    per_cluster: bool,
    services: Services<'a>,
}

/// Where a zone's services come from.
enum Services<'a> {
    Imports(&'a BTreeMap<ServiceKey, Arc<Import>>),
    Local(&'a BTreeMap<ServiceKey, LocalService>),
}

impl<'a> Services<'a> {
    /// The service `key`, named `name` in its zone.
    fn get(&self, key: &ServiceKey, name: String) -> Option<Entry<'a>> {
        match *self {
            Self::Imports(imports) => imports.get(key).map(|i| Entry::from_import(i, name)),
            Self::Local(services) => services.get(key).map(|s| Entry::from_local(s, name)),
        }
    }
}

fn srv_records(name: &str, targets: Vec<(String, u16)>) -> Vec<Record> {
    let mut unique: Vec<(String, u16)> = Vec::new();
    for t in targets {
        if !unique.contains(&t) {
            unique.push(t);
        }
    }
    let weight = u16::try_from((100 / unique.len().max(1)).max(1)).unwrap_or(1);
    unique
        .into_iter()
        .map(|(target, port)| Record {
            name: name.to_string(),
            data: RData::Srv {
                priority: 0,
                weight,
                port,
                target: format!("{target}."),
            },
        })
        .collect()
}

/// The zone `name` (lowercase, no final dot) is in, and the labels before the zone's apex.
fn split_zone<'n>(name: &'n str, apex: &str) -> Option<&'n str> {
    if name == apex {
        return Some("");
    }
    name.strip_suffix(apex)?.strip_suffix('.')
}

/// Answers one question.
pub fn answer(view: &View, qname: &str, qtype: QType) -> Answer {
    let name = qname.trim_end_matches('.').to_ascii_lowercase();
    if let Some(prefix) = split_zone(&name, ZONE) {
        let zone = Zone {
            apex: ZONE,
            version: SCHEMA_VERSION,
            synced: view.synced,
            namespaces: &view.namespaces,
            per_cluster: true,
            services: Services::Imports(&view.imports),
        };
        return answer_in(&zone, prefix, qtype);
    }
    if let Some(prefix) = split_zone(&name, LOCAL_ZONE) {
        return match &view.local {
            None => Answer::code("", Rcode::Refused),
            Some(local) if !local.admitted || !view.synced => {
                Answer::code(LOCAL_ZONE, Rcode::ServFail)
            }
            Some(local) => {
                let zone = Zone {
                    apex: LOCAL_ZONE,
                    version: LOCAL_SCHEMA_VERSION,
                    synced: true,
                    namespaces: &local.namespaces,
                    per_cluster: false,
                    services: Services::Local(&local.services),
                };
                answer_in(&zone, prefix, qtype)
            }
        };
    }
    Answer::code("", Rcode::Refused)
}

/// The zones an answer can come from (what [`Dependency`] names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ZoneId {
    /// `clusterset.local`.
    ClusterSet,
    /// `cluster.local`.
    Local,
}

/// What the answer to a name depends on in its [`View`], as [`answer`] reads it: the zone's
/// state (`synced`, and for `cluster.local` its member), the namespace, and the service whose
/// names it is under. Answers whose dependency did not change between two views are equal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dependency {
    /// Nothing: a name outside both zones (always refused).
    Nothing,
    /// The zone's state only (its apex, `dns-version`, names not ending in `svc`).
    Zone(ZoneId),
    /// The zone's state and whether a namespace exists (`<ns>.svc`, odd names below it).
    Namespace(ZoneId, String),
    /// The zone's state, the namespace and one service (every name at or below
    /// `<svc>.<ns>.svc`).
    Service(ZoneId, ServiceKey),
}

/// What the answer to `qname` depends on (see [`Dependency`]); the same parsing as [`answer`].
pub fn dependency(qname: &str) -> Dependency {
    let name = qname.trim_end_matches('.').to_ascii_lowercase();
    let (zone, prefix) = if let Some(prefix) = split_zone(&name, ZONE) {
        (ZoneId::ClusterSet, prefix)
    } else if let Some(prefix) = split_zone(&name, LOCAL_ZONE) {
        (ZoneId::Local, prefix)
    } else {
        return Dependency::Nothing;
    };
    let labels: Vec<&str> = prefix.split('.').collect();
    match labels.as_slice() {
        [.., service, namespace, "svc"] => {
            Dependency::Service(zone, ServiceKey::new(*namespace, *service))
        }
        [namespace, "svc"] => Dependency::Namespace(zone, namespace.to_string()),
        _ => Dependency::Zone(zone),
    }
}

/// Answers `<prefix>.<zone>`.
fn answer_in(zone: &Zone<'_>, prefix: &str, qtype: QType) -> Answer {
    let apex = zone.apex;
    let owner = if prefix.is_empty() {
        format!("{apex}.")
    } else {
        format!("{prefix}.{apex}.")
    };
    let not_found = || {
        Answer::code(
            apex,
            if zone.synced {
                Rcode::NxDomain
            } else {
                Rcode::ServFail
            },
        )
    };
    if prefix.is_empty() {
        return match qtype {
            QType::Soa => Answer::records(
                apex,
                vec![Record {
                    name: owner,
                    data: RData::Soa,
                }],
                Vec::new(),
            ),
            _ => Answer::nodata(apex),
        };
    }
    if prefix == "dns-version" {
        return match qtype {
            QType::Txt => Answer::records(
                apex,
                vec![Record {
                    name: owner,
                    data: RData::Txt(zone.version.into()),
                }],
                Vec::new(),
            ),
            _ => Answer::nodata(apex),
        };
    }
    let labels: Vec<&str> = prefix.split('.').collect();
    match labels.as_slice() {
        ["svc"] | ["pod"] => return Answer::nodata(apex),
        [.., last] if *last != "svc" => return not_found(),
        _ => {}
    }
    let (namespace, rest) = match labels.as_slice() {
        [rest @ .., ns, "svc"] => (*ns, rest),
        _ => return not_found(),
    };
    if !zone.namespaces.contains(namespace) {
        return not_found();
    }
    let (service, host) = match rest {
        [] => return Answer::nodata(apex),
        [svc] => (*svc, None),
        [port, proto, svc] if port.starts_with('_') => (*svc, Some([*port, *proto])),
        [host, cluster, svc] if zone.per_cluster => (*svc, Some([*host, *cluster])),
        [host, svc] if !zone.per_cluster => (*svc, Some([*host, ""])),
        _ => return not_found(),
    };
    let Some(entry) = zone.services.get(
        &ServiceKey::new(namespace, service),
        format!("{service}.{namespace}.svc.{apex}"),
    ) else {
        return not_found();
    };
    if let Some(external) = entry.external_name {
        // An alias for every type at the service's name; nothing below it.
        return match host {
            None => Answer::records(
                apex,
                vec![Record {
                    name: owner,
                    data: RData::Cname(format!("{}.", external.trim_end_matches('.'))),
                }],
                Vec::new(),
            ),
            Some(_) => not_found(),
        };
    }
    match host {
        None => service_answer(apex, &entry, &owner, qtype, not_found),
        Some([port, proto]) if port.starts_with('_') => {
            port_answer(apex, &entry, &owner, (&port[1..], proto), qtype, not_found)
        }
        Some([host, cluster]) => {
            let Some(addresses) = entry
                .backends
                .iter()
                .filter(|b| b.cluster.is_none_or(|c| c == cluster))
                .map(|b| b.addresses_named(host))
                .find(|a| !a.is_empty())
            else {
                return not_found();
            };
            match qtype {
                QType::A | QType::Aaaa => {
                    Answer::records(apex, address_records(&owner, addresses, qtype), Vec::new())
                }
                _ => Answer::nodata(apex),
            }
        }
    }
}

/// `<svc>.<ns>.svc.<zone>`: the virtual addresses, or every ready endpoint when headless;
/// SRV for every port, deduplicated by (target, port).
fn service_answer(
    apex: &'static str,
    entry: &Entry<'_>,
    owner: &str,
    qtype: QType,
    not_found: impl Fn() -> Answer,
) -> Answer {
    if entry.headless() && entry.backends.is_empty() {
        return not_found();
    }
    match qtype {
        QType::A | QType::Aaaa if entry.headless() => Answer::records(
            apex,
            address_records(
                owner,
                entry
                    .backends
                    .iter()
                    .flat_map(|b| b.endpoint.addresses.iter().copied()),
                qtype,
            ),
            Vec::new(),
        ),
        QType::A | QType::Aaaa => Answer::records(
            apex,
            address_records(owner, entry.ips.iter().copied(), qtype),
            Vec::new(),
        ),
        QType::Srv => {
            let ports: Vec<(&str, u16)> = entry.ports.iter().map(|p| (p.0, p.2)).collect();
            if ports.is_empty() {
                return not_found();
            }
            srv_answer(apex, entry, owner, &ports)
        }
        _ => Answer::nodata(apex),
    }
}

/// `_<port>._<proto>.<svc>.<ns>.svc.<zone>`: SRV for that named port.
fn port_answer(
    apex: &'static str,
    entry: &Entry<'_>,
    owner: &str,
    (port_name, proto): (&str, &str),
    qtype: QType,
    not_found: impl Fn() -> Answer,
) -> Answer {
    let Some(proto) = proto
        .strip_prefix('_')
        .and_then(|p| Protocol::parse(&p.to_ascii_uppercase()))
    else {
        return not_found();
    };
    let ports: Vec<(&str, u16)> = entry
        .ports
        .iter()
        .filter(|(name, protocol, _)| {
            !name.is_empty() && name.eq_ignore_ascii_case(port_name) && *protocol == proto
        })
        .map(|p| (p.0, p.2))
        .collect();
    if ports.is_empty() || (entry.headless() && entry.backends.is_empty()) {
        return not_found();
    }
    match qtype {
        QType::Srv => srv_answer(apex, entry, owner, &ports),
        _ => Answer::nodata(apex),
    }
}

/// SRV records: for a service with virtual addresses, the service name at each service port;
/// for a headless one, every ready endpoint's name at the port it serves under each port's
/// name.
fn srv_answer(apex: &'static str, entry: &Entry<'_>, owner: &str, ports: &[(&str, u16)]) -> Answer {
    if !entry.headless() {
        let targets = ports
            .iter()
            .map(|(_, p)| (entry.name.clone(), *p))
            .collect();
        let additionals = [QType::A, QType::Aaaa]
            .into_iter()
            .flat_map(|t| {
                address_records(&format!("{}.", entry.name), entry.ips.iter().copied(), t)
            })
            .collect();
        return Answer::records(apex, srv_records(owner, targets), additionals);
    }
    let mut targets = Vec::new();
    let mut additionals = Vec::new();
    for backend in &entry.backends {
        for address in backend.endpoint.addresses.iter() {
            let target = backend.target(&entry.name, address);
            let served: Vec<u16> = ports
                .iter()
                .filter_map(|(name, _)| {
                    backend
                        .endpoint
                        .ports
                        .iter()
                        .find(|p| p.name == *name)
                        .map(|p| p.port)
                })
                .collect();
            if served.is_empty() {
                continue;
            }
            additionals.push(Record {
                name: format!("{target}."),
                data: RData::Address(*address),
            });
            targets.extend(served.into_iter().map(|p| (target.clone(), p)));
        }
    }
    additionals.dedup();
    Answer::records(apex, srv_records(owner, targets), additionals)
}
