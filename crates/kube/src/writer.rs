//! The Kubernetes writer: makes a member hold exactly its desired MCS objects with
//! server-side apply (field manager `bowline`).
//!
//! An object is applied only when the member's copy is not known to hold every field Bowline
//! sets. What is known of a copy is the desired object it was last found to hold (applied,
//! or compared after a listing), shared with the MCS outcome rather than a copy of the
//! member's object, so checking an unchanged object is a pointer comparison. Objects Bowline
//! owns carry the `bowline.io/managed-by` label. While it writes (leads), the writer watches
//! them by that label, one watch per kind from the resourceVersion of its last listing, so an
//! object edited or deleted behind Bowline's back is restored at the next check (`mcs.resync`,
//! 500 ms by default), as MCS controllers watch what they own. Every `sweep` they are also
//! listed, a page at a time: the safety net, and what finds garbage left by an earlier
//! instance, at start too.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use bowline_mcs::{
    Rendered, WriteChange, WriteKey, WriteKind, WriteSet,
    writer::{WriteError, WriteReport, Writer},
};
use bowline_model::{
    ObjectKind,
    export::{AUTO_EXPORT, MANAGED_BY_LABEL},
};
use futures::StreamExt;
use kube::{
    Api,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, WatchEvent, WatchParams},
};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::{
    credentials::{Credentials, Fingerprint},
    kinds::KindApi,
    listed::Listed,
};

/// Bowline's field manager.
pub const FIELD_MANAGER: &str = "bowline";

/// Timings of the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// How often Bowline's objects are listed again (tampering, garbage).
    pub sweep: Duration,
    /// Attempts of one request answered 409 Conflict or 429 Too Many Requests.
    pub attempts: u32,
    /// First wait between attempts, doubled after each.
    pub backoff: Duration,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            sweep: Duration::from_secs(60),
            attempts: 5,
            backoff: Duration::from_millis(200),
        }
    }
}

/// Objects listed per request of a sweep.
const PAGE: u32 = 250;

/// The kinds Bowline owns outright, listed and watched by its label.
const OWNED: [WriteKind; 3] = [
    WriteKind::ServiceImport,
    WriteKind::EndpointSlice,
    WriteKind::ServiceExport,
];

/// Seconds a watch request lasts before it is renewed from its last resourceVersion.
const WATCH_TIMEOUT: u32 = 290;

/// Longest wait before a failed watch is tried again.
const WATCH_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Objects the watches keep for the writer to look at; past that (writes paused long, for
/// a member not admitted) they give up the details and the next check lists the member.
const MAX_TOUCHED: usize = 100_000;

/// What the writer's watches saw since the writer last looked. They watch metadata only:
/// the resourceVersion tells Bowline's own writes from others' changes, so no object is
/// parsed or kept whole.
#[derive(Debug, Default)]
struct Touched {
    /// Each touched object's latest resourceVersion (`None`: deleted, or no longer labelled).
    objects: HashMap<WriteKey, Option<String>>,
    /// A watch ended for good (its resourceVersion expired): only a listing can tell.
    lost: bool,
}

/// The running watches of Bowline's objects in one member.
struct Watches {
    touched: Arc<Mutex<Touched>>,
    /// The credentials they were started with: rotated ones start them again.
    fingerprint: Fingerprint,
    stop: CancellationToken,
}

impl Drop for Watches {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What the writer knows of the member's copy of one object.
#[derive(Debug)]
enum Known {
    /// It holds every field of this desired object (applied, or compared after a listing).
    Holds(Arc<Rendered>),
    /// As listed (its JSON text), not compared with a desired object yet (read back at
    /// start).
    Listed(Arc<str>),
    /// It was found to differ from what is desired of it, or nothing is.
    Differs,
}

impl Known {
    /// What a listed object is known as, compared with `desired` when that is known.
    fn listed(live: Arc<str>, desired: Option<Option<&Arc<Rendered>>>) -> Known {
        match desired {
            None => Known::Listed(live),
            Some(Some(desired)) if unchanged(&parse(&live), &desired.to_value()) => {
                Known::Holds(desired.clone())
            }
            Some(_) => Known::Differs,
        }
    }

    /// True when the member's copy is known to hold `desired`.
    fn holds(&self, desired: &Arc<Rendered>) -> bool {
        match self {
            Known::Holds(held) => Arc::ptr_eq(held, desired) || held == desired,
            Known::Listed(live) => unchanged(&parse(live), &desired.to_value()),
            Known::Differs => false,
        }
    }
}

/// Writes a Kubernetes member's MCS objects. Called from a blocking task: every request is
/// run to completion on the runtime `handle`.
pub struct KubeWriter {
    credentials: Credentials,
    handle: tokio::runtime::Handle,
    options: WriteOptions,
    client: Option<(Fingerprint, kube::Client)>,
    /// What is known of the member's copy of each object Bowline owns or wrote status into.
    live: HashMap<WriteKey, Known>,
    /// The MCS version served, once known (`v1beta1`, else `v1alpha1`).
    mcs_version: Option<&'static str>,
    last_sweep: Option<Instant>,
    /// The resourceVersion each owned kind was last listed at, where its watch starts.
    listed_at: Vec<(WriteKind, String)>,
    watches: Option<Watches>,
    /// A copy was seen to differ from what Bowline wrote since the last reconcile.
    tampered: bool,
    /// The resourceVersions Bowline's last write of each object produced (the object, then
    /// its status): watch events carrying them are its own.
    written: HashMap<WriteKey, Vec<String>>,
    stop: CancellationToken,
}

impl KubeWriter {
    /// A writer reaching the member through `credentials`; its requests give up on `stop`.
    pub fn new(
        credentials: Credentials,
        handle: tokio::runtime::Handle,
        options: WriteOptions,
        stop: CancellationToken,
    ) -> Self {
        Self {
            credentials,
            handle,
            options,
            client: None,
            live: HashMap::new(),
            mcs_version: None,
            last_sweep: None,
            listed_at: Vec::new(),
            watches: None,
            tampered: false,
            written: HashMap::new(),
            stop,
        }
    }

    /// The client for the current credentials (rebuilt when they were rotated).
    fn client(&mut self) -> Result<kube::Client, WriteError> {
        let fingerprint = self.credentials.fingerprint();
        if let Some((seen, client)) = &self.client
            && *seen == fingerprint
        {
            return Ok(client.clone());
        }
        let client = self
            .handle
            .block_on(self.credentials.request_client())
            .map_err(|e| WriteError {
                action: "cannot connect to",
                path: self.credentials.describe(),
                source: e.into(),
            })?;
        self.client = Some((fingerprint, client.clone()));
        Ok(client)
    }

    fn resource(&self, kind: WriteKind) -> kube::core::ApiResource {
        let mcs = self.mcs_version.unwrap_or("v1beta1");
        match kind {
            WriteKind::EndpointSlice => KindApi::of(ObjectKind::EndpointSlice).resource("v1"),
            WriteKind::ServiceImport => KindApi::of(ObjectKind::ServiceImport).resource(mcs),
            WriteKind::ServiceExport | WriteKind::ServiceExportStatus => {
                KindApi::of(ObjectKind::ServiceExport).resource(mcs)
            }
            WriteKind::WorkloadEntry => KindApi::of(ObjectKind::WorkloadEntry).resource("v1"),
        }
    }

    fn api(&self, client: &kube::Client, kind: WriteKind, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), namespace, &self.resource(kind))
    }

    /// Lists Bowline's objects (and users' ServiceExports' status) into `live`, each compared
    /// with what `desired` holds for it when given; what was listed when not (a read-back).
    fn sweep(
        &mut self,
        desired: Option<&WriteSet>,
    ) -> Result<Vec<(WriteKey, Arc<str>)>, WriteError> {
        let client = self.client()?;
        if self.mcs_version.is_none() {
            self.mcs_version = Some(
                self.handle
                    .block_on(self.cancellable(mcs_version(&client)))
                    .map_err(|e| WriteError {
                        action: "cannot find the MCS API version of",
                        path: self.credentials.describe(),
                        source: e.into(),
                    })?,
            );
        }
        let mut listed = Vec::new();
        let mut live = HashMap::new();
        let mut listed_at = Vec::new();
        for kind in OWNED {
            let resource = self.resource(kind);
            let api: Api<Listed> = Api::all_with(client.clone(), &resource);
            let params = match kind {
                // Users' ServiceExports too: their status is Bowline's.
                WriteKind::ServiceExport => ListParams::default(),
                _ => ListParams::default().labels(MANAGED_BY_LABEL),
            };
            let mut params = params.limit(PAGE);
            loop {
                let page = self
                    .handle
                    .block_on(self.cancellable(api.list(&params)))
                    .map_err(|e| WriteError {
                        action: "cannot list",
                        path: resource.plural.clone(),
                        source: e.into(),
                    })?;
                if let Some(version) = page.metadata.resource_version.as_ref()
                    && !listed_at.iter().any(|(k, _)| *k == kind)
                {
                    listed_at.push((kind, version.clone()));
                }
                // Compared a page at a time: a member's objects are never all held parsed at
                // once, except for a read-back, which returns them.
                for (key, object) in page.items.into_iter().map(|o| listed_object(kind, o)) {
                    if desired.is_none() {
                        listed.push((key.clone(), object.clone()));
                    }
                    let known = Known::listed(object, desired.map(|d| d.get(&key)));
                    live.insert(key, known);
                }
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(token) => params = params.continue_token(&token),
                    None => break,
                }
            }
        }
        self.live = live;
        self.last_sweep = Some(Instant::now());
        self.listed_at = listed_at;
        // What the watches saw before this listing is in it.
        self.watches = None;
        Ok(listed)
    }

    /// True when the watches run, with the current credentials, and none was lost.
    fn watching(&self) -> bool {
        self.watches.as_ref().is_some_and(|w| {
            w.fingerprint == self.credentials.fingerprint() && !w.touched.lock().lost
        })
    }

    /// Starts one watch per owned kind from the resourceVersion of the last listing.
    fn start_watches(&mut self) -> Result<(), WriteError> {
        let client = self.client()?;
        let watches = Watches {
            touched: Arc::default(),
            fingerprint: self.credentials.fingerprint(),
            stop: self.stop.child_token(),
        };
        for (kind, version) in &self.listed_at {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &self.resource(*kind));
            self.handle.spawn(watch_owned(
                api,
                *kind,
                version.clone(),
                watches.touched.clone(),
                watches.stop.clone(),
            ));
        }
        debug!(member = %self.credentials.describe(), "watching Bowline's objects");
        self.watches = Some(watches);
        Ok(())
    }

    /// Takes what the watches saw into what is known of the member's copies, noting when one
    /// of them no longer holds what Bowline wrote (edited or deleted behind its back, or a
    /// stray labelled object appeared): the next reconcile is then needed.
    fn absorb_touched(&mut self) {
        let Some(watches) = &self.watches else {
            return;
        };
        let objects = std::mem::take(&mut watches.touched.lock().objects);
        let mut differs = false;
        for (key, version) in objects {
            match version {
                None => {
                    self.written.remove(&key);
                    differs |= self.live.remove(&key).is_some();
                }
                Some(version)
                    if self
                        .written
                        .get(&key)
                        .is_some_and(|ours| ours.contains(&version)) => {}
                // Someone else's change, or a labelled object Bowline did not write: checked
                // (rewritten, or deleted as garbage) by the next reconcile.
                Some(_) => {
                    self.live.insert(key, Known::Differs);
                    differs = true;
                }
            }
        }
        if differs {
            debug!(member = %self.credentials.describe(), "a copy of Bowline's objects changed behind its back");
        }
        self.tampered |= differs;
    }

    fn sweep_due(&self) -> bool {
        self.last_sweep
            .is_none_or(|at| at.elapsed() >= self.options.sweep)
    }

    /// Applies one object (and its status).
    fn apply(&mut self, key: &WriteKey, mut object: Value) -> Result<(), WriteError> {
        let client = self.client()?;
        let api = self.api(&client, key.kind, &key.namespace);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        object["apiVersion"] = json!(api_version_of(&api));
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove(SERVER_SET);
        }
        let status = object.as_object_mut().and_then(|o| o.remove("status"));
        let path = format!("{}/{}/{}", api.resource_url(), key.namespace, key.name);
        let error = |action: &'static str| {
            let path = path.clone();
            move |e: kube::Error| WriteError {
                action,
                path,
                source: e.into(),
            }
        };
        let whole = Patch::Apply(&object);
        let mut versions = Vec::new();
        if key.kind != WriteKind::ServiceExportStatus {
            let preconditioned = object["metadata"].get("resourceVersion").is_some();
            let applied = if preconditioned {
                // A conflict means the object changed since it was read: not retried.
                self.handle
                    .block_on(self.cancellable(api.patch(&key.name, &params, &whole)))
            } else {
                self.retry(|| api.patch(&key.name, &params, &whole))
            }
            .map_err(error("cannot apply"))?;
            versions.extend(applied.metadata.resource_version);
        }
        if let Some(status) = status {
            let patch = json!({
                "apiVersion": object["apiVersion"],
                "kind": object["kind"],
                "metadata": {"name": &*key.name, "namespace": &*key.namespace},
                "status": status,
            });
            let patch = Patch::Apply(&patch);
            match self.retry(|| api.patch_status(&key.name, &params, &patch)) {
                Ok(written) => versions.extend(written.metadata.resource_version),
                // A user's ServiceExport deleted meanwhile: nothing to report on.
                Err(kube::Error::Api(s))
                    if s.code == 404 && key.kind == WriteKind::ServiceExportStatus =>
                {
                    debug!(object = %path, "ServiceExport gone before its status was written");
                }
                Err(e) => return Err(error("cannot apply the status of")(e)),
            }
        }
        self.written.insert(key.clone(), versions);
        Ok(())
    }

    /// Deletes an object; false when it was already gone.
    fn delete(&mut self, key: &WriteKey) -> Result<bool, WriteError> {
        let client = self.client()?;
        let api = self.api(&client, key.kind, &key.namespace);
        let params = DeleteParams::default();
        self.written.remove(key);
        match self.retry(|| api.delete(&key.name, &params)) {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(WriteError {
                action: "cannot delete",
                path: format!("{}/{}/{}", api.resource_url(), key.namespace, key.name),
                source: e.into(),
            }),
        }
    }

    /// A request that gives up when Bowline stops, instead of holding shutdown for as long
    /// as an API server takes not to answer.
    async fn cancellable<T>(
        &self,
        request: impl Future<Output = kube::Result<T>>,
    ) -> kube::Result<T> {
        tokio::select! {
            result = request => result,
            _ = self.stop.cancelled() => Err(kube::Error::Service("Bowline is stopping".into())),
        }
    }

    /// Runs a request, again after a backoff while it is answered 409 or 429.
    fn retry<T, F: Future<Output = kube::Result<T>>>(
        &self,
        mut request: impl FnMut() -> F,
    ) -> kube::Result<T> {
        let mut wait = self.options.backoff;
        let mut attempt = 1;
        loop {
            match self.handle.block_on(self.cancellable(request())) {
                Err(kube::Error::Api(s))
                    if (s.code == 409 || s.code == 429) && attempt < self.options.attempts =>
                {
                    debug!(
                        code = s.code,
                        attempt, "retrying after {wait:?}: {}", s.message
                    );
                    std::thread::sleep(wait);
                    wait *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// A listed object's key (a user's ServiceExport is known by its status, the part that is
/// Bowline's) and its JSON text: listed objects are held as text (a tenth of their parsed
/// size) and parsed one at a time to be compared.
fn listed_object(kind: WriteKind, object: Listed) -> (WriteKey, Arc<str>) {
    (key_of(kind, object.metadata()), object.text().into())
}

/// A listed object's text, parsed.
fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_default()
}

/// The key of an object of `kind` (a user's ServiceExport is known by its status).
fn key_of(kind: WriteKind, meta: &kube::core::ObjectMeta) -> WriteKey {
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let name = meta.name.as_deref().unwrap_or_default();
    let auto_export = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == AUTO_EXPORT);
    let kind = match kind {
        WriteKind::ServiceExport if !auto_export => WriteKind::ServiceExportStatus,
        other => other,
    };
    WriteKey::new(kind, namespace, name)
}

/// How one watch request ended.
enum WatchEnd {
    /// Its timeout: renewed from the last resourceVersion seen.
    Renew,
    /// 410 Gone: the resourceVersion is too old to resume from.
    Expired,
    /// Any other failure: tried again after a backoff.
    Failed(String),
}

/// Records every change to Bowline's objects of `kind` from resourceVersion `version` on,
/// until `stop`; marks the watch lost when it can no longer resume.
async fn watch_owned(
    api: Api<DynamicObject>,
    kind: WriteKind,
    mut version: String,
    touched: Arc<Mutex<Touched>>,
    stop: CancellationToken,
) {
    let params = WatchParams::default()
        .labels(MANAGED_BY_LABEL)
        .timeout(WATCH_TIMEOUT);
    let mut backoff = Duration::from_millis(500);
    loop {
        let end = tokio::select! {
            _ = stop.cancelled() => return,
            end = follow(&api, &params, kind, &mut version, &touched) => end,
        };
        match end {
            WatchEnd::Renew => backoff = Duration::from_millis(500),
            WatchEnd::Expired => {
                debug!(kind = ?kind, "watch of Bowline's objects expired; they are listed again");
                touched.lock().lost = true;
                return;
            }
            WatchEnd::Failed(error) => {
                debug!(kind = ?kind, "watch of Bowline's objects failed, again in {backoff:?}: {error}");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(WATCH_MAX_BACKOFF);
            }
        }
    }
}

/// One watch request, its events recorded into `touched`.
async fn follow(
    api: &Api<DynamicObject>,
    params: &WatchParams,
    kind: WriteKind,
    version: &mut String,
    touched: &Mutex<Touched>,
) -> WatchEnd {
    let events = match api.watch_metadata(params, version).await {
        Ok(events) => events,
        Err(kube::Error::Api(s)) if s.code == 410 => return WatchEnd::Expired,
        Err(e) => return WatchEnd::Failed(e.to_string()),
    };
    let mut events = std::pin::pin!(events);
    let (started, mut seen) = (Instant::now(), false);
    while let Some(event) = events.next().await {
        let (object, deleted) = match event {
            Ok(WatchEvent::Added(o) | WatchEvent::Modified(o)) => (o, false),
            Ok(WatchEvent::Deleted(o)) => (o, true),
            Ok(WatchEvent::Bookmark(b)) => {
                *version = b.metadata.resource_version;
                continue;
            }
            Ok(WatchEvent::Error(s)) if s.code == 410 => return WatchEnd::Expired,
            Ok(WatchEvent::Error(s)) => return WatchEnd::Failed(s.message.clone()),
            Err(e) => return WatchEnd::Failed(e.to_string()),
        };
        if let Some(v) = &object.metadata.resource_version {
            version.clone_from(v);
        }
        seen = true;
        let key = key_of(kind, &object.metadata);
        let at = object.metadata.resource_version;
        let mut touched = touched.lock();
        if touched.objects.len() >= MAX_TOUCHED {
            touched.objects.clear();
            touched.lost = true;
            return WatchEnd::Expired;
        }
        touched.objects.insert(key, if deleted { None } else { at });
    }
    // Ended long before its timeout without an event: something cuts watches short.
    if !seen && started.elapsed() < Duration::from_secs(1) {
        return WatchEnd::Failed("the watch ended at once".into());
    }
    WatchEnd::Renew
}

fn api_version_of(api: &Api<DynamicObject>) -> String {
    // `resource_url` is `/apis/<group>/<version>/...` (or `/api/v1/...`).
    let url = api.resource_url();
    let parts: Vec<&str> = url.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api", version, ..] => (*version).to_string(),
        ["apis", group, version, ..] => format!("{group}/{version}"),
        _ => String::new(),
    }
}

/// The MCS version the member serves: `v1beta1` when it does, else `v1alpha1`.
async fn mcs_version(client: &kube::Client) -> kube::Result<&'static str> {
    let api = KindApi::of(ObjectKind::ServiceImport);
    for version in api.versions {
        let objects: Api<DynamicObject> = Api::all_with(client.clone(), &api.resource(version));
        match objects.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => return Ok(version),
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => return Err(e),
        }
    }
    Err(kube::Error::Api(Box::new(kube::core::Status::failure(
        "CRD serviceimports.multicluster.x-k8s.io is not installed; install it with `bowline install --crds-only | kubectl apply -f -`",
        "NotFound",
    ).with_code(404))))
}

/// The metadata field the API server sets itself, whatever a client sends.
const SERVER_SET: &str = "creationTimestamp";

/// True when applying `desired` would change nothing in `live`: every field is held, except
/// `apiVersion` (the version the member serves is used) and `metadata.creationTimestamp`
/// (the API server's).
fn unchanged(live: &Value, desired: &Value) -> bool {
    let Value::Object(fields) = desired else {
        return holds(live, desired);
    };
    fields
        .iter()
        .all(|(name, value)| match (name.as_str(), value) {
            ("apiVersion", _) => true,
            ("metadata", Value::Object(meta)) => meta
                .iter()
                .filter(|(k, _)| k.as_str() != SERVER_SET)
                .all(|(k, v)| live["metadata"].get(k).is_some_and(|l| holds(l, v)) || v.is_null()),
            (name, value) => live.get(name).is_some_and(|l| holds(l, value)) || value.is_null(),
        })
}

/// True when `live` holds every field of `desired` with the same value (what server-side
/// apply would leave unchanged). Lists must match element by element.
pub fn holds(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(live), Value::Object(desired)) => desired
            .iter()
            .all(|(k, v)| live.get(k).is_some_and(|l| holds(l, v)) || v.is_null()),
        (Value::Array(live), Value::Array(desired)) => {
            live.len() == desired.len() && live.iter().zip(desired).all(|(l, d)| holds(l, d))
        }
        (live, desired) => live == desired,
    }
}

impl Writer for KubeWriter {
    fn read(&mut self) -> Result<WriteSet, WriteError> {
        Ok(self
            .sweep(None)?
            .into_iter()
            .filter(|(key, _)| key.kind != WriteKind::EndpointSlice)
            .map(|(key, live)| (key, Arc::new(Rendered::new(&parse(&live)))))
            .collect::<BTreeMap<_, _>>())
    }

    fn reconcile(&mut self, desired: &WriteSet) -> Result<WriteReport, WriteError> {
        if self.sweep_due() || (self.watches.is_some() && !self.watching()) {
            self.sweep(Some(desired))?;
        } else {
            self.absorb_touched();
        }
        // Every copy is compared below.
        self.tampered = false;
        if !self.watching() {
            self.start_watches()?;
        }
        let mut report = WriteReport::default();
        let mut first_error = None;
        for (key, object) in desired {
            if let Some(copy) = self.live.get_mut(key)
                && copy.holds(object)
            {
                *copy = Known::Holds(object.clone());
                continue;
            }
            match self.apply(key, object.to_value()) {
                Ok(()) => {
                    self.live.insert(key.clone(), Known::Holds(object.clone()));
                    report.written += 1;
                }
                Err(e) => {
                    warn!("{e}");
                    first_error.get_or_insert(e);
                }
            }
        }
        let garbage: Vec<WriteKey> = self
            .live
            .keys()
            .filter(|k| !desired.contains_key(*k))
            .cloned()
            .collect();
        for key in garbage {
            // Users' ServiceExports are theirs: only their status was Bowline's.
            if key.kind != WriteKind::ServiceExportStatus {
                match self.delete(&key) {
                    // Already gone (a stale watch event made it look present): nothing done.
                    Ok(deleted) => report.deleted += usize::from(deleted),
                    Err(e) => {
                        warn!("{e}");
                        first_error.get_or_insert(e);
                        continue;
                    }
                }
            }
            self.live.remove(&key);
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// The watches tell what changed behind Bowline's back, and a sweep when they cannot.
    fn needs_check(&mut self) -> bool {
        self.absorb_touched();
        self.tampered || self.sweep_due() || !self.watching()
    }

    fn patch(&mut self, changes: &[WriteChange]) -> Result<WriteReport, WriteError> {
        self.absorb_touched();
        let mut report = WriteReport::default();
        let mut first_error = None;
        for (key, object) in changes {
            let done = match object {
                Some(object) if self.live.get(key).is_some_and(|c| c.holds(object)) => {
                    self.live.insert(key.clone(), Known::Holds(object.clone()));
                    continue;
                }
                Some(object) => self.apply(key, object.to_value()).map(|()| {
                    self.live.insert(key.clone(), Known::Holds(object.clone()));
                    report.written += 1;
                }),
                // Users' ServiceExports are theirs: only their status was Bowline's.
                None if key.kind == WriteKind::ServiceExportStatus => {
                    self.live.remove(key);
                    continue;
                }
                None => self.delete(key).map(|deleted| {
                    self.live.remove(key);
                    report.deleted += usize::from(deleted);
                }),
            };
            if let Err(e) = done {
                warn!("{e}");
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    fn get(&mut self, key: &WriteKey) -> Result<Option<Value>, WriteError> {
        let client = self.client()?;
        let api = self.api(&client, key.kind, &key.namespace);
        let found = self
            .retry(|| api.get_opt(&key.name))
            .map_err(|e| WriteError {
                action: "cannot read",
                path: format!("{}/{}/{}", api.resource_url(), key.namespace, key.name),
                source: e.into(),
            })?;
        Ok(found.map(|o| serde_json::to_value(o).unwrap_or_default()))
    }

    fn put(&mut self, key: &WriteKey, object: &std::sync::Arc<Value>) -> Result<bool, WriteError> {
        // Not kept in `live`: that is the reconciled set, whose strays are deleted.
        self.apply(key, (**object).clone())?;
        Ok(true)
    }

    fn remove(&mut self, key: &WriteKey, precondition: Option<&str>) -> Result<bool, WriteError> {
        match precondition {
            None => self.delete(key),
            Some(version) => {
                let client = self.client()?;
                let api = self.api(&client, key.kind, &key.namespace);
                let params = DeleteParams {
                    preconditions: Some(kube::api::Preconditions {
                        resource_version: Some(version.to_string()),
                        uid: None,
                    }),
                    ..DeleteParams::default()
                };
                // Not retried: a conflict means the object changed, and the caller decides
                // again from what it reads next.
                match self
                    .handle
                    .block_on(self.cancellable(api.delete(&key.name, &params)))
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
                    Err(e) => Err(WriteError {
                        action: "cannot delete",
                        path: format!("{}/{}/{}", api.resource_url(), key.namespace, key.name),
                        source: e.into(),
                    }),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_compares_only_the_fields_bowline_sets() {
        let live = json!({
            "metadata": {"name": "a", "uid": "1", "labels": {"x": "1", "y": "2"}},
            "spec": {"ports": [{"port": 80, "protocol": "TCP", "name": "http"}]},
        });
        assert!(holds(
            &live,
            &json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"ports": [{"port": 80}]}})
        ));
        assert!(!holds(&live, &json!({"metadata": {"labels": {"x": "2"}}})));
        assert!(!holds(&live, &json!({"spec": {"ports": []}})));
        assert!(!holds(&live, &json!({"spec": {"ips": ["1.2.3.4"]}})));
    }
}
