//! One UDP receive loop per socket, on a thread of its own: receive a query, answer it from
//! the loop's [`Cache`], send the response. No task per query, no lock and no allocation on
//! the way of a cached answer; the sockets are one per CPU (`SO_REUSEPORT`), as the loops are.

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

/// Answers the queries arriving on `socket` (blocking, with a read timeout of [`POLL`])
/// until `stop` is set.
pub(crate) fn receive(socket: &UdpSocket, mut handler: Handler, stop: &AtomicBool) {
    let mut query = vec![0u8; MAX_QUERY];
    let mut response = Vec::with_capacity(usize::from(u16::MAX));
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
        let start = Instant::now();
        if !respondable(src) {
            debug!(%src, "DNS query from an address that cannot be answered");
            continue;
        }
        if handler.views.has_changed().unwrap_or(false) {
            let view = handler.views.borrow_and_update().clone();
            cache.refresh(view);
        }
        match cache.respond(&handler, &query[..len], src, Protocol::Udp, &mut response) {
            Reply::Nothing => continue,
            Reply::Uncounted => {}
            Reply::Counted(qtype, rcode) => (handler.counters)(qtype, rcode, start.elapsed()),
        }
        if let Err(error) = socket.send_to(&response, src) {
            debug!(%error, %src, "error sending a DNS response");
        }
    }
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
