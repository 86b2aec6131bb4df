//! The zones as master files (RFC 1035 §5): every record [`answer`] serves now, for reading
//! (`/debug/dns_zone`) and for loading into another authoritative server to compare with
//! (the DNS benchmark serves the same names from Knot DNS).

use std::fmt::Write;

use crate::answer::{Entry, LOCAL_ZONE, QType, RData, Record, View, ZONE, answer, ttl_of};

/// Every record of zone `apex` (`clusterset.local`, or `cluster.local` when configured), as
/// [`answer`] gives them for each name and type, apex first. Empty for a zone not served.
pub fn records(view: &View, apex: &str) -> Vec<Record> {
    let mut names = vec![apex.to_string(), format!("dns-version.{apex}")];
    let mut entry_names = |entry: Entry<'_>| {
        for (port, protocol, _) in &entry.ports {
            if !port.is_empty() {
                names.push(format!(
                    "_{port}._{}.{}",
                    protocol.as_str().to_ascii_lowercase(),
                    entry.name
                ));
            }
        }
        for backend in &entry.backends {
            for address in backend.endpoint.addresses.iter() {
                names.push(backend.target(&entry.name, address));
            }
        }
        names.push(entry.name);
    };
    if apex == ZONE {
        for (key, import) in view.imports.iter() {
            entry_names(Entry::from_import(
                import,
                format!("{}.{}.svc.{ZONE}", key.name, key.namespace),
            ));
        }
    } else if let (LOCAL_ZONE, Some(local)) = (apex, &view.local) {
        for (key, service) in &local.services {
            entry_names(Entry::from_local(
                service,
                format!("{}.{}.svc.{LOCAL_ZONE}", key.name, key.namespace),
            ));
        }
    } else {
        return Vec::new();
    }
    names.sort();
    names.dedup();
    let mut out: Vec<Record> = Vec::new();
    for name in &names {
        for qtype in [QType::Soa, QType::A, QType::Aaaa, QType::Srv, QType::Txt] {
            for record in answer(view, name, qtype).answers {
                if !out.contains(&record) {
                    out.push(record);
                }
            }
        }
    }
    out
}

/// Zone `apex` as a master file, with the TTLs the server answers with (`ttl` seconds; the
/// `dns-version` TXT has 28800) and an NS record, which a zone file must have.
pub fn zone_file(view: &View, apex: &str, ttl: u32) -> String {
    let mut out = format!("$ORIGIN {apex}.\n");
    let minimum = ttl;
    for record in records(view, apex) {
        let ttl = ttl_of(&record.data, minimum);
        let name = &record.name;
        let _ = match &record.data {
            RData::Soa => {
                let (mname, rname) = soa_names(apex);
                writeln!(
                    out,
                    "{name} {ttl} IN SOA {mname} {rname} 1 7200 1800 86400 {minimum}\n{name} {ttl} IN NS {mname}"
                )
            }
            RData::Address(ip) if ip.is_ipv4() => writeln!(out, "{name} {ttl} IN A {ip}"),
            RData::Address(ip) => writeln!(out, "{name} {ttl} IN AAAA {ip}"),
            RData::Srv {
                priority,
                weight,
                port,
                target,
            } => writeln!(
                out,
                "{name} {ttl} IN SRV {priority} {weight} {port} {target}"
            ),
            RData::Txt(text) => writeln!(out, "{name} {ttl} IN TXT \"{text}\""),
            RData::Cname(target) => writeln!(out, "{name} {ttl} IN CNAME {target}"),
        };
    }
    out
}

/// The SOA's primary server and mailbox names for `apex`.
pub fn soa_names(apex: &str) -> (String, String) {
    (format!("ns.dns.{apex}."), format!("hostmaster.{apex}."))
}
