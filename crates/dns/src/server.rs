//! The DNS server: Bowline's own UDP receive loops (one per `SO_REUSEPORT` socket, answering
//! from a per-loop cache of encoded answers, [`crate::cache`]) and its TCP connections (each
//! with such a cache, [`crate::tcp`]), both over the same reference path, which answers from the latest [`View`] (a `watch`
//! snapshot; no lock is held while sending).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

pub use hickory_server::net::xfer::Protocol;
use hickory_server::{
    net::runtime::Time,
    proto::{
        op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode},
        rr::{
            Name, RData as HRData, Record as HRecord, RecordType,
            rdata::{A, AAAA, CNAME, SOA, SRV, TXT},
        },
        serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder},
    },
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::{MessageResponseBuilder, Queries},
};
use tokio::{net::UdpSocket, sync::watch};
use tracing::debug;

use crate::{
    answer::{QType, RData, Rcode, Record, View, answer, ttl_of},
    zone::soa_names,
};

/// Called for every query with its type (`A`, `SRV`, …), response code (`NOERROR`,
/// `NXDOMAIN`, `SERVFAIL`, `REFUSED`, `FORMERR`) and time to answer (metrics).
pub type Observe = Arc<dyn Fn(&'static str, &'static str, Duration) + Send + Sync>;

/// Answers queries from the latest view.
#[derive(Clone)]
pub struct Handler {
    pub(crate) views: watch::Receiver<Arc<View>>,
    ttl: u32,
    pub(crate) counters: Observe,
}

impl Handler {
    /// A handler reading `views`, answering with `ttl`; `observe(qtype, rcode, elapsed)` is
    /// called for every query (metrics).
    pub fn new(views: watch::Receiver<Arc<View>>, ttl: Duration, observe: Observe) -> Self {
        Self {
            views,
            ttl: u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX).max(1),
            counters: observe,
        }
    }
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap_or_else(|_| Name::root())
}

/// The SOA of `apex` (`clusterset.local` or `cluster.local`).
fn soa(apex: &str, ttl: u32) -> HRecord {
    let zone = name(&format!("{apex}."));
    let (mname, rname) = soa_names(apex);
    let rdata = SOA::new(name(&mname), name(&rname), 1, 7200, 1800, 86400, ttl);
    HRecord::from_rdata(zone, ttl_of(&RData::Soa, ttl), HRData::SOA(rdata))
}

fn record(apex: &str, r: &Record, ttl: u32) -> HRecord {
    let data = match &r.data {
        RData::Address(std::net::IpAddr::V4(ip)) => HRData::A(A(*ip)),
        RData::Address(std::net::IpAddr::V6(ip)) => HRData::AAAA(AAAA(*ip)),
        RData::Srv {
            priority,
            weight,
            port,
            target,
        } => HRData::SRV(SRV::new(*priority, *weight, *port, name(target))),
        RData::Txt(t) => HRData::TXT(TXT::new(vec![t.clone()])),
        RData::Cname(target) => HRData::CNAME(CNAME(name(target))),
        RData::Soa => return soa(apex, ttl),
    };
    HRecord::from_rdata(name(&r.name), ttl_of(&r.data, ttl), data)
}

pub(crate) fn qtype(t: RecordType) -> QType {
    match t {
        RecordType::A => QType::A,
        RecordType::AAAA => QType::Aaaa,
        RecordType::SRV => QType::Srv,
        RecordType::TXT => QType::Txt,
        RecordType::SOA => QType::Soa,
        _ => QType::Other,
    }
}

/// A response ready to be built: header, EDNS and sections, with the metric labels.
pub(crate) struct Prepared {
    metadata: Metadata,
    edns: Option<Edns>,
    answers: Vec<HRecord>,
    soa: Vec<HRecord>,
    additionals: Vec<HRecord>,
    /// The query type, or empty without a query (metrics).
    pub(crate) qtype: &'static str,
    /// The response code (metrics).
    pub(crate) rcode: &'static str,
}

impl Handler {
    /// The response to `request` from `view`: the reference path, which the cache of encoded
    /// answers stores the output of.
    pub(crate) fn prepare(&self, view: &View, request: &Request) -> Prepared {
        // RFC 6891 §6.1.1: a query with an OPT record gets one back, with our payload size.
        let edns = request.edns.as_ref().map(|theirs| {
            let mut ours = Edns::new();
            ours.set_max_payload(theirs.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            ours
        });
        let error = |rcode: ResponseCode, qtype, label| {
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = rcode;
            Prepared {
                metadata,
                edns: edns.clone(),
                answers: Vec::new(),
                soa: Vec::new(),
                additionals: Vec::new(),
                qtype,
                rcode: label,
            }
        };
        // Only QUERY is served: UPDATE, NOTIFY and the rest are not implemented (RFC 1035,
        // RFC 2136 §3: a server that does not do updates answers NOTIMP).
        if request.metadata.op_code != OpCode::Query {
            return error(ResponseCode::NotImp, "", "NOTIMP");
        }
        // RFC 6891 §6.1.3: an EDNS version above ours (0) gets BADVERS, with our version.
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            let mut refused = error(ResponseCode::BADVERS, "", "BADVERS");
            if let Some(edns) = refused.edns.as_mut() {
                edns.set_rcode_high(ResponseCode::BADVERS.high());
            }
            return refused;
        }
        // One question per message, as every resolver sends (RFC 9619).
        let queries = request.queries.queries();
        if queries.len() != 1 {
            return error(ResponseCode::FormErr, "", "FORMERR");
        }
        let query = &queries[0];
        let query = query.original();
        let result = answer(view, &query.name().to_ascii(), qtype(query.query_type()));
        let (rcode, label) = match result.rcode {
            Rcode::NoError => (ResponseCode::NoError, "NOERROR"),
            Rcode::NxDomain => (ResponseCode::NXDomain, "NXDOMAIN"),
            Rcode::ServFail => (ResponseCode::ServFail, "SERVFAIL"),
            Rcode::Refused => (ResponseCode::Refused, "REFUSED"),
        };
        let qtype_label = query.query_type().into();
        debug!(name = %query.name(), qtype = %query.query_type(), ?rcode, answers = result.answers.len(), "dns query");
        if matches!(result.rcode, Rcode::Refused | Rcode::ServFail) {
            return error(rcode, qtype_label, label);
        }
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        metadata.response_code = rcode;
        let limit = match request.protocol() {
            Protocol::Udp => edns.as_ref().map_or(512, Edns::max_payload),
            _ => u16::MAX,
        };
        let mut answers: Vec<HRecord> = result
            .answers
            .iter()
            .map(|r| record(result.zone, r, self.ttl))
            .collect();
        let mut additionals: Vec<HRecord> = result
            .additionals
            .iter()
            .map(|r| record(result.zone, r, self.ttl))
            .collect();
        let mut soa: Vec<HRecord> = if result.soa_in_authority {
            vec![soa(result.zone, self.ttl)]
        } else {
            Vec::new()
        };
        // What does not fit goes whole, never cut mid-record: additional records first (they
        // are optional); if the answers alone do not fit, an empty answer with TC set, which
        // clients retry over TCP (RFC 2181 §9).
        let fits = |answers: &[HRecord], soa: &[HRecord], additionals: &[HRecord]| {
            fits(
                request,
                &metadata,
                [answers, soa, additionals],
                edns.as_ref(),
                limit,
            )
        };
        if !fits(&answers, &soa, &additionals) {
            // The longest prefix of the additional section that fits (binary search).
            let (mut fitting, mut too_many) = (0, additionals.len());
            while too_many - fitting > 1 {
                let middle = (fitting + too_many) / 2;
                if fits(&answers, &soa, &additionals[..middle]) {
                    fitting = middle;
                } else {
                    too_many = middle;
                }
            }
            additionals.truncate(fitting);
            if !fits(&answers, &soa, &additionals) {
                answers.clear();
                soa.clear();
                metadata.truncation = true;
            }
        }
        Prepared {
            metadata,
            edns,
            answers,
            soa,
            additionals,
            qtype: qtype_label,
            rcode: label,
        }
    }

    /// The reference path: the response to the query `raw` from `src` over `protocol`,
    /// computed and encoded as hickory's server does (what [`Server`] with this handler would send), or `None` when it sends nothing (a
    /// message shorter than a header, or a response). A message that does not parse gets
    /// FORMERR, as from hickory's server, and is not counted (hickory does not call handlers
    /// for them).
    pub fn reference(
        &self,
        view: &View,
        raw: &[u8],
        src: SocketAddr,
        protocol: Protocol,
    ) -> Option<Vec<u8>> {
        self.reference_prepared(view, raw, src, protocol)
            .map(|(bytes, _)| bytes)
    }

    /// [`Handler::reference`], with what was prepared for a message that parsed.
    pub(crate) fn reference_prepared(
        &self,
        view: &View,
        raw: &[u8],
        src: SocketAddr,
        protocol: Protocol,
    ) -> Option<(Vec<u8>, Option<Prepared>)> {
        let header = Header::read(&mut BinDecoder::new(raw)).ok()?;
        let request = match Request::from_bytes(raw.to_vec(), src, protocol) {
            Ok(request) => request,
            Err(_) => {
                let queries = Queries::read(&mut BinDecoder::new(&[]), 0).ok()?;
                let msg = MessageResponseBuilder::new(&queries, None)
                    .error_msg(&header.metadata, ResponseCode::FormErr);
                return Some((encode(msg, protocol), None));
            }
        };
        if request.metadata.message_type == MessageType::Response {
            return None;
        }
        let prepared = self.prepare(view, &request);
        let bytes = encode(prepared.build(&request), protocol);
        Some((bytes, Some(prepared)))
    }
}

impl Prepared {
    fn build<'q>(
        &'q self,
        request: &'q Request,
    ) -> hickory_server::zone_handler::MessageResponse<
        'q,
        'q,
        impl Iterator<Item = &'q HRecord> + Send + 'q,
        impl Iterator<Item = &'q HRecord> + Send + 'q,
        impl Iterator<Item = &'q HRecord> + Send + 'q,
        impl Iterator<Item = &'q HRecord> + Send + 'q,
    > {
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &self.edns {
            builder.edns(edns);
        }
        builder.build(
            self.metadata,
            self.answers.iter(),
            std::iter::empty(),
            self.soa.iter(),
            self.additionals.iter(),
        )
    }
}

/// `msg` encoded as hickory's server encodes responses: at most the client's UDP payload
/// size (512 without EDNS), and a bare SERVFAIL header when encoding fails.
fn encode<'a>(
    msg: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a HRecord> + Send + 'a,
        impl Iterator<Item = &'a HRecord> + Send + 'a,
        impl Iterator<Item = &'a HRecord> + Send + 'a,
        impl Iterator<Item = &'a HRecord> + Send + 'a,
    >,
    protocol: Protocol,
) -> Vec<u8> {
    let id = msg.metadata().id;
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(match protocol {
        Protocol::Udp => msg.edns().map_or(512, Edns::max_payload),
        _ => u16::MAX,
    });
    if msg.destructive_emit(&mut encoder).is_ok() {
        return bytes;
    }
    bytes.clear();
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(512);
    let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
    metadata.response_code = ResponseCode::ServFail;
    let header = Header {
        metadata,
        counts: HeaderCounts::default(),
    };
    // A header always fits in 512 bytes.
    let _ = header.emit(&mut encoder);
    bytes
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let start = std::time::Instant::now();
        let view = self.views.borrow().clone();
        let prepared = self.prepare(&view, request);
        (self.counters)(prepared.qtype, prepared.rcode, start.elapsed());
        response
            .send_response(prepared.build(request))
            .await
            .unwrap_or_else(|_| failed(request))
    }
}

/// The largest UDP payload offered to EDNS clients: 1232 bytes, which fits the IPv6 minimum
/// MTU without fragmentation (DNS Flag Day 2020).
const MAX_UDP_PAYLOAD: u16 = 1232;

/// Whether a response with `metadata` and `sections` (answers, authorities, additionals) to
/// `request` fits in `limit` bytes as hickory encodes it. Its encoder writes each name whole before compressing
/// it, and a record that overflows leaves bytes behind (a malformed message), so the check
/// runs that same encoder. Cheap when the response surely fits: the records' uncompressed
/// lengths are summed first, and the message is only encoded when that bound exceeds `limit`.
fn fits(
    request: &Request,
    metadata: &Metadata,
    sections: [&[HRecord]; 3],
    edns: Option<&Edns>,
    limit: u16,
) -> bool {
    const HEADER: usize = 12;
    const OPT: usize = 11;
    let name_bound = |name: &Name| name.len() + 2;
    let bound = HEADER
        + request
            .queries
            .queries()
            .iter()
            .map(|q| name_bound(q.name()) + 4)
            .sum::<usize>()
        + OPT
        + sections
            .iter()
            .flat_map(|s| s.iter())
            .map(|r| {
                let rdata = match &r.data {
                    HRData::A(_) => 4,
                    HRData::AAAA(_) => 16,
                    HRData::SRV(srv) => 6 + name_bound(&srv.target),
                    HRData::CNAME(cname) => name_bound(&cname.0),
                    HRData::TXT(txt) => txt.txt_data.iter().map(|t| t.len() + 1).sum(),
                    HRData::SOA(soa) => name_bound(&soa.mname) + name_bound(&soa.rname) + 20,
                    _ => usize::from(u16::MAX),
                };
                name_bound(&r.name) + 10 + rdata
            })
            .sum::<usize>();
    if bound <= usize::from(limit) {
        return true;
    }
    let mut builder = MessageResponseBuilder::from_message_request(request);
    if let Some(edns) = edns {
        builder.edns(edns);
    }
    let [answers, authorities, additionals] = sections;
    let response = builder.build(
        *metadata,
        answers.iter(),
        std::iter::empty(),
        authorities.iter(),
        additionals.iter(),
    );
    let mut bytes = Vec::with_capacity(usize::from(limit));
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(limit);
    response
        .destructive_emit(&mut encoder)
        .is_ok_and(|sent| !sent.truncation)
}

fn failed(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(hickory_server::proto::op::Header {
        metadata,
        counts: Default::default(),
    })
}

/// Serves DNS on the `udp` sockets (one receive loop each, on a thread of its own) and the
/// `tcp` listener's guarded connections until `shutdown`.
pub async fn serve(
    udp: Vec<UdpSocket>,
    tcp: bowline_net::Guard,
    handler: Handler,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for socket in udp {
        let socket = socket.into_std()?;
        socket.set_nonblocking(false)?;
        socket.set_read_timeout(Some(crate::udp::POLL))?;
        let (handler, stop) = (handler.clone(), stop.clone());
        loops.push(
            std::thread::Builder::new()
                .name("dns-udp".into())
                .spawn(move || crate::udp::receive(&socket, handler, &stop))?,
        );
    }
    crate::tcp::serve(tcp, handler, shutdown).await;
    stop.store(true, Ordering::Relaxed);
    // The loops see `stop` within one read timeout.
    tokio::task::spawn_blocking(move || {
        for receive_loop in loops {
            if receive_loop.join().is_err() {
                tracing::error!("a DNS UDP receive loop panicked");
            }
        }
    })
    .await
    .map_err(std::io::Error::other)
}
