//! The answer to one question, computed from a [`View`] with no IO.
//!
//! Records (the digest's §3.1) and the parsing and error rules of CoreDNS (§3.2): names are
//! case-insensitive; `<ns>.svc` is NODATA when the namespace exists; `_<port>._<proto>.<svc>`
//! and `<hostname>.<clusterid>.<svc>` are the only five-label names; `<clusterid>.<svc>...`
//! never resolves; an unknown namespace or service is NXDOMAIN, which becomes SERVFAIL before
//! the first sync; NXDOMAIN and NODATA carry the SOA.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::Arc,
};

use bowline_mcs::Import;
use bowline_model::{Endpoint, IpFamily, Protocol, ServiceKey, objects::ImportType};

/// The zone.
pub const ZONE: &str = "clusterset.local";
/// The schema version answered at `dns-version.clusterset.local` (TXT): the MCS DNS
/// specification's, whose records Bowline serves. CoreDNS answers 1.1.0 for the same records.
pub const SCHEMA_VERSION: &str = "1.0.0";

/// What the DNS server answers from.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// Imported services.
    pub imports: Arc<BTreeMap<ServiceKey, Arc<Import>>>,
    /// Namespaces that exist in the ClusterSet (in any admitted member).
    pub namespaces: BTreeSet<String>,
    /// Every member completed its first sync: before that, NXDOMAIN is SERVFAIL.
    pub synced: bool,
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
    /// Not answered yet: the first sync has not completed.
    ServFail,
    /// Not our zone.
    Refused,
}

/// An answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Response code.
    pub rcode: Rcode,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Additional section (addresses of SRV targets).
    pub additionals: Vec<Record>,
    /// True when the SOA goes in the authority section (NXDOMAIN and NODATA).
    pub soa_in_authority: bool,
}

impl Answer {
    fn records(answers: Vec<Record>, additionals: Vec<Record>) -> Self {
        let soa_in_authority = answers.is_empty();
        Self {
            rcode: Rcode::NoError,
            answers,
            additionals,
            soa_in_authority,
        }
    }

    fn nodata() -> Self {
        Self::records(Vec::new(), Vec::new())
    }

    fn code(rcode: Rcode) -> Self {
        Self {
            rcode,
            answers: Vec::new(),
            additionals: Vec::new(),
            soa_in_authority: rcode == Rcode::NxDomain,
        }
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

/// A ready endpoint of a source member, with the name it answers to.
struct Backend<'a> {
    endpoint: &'a Endpoint,
    cluster: &'a str,
}

impl Backend<'_> {
    /// `<hostname>.<clusterid>.<svc>.<ns>.svc.clusterset.local.` for one of its addresses.
    fn target(&self, service: &str, address: &IpAddr) -> String {
        let host = self
            .endpoint
            .hostname
            .as_deref()
            .map_or_else(|| dashed(address), str::to_string);
        format!("{host}.{}.{service}", self.cluster)
    }

    fn answers_to(&self, host: &str) -> bool {
        match self.endpoint.hostname.as_deref() {
            Some(h) => h.eq_ignore_ascii_case(host),
            None => self.endpoint.addresses.iter().any(|a| dashed(a) == host),
        }
    }
}

fn backends(import: &Import) -> Vec<Backend<'_>> {
    import
        .sources
        .iter()
        .flat_map(|(cluster, eps)| {
            eps.iter().filter(|e| e.ready).map(move |e| Backend {
                endpoint: e,
                cluster: cluster.as_str(),
            })
        })
        .collect()
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

/// Answers one question.
pub fn answer(view: &View, qname: &str, qtype: QType) -> Answer {
    let name = qname.trim_end_matches('.').to_ascii_lowercase();
    let owner = format!("{name}.");
    let prefix = if name == ZONE {
        ""
    } else {
        match name.strip_suffix(&format!(".{ZONE}")) {
            Some(prefix) => prefix,
            None => return Answer::code(Rcode::Refused),
        }
    };
    let not_found = || {
        Answer::code(if view.synced {
            Rcode::NxDomain
        } else {
            Rcode::ServFail
        })
    };
    if prefix.is_empty() {
        return match qtype {
            QType::Soa => Answer::records(
                vec![Record {
                    name: owner,
                    data: RData::Soa,
                }],
                Vec::new(),
            ),
            _ => Answer::nodata(),
        };
    }
    if prefix == "dns-version" {
        return match qtype {
            QType::Txt => Answer::records(
                vec![Record {
                    name: owner,
                    data: RData::Txt(SCHEMA_VERSION.into()),
                }],
                Vec::new(),
            ),
            _ => Answer::nodata(),
        };
    }
    let labels: Vec<&str> = prefix.split('.').collect();
    match labels.as_slice() {
        ["svc"] | ["pod"] => return Answer::nodata(),
        [.., last] if *last != "svc" => return not_found(),
        _ => {}
    }
    let (namespace, rest) = match labels.as_slice() {
        [rest @ .., ns, "svc"] => (*ns, rest),
        _ => return not_found(),
    };
    if !view.namespaces.contains(namespace) {
        return not_found();
    }
    let (service, extra) = match rest {
        [] => return Answer::nodata(),
        [svc] => (*svc, None),
        [first, second, svc] => (*svc, Some((*first, *second))),
        _ => return not_found(),
    };
    let Some(import) = view.imports.get(&ServiceKey::new(namespace, service)) else {
        return not_found();
    };
    let service_name = format!("{service}.{namespace}.svc.{ZONE}");
    match extra {
        None => service_answer(import, &service_name, &owner, qtype, not_found),
        Some((port, proto)) if port.starts_with('_') => port_answer(
            import,
            &service_name,
            &owner,
            (&port[1..], proto),
            qtype,
            not_found,
        ),
        Some((host, cluster)) => {
            let backends = backends(import);
            let Some(backend) = backends
                .iter()
                .find(|b| b.cluster == cluster && b.answers_to(host))
            else {
                return not_found();
            };
            match qtype {
                QType::A | QType::Aaaa => Answer::records(
                    address_records(&owner, backend.endpoint.addresses.iter().copied(), qtype),
                    Vec::new(),
                ),
                _ => Answer::nodata(),
            }
        }
    }
}

/// `<svc>.<ns>.svc.clusterset.local`: ClusterSetIPs, or every ready endpoint when headless;
/// SRV for every port, deduplicated by (target, port).
fn service_answer(
    import: &Import,
    service_name: &str,
    owner: &str,
    qtype: QType,
    not_found: impl Fn() -> Answer,
) -> Answer {
    let headless = import.merged.import_type == ImportType::Headless;
    let backends = backends(import);
    if headless && backends.is_empty() {
        return not_found();
    }
    match qtype {
        QType::A | QType::Aaaa if headless => Answer::records(
            address_records(
                owner,
                backends
                    .iter()
                    .flat_map(|b| b.endpoint.addresses.iter().copied()),
                qtype,
            ),
            Vec::new(),
        ),
        QType::A | QType::Aaaa => Answer::records(
            address_records(owner, import.ips.iter().copied(), qtype),
            Vec::new(),
        ),
        QType::Srv => {
            let ports: Vec<(&str, u16)> = import
                .merged
                .ports
                .iter()
                .map(|p| (p.name.as_str(), p.port))
                .collect();
            if ports.is_empty() {
                return not_found();
            }
            srv_answer(import, service_name, owner, &ports, &backends)
        }
        _ => Answer::nodata(),
    }
}

/// `_<port>._<proto>.<svc>.<ns>.svc.clusterset.local`: SRV for that named port.
fn port_answer(
    import: &Import,
    service_name: &str,
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
    let ports: Vec<(&str, u16)> = import
        .merged
        .ports
        .iter()
        .filter(|p| {
            !p.name.is_empty() && p.name.eq_ignore_ascii_case(port_name) && p.protocol == proto
        })
        .map(|p| (p.name.as_str(), p.port))
        .collect();
    let backends = backends(import);
    if ports.is_empty()
        || (import.merged.import_type == ImportType::Headless && backends.is_empty())
    {
        return not_found();
    }
    match qtype {
        QType::Srv => srv_answer(import, service_name, owner, &ports, &backends),
        _ => Answer::nodata(),
    }
}

/// SRV records: for a ClusterSetIP import, the service name at each service port; for a
/// headless one, every ready endpoint's name at the port it serves under each port's name.
fn srv_answer(
    import: &Import,
    service_name: &str,
    owner: &str,
    ports: &[(&str, u16)],
    backends: &[Backend<'_>],
) -> Answer {
    if import.merged.import_type == ImportType::ClusterSetIP {
        let targets = ports
            .iter()
            .map(|(_, p)| (service_name.to_string(), *p))
            .collect();
        let additionals = [QType::A, QType::Aaaa]
            .into_iter()
            .flat_map(|t| {
                address_records(&format!("{service_name}."), import.ips.iter().copied(), t)
            })
            .collect();
        return Answer::records(srv_records(owner, targets), additionals);
    }
    let mut targets = Vec::new();
    let mut additionals = Vec::new();
    for backend in backends {
        for address in &backend.endpoint.addresses {
            let target = backend.target(service_name, address);
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
    Answer::records(srv_records(owner, targets), additionals)
}
