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

use envoy_types::pb::google::protobuf::Any;

use crate::node::ProxyInfo;

/// Per-type state of a connection as shown in debug views.
#[derive(Clone, Debug, Default, Serialize)]
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
    /// Per type URL, the resources of the last response (shared with the resource cache).
    #[serde(skip)]
    pub sent: BTreeMap<String, Vec<(String, Any)>>,
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
    pub(crate) fn connect(&self, id: u64, proxy: ProxyInfo, protocol: &'static str) {
        self.0.connections.lock().insert(
            id,
            ConnectionStatus {
                proxy,
                protocol,
                types: BTreeMap::new(),
                sent: BTreeMap::new(),
            },
        );
    }

    pub(crate) fn disconnect(&self, id: u64) {
        self.0.connections.lock().remove(&id);
    }

    pub(crate) fn update_type(&self, id: u64, type_url: &str, f: impl FnOnce(&mut TypeStatus)) {
        if let Some(c) = self.0.connections.lock().get_mut(&id) {
            f(c.types.entry(type_url.to_string()).or_default());
        }
    }

    /// Records what a stream now holds of a type after a response: every subscribed resource.
    pub(crate) fn record_sent(&self, id: u64, type_url: &str, resources: Vec<(String, Any)>) {
        if let Some(c) = self.0.connections.lock().get_mut(&id) {
            c.sent.insert(type_url.to_string(), resources);
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
