//! The DNS server: hickory's UDP and TCP transports with Bowline's request handler, which
//! answers from the latest [`View`] (a `watch` snapshot; no lock is held while sending).

use std::{future::Future, str::FromStr, sync::Arc, time::Duration};

use hickory_server::{
    Server,
    net::runtime::Time,
    proto::{
        op::{Metadata, ResponseCode},
        rr::{
            Name, RData as HRData, Record as HRecord, RecordType,
            rdata::{A, AAAA, CNAME, SOA, SRV, TXT},
        },
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

/// Called for every query with its type, response code and time to answer (metrics).
pub type Observe = Arc<dyn Fn(&str, &str, Duration) + Send + Sync>;

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
    Name::from_str(s).unwrap_or_else(|_| Name::root())
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
        let builder = MessageResponseBuilder::from_message_request(request);
        let Some(query) = request.queries.queries().first() else {
            let msg = builder.error_msg(&request.metadata, ResponseCode::FormErr);
            return response
                .send_response(msg)
                .await
                .unwrap_or_else(|_| failed(request));
        };
        let query = query.original();
        let view = self.views.borrow().clone();
        let result = answer(&view, &query.name().to_ascii(), qtype(query.query_type()));
        let rcode = match result.rcode {
            Rcode::NoError => ResponseCode::NoError,
            Rcode::NxDomain => ResponseCode::NXDomain,
            Rcode::ServFail => ResponseCode::ServFail,
            Rcode::Refused => ResponseCode::Refused,
        };
        (self.counters)(
            &query.query_type().to_string(),
            &rcode.to_string(),
            start.elapsed(),
        );
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
        let answers: Vec<HRecord> = result
            .answers
            .iter()
            .map(|r| record(result.zone, r, self.ttl))
            .collect();
        let additionals: Vec<HRecord> = result
            .additionals
            .iter()
            .map(|r| record(result.zone, r, self.ttl))
            .collect();
        let soa: Vec<HRecord> = if result.soa_in_authority {
            vec![soa(result.zone, self.ttl)]
        } else {
            Vec::new()
        };
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

fn failed(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(hickory_server::proto::op::Header {
        metadata,
        counts: Default::default(),
    })
}

/// Serves DNS on `udp` and `tcp` until `shutdown` completes.
pub async fn serve(
    udp: UdpSocket,
    tcp: TcpListener,
    handler: Handler,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let mut server = Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 64);
    shutdown.await;
    server
        .shutdown_gracefully()
        .await
        .map_err(std::io::Error::other)
}
