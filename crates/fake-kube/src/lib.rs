//! An in-process fake Kubernetes API server for tests, reachable through `kube::Client`.
//!
//! [`FakeApiServer::start`] serves HTTP/1.1 on `127.0.0.1:<ephemeral>`; tests talk to it with
//! a real [`kube::Client`] (so kube-runtime's watcher, server-side apply and leader election
//! run their real code paths) and manipulate its store directly, as if another client wrote.
//!
//! ```text
//!  kube::Client ──HTTP──▶ server (accept loop, per-connection tasks, reachability)
//!                              │
//!                              ▼
//!                          api (routing, auth, injected failures, verbs)
//!                              │                 │
//!                              ▼                 ▼
//!        apply (managedFields, SSA)      watch (events, bookmarks, 410)
//!                              │                 ▲
//!                              ▼                 │ broadcast of changes
//!                          store (objects, resourceVersion, history) ◀── test handle
//! ```
//!
//! What follows the real API server: list (selectors, `limit`/`continue`), watch (replay from
//! a resourceVersion, BOOKMARKs, `timeoutSeconds`, `ERROR` 410 Expired after [`compact`],
//! selector transitions as ADDED/DELETED), `PartialObjectMetadata` responses, create/update/
//! delete with resourceVersion preconditions and `Status` errors, server-side apply with
//! per-manager field ownership and conflicts, status subresources, finalizers, bearer tokens,
//! ServiceAccount tokens issued by TokenRequest (`serviceaccounts/token`).
//!
//! Simplified: a continued list reads the current state rather than a snapshot; field
//! selectors only know `metadata.name` and `metadata.namespace`; strategic merge patches of
//! built-in kinds are merged as JSON merge patches (lists replaced); server-side apply treats
//! lists atomically; namespaces need not exist; no discovery beyond `/version`; issued tokens
//! never expire; no authorization (any accepted token may do anything).
//!
//! [`compact`]: FakeApiServer::compact
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use bowline_fake_kube::FakeApiServer;
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::Api;
//!
//! let server = FakeApiServer::start().await;
//! server.apply_json(serde_json::json!({
//!     "apiVersion": "v1", "kind": "ConfigMap",
//!     "metadata": { "name": "settings", "namespace": "default" },
//!     "data": { "a": "1" },
//! }));
//! let api: Api<ConfigMap> = Api::default_namespaced(server.client());
//! let map = api.get("settings").await.unwrap();
//! assert_eq!(map.data.unwrap()["a"], "1");
//! # }
//! ```

mod api;
mod apply;
mod crd;
mod fields;
mod resources;
mod selector;
mod server;
mod status;
mod store;
mod time;
mod token;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

pub use resources::ResourceDef;
pub use server::RequestRecord;
pub use token::API_AUDIENCE;

use server::{Command, Injected, Shared};
use store::ObjectKey;

/// A running fake API server. Clones share it; it stops when the last clone is dropped.
#[derive(Clone)]
pub struct FakeApiServer {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// Commands to the accept loop; dropping it stops the server.
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApiServer")
            .field("addr", &self.inner.addr)
            .finish()
    }
}

impl FakeApiServer {
    /// Binds `127.0.0.1:0` and serves until the last handle is dropped.
    ///
    /// # Panics
    /// If no local port can be bound.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the fake API server");
        let addr = listener
            .local_addr()
            .expect("bound listener has an address");
        let shared = Arc::new(Shared::new());
        let router = axum::Router::new()
            .fallback(api::handle)
            .with_state(shared.clone());
        let (commands, receiver) = mpsc::unbounded_channel();
        tokio::spawn(server::run(shared.clone(), router, listener, receiver));
        Self {
            inner: Arc::new(Inner {
                shared,
                addr,
                commands,
            }),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// A client for this server, carrying the current token (see [`set_token`]), with default
    /// namespace `default`.
    ///
    /// Like every kube 5 client it retries 429, 503 and 504 answers (honouring
    /// `Retry-After`); build one from [`config`] with `default_retry = false` to see them.
    ///
    /// [`set_token`]: Self::set_token
    /// [`config`]: Self::config
    ///
    /// # Panics
    /// If kube cannot build a client (it always can for an `http` URL).
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).expect("kube builds a client for an http URL")
    }

    /// The client configuration [`client`](Self::client) uses, for tests that adjust it.
    pub fn config(&self) -> kube::Config {
        let token = self.inner.shared.controls.lock().token.clone();
        self.config_with_token(token.as_deref())
    }

    /// A client configuration for this server carrying `token` (or none).
    pub fn config_with_token(&self, token: Option<&str>) -> kube::Config {
        let url = self.url().parse().expect("the server URL is a valid URI");
        let mut config = kube::Config::new(url);
        config.auth_info.token = token.map(|t| secrecy::SecretString::from(t.to_owned()));
        config
    }

    /// A kubeconfig file naming this server and `token`, for code that reads kubeconfigs.
    pub fn kubeconfig_yaml(&self, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
             users:\n- name: fake\n  user:\n    token: {token}\ncontexts:\n- name: fake\n  context:\n    \
             cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\n",
            url = self.url(),
        )
    }

    /// Creates or replaces an object as another client would (unconditionally, status
    /// included), emitting ADDED or MODIFIED; a write that changes nothing emits nothing.
    /// Returns the stored object.
    ///
    /// # Panics
    /// If the object has no `apiVersion`, `kind` or `metadata.name`, or its kind is not served.
    pub fn apply_json(&self, object: Value) -> Value {
        self.store_json(object, false)
    }

    /// Like [`apply_json`](Self::apply_json), but a new object keeps the
    /// `metadata.creationTimestamp` it carries, as objects restored from a backup would: lets
    /// tests load fixtures whose creation times matter (the oldest ServiceExport wins an MCS
    /// conflict).
    pub fn restore_json(&self, object: Value) -> Value {
        self.store_json(object, true)
    }

    fn store_json(&self, object: Value, keep_created: bool) -> Value {
        let api_version = object["apiVersion"]
            .as_str()
            .expect("object has apiVersion");
        let kind = object["kind"].as_str().expect("object has kind");
        let name = object["metadata"]["name"]
            .as_str()
            .expect("object has metadata.name")
            .to_owned();
        let mut store = self.inner.shared.store.lock();
        let def = store
            .resource_by_name(api_version, kind)
            .unwrap_or_else(|| panic!("{kind} in {api_version} is not served"));
        let mut object = object.clone();
        let namespace = match object["metadata"]["namespace"].as_str() {
            _ if !def.namespaced => None,
            Some(ns) if !ns.is_empty() => Some(ns.to_owned()),
            _ => Some("default".to_owned()),
        };
        if let Some(ns) = &namespace {
            object["metadata"]["namespace"] = Value::from(ns.as_str());
        }
        let key = ObjectKey::new(&def, namespace.as_deref(), &name);
        match store.lookup(&key).cloned() {
            Some(old) => {
                let mut new = object;
                new["metadata"]["managedFields"] = old["metadata"]["managedFields"].clone();
                store.replace(key, old, new, fields::Scope::All)
            }
            None => {
                let created = object["metadata"]["creationTimestamp"]
                    .as_str()
                    .filter(|_| keep_created)
                    .map(String::from);
                store.insert_new(key, object, created.as_deref())
            }
        }
    }

    /// Deletes an object (kind or plural of `api_version`), honouring finalizers; returns
    /// whether it existed.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> bool {
        let mut store = self.inner.shared.store.lock();
        let Some(def) = store.resource_by_name(api_version, kind) else {
            return false;
        };
        let key = ObjectKey::new(&def, namespace.filter(|_| def.namespaced), name);
        store.delete(&def, key, None).is_ok()
    }

    /// The stored object (kind or plural of `api_version`), as served at that version.
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let store = self.inner.shared.store.lock();
        let def = store.resource_by_name(api_version, kind)?;
        let key = ObjectKey::new(&def, namespace.filter(|_| def.namespaced), name);
        let version = api_version.rsplit('/').next().unwrap_or(api_version);
        store
            .lookup(&key)
            .map(|o| watch::render(&def, version, o, false))
    }

    /// All stored objects of a kind (or plural) in all namespaces, in key order.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let store = self.inner.shared.store.lock();
        let Some(def) = store.resource_by_name(api_version, kind) else {
            return Vec::new();
        };
        let version = api_version.rsplit('/').next().unwrap_or(api_version);
        let page = store
            .list(&def, None, &|_| true, None, None)
            .expect("no continue token");
        page.items
            .iter()
            .map(|o| watch::render(&def, version, o, false))
            .collect()
    }

    /// Serves a custom resource (as creating its CRD would). Replaces an earlier definition.
    pub fn install_crd(&self, def: ResourceDef) {
        self.inner.shared.store.lock().install(def);
    }

    /// Installs the CRDs Bowline reads: the CustomResourceDefinitions `bowline install
    /// --crds-only` prints, each created through the API's own checks (as a real server would
    /// refuse them: see `crd`), so every test against this fake runs on CRDs a real server
    /// accepts. Panics naming the rule when one is refused.
    pub fn install_bowline_crds(&self) {
        let mut store = self.inner.shared.store.lock();
        let def = store
            .resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .cloned()
            .expect("CustomResourceDefinitions are built in");
        for crd in bowline_k8s_api::crds::definitions() {
            let mut object = serde_json::to_value(&crd).expect("a CRD serializes");
            object["apiVersion"] = serde_json::json!("apiextensions.k8s.io/v1");
            object["kind"] = serde_json::json!("CustomResourceDefinition");
            if let Err(e) = crd::admit(&mut store, &def, &object) {
                panic!("bowline's CRD would be refused: {}", e.message);
            }
            store
                .create(&def, None, object)
                .expect("a new CRD is created");
        }
    }

    /// Stops serving a resource, deletes its objects and ends its watches (as deleting the
    /// CRD would); requests then get 404.
    pub fn uninstall_crd(&self, group: &str, plural: &str) {
        self.inner.shared.store.lock().uninstall(group, plural);
    }

    /// Makes the server unreachable (`false`: the listener is closed, open connections and
    /// watch streams are cut, new connections are refused) or reachable again on the same
    /// port (`true`). Returns once done.
    ///
    /// # Panics
    /// If the port cannot be bound again.
    pub async fn set_reachable(&self, reachable: bool) {
        let (done, wait) = oneshot::channel();
        self.inner
            .commands
            .send(Command::SetReachable(reachable, done))
            .expect("the accept loop runs while a handle exists");
        wait.await.expect("the accept loop acknowledges");
    }

    /// Stops the server: its connections are closed and its port refuses new ones. When this
    /// is the last handle, what the server holds is freed before returning, on the caller's
    /// thread, instead of in connection tasks as they wind down later (which, for a store of a
    /// hundred thousand objects, takes seconds of CPU while whatever runs next competes with
    /// it). Other handles still reach the store, but [`set_reachable`](Self::set_reachable)
    /// panics on them.
    pub async fn stop(self) {
        let (done, wait) = oneshot::channel();
        if self.inner.commands.send(Command::Stop(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Whether the server is reachable.
    pub fn is_reachable(&self) -> bool {
        self.inner.shared.reachable.load(Ordering::SeqCst)
    }

    /// Requires `Authorization: Bearer <token>` on every request (`None`: no authentication).
    /// Requests without it get 401 Unauthorized. Tokens issued through the
    /// `serviceaccounts/token` subresource (TokenRequest) are accepted too.
    pub fn set_token(&self, token: Option<String>) {
        self.inner.shared.controls.lock().token = token;
    }

    /// Caps the validity of issued ServiceAccount tokens, as the API server's
    /// `--service-account-max-token-expiration` does (`None`: what is requested is granted).
    pub fn set_max_token_expiration(&self, max: Option<Duration>) {
        self.inner.shared.controls.lock().max_token_seconds =
            max.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    }

    /// A token for ServiceAccount `namespace/name` (which must exist), for `audiences` (none:
    /// the API server's, [`API_AUDIENCE`]) and `seconds`, as a TokenRequest would give it: the
    /// server accepts it and TokenReviews authenticate it until it expires.
    pub fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        audiences: &[&str],
        seconds: i64,
    ) -> Result<String, String> {
        let def = self
            .inner
            .shared
            .store
            .lock()
            .resource_by_name("v1", "serviceaccounts")
            .ok_or("no serviceaccounts resource")?;
        let request = serde_json::json!({
            "kind": "TokenRequest",
            "spec": {"audiences": audiences, "expirationSeconds": seconds},
        });
        let (_, response) = token::issue(&self.inner.shared, &def, namespace, name, &request)
            .map_err(|e| e.to_status().to_string())?;
        Ok(response["status"]["token"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Makes an issued token expired, for TokenReviews.
    pub fn expire_token(&self, token: &str) {
        if let Some(claims) = self
            .inner
            .shared
            .controls
            .lock()
            .token_claims
            .get_mut(token)
        {
            claims.expires = 0;
        }
    }

    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK (default 1 s).
    pub fn set_bookmark_interval(&self, interval: Duration) {
        self.inner.shared.controls.lock().bookmark_interval = interval;
    }

    /// Forgets all history, as etcd compaction does: watches from an older resourceVersion
    /// get an ERROR event with 410 Expired and continue tokens from before get 410.
    pub fn compact(&self) {
        self.inner.shared.store.lock().compact();
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.inner.shared.store.lock().resource_version()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.shared.controls.lock().requests.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.inner.shared.controls.lock().requests.clear();
    }

    /// Answers the next `times` requests with this verb (`get`, `list`, `watch`, `create`,
    /// `update`, `patch`, `delete`, or `*`) on this resource plural (or `*`) with a `Status`
    /// of `code` (429 also carries `Retry-After: 1`).
    pub fn fail_next(&self, verb: &str, resource: &str, code: u16, times: usize) {
        if times == 0 {
            return;
        }
        self.inner.shared.controls.lock().injected.push(Injected {
            verb: verb.to_owned(),
            resource: resource.to_owned(),
            code,
            remaining: times,
        });
    }
}
