//! The object store: objects as JSON, one global resourceVersion counter, a bounded history
//! of changes for watches, and the write rules (preconditions, generation, finalizers).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::fields::Scope;
use crate::resources::{ResourceDef, built_ins};
use crate::status::ApiError;
use crate::time::now_rfc3339;

/// How many changes watches can resume from before the oldest is forgotten.
const HISTORY: usize = 10_000;

/// Where an object is stored: `(group, plural, namespace, name)`, ordered like etcd keys.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ObjectKey {
    pub group: String,
    pub plural: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(def: &ResourceDef, namespace: Option<&str>, name: &str) -> Self {
        Self {
            group: def.group.clone(),
            plural: def.plural.clone(),
            namespace: namespace.unwrap_or_default().to_owned(),
            name: name.to_owned(),
        }
    }
}

/// The type of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One committed write.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    pub rv: u64,
    pub key: ObjectKey,
    pub change: ChangeType,
    /// The new state; for deletions the last state with the deletion's resourceVersion.
    pub object: Value,
    /// The state before, so selector watches can turn "stopped matching" into DELETED.
    pub previous: Option<Value>,
}

/// What watches are told.
#[derive(Clone, Debug)]
pub(crate) enum Notice {
    /// An object changed.
    Change(Arc<Change>),
    /// A resource was uninstalled: its watches end.
    Uninstalled { group: String, plural: String },
}

/// The starting point of a watch.
pub(crate) enum WatchStart {
    /// Events to send before live ones (synthetic ADDED or replayed history).
    Events(Vec<Arc<Change>>),
    /// The requested resourceVersion is older than the retained history.
    Expired(String),
}

/// A page of a list.
pub(crate) struct Page {
    pub items: Vec<Value>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
}

/// All stored state, behind the server's mutex.
pub(crate) struct Store {
    resources: BTreeMap<(String, String), ResourceDef>,
    objects: BTreeMap<ObjectKey, Value>,
    rv: u64,
    history: VecDeque<Arc<Change>>,
    /// A watch or continue token from resourceVersion `r` is served iff `r >= oldest`.
    oldest: u64,
    names: u64,
    notices: broadcast::Sender<Notice>,
}

impl Store {
    pub fn new() -> Self {
        let resources = built_ins()
            .into_iter()
            .map(|d| ((d.group.clone(), d.plural.clone()), d))
            .collect();
        Self {
            resources,
            objects: BTreeMap::new(),
            rv: 1,
            history: VecDeque::new(),
            oldest: 1,
            names: 0,
            notices: broadcast::channel(4096).0,
        }
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// The served resource at `group/version/plural`.
    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceDef> {
        let def = self.resources.get(&(group.to_owned(), plural.to_owned()))?;
        def.serves(version).then_some(def)
    }

    /// Whether any resource serves `group/version` (to tell unknown groups from unknown kinds).
    pub fn serves_group_version(&self, group: &str, version: &str) -> bool {
        self.resources
            .values()
            .any(|d| d.group == group && d.serves(version))
    }

    /// The resource of `apiVersion` named by kind or plural.
    pub fn resource_by_name(&self, api_version: &str, kind_or_plural: &str) -> Option<ResourceDef> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.resources
            .values()
            .find(|d| d.group == group && (d.kind == kind_or_plural || d.plural == kind_or_plural))
            .filter(|d| d.serves(version))
            .cloned()
    }

    pub fn install(&mut self, def: ResourceDef) {
        self.resources
            .insert((def.group.clone(), def.plural.clone()), def);
    }

    /// Removes a resource and all its objects (as deleting a CRD does) and ends its watches.
    pub fn uninstall(&mut self, group: &str, plural: &str) {
        self.resources
            .remove(&(group.to_owned(), plural.to_owned()));
        self.objects
            .retain(|k, _| !(k.group == group && k.plural == plural));
        let _ = self.notices.send(Notice::Uninstalled {
            group: group.to_owned(),
            plural: plural.to_owned(),
        });
    }

    /// Forgets all history: watches and continue tokens from older versions get 410.
    pub fn compact(&mut self) {
        self.history.clear();
        self.oldest = self.rv;
    }

    pub fn get(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.objects
            .get(&ObjectKey::new(def, namespace, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(def, name))
    }

    /// Objects of `def` (in `namespace` if given) matching `keep`, in key order, paged.
    pub fn list(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        keep: &dyn Fn(&Value) -> bool,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<Page, ApiError> {
        let (resource_version, after) = match continue_token {
            Some(token) => {
                let (rv, key) = decode_continue(token)?;
                if rv < self.oldest {
                    return Err(ApiError::expired(
                        "The provided continue parameter is too old to display a consistent list \
                         result. You can start a new list without the continue parameter.",
                    ));
                }
                (rv, Some(key))
            }
            None => (self.rv, None),
        };
        let mut matching = self
            .objects
            .iter()
            .filter(|(k, _)| k.group == def.group && k.plural == def.plural)
            .filter(|(k, _)| namespace.is_none_or(|ns| k.namespace == ns))
            .filter(|(k, _)| {
                after
                    .as_ref()
                    .is_none_or(|a| (&k.namespace, &k.name) > (&a.0, &a.1))
            })
            .filter(|(_, v)| keep(v));
        let limit = limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut last = None;
        for (key, object) in matching.by_ref().take(limit) {
            items.push(object.clone());
            last = Some(key);
        }
        let more = matching.next().is_some();
        let continue_token = match last {
            Some(key) if more => Some(encode_continue(resource_version, &key.namespace, &key.name)),
            _ => None,
        };
        Ok(Page {
            items,
            resource_version,
            continue_token,
        })
    }

    /// Where a watch from `resource_version` starts, and a receiver for later changes.
    ///
    /// `None`, `""` and `"0"` start at the current state with synthetic ADDED events.
    pub fn watch(
        &self,
        def: &ResourceDef,
        resource_version: Option<&str>,
    ) -> Result<(WatchStart, broadcast::Receiver<Notice>), ApiError> {
        let receiver = self.notices.subscribe();
        let from = match resource_version.filter(|rv| !rv.is_empty() && *rv != "0") {
            None => {
                let events = self
                    .objects
                    .iter()
                    .filter(|(k, _)| k.group == def.group && k.plural == def.plural)
                    .map(|(key, object)| {
                        Arc::new(Change {
                            rv: parse_rv(object).unwrap_or(self.rv),
                            key: key.clone(),
                            change: ChangeType::Added,
                            object: object.clone(),
                            previous: None,
                        })
                    })
                    .collect();
                return Ok((WatchStart::Events(events), receiver));
            }
            Some(rv) => rv
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        };
        if from < self.oldest {
            let message = format!("too old resource version: {from} ({})", self.oldest);
            return Ok((WatchStart::Expired(message), receiver));
        }
        let events = self
            .history
            .iter()
            .filter(|c| c.rv > from && c.key.group == def.group && c.key.plural == def.plural)
            .cloned()
            .collect();
        Ok((WatchStart::Events(events), receiver))
    }

    /// Creates an object (POST). `namespace` comes from the path.
    pub fn create(
        &mut self,
        def: &ResourceDef,
        namespace: Option<&str>,
        mut object: Value,
    ) -> Result<Value, ApiError> {
        let metadata = &mut object["metadata"];
        if !metadata.is_object() {
            *metadata = json!({});
        }
        if metadata["resourceVersion"]
            .as_str()
            .is_some_and(|rv| !rv.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        if let Some(ns) = namespace {
            match metadata["namespace"].as_str() {
                Some(given) if !given.is_empty() && given != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => metadata["namespace"] = json!(ns),
            }
        } else if let Some(map) = metadata.as_object_mut() {
            map.remove("namespace");
        }
        let name = match (metadata["name"].as_str(), metadata["generateName"].as_str()) {
            (Some(name), _) if !name.is_empty() => name.to_owned(),
            (_, Some(prefix)) if !prefix.is_empty() => self.generate_name(prefix),
            _ => {
                return Err(ApiError::invalid(
                    def,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                ));
            }
        };
        metadata["name"] = json!(name);
        let key = ObjectKey::new(def, namespace, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(def, &name));
        }
        Ok(self.insert_new(key, object, None))
    }

    /// Stores a new object: uid, creationTimestamp (now, unless `created` is given) and
    /// generation filled in; ADDED.
    pub fn insert_new(
        &mut self,
        key: ObjectKey,
        mut object: Value,
        created: Option<&str>,
    ) -> Value {
        self.names += 1;
        let metadata = &mut object["metadata"];
        metadata["uid"] = json!(format!("00000000-0000-4000-8000-{:012x}", self.names));
        metadata["creationTimestamp"] = json!(created.map_or_else(now_rfc3339, String::from));
        metadata["generation"] = json!(1);
        self.commit(key, ChangeType::Added, object, None)
    }

    /// Replaces an existing object with `new`, enforcing the subresource scope, keeping
    /// server-owned metadata and bumping generation on spec changes. A write that changes
    /// nothing keeps the resourceVersion, as the real server does.
    pub fn replace(&mut self, key: ObjectKey, old: Value, mut new: Value, scope: Scope) -> Value {
        new = enforce_scope(&old, new, scope);
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
            "resourceVersion",
        ] {
            match old["metadata"].get(field) {
                Some(value) => new["metadata"][field] = value.clone(),
                None => {
                    if let Some(map) = new["metadata"].as_object_mut() {
                        map.remove(field);
                    }
                }
            }
        }
        if new == old {
            return old;
        }
        if spec_of(&old) != spec_of(&new) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(0);
            new["metadata"]["generation"] = json!(generation + 1);
        }
        let finalizers_done = new["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty);
        if !old["metadata"]["deletionTimestamp"].is_null() && finalizers_done {
            return self.commit(key, ChangeType::Deleted, new, Some(old));
        }
        self.commit(key, ChangeType::Modified, new, Some(old))
    }

    /// Deletes an object, or marks it for deletion while it has finalizers.
    pub fn delete(
        &mut self,
        def: &ResourceDef,
        key: ObjectKey,
        precondition_rv: Option<&str>,
    ) -> Result<Value, ApiError> {
        let old = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(def, &key.name))?;
        if let Some(rv) = precondition_rv
            && old["metadata"]["resourceVersion"].as_str() != Some(rv)
        {
            return Err(ApiError::conflict(def, &key.name));
        }
        let has_finalizers = old["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if !old["metadata"]["deletionTimestamp"].is_null() {
                return Ok(old);
            }
            let mut new = old.clone();
            new["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            return Ok(self.commit(key, ChangeType::Modified, new, Some(old)));
        }
        Ok(self.commit(key, ChangeType::Deleted, old.clone(), Some(old)))
    }

    /// The stored object at `key`, if any.
    pub fn lookup(&self, key: &ObjectKey) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Bumps the resourceVersion, stores (or removes) the object, records and announces it.
    fn commit(
        &mut self,
        key: ObjectKey,
        change: ChangeType,
        mut object: Value,
        previous: Option<Value>,
    ) -> Value {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        if change == ChangeType::Deleted {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key.clone(), object.clone());
        }
        let record = Arc::new(Change {
            rv: self.rv,
            key,
            change,
            object: object.clone(),
            previous,
        });
        if self.history.len() == HISTORY
            && let Some(dropped) = self.history.pop_front()
        {
            self.oldest = dropped.rv;
        }
        self.history.push_back(record.clone());
        let _ = self.notices.send(Notice::Change(record));
        object
    }

    fn generate_name(&mut self, prefix: &str) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        self.names += 1;
        let mut n = self.names.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let suffix: String = (0..5)
            .map(|_| {
                let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
                n /= ALPHABET.len() as u64;
                c
            })
            .collect();
        format!("{prefix}{suffix}")
    }
}

/// The object without metadata and status: what `metadata.generation` tracks.
fn spec_of(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    object
}

/// Keeps what a write may not change: `status` for main-resource writes when the status
/// subresource is enabled; everything but `status` (and managedFields) for `/status` writes.
fn enforce_scope(old: &Value, mut new: Value, scope: Scope) -> Value {
    match scope {
        Scope::All => new,
        Scope::MainOnly => {
            match old.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    if let Some(map) = new.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
            new
        }
        Scope::StatusOnly => {
            let mut result = old.clone();
            match new.get("status") {
                Some(status) => result["status"] = status.clone(),
                None => {
                    if let Some(map) = result.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
            match new["metadata"].get("managedFields") {
                Some(fields) => result["metadata"]["managedFields"] = fields.clone(),
                None => {
                    if let Some(map) = result["metadata"].as_object_mut() {
                        map.remove("managedFields");
                    }
                }
            }
            result
        }
    }
}

/// The resourceVersion of an object as a number.
pub(crate) fn parse_rv(object: &Value) -> Option<u64> {
    object["metadata"]["resourceVersion"].as_str()?.parse().ok()
}

/// Continue tokens: hex of `rv/namespace/name`, opaque to clients.
fn encode_continue(rv: u64, namespace: &str, name: &str) -> String {
    format!("{rv}/{namespace}/{name}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Result<(u64, (String, String)), ApiError> {
    let invalid = || ApiError::bad_request("continue key is not valid");
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.splitn(3, '/');
    let rv = parts
        .next()
        .and_then(|r| r.parse().ok())
        .ok_or_else(invalid)?;
    let namespace = parts.next().ok_or_else(invalid)?.to_owned();
    let name = parts.next().ok_or_else(invalid)?.to_owned();
    Ok((rv, (namespace, name)))
}
