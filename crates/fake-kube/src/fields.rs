//! Field paths of JSON objects, `managedFields` entries, and the patch formats.
//!
//! Server-side apply tracks ownership per leaf field path (`spec.ports`,
//! `metadata.labels.app`): maps are descended, everything else (scalars, lists, empty maps) is
//! a leaf, so lists are owned atomically.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A field path, e.g. `["spec", "type"]`.
pub(crate) type FieldPath = Vec<String>;

/// Metadata fields the server owns; never tracked as managed fields.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "generateName",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Everything (no status subresource).
    All,
    /// Everything but `status` (main resource when the status subresource is enabled).
    MainOnly,
    /// Only `status` (the `/status` subresource).
    StatusOnly,
}

impl Scope {
    fn includes(self, top_level: &str) -> bool {
        match self {
            Self::All => true,
            Self::MainOnly => top_level != "status",
            Self::StatusOnly => top_level == "status",
        }
    }
}

/// The leaf paths an object sets within `scope`, leaving out `apiVersion`, `kind` and the
/// server-owned metadata.
pub(crate) fn leaf_paths(object: &Value, scope: Scope) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    let Some(map) = object.as_object() else {
        return out;
    };
    for (key, value) in map {
        if key == "apiVersion" || key == "kind" || !scope.includes(key) || value.is_null() {
            continue;
        }
        let mut prefix = vec![key.clone()];
        if key == "metadata" {
            for (field, value) in value.as_object().into_iter().flatten() {
                if !SERVER_METADATA.contains(&field.as_str()) && !value.is_null() {
                    prefix.push(field.clone());
                    collect(value, &mut prefix, &mut out);
                    prefix.pop();
                }
            }
        } else {
            collect(value, &mut prefix, &mut out);
        }
    }
    out
}

fn collect(value: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                if child.is_null() {
                    continue;
                }
                prefix.push(key.clone());
                collect(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

/// The value at `path`.
pub(crate) fn get_path<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(value, |v, key| v.as_object()?.get(key))
}

/// Removes the field at `path`, if present.
pub(crate) fn remove_path(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = value;
    for key in parents {
        match current.as_object_mut().and_then(|m| m.get_mut(key)) {
            Some(next) => current = next,
            None => return,
        }
    }
    if let Some(map) = current.as_object_mut() {
        map.remove(last);
    }
}

/// `.spec.type`, as conflict messages print paths.
pub(crate) fn display_path(path: &[String]) -> String {
    path.iter().map(|p| format!(".{p}")).collect()
}

/// Encodes paths as a `fieldsV1` tree: `{"f:spec":{"f:type":{}}}`.
pub(crate) fn to_fields_v1(paths: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for path in paths {
        let mut node = &mut root;
        for key in path {
            node = node
                .entry(format!("f:{key}"))
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("fieldsV1 nodes are objects");
        }
    }
    Value::Object(root)
}

/// Decodes a `fieldsV1` tree. Entries other than `f:` (list keys `k:`, values `v:`, `.`)
/// make their parent an atomic leaf.
pub(crate) fn from_fields_v1(fields: &Value) -> BTreeSet<FieldPath> {
    fn walk(node: &Map<String, Value>, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        let children: Vec<_> = node.iter().filter(|(k, _)| k.starts_with("f:")).collect();
        let atomic = node
            .keys()
            .any(|k| k.starts_with("k:") || k.starts_with("v:"));
        if (children.is_empty() || atomic) && !prefix.is_empty() {
            out.insert(prefix.clone());
            return;
        }
        for (key, child) in children {
            prefix.push(key["f:".len()..].to_owned());
            match child.as_object() {
                Some(map) => walk(map, prefix, out),
                None => {
                    out.insert(prefix.clone());
                }
            }
            prefix.pop();
        }
    }
    let mut out = BTreeSet::new();
    if let Some(map) = fields.as_object() {
        walk(map, &mut Vec::new(), &mut out);
    }
    out
}

/// Leaf paths whose values differ between two versions of an object (in either direction).
pub(crate) fn changed_paths(old: &Value, new: &Value, scope: Scope) -> BTreeSet<FieldPath> {
    let before = leaf_paths(old, scope);
    let after = leaf_paths(new, scope);
    before
        .union(&after)
        .filter(|p| get_path(old, p) != get_path(new, p))
        .cloned()
        .collect()
}

/// Applies a JSON merge patch (RFC 7386): maps merge, `null` deletes, anything else replaces.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let map = target.as_object_mut().expect("just made an object");
    for (key, value) in patch {
        if value.is_null() {
            map.remove(key);
        } else {
            merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Applies a JSON patch (RFC 6902): `add`, `remove`, `replace`, `test`, `move`, `copy`.
pub(crate) fn json_patch(target: &mut Value, operations: &Value) -> Result<(), String> {
    let operations = operations.as_array().ok_or("a JSON patch is an array")?;
    for operation in operations {
        let op = operation["op"].as_str().ok_or("operation without op")?;
        let path = operation["path"].as_str().ok_or("operation without path")?;
        let from = || {
            operation["from"]
                .as_str()
                .ok_or(format!("{op} without from"))
        };
        match op {
            "add" => pointer_add(target, path, operation["value"].clone())?,
            "remove" => drop(pointer_remove(target, path)?),
            "replace" => {
                pointer_remove(target, path)?;
                pointer_add(target, path, operation["value"].clone())?;
            }
            "test" => {
                if target.pointer(path) != Some(&operation["value"]) {
                    return Err(format!("test failed at {path}"));
                }
            }
            "move" => {
                let value = pointer_remove(target, from()?)?;
                pointer_add(target, path, value)?;
            }
            "copy" => {
                let value = target
                    .pointer(from()?)
                    .cloned()
                    .ok_or("copy from missing path")?;
                pointer_add(target, path, value)?;
            }
            other => return Err(format!("unknown JSON patch operation {other:?}")),
        }
    }
    Ok(())
}

fn split_pointer(path: &str) -> Result<(String, String), String> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or(format!("invalid pointer {path:?}"))?;
    Ok((
        parent.to_owned(),
        last.replace("~1", "/").replace("~0", "~"),
    ))
}

fn pointer_add(target: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    match target.pointer_mut(&parent) {
        Some(Value::Object(map)) => {
            map.insert(last, value);
        }
        Some(Value::Array(items)) if last == "-" => items.push(value),
        Some(Value::Array(items)) => {
            let index: usize = last.parse().map_err(|_| format!("bad index in {path}"))?;
            if index > items.len() {
                return Err(format!("index out of range in {path}"));
            }
            items.insert(index, value);
        }
        _ => return Err(format!("no container at {parent:?}")),
    }
    Ok(())
}

fn pointer_remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    let removed = match target.pointer_mut(&parent) {
        Some(Value::Object(map)) => map.remove(&last),
        Some(Value::Array(items)) => last
            .parse::<usize>()
            .ok()
            .filter(|i| *i < items.len())
            .map(|i| items.remove(i)),
        _ => None,
    };
    removed.ok_or(format!("no value at {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> FieldPath {
        text.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn leaf_paths_skip_server_metadata_and_status_by_scope() {
        let object = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "a", "resourceVersion": "3", "labels": { "x": "1" } },
            "spec": { "ports": [{ "port": 80 }], "type": "ClusterIP", "empty": {} },
            "status": { "loadBalancer": {} },
        });
        let main: Vec<_> = leaf_paths(&object, Scope::MainOnly).into_iter().collect();
        assert_eq!(
            main,
            vec![
                path("metadata.labels.x"),
                path("spec.empty"),
                path("spec.ports"),
                path("spec.type")
            ]
        );
        let status: Vec<_> = leaf_paths(&object, Scope::StatusOnly).into_iter().collect();
        assert_eq!(status, vec![path("status.loadBalancer")]);
    }

    #[test]
    fn fields_v1_round_trip() {
        let paths: BTreeSet<_> = [
            path("spec.type"),
            path("spec.ports"),
            path("metadata.labels.x"),
        ]
        .into_iter()
        .collect();
        let encoded = to_fields_v1(&paths);
        assert_eq!(encoded["f:spec"]["f:type"], json!({}));
        assert_eq!(from_fields_v1(&encoded), paths);
    }

    #[test]
    fn merge_and_json_patch() {
        let mut object = json!({ "a": { "b": 1, "c": 2 }, "l": [1, 2] });
        merge_patch(&mut object, &json!({ "a": { "b": null, "d": 3 } }));
        assert_eq!(object, json!({ "a": { "c": 2, "d": 3 }, "l": [1, 2] }));
        let ops = json!([
            { "op": "add", "path": "/l/-", "value": 3 },
            { "op": "replace", "path": "/a/c", "value": 5 },
            { "op": "remove", "path": "/a/d" },
            { "op": "test", "path": "/l/0", "value": 1 },
        ]);
        json_patch(&mut object, &ops).unwrap();
        assert_eq!(object, json!({ "a": { "c": 5 }, "l": [1, 2, 3] }));
        assert!(
            json_patch(
                &mut object,
                &json!([{ "op": "test", "path": "/l/0", "value": 9 }])
            )
            .is_err()
        );
    }
}
