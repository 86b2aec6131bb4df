//! Encoded answers, memoized per receive loop and carried over from view to view for the names
//! whose data did not change.
//!
//! ```text
//!  query ──parse header + question──► key: (transport, EDNS payload, question type, lowercase name)
//!                                       │ hit: copy the bytes, patch id, RD, CD, question
//!                                       ▼ miss: the reference path (Handler::reference), stored
//!                                               when its response echoes the question
//! ```
//!
//! An entry is the reference path's response to the first query with its key, so a hit sends
//! what the reference path would: nothing else in the response depends on the query (hickory
//! does not compress names against the question, so its case changes no other byte). An
//! entry also records what its answer depends on ([`Dependency`]); a new view drops the
//! entries whose namespace, service or zone state differ between the two views (compared by
//! pointer, as the views stage keeps the `Arc` of everything unchanged), and keeps the rest.
//!
//! Memoized rather than precomputed: names outside the zone (NXDOMAIN, REFUSED) are cached
//! the same way as the zone's own, nothing is encoded for names no one asks, and each loop
//! owning its cache keeps locks and shared writes off the query path.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::SocketAddr,
    sync::Arc,
};

use bowline_model::ServiceKey;
use hickory_server::proto::{
    rr::{Name, RecordType},
    serialize::binary::{BinDecodable, BinDecoder},
};

use crate::{
    answer::{Dependency, QType, View, ZoneId, dependency},
    server::{Handler, Protocol, qtype},
};

/// Entries per cache; a full cache is emptied (a flood of distinct names costs that loop its
/// cache, never unbounded memory).
const MAX_ENTRIES: usize = 16_384;
/// Key prefix: transport, EDNS present, EDNS payload (2), question type class.
const PREFIX: usize = 5;
/// A name is at most 255 bytes in wire format.
const KEY: usize = PREFIX + 255;
/// The EDNS payload size offered at most (as the reference path clamps it).
const MAX_PAYLOAD: u16 = 1232;

/// What to do with a query.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Send nothing (a message shorter than a header, or a response).
    Nothing,
    /// Send the response, uncounted (a message that does not parse: FORMERR).
    Uncounted,
    /// Send the response and count it with (qtype, rcode).
    Counted(&'static str, &'static str),
}

struct Entry {
    /// The response, with the id, flags and question of the first query that asked.
    bytes: Box<[u8]>,
    dependency: Dependency,
    rcode: &'static str,
}

/// A query the cache can answer: one question with a plain name, no records but an OPT.
struct Parsed {
    key: [u8; KEY],
    key_len: usize,
    /// Where the question ends.
    end: usize,
    qtype: u16,
}

/// One receive loop's encoded answers for its current view.
pub struct Cache {
    view: Arc<View>,
    entries: HashMap<Box<[u8]>, Entry>,
    /// Answers computed by the reference path (misses), for tests.
    computed: u64,
}

impl Cache {
    /// An empty cache for `view`.
    pub fn new(view: Arc<View>) -> Self {
        Self {
            view,
            entries: HashMap::new(),
            computed: 0,
        }
    }

    /// The view answers come from.
    pub fn view(&self) -> &Arc<View> {
        &self.view
    }

    /// Answers from `view` from now on, keeping the entries whose dependencies are equal in
    /// both views.
    pub fn refresh(&mut self, view: Arc<View>) {
        if !Arc::ptr_eq(&view, &self.view) {
            let stale = Stale::between(&self.view, &view);
            self.entries.retain(|_, e| !stale.affects(&e.dependency));
            self.view = view;
        }
    }

    /// How many answers were computed rather than copied.
    pub fn computed(&self) -> u64 {
        self.computed
    }

    /// The response to the query `raw` from `src` over `protocol`, into `out`.
    pub fn respond(
        &mut self,
        handler: &Handler,
        raw: &[u8],
        src: SocketAddr,
        protocol: Protocol,
        out: &mut Vec<u8>,
    ) -> Reply {
        let parsed = parse(raw, protocol);
        if let Some(p) = &parsed
            && let Some(entry) = self.entries.get(&p.key[..p.key_len])
        {
            out.clear();
            out.extend_from_slice(&entry.bytes);
            patch(out, raw, p.end);
            return Reply::Counted(RecordType::from(p.qtype).into(), entry.rcode);
        }
        self.computed += 1;
        let Some((bytes, prepared)) = handler.reference_prepared(&self.view, raw, src, protocol)
        else {
            return Reply::Nothing;
        };
        out.clear();
        out.extend_from_slice(&bytes);
        let Some(prepared) = prepared else {
            return Reply::Uncounted;
        };
        if let Some(p) = parsed
            && echoes(&bytes, raw, p.end)
            && let Ok(name) = Name::read(&mut BinDecoder::new(&raw[12..p.end]))
        {
            if self.entries.len() >= MAX_ENTRIES {
                self.entries.clear();
            }
            self.entries.insert(
                p.key[..p.key_len].into(),
                Entry {
                    bytes: bytes.into(),
                    dependency: dependency(&name.to_ascii()),
                    rcode: prepared.rcode,
                },
            );
        }
        Reply::Counted(prepared.qtype, prepared.rcode)
    }
}

/// The query's id, RD and CD flags and question (its case) over a response to the same key.
fn patch(out: &mut [u8], raw: &[u8], end: usize) {
    const RD: u8 = 0x01;
    const CD: u8 = 0x10;
    out[..2].copy_from_slice(&raw[..2]);
    out[2] = (out[2] & !RD) | (raw[2] & RD);
    out[3] = (out[3] & !CD) | (raw[3] & CD);
    out[12..end].copy_from_slice(&raw[12..end]);
}

/// Whether `response` is one `patch` can reuse: one question, the query's, right after the
/// header, and nothing else taken from the query but id, RD and CD.
fn echoes(response: &[u8], raw: &[u8], end: usize) -> bool {
    response.len() >= end
        && response[4..6] == [0, 1]
        && response[12..end] == raw[12..end]
        && response[2] & 0x78 == 0
}

/// The key of a query that has one question with a name of plain labels, no answer or
/// authority records, and no additional record but an OPT with well-formed options (none of
/// which hickory could reject); `None` for anything else (the reference path answers it).
fn parse(raw: &[u8], protocol: Protocol) -> Option<Parsed> {
    let count = |i: usize| u16::from_be_bytes([raw[i], raw[i + 1]]);
    // A query (QR clear) with opcode QUERY.
    if raw.len() < 12 || raw[2] & 0xF8 != 0 {
        return None;
    }
    if count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) > 1 {
        return None;
    }
    let mut key = [0u8; KEY];
    let mut k = PREFIX;
    let mut i = 12;
    loop {
        let len = usize::from(*raw.get(i)?);
        if len > 63 || k + 1 + len >= KEY {
            return None;
        }
        key[k] = raw[i];
        let label = raw.get(i + 1..i + 1 + len)?;
        for (to, from) in key[k + 1..k + 1 + len].iter_mut().zip(label) {
            *to = from.to_ascii_lowercase();
        }
        k += 1 + len;
        i += 1 + len;
        if len == 0 {
            break;
        }
    }
    if raw.len() < i + 4 {
        return None;
    }
    let qtype = u16::from_be_bytes([raw[i], raw[i + 1]]);
    let end = i + 4;
    let edns = if count(10) == 1 {
        Some(opt_payload(raw.get(end..)?)?)
    } else {
        None
    };
    key[0] = match protocol {
        Protocol::Udp => 0,
        _ => 1,
    };
    if let Some(payload) = edns {
        key[1] = 1;
        key[2..4].copy_from_slice(&payload.clamp(512, MAX_PAYLOAD).to_be_bytes());
    }
    key[4] = match qtype_of(qtype) {
        QType::A => 0,
        QType::Aaaa => 1,
        QType::Srv => 2,
        QType::Txt => 3,
        QType::Soa => 4,
        QType::Other => 5,
    };
    Some(Parsed {
        key,
        key_len: k,
        end,
        qtype,
    })
}

fn qtype_of(t: u16) -> QType {
    qtype(RecordType::from(t))
}

/// The payload size of an OPT record at the root (the message's only additional record), when
/// its options are well formed and none is one hickory parses (and could reject).
fn opt_payload(rr: &[u8]) -> Option<u16> {
    // Root name, type, class (the payload size), TTL, RDLENGTH.
    // Only EDNS version 0 (byte 6, in the TTL) is answered from the cache; others get BADVERS.
    if rr.len() < 11 || rr[0] != 0 || rr[1..3] != [0, 41] || rr[6] != 0 {
        return None;
    }
    let payload = u16::from_be_bytes([rr[3], rr[4]]);
    let rdlen = usize::from(u16::from_be_bytes([rr[9], rr[10]]));
    let mut options = rr.get(11..11 + rdlen)?;
    while !options.is_empty() {
        let code = u16::from_be_bytes([options[0], *options.get(1)?]);
        let len = usize::from(u16::from_be_bytes([*options.get(2)?, *options.get(3)?]));
        // DAU, DHU, N3U, client subnet: hickory decodes them and may refuse.
        if (5..=8).contains(&code) {
            return None;
        }
        options = options.get(4 + len..)?;
    }
    Some(payload)
}

/// What differs between two views, per zone: its state, namespaces, services.
#[derive(Debug, Default)]
struct Stale {
    /// Indexed by zone: 0 `clusterset.local`, 1 `cluster.local`.
    zone: [bool; 2],
    namespaces: [BTreeSet<String>; 2],
    services: [BTreeSet<ServiceKey>; 2],
}

impl Stale {
    fn between(old: &View, new: &View) -> Self {
        let mut stale = Stale::default();
        let synced = old.synced != new.synced;
        stale.zone[0] = synced;
        stale.namespaces[0] = changed_names(&old.namespaces, &new.namespaces);
        if !Arc::ptr_eq(&old.imports, &new.imports) {
            stale.services[0] = changed_keys(&*old.imports, &*new.imports, Arc::ptr_eq);
        }
        let empty = BTreeSet::new();
        let no_services = BTreeMap::new();
        let (a, b) = (old.local.as_ref(), new.local.as_ref());
        stale.zone[1] =
            synced || a.map(|l| (&l.member, l.admitted)) != b.map(|l| (&l.member, l.admitted));
        stale.namespaces[1] = changed_names(
            a.map_or(&empty, |l| &l.namespaces),
            b.map_or(&empty, |l| &l.namespaces),
        );
        stale.services[1] = changed_keys(
            a.map_or(&no_services, |l| &l.services),
            b.map_or(&no_services, |l| &l.services),
            |x, y| Arc::ptr_eq(&x.service, &y.service) && Arc::ptr_eq(&x.endpoints, &y.endpoints),
        );
        stale
    }

    fn affects(&self, dependency: &Dependency) -> bool {
        let index = |zone: &ZoneId| match zone {
            ZoneId::ClusterSet => 0,
            ZoneId::Local => 1,
        };
        match dependency {
            Dependency::Nothing => false,
            Dependency::Zone(z) => self.zone[index(z)],
            Dependency::Namespace(z, ns) => {
                self.zone[index(z)] || self.namespaces[index(z)].contains(ns)
            }
            Dependency::Service(z, key) => {
                let z = index(z);
                self.zone[z]
                    || self.namespaces[z].contains(&*key.namespace)
                    || self.services[z].contains(key)
            }
        }
    }
}

fn changed_names(old: &BTreeSet<String>, new: &BTreeSet<String>) -> BTreeSet<String> {
    old.symmetric_difference(new).cloned().collect()
}

/// Keys in one map only, or whose values are not `same` in both.
fn changed_keys<V>(
    old: &BTreeMap<ServiceKey, V>,
    new: &BTreeMap<ServiceKey, V>,
    same: impl Fn(&V, &V) -> bool,
) -> BTreeSet<ServiceKey> {
    let mut out: BTreeSet<ServiceKey> = old
        .iter()
        .filter(|(k, v)| new.get(*k).is_none_or(|n| !same(v, n)))
        .map(|(k, _)| k.clone())
        .collect();
    out.extend(new.keys().filter(|k| !old.contains_key(*k)).cloned());
    out
}
