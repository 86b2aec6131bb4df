//! Guarded TCP listeners. Every listener Bowline serves (xDS, xDS over TLS, DNS over TCP,
//! admin) accepts through a [`Guard`]:
//!
//! - at most `max_connections` at once. At the limit, a new connection takes the place of the
//!   oldest one that has not started its protocol yet (`evicted`), so idle connections
//!   cannot lock well-behaved clients out; when every connection has started, the new one
//!   is closed as soon as it is accepted (so the kernel's backlog never fills), and counted;
//! - a connection must send its first `first_bytes` bytes (an HTTP/2 preface, a DNS length
//!   prefix, a request line) within `handshake_timeout`, and then never go `idle_timeout`
//!   without sending a byte; either ends it;
//! - when the process runs out of descriptors (EMFILE, ENFILE) or memory for sockets, the
//!   accept loop backs off (10 ms doubling to 1 s) instead of retrying at once, and counts it.
//!
//! ```text
//!  TcpListener ──accept──► Guard ──► Guarded<TcpStream> ──► hyper / tonic / DNS
//!                           │ over the limit: closed, refused{reason="limit"}
//!                           │ EMFILE/ENFILE: backoff, refused{reason="descriptors"}
//! ```
//!
//! [`raise_open_files_limit`] raises the soft open-files limit to the hard one at start, and
//! [`default_max_connections`] splits what it allows between the listeners, keeping a
//! reserve for the sources, writers and files.

use std::{
    collections::VecDeque,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use futures::task::AtomicWaker;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tracing::{info, warn};

/// What one listener allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// How long a new connection has to send its first `first_bytes` bytes.
    pub handshake_timeout: Duration,
    /// How many bytes count as the start of the protocol (HTTP/2: the 24-byte preface).
    pub first_bytes: usize,
    /// How long a connection may go without sending a byte.
    pub idle_timeout: Duration,
}

/// `listener` label of the listener metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    /// `xds`, `xds-tls`, `dns-tcp` or `admin`.
    pub listener: String,
}

/// Labels of `bowline_listener_refused_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabel {
    /// The listener.
    pub listener: String,
    /// `limit`, `evicted`, `descriptors`, `handshake_timeout`, `idle_timeout` or
    /// `accept_error`.
    pub reason: String,
}

/// The listeners' metrics.
#[derive(Default)]
pub struct Metrics {
    /// Connections open now.
    pub connections: Family<ListenerLabel, Gauge<i64, AtomicI64>>,
    /// Connections refused or ended by a limit.
    pub refused: Family<RefusedLabel, Counter>,
}

impl Metrics {
    /// Registers the metrics.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "bowline_listener_connections",
            "Connections open on each listener.",
            self.connections.clone(),
        );
        registry.register(
            "bowline_listener_refused",
            "Connections refused at accept (limit, descriptors) or ended by a timeout, by listener and reason.",
            self.refused.clone(),
        );
    }

    fn refuse(&self, listener: &str, reason: &str) {
        self.refused
            .get_or_create(&RefusedLabel {
                listener: listener.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }
}

/// A listener's accept loop, with its limits.
pub struct Guard {
    listener: TcpListener,
    name: &'static str,
    limits: Limits,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    backoff: Duration,
    /// Connections in accept order, for eviction (finished or closed ones skipped).
    starting: VecDeque<Weak<Starting>>,
}

/// What the guard and one connection share while it has not started its protocol.
#[derive(Default)]
struct Starting {
    started: AtomicBool,
    evicted: AtomicBool,
    waker: AtomicWaker,
}

/// How long a new connection waits for the slot of the connection it evicted.
const EVICTION_WAIT: Duration = Duration::from_millis(250);

const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

impl Guard {
    /// Guards `listener`, named `name` in metrics and logs.
    pub fn new(
        listener: TcpListener,
        name: &'static str,
        limits: Limits,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            listener,
            name,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            metrics,
            backoff: FIRST_BACKOFF,
            starting: VecDeque::new(),
        }
    }

    /// Evicts the oldest connection that has not started its protocol and waits for its
    /// slot; `None` when every connection has started (or the slot did not free in time).
    async fn make_room(&mut self) -> Option<OwnedSemaphorePermit> {
        let victim = loop {
            let oldest = self.starting.pop_front()?;
            if let Some(starting) = oldest.upgrade()
                && !starting.started.load(Ordering::Acquire)
            {
                break starting;
            }
        };
        victim.evicted.store(true, Ordering::Release);
        victim.waker.wake();
        self.metrics.refuse(self.name, "evicted");
        tokio::time::timeout(EVICTION_WAIT, self.slots.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// The address listened on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection within the limits. Never fails: errors are counted, logged and
    /// waited out.
    pub async fn accept(&mut self) -> (Guarded, SocketAddr) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => {
                    self.backoff = FIRST_BACKOFF;
                    accepted
                }
                Err(e) => {
                    self.accept_failed(&e).await;
                    continue;
                }
            };
            let permit = match self.slots.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => self.make_room().await,
            };
            let Some(permit) = permit else {
                self.metrics.refuse(self.name, "limit");
                tracing::debug!(listener = self.name, %peer, limit = self.limits.max_connections, "connection refused: listener at its limit");
                drop(stream);
                continue;
            };
            let starting = Arc::new(Starting::default());
            if self.starting.len() >= 2 * self.limits.max_connections {
                self.starting.retain(|s| {
                    s.upgrade()
                        .is_some_and(|s| !s.started.load(Ordering::Acquire))
                });
            }
            self.starting.push_back(Arc::downgrade(&starting));
            let _ = stream.set_nodelay(true);
            let gauge = self
                .metrics
                .connections
                .get_or_create(&ListenerLabel {
                    listener: self.name.to_owned(),
                })
                .clone();
            gauge.inc();
            let now = Instant::now();
            return (
                Guarded {
                    inner: stream,
                    limits: self.limits,
                    read: 0,
                    timer: Box::pin(tokio::time::sleep_until(
                        now + self.limits.handshake_timeout,
                    )),
                    last_read: now,
                    starting,
                    held: Held {
                        _permit: permit,
                        gauge,
                        metrics: self.metrics.clone(),
                        name: self.name,
                    },
                },
                peer,
            );
        }
    }

    async fn accept_failed(&mut self, e: &io::Error) {
        let descriptors = matches!(
            e.raw_os_error(),
            Some(code) if code == rustix::io::Errno::MFILE.raw_os_error()
                || code == rustix::io::Errno::NFILE.raw_os_error()
                || code == rustix::io::Errno::NOBUFS.raw_os_error()
                || code == rustix::io::Errno::NOMEM.raw_os_error()
        );
        if descriptors {
            self.metrics.refuse(self.name, "descriptors");
            if self.backoff == FIRST_BACKOFF {
                warn!(
                    listener = self.name,
                    "cannot accept connections: {e}; backing off (up to 1 s between tries) until descriptors are free"
                );
            }
        } else {
            // A connection reset before it was accepted, and the like: only that one is lost.
            self.metrics.refuse(self.name, "accept_error");
            tracing::debug!(listener = self.name, "accept failed: {e}");
        }
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

/// What a connection holds while open: its slot, and its count in the gauge.
struct Held {
    _permit: OwnedSemaphorePermit,
    gauge: Gauge<i64, AtomicI64>,
    metrics: Arc<Metrics>,
    name: &'static str,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// An accepted connection, ended with `TimedOut` by its handshake or idle timeout.
pub struct Guarded {
    inner: TcpStream,
    limits: Limits,
    /// Bytes read so far (counted up to `first_bytes`).
    read: usize,
    /// The handshake deadline until `first_bytes` were read, then the idle deadline.
    timer: Pin<Box<Sleep>>,
    last_read: Instant,
    starting: Arc<Starting>,
    held: Held,
}

impl Guarded {
    /// The underlying stream.
    pub fn get_ref(&self) -> &TcpStream {
        &self.inner
    }

    fn in_handshake(&self) -> bool {
        self.read < self.limits.first_bytes
    }

    /// `Ready(TimedOut)` once the current deadline passed (re-armed from the last read for
    /// the idle timeout), else registers the waker.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.in_handshake() {
            self.starting.waker.register(cx.waker());
            if self.starting.evicted.load(Ordering::Acquire) {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "evicted for a new connection: the listener is at its limit and this one had not started",
                ));
            }
        }
        loop {
            ready!(self.timer.as_mut().poll(cx));
            if self.in_handshake() {
                self.held
                    .metrics
                    .refuse(self.held.name, "handshake_timeout");
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no protocol start within {:?}",
                        self.limits.handshake_timeout
                    ),
                ));
            }
            let idle_until = self.last_read + self.limits.idle_timeout;
            if Instant::now() >= idle_until {
                self.held.metrics.refuse(self.held.name, "idle_timeout");
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("idle for {:?}", self.limits.idle_timeout),
                ));
            }
            self.timer.as_mut().reset(idle_until);
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n > 0 {
                    let was_handshake = this.in_handshake();
                    this.read = this.read.saturating_add(n);
                    this.last_read = Instant::now();
                    if was_handshake && !this.in_handshake() {
                        this.starting.started.store(true, Ordering::Release);
                        // From now on the idle deadline, re-armed lazily from `last_read`.
                        let until = this.last_read + this.limits.idle_timeout;
                        this.timer.as_mut().reset(until);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.poll_deadline(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The open-files limit after [`raise_open_files_limit`]: `(soft, hard)`.
pub fn open_files_limit() -> (u64, Option<u64>) {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    (limit.current.unwrap_or(u64::MAX), limit.maximum)
}

/// Raises the soft open-files limit to the hard one (systemd's default soft limit is 1,024)
/// and logs both.
pub fn raise_open_files_limit() {
    let mut limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let before = limit.current;
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = rustix::process::setrlimit(rustix::process::Resource::Nofile, limit) {
            warn!(
                "cannot raise the open-files limit from {before:?} to {:?}: {e}",
                limit.maximum
            );
        }
    }
    let (soft, hard) = open_files_limit();
    info!(soft, hard = ?hard, "open-files limit");
}

/// Descriptors kept for everything but the listeners (sources, watches, writers, files,
/// Kubernetes connections): a quarter of the limit, at least 256.
pub fn reserved_descriptors(open_files: u64) -> u64 {
    (open_files / 4).max(256)
}

/// Each of the four TCP listeners' default connection limit: an equal share of what the
/// open-files limit leaves after the reserve (at least 16).
pub fn default_max_connections(open_files: u64) -> usize {
    let share = open_files.saturating_sub(reserved_descriptors(open_files)) / 4;
    usize::try_from(share.max(16)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits(max: usize) -> Limits {
        Limits {
            max_connections: max,
            handshake_timeout: Duration::from_secs(10),
            first_bytes: 4,
            idle_timeout: Duration::from_secs(60),
        }
    }

    async fn guard(max: usize) -> (Guard, SocketAddr, Arc<Metrics>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::default());
        (
            Guard::new(listener, "test", limits(max), metrics.clone()),
            addr,
            metrics,
        )
    }

    fn refused(metrics: &Metrics, reason: &str) -> u64 {
        metrics
            .refused
            .get_or_create(&RefusedLabel {
                listener: "test".into(),
                reason: reason.into(),
            })
            .get()
    }

    fn open(metrics: &Metrics) -> i64 {
        metrics
            .connections
            .get_or_create(&ListenerLabel {
                listener: "test".into(),
            })
            .get()
    }

    #[tokio::test]
    async fn connections_over_a_limit_of_started_ones_are_closed_and_a_freed_slot_is_reused() {
        let (mut guard, addr, metrics) = guard(2).await;
        let mut clients = Vec::new();
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut client = TcpStream::connect(addr).await.unwrap();
            client.write_all(b"abcd").await.unwrap();
            let mut server = guard.accept().await.0;
            server.read_exact(&mut [0u8; 4]).await.unwrap();
            clients.push(client);
            held.push(server);
        }
        assert_eq!(open(&metrics), 2);
        let mut third = TcpStream::connect(addr).await.unwrap();
        let mut fourth = TcpStream::connect(addr).await.unwrap();
        // The guard closes both while waiting for a connection it can keep.
        let accepting = tokio::spawn(async move { (guard.accept().await.0, guard) });
        let mut byte = [0u8; 1];
        assert_eq!(third.read(&mut byte).await.unwrap(), 0, "closed at once");
        assert_eq!(fourth.read(&mut byte).await.unwrap(), 0, "closed at once");
        assert_eq!(refused(&metrics, "limit"), 2);
        drop(held.pop());
        assert_eq!(open(&metrics), 1);
        let _fifth = TcpStream::connect(addr).await.unwrap();
        let (_fifth_held, _guard) = accepting.await.unwrap();
        assert_eq!(open(&metrics), 2);
    }

    #[tokio::test]
    async fn at_the_limit_a_new_connection_evicts_the_oldest_that_has_not_started() {
        let (mut guard, addr, metrics) = guard(2).await;
        // Each server side is read by a task, as hyper or tonic would.
        let serve = |mut server: Guarded| {
            tokio::spawn(async move {
                let mut buf = [0u8; 16];
                loop {
                    match server.read(&mut buf).await {
                        Ok(0) => return None,
                        Ok(_) => {}
                        Err(e) => return Some(e.to_string()),
                    }
                }
            })
        };
        let _silent_old = TcpStream::connect(addr).await.unwrap();
        let old = serve(guard.accept().await.0);
        let mut started = TcpStream::connect(addr).await.unwrap();
        started.write_all(b"abcd").await.unwrap();
        let started_task = serve(guard.accept().await.0);
        let _silent_new = TcpStream::connect(addr).await.unwrap();
        let newest = serve(guard.accept().await.0);
        let ended = old.await.unwrap().expect("the silent old one is ended");
        assert!(ended.contains("evicted"), "{ended}");
        assert_eq!(refused(&metrics, "evicted"), 1);
        assert_eq!(open(&metrics), 2);
        assert!(!started_task.is_finished() && !newest.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_never_starts_its_protocol_is_ended() {
        let (mut guard, addr, metrics) = guard(4).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = guard.accept().await;
        client.write_all(b"abc").await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(server.read(&mut buf).await.unwrap(), 3);
        // Three of the four first bytes, then nothing: the handshake deadline ends it.
        let e = server.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(refused(&metrics, "handshake_timeout"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_ended_after_its_idle_timeout_and_not_before() {
        let (mut guard, addr, metrics) = guard(4).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = guard.accept().await;
        let start = Instant::now();
        let mut buf = [0u8; 16];
        for _ in 0..3 {
            client.write_all(b"abcd").await.unwrap();
            assert_eq!(server.read(&mut buf).await.unwrap(), 4);
            tokio::time::sleep(Duration::from_secs(50)).await;
        }
        // Active every 50 s for 150 s: still open. Now silent.
        let e = server.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(
            start.elapsed() >= Duration::from_secs(150 + 10),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(refused(&metrics, "idle_timeout"), 1);
        assert_eq!(refused(&metrics, "handshake_timeout"), 0);
        drop(server);
        assert_eq!(open(&metrics), 0);
    }

    #[test]
    fn default_limits_keep_a_reserve() {
        assert_eq!(reserved_descriptors(1024), 256);
        assert_eq!(default_max_connections(1024), 192);
        assert_eq!(default_max_connections(100), 16);
        assert_eq!(default_max_connections(1 << 20), 196_608);
    }
}
