//! DNS over TCP (RFC 7766): each connection's queries answered in order, each a two-byte
//! length then the message. The connections come from a [`Guard`], which bounds how many
//! are open and ends those that start nothing within the handshake timeout or go idle, so a
//! client holding connections open can take only its share of the listener.

use std::{net::SocketAddr, time::Instant};

use bowline_net::{Guard, Guarded};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::{
    cache::{Cache, Reply},
    server::{Handler, Protocol},
};

/// The shortest DNS message: its header.
const HEADER: usize = 12;

/// Accepts connections from `guard` until `shutdown`, each answered on a task of its own.
pub(crate) async fn serve(mut guard: Guard, handler: Handler, shutdown: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = guard.accept() => accepted,
        };
        let (handler, shutdown) = (handler.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                () = connection(stream, peer, handler) => {}
            }
        });
    }
}

/// Answers one connection's queries until it closes, errs or times out.
async fn connection(mut stream: Guarded, peer: SocketAddr, mut handler: Handler) {
    let mut cache = Cache::new(handler.views.borrow_and_update().clone());
    let mut query = Vec::new();
    let mut response = Vec::new();
    loop {
        let len = match stream.read_u16().await {
            Ok(len) => usize::from(len),
            Err(e) => {
                debug!(%peer, "DNS over TCP connection ended: {e}");
                return;
            }
        };
        if len < HEADER {
            debug!(%peer, len, "DNS over TCP message shorter than a header; closing");
            return;
        }
        query.resize(len, 0);
        if let Err(e) = stream.read_exact(&mut query).await {
            debug!(%peer, "DNS over TCP connection ended mid-message: {e}");
            return;
        }
        let start = Instant::now();
        if handler.views.has_changed().unwrap_or(false) {
            cache.refresh(handler.views.borrow_and_update().clone());
        }
        match cache.respond(&handler, &query, peer, Protocol::Tcp, &mut response) {
            Reply::Nothing => continue,
            Reply::Uncounted => {}
            Reply::Counted(qtype, rcode) => (handler.counters)(qtype, rcode, start.elapsed()),
        }
        let Ok(len) = u16::try_from(response.len()) else {
            debug!(%peer, "DNS response too long for TCP; closing");
            return;
        };
        let mut framed = Vec::with_capacity(response.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&response);
        if let Err(e) = stream.write_all(&framed).await {
            debug!(%peer, "cannot send a DNS response over TCP: {e}");
            return;
        }
    }
}
