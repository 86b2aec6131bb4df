//! The DNS server: hickory's UDP and TCP transports with Bowline's request handler, which
//! answers from the latest [`View`] (a `watch` snapshot; no lock is held while sending).

use std::{future::Future, sync::Arc, time::Duration};

use hickory_server::{
    Server,
    net::{runtime::Time, xfer::Protocol},
    proto::{
        op::{Edns, Metadata, ResponseCode},
        rr::{
            Name, RData as HRData, Record as HRecord, RecordType,
            rdata::{A, AAAA, CNAME, SOA, SRV, TXT},
        },
        serialize::binary::BinEncoder,
    },
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponseBuilder,
};
use tokio::{
    net::{TcpListener, UdpSocket},
    sync::watch,
};
use tracing::debug;

use crate::{
    answer::{QType, RData, Rcode, Record, View, answer, ttl_of},
    zone::soa_names,
};

/// Called for every query with its type (`A`, `SRV`, …), response code (`NOERROR`,
/// `NXDOMAIN`, `SERVFAIL`, `REFUSED`, `FORMERR`) and time to answer (metrics).
pub type Observe = Arc<dyn Fn(&'static str, &'static str, Duration) + Send + Sync>;

/// Answers queries from the latest view.
pub struct Handler {
    views: watch::Receiver<Arc<View>>,
    ttl: u32,
    counters: Observe,
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

fn qtype(t: RecordType) -> QType {
    match t {
        RecordType::A => QType::A,
        RecordType::AAAA => QType::Aaaa,
        RecordType::SRV => QType::Srv,
        RecordType::TXT => QType::Txt,
        RecordType::SOA => QType::Soa,
        _ => QType::Other,
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let start = std::time::Instant::now();
        // RFC 6891 §6.1.1: a query with an OPT record gets one back, with our payload size.
        let edns = request.edns.as_ref().map(|theirs| {
            let mut ours = Edns::new();
            ours.set_max_payload(theirs.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            ours
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let Some(query) = request.queries.queries().first() else {
            let msg = builder.error_msg(&request.metadata, ResponseCode::FormErr);
            (self.counters)("", "FORMERR", start.elapsed());
            return response
                .send_response(msg)
                .await
                .unwrap_or_else(|_| failed(request));
        };
        let query = query.original();
        let view = self.views.borrow().clone();
        let result = answer(&view, &query.name().to_ascii(), qtype(query.query_type()));
        let (rcode, label) = match result.rcode {
            Rcode::NoError => (ResponseCode::NoError, "NOERROR"),
            Rcode::NxDomain => (ResponseCode::NXDomain, "NXDOMAIN"),
            Rcode::ServFail => (ResponseCode::ServFail, "SERVFAIL"),
            Rcode::Refused => (ResponseCode::Refused, "REFUSED"),
        };
        (self.counters)(query.query_type().into(), label, start.elapsed());
        debug!(name = %query.name(), qtype = %query.query_type(), ?rcode, answers = result.answers.len(), "dns query");
        if matches!(result.rcode, Rcode::Refused | Rcode::ServFail) {
            let msg = builder.error_msg(&request.metadata, rcode);
            return response
                .send_response(msg)
                .await
                .unwrap_or_else(|_| failed(request));
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
        let msg = builder.build(
            metadata,
            answers.iter(),
            std::iter::empty(),
            soa.iter(),
            additionals.iter(),
        );
        response
            .send_response(msg)
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

/// Serves DNS on the `udp` sockets and `tcp` until `shutdown` completes.
pub async fn serve(
    udp: Vec<UdpSocket>,
    tcp: TcpListener,
    handler: Handler,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let mut server = Server::new(handler);
    for socket in udp {
        server.register_socket(socket);
    }
    server.register_listener(tcp, Duration::from_secs(5), 64);
    shutdown.await;
    server
        .shutdown_gracefully()
        .await
        .map_err(std::io::Error::other)
}
