//! The life of auto-registered WorkloadEntries (Istio's `pilot/pkg/autoregistration`, and its
//! health checks from `HealthInformation` reports), as a level-triggered state machine with the
//! time given by the caller.
//!
//! A [`Registrar`] knows the proxies connected to this Bowline instance; [`Registrar::reconcile`]
//! compares what they call for with the entries the members hold ([`World`]) and returns the
//! writes that close the gap:
//!
//! - a connected proxy whose group exists has its entry, controlled by this instance, with
//!   `connectedAt` of its newest connection and the `Healthy` condition it last reported; a
//!   group that appears later registers the proxies waiting for it;
//! - an entry whose proxy reconnected to another instance later than to this one is left to
//!   that instance (the newer `connectedAt` wins);
//! - an entry this instance controls but no longer has a connection for is marked
//!   `disconnectedAt`, and deleted once the grace period has passed without a reconnection;
//! - an entry whose controller is no longer running (a crash) is treated the same way by the
//!   instances that are: marked disconnected, then deleted unless its proxy comes back;
//! - an entry whose WorkloadGroup is gone is deleted (Kubernetes' garbage collector does the
//!   same through the owner reference; manifest members have none).

use std::collections::{BTreeMap, BTreeSet};

use bowline_model::{
    Object,
    objects::{WorkloadEntry, WorkloadGroup},
};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::registration::{
    self, CONNECTED_AT, CONTROLLER_ANNOTATION, DISCONNECTED_AT, GROUP_ANNOTATION, Proxy, Refusal,
};

/// Identifies one proxy connection (an ADS stream) of this instance.
pub type StreamId = u64;

/// Where an entry lives: member (configured name), namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryKey {
    /// Member name.
    pub member: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for EntryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}/{}", self.member, self.namespace, self.name)
    }
}

/// A health report of a proxy (`istio.v1.HealthInformation`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Healthy (no error detail) or not.
    pub healthy: bool,
    /// The error detail's message, when unhealthy.
    pub message: Option<String>,
    /// When it was received.
    pub at: Timestamp,
}

/// The objects of one member the registrar reads.
#[derive(Clone, Debug, Default)]
pub struct MemberObjects {
    /// Configured member name.
    pub member: String,
    /// Its cluster id, once admitted.
    pub cluster: Option<String>,
    /// Its WorkloadGroups.
    pub groups: Vec<WorkloadGroup>,
    /// Its WorkloadEntries.
    pub entries: Vec<WorkloadEntry>,
    /// Its Services' and ServiceEntries' workload selectors, in the namespaces of its groups.
    pub selectors: Vec<registration::Selector>,
}

/// Which other Bowline instances run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Peers {
    /// This is the only instance: another controller named on an entry is an earlier one,
    /// gone.
    #[default]
    Alone,
    /// Replicas run, except these (their heartbeat stopped).
    Stopped(BTreeSet<String>),
}

/// What the members hold now, in configuration order, and which Bowline instances run.
#[derive(Clone, Debug, Default)]
pub struct World {
    /// Every member.
    pub members: Vec<MemberObjects>,
    /// The other instances.
    pub peers: Peers,
}

impl World {
    /// The member and group `namespace/name`: in the member whose cluster id is `cluster` when
    /// it holds one, else in the first member that does.
    fn group(
        &self,
        namespace: &str,
        name: &str,
        cluster: Option<&str>,
    ) -> Option<(&MemberObjects, &WorkloadGroup)> {
        fn holding<'a>(
            m: &'a MemberObjects,
            namespace: &str,
            name: &str,
        ) -> Option<&'a WorkloadGroup> {
            m.groups
                .iter()
                .find(|g| *g.meta.namespace == *namespace && *g.meta.name == *name)
        }
        let preferred = cluster.and_then(|c| {
            self.members
                .iter()
                .find(|m| m.cluster.as_deref() == Some(c))
                .and_then(|m| Some((m, holding(m, namespace, name)?)))
        });
        preferred.or_else(|| {
            self.members
                .iter()
                .find_map(|m| Some((m, holding(m, namespace, name)?)))
        })
    }

    fn group_in(&self, member: &str, namespace: &str, name: &str) -> Option<&WorkloadGroup> {
        self.members
            .iter()
            .find(|m| m.member == member)?
            .groups
            .iter()
            .find(|g| *g.meta.namespace == *namespace && *g.meta.name == *name)
    }

    /// Entries some Bowline (or Istio) instance controls.
    fn controlled(&self) -> BTreeMap<EntryKey, &WorkloadEntry> {
        self.members
            .iter()
            .flat_map(|m| {
                m.entries
                    .iter()
                    .filter(|e| e.meta.annotations.contains_key(CONTROLLER_ANNOTATION))
                    .map(|e| {
                        (
                            EntryKey {
                                member: m.member.clone(),
                                namespace: e.meta.namespace.to_string(),
                                name: e.meta.name.to_string(),
                            },
                            e,
                        )
                    })
            })
            .collect()
    }
}

/// The connection annotations of an entry as the registrar saw it when it decided to mark or
/// delete it. The write is due only if the member still holds them: another instance may
/// have taken the entry over since (its write not yet read back here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// `istio.io/workloadController`.
    pub controller: Option<String>,
    /// `istio.io/connectedAt`.
    pub connected_at: Option<String>,
    /// `istio.io/disconnectedAt`.
    pub disconnected_at: Option<String>,
}

impl Observed {
    /// What `annotations` say.
    pub fn of(annotations: &bowline_model::Labels) -> Self {
        let get = |k: &str| annotations.get(k).cloned();
        Self {
            controller: get(CONTROLLER_ANNOTATION),
            connected_at: get(CONNECTED_AT),
            disconnected_at: get(DISCONNECTED_AT),
        }
    }
}

/// Why the registrar asks for a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A connected proxy's entry did not exist.
    Registered,
    /// A connected proxy's entry differs (a reconnect, a takeover, health, the group changed).
    Connected,
    /// This instance's proxy disconnected.
    Disconnected,
    /// The entry's controller stopped running.
    ControllerGone,
    /// Disconnected for longer than the grace period.
    GraceExpired,
    /// Its WorkloadGroup is gone.
    GroupGone,
}

impl Reason {
    /// A short name, for metric labels.
    pub fn code(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
            Self::ControllerGone => "controller-gone",
            Self::GraceExpired => "grace-expired",
            Self::GroupGone => "group-gone",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Registered => "registered",
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
            Self::ControllerGone => "its controller is gone",
            Self::GraceExpired => "disconnected for longer than the grace period",
            Self::GroupGone => "its WorkloadGroup is gone",
        })
    }
}

/// A write the registrar asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Make the member hold this entry (status included).
    Apply {
        /// Where.
        key: EntryKey,
        /// The whole object.
        entry: Value,
        /// Why, for the log.
        reason: Reason,
        /// For a write not asked for by a connection of this instance: what the entry must
        /// still hold.
        observed: Option<Observed>,
    },
    /// Delete the entry, if it still holds what was observed.
    Delete {
        /// Which.
        key: EntryKey,
        /// Why, for the log.
        reason: Reason,
        /// What the entry must still hold.
        observed: Observed,
    },
}

#[derive(Clone, Debug)]
struct Connection {
    proxy: Proxy,
    /// `CLUSTER_ID`: the member the proxy says it belongs to.
    cluster: Option<String>,
    connected_at: Timestamp,
    report: Option<Report>,
}

/// The auto-registration state of one Bowline instance.
#[derive(Clone, Debug)]
pub struct Registrar {
    instance: String,
    grace: SignedDuration,
    started: Timestamp,
    connections: BTreeMap<StreamId, Connection>,
    /// Entries (namespace, name) whose proxy connected to this run and left: not waited for
    /// in the settling period after the start.
    departed: BTreeSet<(String, String)>,
}

/// RFC 3339 with nanoseconds, as Istio writes its annotations.
pub fn stamp(at: Timestamp) -> String {
    at.to_string()
}

fn annotation_time(entry: &WorkloadEntry, key: &str) -> Option<Timestamp> {
    entry.meta.annotations.get(key)?.parse().ok()
}

impl Registrar {
    /// The registrar of instance `instance` (written as `istio.io/workloadController`),
    /// started at `started`, deleting disconnected entries after `grace`. For one grace
    /// period after the start, entries without a connection are left alone (the proxies of
    /// an earlier run reconnect in that time), except those whose proxy connected to this run
    /// and left.
    pub fn new(
        instance: impl Into<String>,
        grace: std::time::Duration,
        started: Timestamp,
    ) -> Self {
        Self {
            instance: instance.into(),
            grace: SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX),
            started,
            connections: BTreeMap::new(),
            departed: BTreeSet::new(),
        }
    }

    /// This instance's name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// A proxy with `AUTO_REGISTER_GROUP` connected on `stream` at `at`. Refused (and not
    /// remembered) when it has no address.
    pub fn connect(
        &mut self,
        stream: StreamId,
        proxy: Proxy,
        cluster: Option<String>,
        at: Timestamp,
    ) -> Result<(), Refusal> {
        if proxy.instance_ips.is_empty() {
            return Err(Refusal::NoAddress { group: proxy.group });
        }
        self.connections.insert(
            stream,
            Connection {
                proxy,
                cluster,
                connected_at: at,
                report: None,
            },
        );
        Ok(())
    }

    /// The stream ended.
    pub fn disconnect(&mut self, stream: StreamId) {
        if let Some(connection) = self.connections.remove(&stream) {
            let proxy = &connection.proxy;
            if let Some(&address) = proxy.instance_ips.first() {
                let name =
                    registration::entry_name(&proxy.group, address, proxy.network.as_deref());
                self.departed.insert((proxy.namespace.clone(), name));
            }
        }
    }

    /// The proxy on `stream` reported its health; false when the stream is not registering.
    pub fn report(&mut self, stream: StreamId, report: Report) -> bool {
        match self.connections.get_mut(&stream) {
            Some(connection) => {
                connection.report = Some(report);
                true
            }
            None => false,
        }
    }

    /// Registering connections now.
    pub fn connected(&self) -> usize {
        self.connections.len()
    }

    /// The registering connections whose group exists but whose entry cannot be built (a
    /// label that would select another service, for a group that appeared after its proxy
    /// connected): the stream, the proxy's group and namespace, and why. They are not written.
    pub fn refusals(&self, world: &World) -> BTreeMap<StreamId, String> {
        let mut out = BTreeMap::new();
        for (stream, connection) in &self.connections {
            let proxy = &connection.proxy;
            let Some((member, group)) = world.group(
                &proxy.namespace,
                &proxy.group,
                connection.cluster.as_deref(),
            ) else {
                continue;
            };
            if let Err(refusal) = registration::entry(
                group,
                proxy,
                &member.selectors,
                &self.instance,
                &stamp(connection.connected_at),
            ) {
                out.insert(
                    *stream,
                    format!(
                        "the VM of WorkloadGroup {}/{} is not registered: {refusal}",
                        proxy.namespace, proxy.group
                    ),
                );
            }
        }
        out
    }

    /// The writes that make the members agree with the connections at `now`.
    pub fn reconcile(&self, world: &World, now: Timestamp) -> Vec<Action> {
        let entries = world.controlled();
        let mut actions = Vec::new();

        // The newest connection of each entry whose group exists.
        let mut wanted: BTreeMap<EntryKey, (&Connection, Value)> = BTreeMap::new();
        for connection in self.connections.values() {
            let proxy = &connection.proxy;
            let Some((member, group)) = world.group(
                &proxy.namespace,
                &proxy.group,
                connection.cluster.as_deref(),
            ) else {
                continue; // registered late, when the group appears
            };
            let Ok(entry) = registration::entry(
                group,
                proxy,
                &member.selectors,
                &self.instance,
                &stamp(connection.connected_at),
            ) else {
                continue;
            };
            let key = EntryKey {
                member: member.member.clone(),
                namespace: proxy.namespace.clone(),
                name: entry["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            };
            if wanted
                .get(&key)
                .is_none_or(|(held, _)| held.connected_at < connection.connected_at)
            {
                wanted.insert(key, (connection, entry));
            }
        }

        for (key, (connection, mut desired)) in wanted.iter().map(|(k, v)| (k, v.clone())) {
            let current = entries.get(key).copied();
            if let Some(current) = current {
                let controller = current.meta.annotations.get(CONTROLLER_ANNOTATION);
                // Istio also skips a connection older than the entry's `disconnectedAt`; a
                // live stream here is better evidence than another instance's mark (which a
                // partition from the heartbeats may have caused), so it is not skipped.
                let newer_elsewhere = controller.is_some_and(|c| *c != self.instance)
                    && annotation_time(current, CONNECTED_AT)
                        .is_some_and(|t| t > connection.connected_at);
                if newer_elsewhere {
                    continue;
                }
            }
            match (&connection.report, current.and_then(|c| c.healthy)) {
                (Some(report), _) => {
                    desired["status"] = status(report.healthy, report.message.as_deref(), report.at)
                }
                // A reconnect keeps what the same VM reported before, until it reports again.
                (None, Some(healthy)) => desired["status"] = status(healthy, None, now),
                (None, None) => {}
            }
            if current.is_some_and(|c| same(c, &desired)) {
                continue;
            }
            actions.push(Action::Apply {
                key: key.clone(),
                entry: desired,
                reason: if current.is_some() {
                    Reason::Connected
                } else {
                    Reason::Registered
                },
                observed: None,
            });
        }

        for (key, entry) in &entries {
            if wanted.contains_key(key) {
                continue;
            }
            let annotations = &entry.meta.annotations;
            let observed = Observed::of(annotations);
            let controller = annotations
                .get(CONTROLLER_ANNOTATION)
                .map(String::as_str)
                .unwrap_or_default();
            let mine = controller == self.instance;
            let running = match &world.peers {
                Peers::Alone => false,
                Peers::Stopped(stopped) => !stopped.contains(controller),
            };
            if !mine && running {
                continue; // its controller runs: it decides
            }
            let group = annotations.get(GROUP_ANNOTATION);
            let owner = match group {
                Some(group) => match world.group_in(&key.member, &key.namespace, group) {
                    Some(owner) => Some(owner),
                    None => {
                        actions.push(Action::Delete {
                            key: key.clone(),
                            reason: Reason::GroupGone,
                            observed,
                        });
                        continue;
                    }
                },
                None => None,
            };
            let settling = now.duration_since(self.started) < self.grace
                && !self
                    .departed
                    .contains(&(key.namespace.clone(), key.name.clone()));
            match annotation_time(entry, DISCONNECTED_AT) {
                None if settling => {}
                None => actions.push(Action::Apply {
                    key: key.clone(),
                    entry: disconnected(entry, owner, &self.instance, now),
                    reason: if mine {
                        Reason::Disconnected
                    } else {
                        Reason::ControllerGone
                    },
                    observed: Some(observed),
                }),
                Some(at) if now.duration_since(at) >= self.grace => {
                    if owner.is_some() {
                        actions.push(Action::Delete {
                            key: key.clone(),
                            reason: Reason::GraceExpired,
                            observed,
                        });
                    } else if entry.healthy.is_some() {
                        // A health-checked entry written by hand stays, without its health.
                        let mut object = object_of(entry, None);
                        object.as_object_mut().map(|o| o.remove("status"));
                        actions.push(Action::Apply {
                            key: key.clone(),
                            entry: object,
                            reason: Reason::GraceExpired,
                            observed: Some(observed),
                        });
                    }
                }
                Some(_) => {}
            }
        }
        actions
    }
}

/// The `status` holding one `Healthy` condition.
fn status(healthy: bool, message: Option<&str>, at: Timestamp) -> Value {
    let mut condition = json!({
        "type": "Healthy",
        "status": if healthy { "True" } else { "False" },
        "lastProbeTime": stamp(at),
        "lastTransitionTime": stamp(at),
    });
    if let Some(message) = message.filter(|m| !healthy && !m.is_empty()) {
        condition["message"] = json!(message);
    }
    json!({ "conditions": [condition] })
}

/// Whether `current` already holds what `desired` sets (times of conditions aside).
fn same(current: &WorkloadEntry, desired: &Value) -> bool {
    let Ok(Some(Object::WorkloadEntry(desired))) = bowline_k8s_api::decode(desired.clone()) else {
        return false;
    };
    current.meta.labels == desired.meta.labels
        && current.meta.annotations == desired.meta.annotations
        && current.spec == desired.spec
        && current.healthy == desired.healthy
}

/// The object of a WorkloadEntry as read, owned by `owner` when given.
fn object_of(entry: &WorkloadEntry, owner: Option<&WorkloadGroup>) -> Value {
    let spec = &entry.spec;
    let mut body = json!({"address": spec.address});
    let optional = [
        ("network", &spec.network),
        ("locality", &spec.locality),
        ("serviceAccount", &spec.service_account),
    ];
    for (field, value) in optional {
        if !value.is_empty() {
            body[field] = json!(value);
        }
    }
    if !spec.labels.is_empty() {
        body["labels"] = json!(spec.labels);
    }
    if !spec.ports.is_empty() {
        body["ports"] = json!(spec.ports);
    }
    if spec.weight > 0 {
        body["weight"] = json!(spec.weight);
    }
    let mut metadata = json!({
        "name": &*entry.meta.name,
        "namespace": &*entry.meta.namespace,
    });
    if !entry.meta.labels.is_empty() {
        metadata["labels"] = json!(entry.meta.labels);
    }
    if !entry.meta.annotations.is_empty() {
        metadata["annotations"] = json!(entry.meta.annotations);
    }
    if let Some(group) = owner {
        metadata["ownerReferences"] = json!([registration::owner(group)]);
    }
    let mut object = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadEntry",
        "metadata": metadata,
        "spec": body,
    });
    if let Some(healthy) = entry.healthy {
        let at = annotation_time(entry, CONNECTED_AT)
            .or_else(|| annotation_time(entry, DISCONNECTED_AT))
            .unwrap_or(Timestamp::UNIX_EPOCH);
        object["status"] = status(healthy, None, at);
    }
    object
}

/// `entry` marked disconnected at `now` by `instance`.
fn disconnected(
    entry: &WorkloadEntry,
    owner: Option<&WorkloadGroup>,
    instance: &str,
    now: Timestamp,
) -> Value {
    let mut object = object_of(entry, owner);
    let annotations = &mut object["metadata"]["annotations"];
    if let Some(map) = annotations.as_object_mut() {
        map.remove(CONNECTED_AT);
        map.insert(CONTROLLER_ANNOTATION.into(), json!(instance));
        map.insert(DISCONNECTED_AT.into(), json!(stamp(now)));
    }
    object
}
