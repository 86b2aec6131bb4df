//! One UDP receive loop per socket, on a thread of its own: receive a query, answer it from
//! the loop's [`Cache`], and so on for every query already queued (up to [`BATCH`]), then send
//! the responses in one `sendmmsg`, as Knot does. No task per query, no lock and no allocation
//! per query on the way of a cached answer; the sockets are one per CPU (`SO_REUSEPORT`), as
//! the loops are.

use std::{
    io,
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use tracing::{debug, warn};

use crate::{
    cache::{Cache, Reply},
    server::{Handler, Protocol},
};

/// The largest query read, as hickory's UDP transport reads them.
const MAX_QUERY: usize = 4096;
/// How often an idle loop looks at `stop`.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// Queries taken per batch: after a blocking receive, the loop takes what else is already
/// queued, without waiting, up to this many, and sends their responses in one `sendmmsg`.
const BATCH: usize = 32;

/// The responses of one batch and where they go.
struct Batch {
    responses: Vec<Vec<u8>>,
    peers: Vec<SocketAddr>,
    len: usize,
}

impl Batch {
    fn new() -> Self {
        Self {
            responses: (0..BATCH).map(|_| Vec::with_capacity(512)).collect(),
            peers: vec![SocketAddr::from(([0, 0, 0, 0], 0)); BATCH],
            len: 0,
        }
    }

    fn is_full(&self) -> bool {
        self.len == BATCH
    }
}

/// Answers the queries arriving on `socket` (blocking, with a read timeout of [`POLL`])
/// until `stop` is set.
pub(crate) fn receive(socket: &UdpSocket, mut handler: Handler, stop: &AtomicBool) {
    let mut query = vec![0u8; MAX_QUERY];
    let mut batch = Batch::new();
    let mut cache = Cache::new(handler.views.borrow_and_update().clone());
    while !stop.load(Ordering::Relaxed) {
        let (len, src) = match socket.recv_from(&mut query) {
            Ok(received) => received,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(error) if unrecoverable(&error) => {
                warn!(%error, "DNS UDP socket closed");
                return;
            }
            Err(error) => {
                warn!(%error, "error receiving a DNS query");
                continue;
            }
        };
        if handler.views.has_changed().unwrap_or(false) {
            let view = handler.views.borrow_and_update().clone();
            cache.refresh(view);
        }
        answer(&mut cache, &handler, &query[..len], src, &mut batch);
        while !batch.is_full() {
            let Some((len, src)) = queued(socket, &mut query) else {
                break;
            };
            answer(&mut cache, &handler, &query[..len], src, &mut batch);
        }
        send(socket, &mut batch);
    }
}

/// A query already waiting on `socket`, without blocking.
fn queued(socket: &UdpSocket, query: &mut [u8]) -> Option<(usize, SocketAddr)> {
    match rustix::net::recvfrom(socket, &mut *query, rustix::net::RecvFlags::DONTWAIT) {
        Ok((len, _, Some(src))) => Some((len, SocketAddr::try_from(src).ok()?)),
        Ok((_, _, None)) => None,
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => None,
        Err(error) => {
            debug!(%error, "error receiving a DNS query");
            None
        }
    }
}

/// Answers one query into the batch (or not at all, as hickory's server would not).
fn answer(cache: &mut Cache, handler: &Handler, query: &[u8], src: SocketAddr, batch: &mut Batch) {
    let start = Instant::now();
    if !respondable(src) {
        debug!(%src, "DNS query from an address that cannot be answered");
        return;
    }
    let response = &mut batch.responses[batch.len];
    match cache.respond(handler, query, src, Protocol::Udp, response) {
        Reply::Nothing => return,
        Reply::Uncounted => {}
        Reply::Counted(qtype, rcode) => (handler.counters)(qtype, rcode, start.elapsed()),
    }
    batch.peers[batch.len] = src;
    batch.len += 1;
}

/// Sends the batch's responses (one `sendmmsg` while every one goes out) and empties it. A
/// lone response goes out with `sendto`, without the batch's per-call vectors.
fn send(socket: &UdpSocket, batch: &mut Batch) {
    if batch.len == 1 {
        if let Err(error) = socket.send_to(&batch.responses[0], batch.peers[0]) {
            debug!(%error, peer = %batch.peers[0], "error sending a DNS response");
        }
        batch.len = 0;
        return;
    }
    let peers: Vec<rustix::net::SocketAddrAny> = batch.peers[..batch.len]
        .iter()
        .map(|p| (*p).into())
        .collect();
    let iovs: Vec<[io::IoSlice<'_>; 1]> = batch.responses[..batch.len]
        .iter()
        .map(|r| [io::IoSlice::new(r)])
        .collect();
    let mut controls: Vec<rustix::net::SendAncillaryBuffer<'_, '_, '_>> =
        (0..batch.len).map(|_| Default::default()).collect();
    let mut messages: Vec<rustix::net::MMsgHdr<'_>> = peers
        .iter()
        .zip(&iovs)
        .zip(&mut controls)
        .map(|((peer, iov), control)| rustix::net::MMsgHdr::new_with_addr(peer, iov, control))
        .collect();
    let mut sent = 0;
    while sent < messages.len() {
        match rustix::net::sendmmsg(
            socket,
            &mut messages[sent..],
            rustix::net::SendFlags::empty(),
        ) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(error) => {
                // The first unsent one failed (its peer is unreachable...): skip it.
                debug!(%error, peer = %batch.peers[sent], "error sending a DNS response");
                sent += 1;
            }
        }
    }
    batch.len = 0;
}

/// What hickory's server answers: not port 0, nor an unspecified or broadcast address.
fn respondable(src: SocketAddr) -> bool {
    src.port() != 0
        && match src.ip() {
            IpAddr::V4(ip) => !ip.is_unspecified() && !ip.is_broadcast(),
            IpAddr::V6(ip) => !ip.is_unspecified(),
        }
}

fn unrecoverable(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotConnected | io::ErrorKind::ConnectionAborted
    )
}
