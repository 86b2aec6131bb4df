//! Transport: the listener, per-connection tasks, and reachability (dropping the listener and
//! every open connection, then binding the same port again).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::store::Store;

/// One request as the server saw it, for permission checks in tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` (or the HTTP method for
    /// paths that name no resource).
    pub verb: String,
    /// API group, empty for core.
    pub group: String,
    /// API version.
    pub version: String,
    /// Resource plural, e.g. `leases`.
    pub resource: String,
    /// Subresource, e.g. `status`.
    pub subresource: Option<String>,
    /// Namespace from the path.
    pub namespace: Option<String>,
    /// Object name from the path.
    pub name: Option<String>,
    /// `fieldManager` query parameter.
    pub field_manager: Option<String>,
    /// `labelSelector` query parameter.
    pub label_selector: Option<String>,
    /// `limit` query parameter (the page size of a list).
    pub limit: Option<u32>,
    /// Bearer token the request carried.
    pub token: Option<String>,
    /// `Content-Type` of the body (tells apply from merge patches).
    pub content_type: Option<String>,
}

/// A failure to answer instead of serving a request.
#[derive(Clone, Debug)]
pub(crate) struct Injected {
    pub verb: String,
    pub resource: String,
    pub code: u16,
    pub remaining: usize,
}

/// Who an issued ServiceAccount token names, for whom, and until when.
#[derive(Clone, Debug)]
pub(crate) struct TokenClaims {
    pub namespace: String,
    pub name: String,
    pub audiences: Vec<String>,
    /// Seconds since the epoch.
    pub expires: u64,
}

/// What tests control about how requests are answered.
pub(crate) struct Controls {
    /// When set, requests must carry `Authorization: Bearer <token>` (or an issued token).
    pub token: Option<String>,
    /// Tokens answered to TokenRequests: accepted besides `token`.
    pub issued_tokens: HashSet<String>,
    /// What each issued token says, for TokenReviews.
    pub token_claims: HashMap<String, TokenClaims>,
    /// How many tokens were issued (numbers the next one).
    pub tokens_issued: u64,
    /// The longest validity a TokenRequest is granted, in seconds.
    pub max_token_seconds: Option<i64>,
    pub bookmark_interval: Duration,
    pub injected: Vec<Injected>,
    pub requests: Vec<RequestRecord>,
}

/// State shared by the handle, the accept loop and every request.
pub(crate) struct Shared {
    /// Objects, history and resources: one lock so that a write, its resourceVersion and its
    /// announcement to watches happen together.
    pub store: Mutex<Store>,
    /// Test controls; separate from the store so recording a request never waits on a write.
    pub controls: Mutex<Controls>,
    /// False between `set_reachable(false)` and `set_reachable(true)`: requests that still
    /// arrive on a connection being torn down get 503.
    pub reachable: AtomicBool,
}

impl Shared {
    pub fn new() -> Self {
        Self {
            store: Mutex::new(Store::new()),
            controls: Mutex::new(Controls {
                token: None,
                issued_tokens: HashSet::new(),
                token_claims: HashMap::new(),
                tokens_issued: 0,
                max_token_seconds: None,
                bookmark_interval: Duration::from_secs(1),
                injected: Vec::new(),
                requests: Vec::new(),
            }),
            reachable: AtomicBool::new(true),
        }
    }

    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::SeqCst)
    }
}

impl Controls {
    /// Whether a request carrying `token` is let in.
    pub fn admits(&self, token: Option<&str>) -> bool {
        match &self.token {
            None => true,
            Some(required) => {
                token == Some(required.as_str())
                    || token.is_some_and(|t| self.issued_tokens.contains(t))
            }
        }
    }
}

/// Commands from the handle to the accept loop.
pub(crate) enum Command {
    /// Close (false) or reopen (true) the listener; acknowledged once done.
    SetReachable(bool, oneshot::Sender<()>),
    /// Stop serving: acknowledged once every connection task has ended and dropped its
    /// share of the state.
    Stop(oneshot::Sender<()>),
}

/// Serves `router` on `listener` until the command channel closes (the handle is dropped).
pub(crate) async fn run(
    shared: Arc<Shared>,
    router: Router,
    listener: TcpListener,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let addr = listener
        .local_addr()
        .expect("bound listener has an address");
    let mut listener = Some(listener);
    // Bumped to close every open connection (and the watch streams on them).
    let (epoch, _) = watch::channel(0u64);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return,
                Some(Command::SetReachable(reachable, done)) => {
                    listener = set_reachable(&shared, reachable, listener, addr, &epoch).await;
                    if !reachable {
                        // Acknowledge only once no connection can write another byte.
                        while connections.join_next().await.is_some() {}
                    }
                    let _ = done.send(());
                }
                Some(Command::Stop(done)) => {
                    connections.shutdown().await;
                    drop((router, shared));
                    let _ = done.send(());
                    return;
                }
            },
            accepted = accept(listener.as_ref()) => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, router.clone(), epoch.subscribe()));
                }
                Err(error) => tracing::debug!(%error, "fake API server accept failed"),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn set_reachable(
    shared: &Shared,
    reachable: bool,
    listener: Option<TcpListener>,
    addr: SocketAddr,
    epoch: &watch::Sender<u64>,
) -> Option<TcpListener> {
    shared.reachable.store(reachable, Ordering::SeqCst);
    if !reachable {
        drop(listener);
        epoch.send_modify(|e| *e += 1);
        return None;
    }
    if listener.is_some() {
        return listener;
    }
    let listener = TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("fake API server cannot bind {addr} again: {e}"));
    Some(listener)
}

async fn accept(
    listener: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Serves one HTTP/1.1 connection until it ends or the epoch changes (unreachable).
async fn serve_connection(
    stream: tokio::net::TcpStream,
    router: Router,
    mut epoch: watch::Receiver<u64>,
) {
    epoch.mark_unchanged();
    let service = TowerToHyperService::new(router);
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        biased;
        _ = epoch.changed() => {}
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%error, "fake API server connection failed");
            }
        }
    }
}
