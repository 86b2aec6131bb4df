//! A Kubernetes member's objects: one watch per kind (kube-runtime's watcher), turned into the
//! same events as a manifest directory.
//!
//! Each kind runs in its own task. A full listing of a kind (the watcher's `Init` ..
//! `InitDone`) replaces what is known of it, so objects deleted while a watch was down are
//! deleted here too; single `Apply`/`Delete` events follow. The member's first event is one
//! `Reset` once every kind was listed (or found missing); later listings are diffed into
//! `Changes`. A watch error marks the member stale (`SourceError`); the kind is listed again
//! after a backoff, and once every kind is listed again the member is sent whole (`Reset`),
//! which also restores endpoints withdrawn after `staleEndpointTTL`.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use bowline_model::{
    Change, EventBody, MemberName, Object, ObjectKind, Rejection, SourceEvent,
    export::{MANAGED_BY_LABEL, NOT_MANAGED},
};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api,
    api::{DynamicObject, ListParams, TypeMeta},
    core::PartialObjectMeta,
    runtime::watcher,
};
use serde_json::Value;
use tokio::{sync::mpsc, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    credentials::Credentials,
    kinds::{KINDS, KindApi},
    listed::Listed,
};

/// Timings of a Kubernetes member's watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchOptions {
    /// How often a kind whose CRD is missing is looked for again.
    pub recheck: Duration,
    /// How often the credential files are checked for rotation.
    pub credential_check: Duration,
    /// First wait before a failed watch is listed again; doubled up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Wait after the API server refused the credentials (401) or the permissions (403)
    /// before asking again, unless the credential files change first.
    pub refused_retry: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            recheck: Duration::from_secs(60),
            credential_check: Duration::from_secs(5),
            min_backoff: Duration::from_millis(800),
            max_backoff: Duration::from_secs(30),
            refused_retry: Duration::from_secs(300),
        }
    }
}

/// A member read from a Kubernetes API server.
#[derive(Debug)]
pub struct KubeMember {
    /// The member.
    pub member: MemberName,
    /// How its API server is reached.
    pub credentials: Credentials,
    /// Timings.
    pub options: WatchOptions,
}

/// An object as read: the model object, or why it was refused.
type Entry = Result<Object, Rejection>;
/// An object's namespace (empty when cluster-scoped) and name.
type NsName = (String, String);

/// What a kind's task reports.
// Events are moved once from a kind's task to the member's; boxing would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum KindEvent {
    /// Every object of the kind, from a complete listing.
    Listed(ObjectKind, BTreeMap<NsName, Entry>),
    /// One object created or changed.
    Applied(ObjectKind, NsName, Entry),
    /// One object deleted.
    Deleted(ObjectKind, NsName),
    /// The kind's CRD is missing (with what to do), or is there again (`None`).
    Missing(ObjectKind, Option<String>),
    /// The kind cannot be read now.
    Failed(ObjectKind, String),
}

impl KubeMember {
    /// Watches the member until `shutdown`, sending its objects to `events`.
    pub async fn run(self, events: mpsc::Sender<SourceEvent>, shutdown: CancellationToken) {
        let mut state = State::new(self.member.clone());
        let send = |body: EventBody| {
            events.send(SourceEvent {
                member: self.member.clone(),
                body,
            })
        };
        loop {
            let fingerprint = self.credentials.fingerprint();
            let client = match self.credentials.client().await {
                Ok(client) => client,
                Err(message) => {
                    warn!("cannot connect: {message}");
                    if send(EventBody::SourceError(message)).await.is_err() {
                        return;
                    }
                    if !self.credentials_changed(&fingerprint, &shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            let watches = shutdown.child_token();
            let (tx, mut rx) = mpsc::channel(256);
            let mut kinds = JoinSet::new();
            for api in &KINDS {
                kinds.spawn(watch_kind(
                    client.clone(),
                    api,
                    tx.clone(),
                    self.options,
                    self.credentials.describe(),
                    watches.clone(),
                ));
            }
            drop(tx);
            let rotated = self.credentials_changed(&fingerprint, &shutdown);
            tokio::pin!(rotated);
            loop {
                tokio::select! {
                    event = rx.recv() => {
                        let Some(event) = event else { break };
                        for body in state.handle(event) {
                            if send(body).await.is_err() {
                                watches.cancel();
                                return;
                            }
                        }
                    }
                    changed = &mut rotated => {
                        watches.cancel();
                        if !changed {
                            return;
                        }
                        info!("credentials changed: reconnecting with the new ones");
                        break;
                    }
                }
            }
            kinds.shutdown().await;
        }
    }

    /// Waits until the credential files differ from `seen` (true) or shutdown (false).
    async fn credentials_changed(
        &self,
        seen: &crate::credentials::Fingerprint,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut tick = tokio::time::interval(self.options.credential_check);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tick.tick() => {
                    if self.credentials.fingerprint() != *seen {
                        return true;
                    }
                }
            }
        }
    }
}

/// What the member's kinds hold, and what has been told to the registry.
struct State {
    member: MemberName,
    kinds: BTreeMap<ObjectKind, BTreeMap<NsName, Entry>>,
    listed: BTreeSet<ObjectKind>,
    synced: bool,
    errors: BTreeMap<ObjectKind, String>,
    missing: BTreeMap<ObjectKind, String>,
}

impl State {
    fn new(member: MemberName) -> Self {
        Self {
            member,
            kinds: BTreeMap::new(),
            listed: BTreeSet::new(),
            synced: false,
            errors: BTreeMap::new(),
            missing: BTreeMap::new(),
        }
    }

    fn handle(&mut self, event: KindEvent) -> Vec<EventBody> {
        let mut out = Vec::new();
        let (kind, changes, rejected) = match event {
            KindEvent::Failed(kind, message) => {
                let changed = self.errors.get(&kind) != Some(&message);
                self.errors.insert(kind, message);
                if changed {
                    out.push(EventBody::SourceError(self.error_summary()));
                }
                return out;
            }
            KindEvent::Missing(kind, message) => {
                let before = self.missing.clone();
                match message {
                    Some(message) => {
                        self.missing.insert(kind, message);
                    }
                    None => {
                        self.missing.remove(&kind);
                    }
                }
                if self.missing != before {
                    out.push(EventBody::Missing(self.missing.clone()));
                }
                if !self.missing.contains_key(&kind) {
                    // Found again: its listing follows.
                    return out;
                }
                let (changes, rejected) = self.relisted(kind, BTreeMap::new());
                (kind, changes, rejected)
            }
            KindEvent::Listed(kind, entries) => {
                let (changes, rejected) = self.relisted(kind, entries);
                (kind, changes, rejected)
            }
            KindEvent::Applied(kind, name, entry) => {
                let objects = self.kinds.entry(kind).or_default();
                let old = objects.insert(name, entry.clone());
                let rejected = old.as_ref().is_some_and(Result::is_err) || entry.is_err();
                let changes = match (old, entry) {
                    (Some(Ok(old)), Ok(new)) if old == new => Vec::new(),
                    (Some(Ok(old)), Err(_)) => vec![Change::Delete(old.key())],
                    (_, Ok(new)) => vec![Change::Apply(new)],
                    (_, Err(_)) => Vec::new(),
                };
                (kind, changes, rejected)
            }
            KindEvent::Deleted(kind, name) => {
                let old = self.kinds.entry(kind).or_default().remove(&name);
                let rejected = old.as_ref().is_some_and(Result::is_err);
                let changes = match old {
                    Some(Ok(old)) => vec![Change::Delete(old.key())],
                    _ => Vec::new(),
                };
                (kind, changes, rejected)
            }
        };
        let recovered = self.errors.remove(&kind).is_some() && self.errors.is_empty();
        if !self.synced {
            if self.listed.len() == KINDS.len() {
                self.synced = true;
                out.push(self.reset());
            }
        } else if recovered {
            info!("every kind is listed again: the member is current");
            out.push(self.reset());
        } else if !changes.is_empty() || rejected {
            out.push(EventBody::Changes {
                changes,
                rejections: rejected.then(|| self.rejections()),
            });
            if !self.errors.is_empty() {
                // Changes clear the stale mark; other kinds still fail.
                out.push(EventBody::SourceError(self.error_summary()));
            }
        }
        out
    }

    /// Replaces a kind's objects with a complete listing; the changes and whether the
    /// rejections changed.
    fn relisted(
        &mut self,
        kind: ObjectKind,
        entries: BTreeMap<NsName, Entry>,
    ) -> (Vec<Change>, bool) {
        self.listed.insert(kind);
        let old = std::mem::replace(self.kinds.entry(kind).or_default(), entries);
        let new = &self.kinds[&kind];
        let mut changes = Vec::new();
        let mut rejected = false;
        for (name, entry) in &old {
            rejected |= entry.is_err();
            if let Ok(object) = entry
                && !matches!(new.get(name), Some(Ok(_)))
            {
                changes.push(Change::Delete(object.key()));
            }
        }
        for (name, entry) in new {
            match (old.get(name), entry) {
                (Some(Ok(old)), Ok(new)) if old == new => {}
                (_, Ok(new)) => changes.push(Change::Apply(new.clone())),
                (_, Err(_)) => rejected = true,
            }
        }
        (changes, rejected)
    }

    fn reset(&self) -> EventBody {
        EventBody::Reset {
            objects: self
                .kinds
                .values()
                .flat_map(|objects| objects.values().filter_map(|e| e.as_ref().ok().cloned()))
                .collect(),
            rejections: self.rejections(),
        }
    }

    fn rejections(&self) -> Vec<Rejection> {
        self.kinds
            .values()
            .flat_map(|objects| objects.values().filter_map(|e| e.as_ref().err()))
            .map(|rejection| Rejection {
                member: self.member.clone(),
                ..rejection.clone()
            })
            .collect()
    }

    fn error_summary(&self) -> String {
        self.errors
            .values()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Why a watch stopped, for choosing what to do next.
enum Stop {
    /// The stream ended or failed: list again after a backoff.
    Retry,
    /// The resource is not served (CRD removed): look for a version again.
    NotFound,
    /// Credentials or permissions refused: wait long, or for new credentials.
    Refused,
}

async fn watch_kind(
    client: kube::Client,
    api: &'static KindApi,
    events: mpsc::Sender<KindEvent>,
    options: WatchOptions,
    credentials: String,
    cancel: CancellationToken,
) {
    let kind = api.kind;
    let mut backoff = options.min_backoff;
    loop {
        let version = match find_version(&client, api).await {
            Ok(Some(version)) => {
                if events.send(KindEvent::Missing(kind, None)).await.is_err() {
                    return;
                }
                version
            }
            Ok(None) if api.optional => {
                // Another project's kind not installed here: it reads as empty.
                if events
                    .send(KindEvent::Listed(kind, BTreeMap::new()))
                    .await
                    .is_err()
                {
                    return;
                }
                if !sleep(options.recheck, &cancel).await {
                    return;
                }
                continue;
            }
            Ok(None) => {
                let message = missing_message(api);
                if events
                    .send(KindEvent::Missing(kind, Some(message)))
                    .await
                    .is_err()
                {
                    return;
                }
                if !sleep(options.recheck, &cancel).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                let (stop, message) = classify(api, &credentials, &e);
                if events.send(KindEvent::Failed(kind, message)).await.is_err() {
                    return;
                }
                let wait = match stop {
                    Stop::Refused => options.refused_retry,
                    _ => backoff,
                };
                backoff = (backoff * 2).min(options.max_backoff);
                if !sleep(wait, &cancel).await {
                    return;
                }
                continue;
            }
        };
        debug!(kind = %kind, version, "watching");
        let stream = watch_stream(&client, api, version);
        let stop = tokio::select! {
            _ = cancel.cancelled() => return,
            stop = forward(stream, api, &credentials, &events, &mut backoff, options) => stop,
        };
        let wait = match stop {
            None => return,
            Some(Stop::NotFound) => continue,
            Some(Stop::Refused) => options.refused_retry,
            Some(Stop::Retry) => {
                let wait = backoff;
                backoff = (backoff * 2).min(options.max_backoff);
                wait
            }
        };
        if !sleep(wait, &cancel).await {
            return;
        }
    }
}

/// Forwards one watcher's events until it fails; `None` when the receiver is gone.
async fn forward(
    mut stream: impl Stream<Item = watcher::Result<watcher::Event<Value>>> + Unpin,
    api: &'static KindApi,
    credentials: &str,
    events: &mpsc::Sender<KindEvent>,
    backoff: &mut Duration,
    options: WatchOptions,
) -> Option<Stop> {
    let kind = api.kind;
    let mut listing: Option<BTreeMap<NsName, Entry>> = None;
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(watcher::Event::Init) => {
                listing = Some(BTreeMap::new());
                continue;
            }
            Ok(watcher::Event::InitApply(value)) => {
                if let Some((name, Some(entry))) = read(value)
                    && let Some(listing) = listing.as_mut()
                {
                    listing.insert(name, entry);
                }
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                *backoff = options.min_backoff;
                KindEvent::Listed(kind, listing.take().unwrap_or_default())
            }
            Ok(watcher::Event::Apply(value)) => match read(value) {
                Some((name, Some(entry))) => KindEvent::Applied(kind, name, entry),
                // No longer read (now one of Bowline's own objects): as if deleted.
                Some((name, None)) => KindEvent::Deleted(kind, name),
                None => continue,
            },
            Ok(watcher::Event::Delete(value)) => match read(value) {
                Some((name, _)) => KindEvent::Deleted(kind, name),
                None => continue,
            },
            Err(e) => {
                let (stop, message) = classify_watch(api, credentials, &e);
                events.send(KindEvent::Failed(kind, message)).await.ok()?;
                return Some(stop);
            }
        };
        events.send(event).await.ok()?;
    }
    events
        .send(KindEvent::Failed(
            kind,
            format!("watch of {} ended", api.plural),
        ))
        .await
        .ok()?;
    Some(Stop::Retry)
}

/// The kind's watcher, yielding objects as JSON with their `apiVersion` and `kind` (list
/// items come without them).
fn watch_stream(
    client: &kube::Client,
    api: &'static KindApi,
    version: &'static str,
) -> std::pin::Pin<Box<dyn Stream<Item = watcher::Result<watcher::Event<Value>>> + Send>> {
    let resource = api.resource(version);
    let types = TypeMeta {
        api_version: resource.api_version.clone(),
        kind: resource.kind.clone(),
    };
    // Bowline's own objects are not read (see `read`): not even sent.
    let config = watcher::Config::default().labels(NOT_MANAGED);
    if api.metadata_only {
        let pods: Api<PartialObjectMeta<Pod>> = Api::all(client.clone());
        watcher(pods, config)
            .map(move |r| {
                r.map(|e| {
                    map_event(e, |o| {
                        serde_json::json!({
                            "apiVersion": types.api_version,
                            "kind": types.kind,
                            "metadata": o.metadata,
                        })
                    })
                })
            })
            .boxed()
    } else {
        // Read as text, each object parsed as it is read: a page is never held as JSON trees.
        let objects: Api<Listed> = Api::all_with(client.clone(), &resource);
        watcher(objects, config)
            .map(move |r| r.map(|e| map_event(e, |o| o.value(Some(&types)))))
            .boxed()
    }
}

fn map_event<K, V>(event: watcher::Event<K>, f: impl FnOnce(K) -> V) -> watcher::Event<V> {
    match event {
        watcher::Event::Apply(o) => watcher::Event::Apply(f(o)),
        watcher::Event::Delete(o) => watcher::Event::Delete(f(o)),
        watcher::Event::InitApply(o) => watcher::Event::InitApply(f(o)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// An object's name and how it reads: `None` for objects Bowline does not read (its own
/// writes, which a manifest member never reads back either; the watches leave them out, and
/// an object that becomes one is seen deleted).
fn read(value: Value) -> Option<(NsName, Option<Entry>)> {
    let meta = value.get("metadata")?;
    let field = |name: &str| {
        meta.get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let name = (field("namespace"), field("name"));
    if meta
        .get("labels")
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some()
    {
        return Some((name, None));
    }
    let entry = match bowline_k8s_api::decode(value) {
        Ok(Some(object)) => Ok(object),
        Ok(None) => return Some((name, None)),
        Err(e) => Err(Rejection {
            member: MemberName::new(""),
            origin: String::new(),
            object: e.key,
            reason: e.reason,
            message: e.message,
        }),
    };
    Some((name, Some(entry)))
}

/// The first of the kind's versions the API server serves; `None` when none is (its CRD is
/// not installed).
async fn find_version(
    client: &kube::Client,
    api: &'static KindApi,
) -> Result<Option<&'static str>, kube::Error> {
    if api.crd.is_none() {
        return Ok(Some(api.versions[0]));
    }
    for version in api.versions {
        let objects: Api<DynamicObject> = Api::all_with(client.clone(), &api.resource(version));
        match objects.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => return Ok(Some(version)),
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

fn missing_message(api: &KindApi) -> String {
    format!(
        "CRD {} is not installed (none of {} served): {}s are not read from this member; install it with `bowline install --crds-only | kubectl apply -f -`",
        api.crd.unwrap_or_default(),
        api.versions
            .iter()
            .map(|v| format!("{}/{v}", api.group))
            .collect::<Vec<_>>()
            .join(", "),
        api.kind,
    )
}

fn classify_watch(api: &KindApi, credentials: &str, e: &watcher::Error) -> (Stop, String) {
    match e {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => classify(api, credentials, e),
        watcher::Error::WatchError(status) => {
            classify(api, credentials, &kube::Error::Api(status.clone()))
        }
        watcher::Error::NoResourceVersion => (
            Stop::Retry,
            format!("{}: the API server sent no resourceVersion", api.plural),
        ),
    }
}

fn classify(api: &KindApi, credentials: &str, e: &kube::Error) -> (Stop, String) {
    match e {
        kube::Error::Api(status) if status.code == 401 => (
            Stop::Refused,
            format!(
                "the API server refused the credentials of {credentials} (401 {}): they may have expired; rotate them and Bowline uses the new ones without a restart",
                status.message
            ),
        ),
        kube::Error::Api(status) if status.code == 403 => (
            Stop::Refused,
            format!(
                "forbidden to list and watch {} (403 {}): grant the ClusterRole `bowline install` prints",
                api.plural, status.message
            ),
        ),
        kube::Error::Api(status) if status.code == 404 => (
            Stop::NotFound,
            format!("{} is no longer served", api.plural),
        ),
        e => (Stop::Retry, format!("{}: {e}", api.plural)),
    }
}

/// Sleeps unless cancelled first (false).
async fn sleep(duration: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(duration) => true,
    }
}
