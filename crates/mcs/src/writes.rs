//! What Bowline writes into one member, grouped by the service name each object belongs to:
//! cloned in O(1), patched one name at a time, and compared name by name by pointer, so that
//! a change to one service costs writers one comparison per name and one write per object.

use std::{collections::BTreeMap, ops::Index, sync::Arc};

use bowline_model::ServiceKey;
use serde_json::Value;

use crate::{Rendered, WriteKey, WriteKind, WriteSet};

/// The objects of one name in one member, ordered by key.
pub type Objects = Arc<[(WriteKey, Arc<Rendered>)]>;

/// One object to write (`Some`) or delete (`None`), as [`MemberWrites::changes_since`] finds.
pub type WriteChange = (WriteKey, Option<Arc<Rendered>>);

/// Everything one member must hold, by service name. Clones share the map; a patch copies
/// only the map of names (never the objects) when a clone still holds it.
#[derive(Clone, Debug, Default)]
pub struct MemberWrites {
    names: Arc<BTreeMap<ServiceKey, Objects>>,
    len: usize,
}

impl MemberWrites {
    /// Number of objects.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the member must hold nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every object, by name then key.
    pub fn iter(&self) -> impl Iterator<Item = (&WriteKey, &Arc<Rendered>)> {
        self.names
            .values()
            .flat_map(|objects| objects.iter().map(|(k, v)| (k, v)))
    }

    /// The objects of each name.
    pub fn names(&self) -> &BTreeMap<ServiceKey, Objects> {
        &self.names
    }

    /// One object. ServiceImports and ServiceExports are found under their own name; an
    /// imported EndpointSlice, whose name is not its service's, by a scan of its namespace.
    pub fn get(&self, key: &WriteKey) -> Option<&Arc<Rendered>> {
        if key.kind == WriteKind::EndpointSlice {
            return self
                .names
                .iter()
                .filter(|(name, _)| name.namespace == key.namespace)
                .find_map(|(_, objects)| find(objects, key));
        }
        let name = ServiceKey::new(key.namespace.clone(), key.name.clone());
        self.names.get(&name).and_then(|objects| find(objects, key))
    }

    /// True when the member must hold `key`.
    pub fn contains_key(&self, key: &WriteKey) -> bool {
        self.get(key).is_some()
    }

    /// Replaces the objects of `name` (none: the name writes nothing here).
    pub fn set(&mut self, name: &ServiceKey, objects: Option<Objects>) {
        let names = Arc::make_mut(&mut self.names);
        let old = match objects.filter(|o| !o.is_empty()) {
            Some(objects) => {
                self.len += objects.len();
                names.insert(name.clone(), objects)
            }
            None => names.remove(name),
        };
        self.len -= old.map_or(0, |o| o.len());
    }

    /// Every object as one flat set.
    pub fn to_set(&self) -> WriteSet {
        self.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// What must be written and deleted to go from `old` to `self`: names whose objects are
    /// the same `Arc` are skipped without looking inside, and inside a changed name only the
    /// objects that differ are listed.
    pub fn changes_since(&self, old: &MemberWrites) -> Vec<WriteChange> {
        if Arc::ptr_eq(&self.names, &old.names) {
            return Vec::new();
        }
        let mut upserts = Vec::new();
        let mut deletes = BTreeMap::new();
        let empty: Objects = Arc::new([]);
        let mut names: Vec<&ServiceKey> = self.names.keys().chain(old.names.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let new = self.names.get(name).unwrap_or(&empty);
            let before = old.names.get(name).unwrap_or(&empty);
            if Arc::ptr_eq(new, before) {
                continue;
            }
            for (key, object) in new.iter() {
                let kept = before
                    .binary_search_by(|(k, _)| k.cmp(key))
                    .is_ok_and(|i| Arc::ptr_eq(&before[i].1, object) || before[i].1 == *object);
                if !kept {
                    upserts.push((key.clone(), Some(object.clone())));
                }
            }
            for (key, _) in before.iter() {
                if new.binary_search_by(|(k, _)| k.cmp(key)).is_err() {
                    deletes.insert(key.clone(), ());
                }
            }
        }
        // An object that moved from one name to another is written, not deleted.
        for (key, _) in &upserts {
            deletes.remove(key);
        }
        upserts.extend(deletes.into_keys().map(|k| (k, None)));
        upserts
    }
}

/// The object `key` of a name's sorted objects.
fn find<'a>(objects: &'a Objects, key: &WriteKey) -> Option<&'a Arc<Rendered>> {
    objects
        .binary_search_by(|(k, _)| k.cmp(key))
        .ok()
        .map(|i| &objects[i].1)
}

/// Groups a flat set by the name each object belongs to (a read-back or a test's set).
impl From<WriteSet> for MemberWrites {
    fn from(set: WriteSet) -> Self {
        let mut grouped: BTreeMap<ServiceKey, Vec<(WriteKey, Arc<Rendered>)>> = BTreeMap::new();
        for (key, object) in set {
            let name = owner(&key, &object);
            grouped.entry(name).or_default().push((key, object));
        }
        let mut out = MemberWrites::default();
        for (name, mut objects) in grouped {
            objects.sort_by(|a, b| a.0.cmp(&b.0));
            out.set(&name, Some(objects.into()));
        }
        out
    }
}

/// The service name an object belongs to: its own, or for an imported EndpointSlice the
/// `multicluster.kubernetes.io/service-name` label.
fn owner(key: &WriteKey, object: &Rendered) -> ServiceKey {
    let parsed = (key.kind == WriteKind::EndpointSlice).then(|| object.to_value());
    let label = parsed
        .as_ref()
        .and_then(|o| o.pointer("/metadata/labels/multicluster.kubernetes.io~1service-name"))
        .and_then(Value::as_str);
    ServiceKey::new(key.namespace.clone(), label.unwrap_or(&key.name))
}

impl From<MemberWrites> for WriteSet {
    fn from(writes: MemberWrites) -> Self {
        writes.to_set()
    }
}

impl PartialEq for MemberWrites {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Index<&WriteKey> for MemberWrites {
    type Output = Rendered;

    fn index(&self, key: &WriteKey) -> &Rendered {
        self.get(key)
            .unwrap_or_else(|| panic!("no object {key:?} in the member's writes"))
    }
}

impl<'a> IntoIterator for &'a MemberWrites {
    type Item = (&'a WriteKey, &'a Arc<Rendered>);
    type IntoIter = Box<dyn Iterator<Item = Self::Item> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(kind: WriteKind, name: &str, value: i64) -> (WriteKey, Arc<Rendered>) {
        (
            WriteKey::new(kind, "ns", name),
            Arc::new(json!({ "v": value }).into()),
        )
    }

    fn objects(list: Vec<(WriteKey, Arc<Rendered>)>) -> Option<Objects> {
        Some(list.into())
    }

    #[test]
    fn changes_list_only_what_differs() {
        let a = ServiceKey::new("ns", "a");
        let b = ServiceKey::new("ns", "b");
        let mut old = MemberWrites::default();
        old.set(
            &a,
            objects(vec![
                object(WriteKind::ServiceImport, "a", 1),
                object(WriteKind::ServiceExport, "a", 1),
            ]),
        );
        old.set(&b, objects(vec![object(WriteKind::ServiceImport, "b", 1)]));
        assert_eq!(old.len(), 3);

        let mut new = old.clone();
        assert!(
            new.changes_since(&old).is_empty(),
            "a clone changes nothing"
        );
        // a: the import is rewritten to an equal value (kept), the export changes.
        new.set(
            &a,
            objects(vec![
                object(WriteKind::ServiceImport, "a", 1),
                object(WriteKind::ServiceExport, "a", 2),
            ]),
        );
        new.set(&b, None);
        assert_eq!(new.len(), 2);
        assert_eq!(
            new.changes_since(&old),
            vec![
                (
                    WriteKey::new(WriteKind::ServiceExport, "ns", "a"),
                    Some(Arc::new(json!({"v": 2}).into()))
                ),
                (WriteKey::new(WriteKind::ServiceImport, "ns", "b"), None),
            ]
        );
        assert_eq!(old.len(), 3, "the clone kept its own map");
    }

    #[test]
    fn a_flat_set_groups_slices_under_their_service() {
        let slice = (
            WriteKey::new(WriteKind::EndpointSlice, "ns", "imported-a-c1-ipv4"),
            Arc::new(
                json!({"metadata": {"labels": {"multicluster.kubernetes.io/service-name": "a"}}})
                    .into(),
            ),
        );
        let import = object(WriteKind::ServiceImport, "a", 1);
        let set: WriteSet = [slice.clone(), import.clone()].into_iter().collect();
        let writes = MemberWrites::from(set.clone());
        assert_eq!(writes.names().len(), 1);
        assert_eq!(writes.get(&slice.0), Some(&slice.1));
        assert_eq!(writes[&import.0], *import.1);
        assert_eq!(writes.to_set(), set);
    }
}
