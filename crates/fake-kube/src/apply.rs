//! Field ownership: `metadata.managedFields` entries, server-side apply and its conflicts.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::fields::{
    FieldPath, Scope, from_fields_v1, get_path, leaf_paths, merge_patch, remove_path, to_fields_v1,
};

/// Who is writing: the manager and the request's version and subresource.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Writer<'a> {
    /// `fieldManager`.
    pub manager: &'a str,
    /// `apiVersion` of the request.
    pub api_version: &'a str,
    /// `status` for `/status` writes, empty for the main resource.
    pub subresource: &'a str,
    /// The part of the object the request may change.
    pub scope: Scope,
}

/// One `managedFields` entry.
#[derive(Clone, Debug)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    subresource: String,
    time: String,
    paths: BTreeSet<FieldPath>,
}

impl Entry {
    fn is(&self, writer: &Writer<'_>, operation: &str) -> bool {
        self.manager == writer.manager
            && self.operation == operation
            && self.subresource == writer.subresource
    }
}

/// A field another manager owns with a different value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Conflict {
    /// The owning manager.
    pub manager: String,
    /// The version the owner wrote with.
    pub api_version: String,
    /// The field.
    pub path: FieldPath,
}

fn read_entries(object: &Value) -> Vec<Entry> {
    let entries = object["metadata"]["managedFields"].as_array();
    entries
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or_default().to_owned(),
            operation: e["operation"].as_str().unwrap_or("Update").to_owned(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_owned(),
            subresource: e["subresource"].as_str().unwrap_or_default().to_owned(),
            time: e["time"].as_str().unwrap_or_default().to_owned(),
            paths: from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

fn write_entries(object: &mut Value, entries: Vec<Entry>) {
    let rendered: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.paths.is_empty())
        .map(|e| {
            let mut entry = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.paths),
            });
            if !e.subresource.is_empty() {
                entry["subresource"] = json!(e.subresource);
            }
            entry
        })
        .collect();
    let metadata = &mut object["metadata"];
    if rendered.is_empty() {
        if let Some(map) = metadata.as_object_mut() {
            map.remove("managedFields");
        }
    } else {
        metadata["managedFields"] = Value::Array(rendered);
    }
}

fn upsert(entries: &mut Vec<Entry>, writer: &Writer<'_>, operation: &str, now: &str) -> usize {
    if let Some(index) = entries.iter().position(|e| e.is(writer, operation)) {
        entries[index].api_version = writer.api_version.to_owned();
        entries[index].time = now.to_owned();
        return index;
    }
    entries.push(Entry {
        manager: writer.manager.to_owned(),
        operation: operation.to_owned(),
        api_version: writer.api_version.to_owned(),
        subresource: writer.subresource.to_owned(),
        time: now.to_owned(),
        paths: BTreeSet::new(),
    });
    entries.len() - 1
}

/// Records a non-apply write (create, update, patch): the writer's `Update` entry takes over
/// the fields whose values changed from `old` to `new`; other managers lose them.
pub(crate) fn record_update(old: &Value, new: &mut Value, writer: &Writer<'_>, now: &str) {
    let changed = crate::fields::changed_paths(old, new, writer.scope);
    let mut entries = read_entries(old);
    if changed.is_empty() {
        write_entries(new, entries);
        return;
    }
    for entry in &mut entries {
        entry.paths.retain(|p| !changed.contains(p));
    }
    let index = upsert(&mut entries, writer, "Update", now);
    let mine = &mut entries[index].paths;
    mine.extend(changed.into_iter().filter(|p| get_path(new, p).is_some()));
    write_entries(new, entries);
}

/// Server-side apply of `config` over `current` (`{}` when the object does not exist yet).
///
/// Returns the new object with its `managedFields`, or the conflicts when another manager
/// owns a field `config` sets to a different value and `force` is false. With `force` the
/// fields move to the writer. Fields the writer applied before and no longer applies are
/// removed unless another manager owns them.
pub(crate) fn apply(
    current: &Value,
    config: &Value,
    writer: &Writer<'_>,
    force: bool,
    now: &str,
) -> Result<Value, Vec<Conflict>> {
    let mut entries = read_entries(current);
    let applied = leaf_paths(config, writer.scope);
    let conflicts: Vec<Conflict> = entries
        .iter()
        .filter(|e| !e.is(writer, "Apply"))
        .flat_map(|e| {
            e.paths
                .intersection(&applied)
                .filter(|p| get_path(current, p) != get_path(config, p))
                .map(|p| Conflict {
                    manager: e.manager.clone(),
                    api_version: e.api_version.clone(),
                    path: p.clone(),
                })
        })
        .collect();
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    for entry in entries.iter_mut().filter(|e| !e.is(writer, "Apply")) {
        entry
            .paths
            .retain(|p| !conflicts.iter().any(|c| &c.path == p));
    }

    let mut new = current.clone();
    let index = upsert(&mut entries, writer, "Apply", now);
    let dropped: Vec<FieldPath> = entries[index].paths.difference(&applied).cloned().collect();
    for path in dropped {
        let shared = entries
            .iter()
            .enumerate()
            .any(|(i, e)| i != index && e.paths.contains(&path));
        if !shared {
            remove_path(&mut new, &path);
        }
    }
    merge_patch(&mut new, &without_server_metadata(config));
    entries[index].paths = applied;
    // An apply that changes nothing leaves the object as it was, its managedFields time
    // included (the API server does not write it, so its resourceVersion stays).
    let mut unchanged = new.clone();
    let previous = read_entries(current);
    if let Some(before) = previous.iter().find(|e| e.is(writer, "Apply")) {
        let mut same = entries.clone();
        same[index].time = before.time.clone();
        write_entries(&mut unchanged, same);
        if unchanged == *current {
            return Ok(unchanged);
        }
    }
    write_entries(&mut new, entries);
    Ok(new)
}

/// The applied configuration without the fields the server owns.
fn without_server_metadata(config: &Value) -> Value {
    let mut config = config.clone();
    if let Some(metadata) = config["metadata"].as_object_mut() {
        metadata.retain(|k, _| {
            !matches!(
                k.as_str(),
                "uid" | "resourceVersion" | "generation" | "creationTimestamp" | "managedFields"
            )
        });
    }
    config
}

/// The message the API server gives for apply conflicts.
pub(crate) fn conflict_message(conflicts: &[Conflict]) -> String {
    use crate::fields::display_path;
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with \"{}\" using {}: {}",
            only.manager,
            only.api_version,
            display_path(&only.path)
        );
    }
    let mut message = format!("Apply failed with {} conflicts:", conflicts.len());
    for conflict in conflicts {
        message.push_str(&format!(
            " conflict with \"{}\" using {}: {};",
            conflict.manager,
            conflict.api_version,
            display_path(&conflict.path)
        ));
    }
    message.pop();
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            api_version: "v1",
            subresource: "",
            scope: Scope::MainOnly,
        }
    }

    #[test]
    fn apply_conflicts_force_and_removal() {
        let first = json!({ "metadata": { "name": "s" }, "spec": { "type": "ClusterIP", "a": 1 } });
        let object = apply(&json!({}), &first, &writer("one"), false, "t").unwrap();
        assert_eq!(object["spec"], json!({ "type": "ClusterIP", "a": 1 }));

        let second = json!({ "metadata": { "name": "s" }, "spec": { "type": "NodePort", "b": 2 } });
        let conflicts = apply(&object, &second, &writer("two"), false, "t").unwrap_err();
        assert_eq!(conflicts.len(), 1);
        assert_eq!(
            conflict_message(&conflicts),
            "Apply failed with 1 conflict: conflict with \"one\" using v1: .spec.type"
        );

        let object = apply(&object, &second, &writer("two"), true, "t").unwrap();
        assert_eq!(
            object["spec"],
            json!({ "type": "NodePort", "a": 1, "b": 2 })
        );

        // `one` stops applying `a` (owned only by it) and `type` (now owned by `two`).
        let shrunk = json!({ "metadata": { "name": "s" }, "spec": {} });
        let object = apply(&object, &shrunk, &writer("one"), false, "t").unwrap();
        assert_eq!(object["spec"], json!({ "type": "NodePort", "b": 2 }));
        let managers: Vec<_> = object["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, vec!["one", "two"]);
    }

    #[test]
    fn same_value_is_shared_not_conflicting() {
        let config = json!({ "spec": { "type": "ClusterIP" } });
        let object = apply(&json!({}), &config, &writer("one"), false, "t").unwrap();
        let object = apply(&object, &config, &writer("two"), false, "t").unwrap();
        let object = apply(&object, &json!({ "spec": {} }), &writer("one"), false, "t").unwrap();
        assert_eq!(object["spec"]["type"], "ClusterIP");
    }

    #[test]
    fn an_apply_that_changes_nothing_keeps_the_object_as_it_was() {
        let config = json!({ "metadata": { "name": "s" }, "spec": { "a": 1 } });
        let first = apply(&json!({}), &config, &writer("one"), false, "t1").unwrap();
        let again = apply(&first, &config, &writer("one"), false, "t2").unwrap();
        assert_eq!(again, first, "managedFields time included");
        let changed = json!({ "metadata": { "name": "s" }, "spec": { "a": 2 } });
        let third = apply(&again, &changed, &writer("one"), false, "t3").unwrap();
        assert_eq!(third["metadata"]["managedFields"][0]["time"], "t3");
    }
}
