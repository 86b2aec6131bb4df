//! What every connected proxy was sent and acknowledged, for `/debug/connections` and metrics.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use parking_lot::Mutex;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use serde::Serialize;

use crate::{cache::Encoded, node::ProxyInfo};

/// Per-type state of a connection as shown in debug views.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeStatus {
    /// Subscribed names (`*`: wildcard).
    pub subscribed: Vec<String>,
    /// Version last sent.
    pub sent_version: Option<String>,
    /// Version last ACKed.
    pub acked_version: Option<String>,
    /// Last NACK, with the proxy's error.
    pub last_nack: Option<String>,
    /// Where the proxy stands, as `istioctl proxy-status` says it: `SYNCED` (it ACKed the
    /// version last sent), `NOT SENT` (nothing sent yet), `STALE` (sent, not yet ACKed) or
    /// `NACKED` (it refused the version last sent; `last_nack` says why).
    pub state: &'static str,
}

impl Default for TypeStatus {
    fn default() -> Self {
        Self {
            subscribed: Vec::new(),
            sent_version: None,
            acked_version: None,
            last_nack: None,
            state: "NOT SENT",
        }
    }
}

impl TypeStatus {
    /// [`TypeStatus::state`] from the versions and the last NACK.
    fn current_state(&self) -> &'static str {
        match (&self.sent_version, &self.acked_version, &self.last_nack) {
            (None, _, _) => "NOT SENT",
            (Some(sent), Some(acked), _) if sent == acked => "SYNCED",
            (Some(_), _, Some(_)) => "NACKED",
            (Some(_), _, None) => "STALE",
        }
    }
}

/// One connected proxy.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatus {
    /// The proxy.
    pub proxy: ProxyInfo,
    /// `sotw` or `delta`.
    pub protocol: &'static str,
    /// Per type URL.
    pub types: BTreeMap<String, TypeStatus>,
    /// What the stream holds, per type (shared with the stream and the resource cache).
    #[serde(skip)]
    pub sent: Held,
}

/// The resources a stream holds, per type URL and name, as last sent: the cache's shared
/// entries, not copies. The stream updates it after each response; the debug views read it.
#[derive(Clone, Debug, Default)]
pub struct Held(
    /// Guards the record between the stream's task and a debug view reading it; held only
    /// to update or copy it, never across an await.
    Arc<Mutex<BTreeMap<String, ByName>>>,
);

/// Shared resources by name.
type ByName = BTreeMap<String, Arc<Encoded>>;

impl Held {
    /// The resources held of `type_url`, by name.
    pub fn resources(&self, type_url: &str) -> Vec<(String, Arc<Encoded>)> {
        let held = self.0.lock();
        let of_type = held.get(type_url).into_iter().flatten();
        of_type.map(|(n, e)| (n.clone(), e.clone())).collect()
    }

    /// Reads or updates the resources held of `type_url`.
    pub(crate) fn with<R>(&self, type_url: &str, f: impl FnOnce(&mut ByName) -> R) -> R {
        let mut held = self.0.lock();
        match held.get_mut(type_url) {
            Some(of_type) => f(of_type),
            None => f(held.entry(type_url.to_string()).or_default()),
        }
    }
}

struct Inner {
    /// Guards the table of connections; held only to update or copy it, never across an await.
    connections: Mutex<BTreeMap<u64, ConnectionStatus>>,
    nacks: AtomicU64,
    pushes: AtomicU64,
    push_latency: Histogram,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            connections: Mutex::default(),
            nacks: AtomicU64::default(),
            pushes: AtomicU64::default(),
            push_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
        }
    }
}

/// The table of connected proxies, shared by the server and the admin views.
#[derive(Clone, Default)]
pub struct Connections(Arc<Inner>);

impl Connections {
    pub(crate) fn connect(&self, id: u64, proxy: ProxyInfo, protocol: &'static str, sent: Held) {
        self.0.connections.lock().insert(
            id,
            ConnectionStatus {
                proxy,
                protocol,
                types: BTreeMap::new(),
                sent,
            },
        );
    }

    pub(crate) fn disconnect(&self, id: u64) {
        self.0.connections.lock().remove(&id);
    }

    pub(crate) fn update_type(&self, id: u64, type_url: &str, f: impl FnOnce(&mut TypeStatus)) {
        if let Some(c) = self.0.connections.lock().get_mut(&id) {
            let status = c.types.entry(type_url.to_string()).or_default();
            f(status);
            status.state = status.current_state();
        }
    }

    pub(crate) fn nack(&self) {
        self.0.nacks.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn pushed(&self, published: Option<std::time::Instant>) {
        self.0.pushes.fetch_add(1, Ordering::Relaxed);
        if let Some(published) = published {
            self.0
                .push_latency
                .observe(published.elapsed().as_secs_f64());
        }
    }

    /// Seconds from a snapshot's publication to a response for it being queued on a stream.
    pub fn push_latency(&self) -> Histogram {
        self.0.push_latency.clone()
    }

    /// Every connected proxy.
    pub fn list(&self) -> Vec<ConnectionStatus> {
        self.0.connections.lock().values().cloned().collect()
    }

    /// NACKs received since start.
    pub fn nacks(&self) -> u64 {
        self.0.nacks.load(Ordering::Relaxed)
    }

    /// Responses pushed because the ClusterSet changed, since start.
    pub fn pushes(&self) -> u64 {
        self.0.pushes.load(Ordering::Relaxed)
    }
}
