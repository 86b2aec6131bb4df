//! CustomResourceDefinitions written through the API: checked as kube-apiserver checks them
//! when one is created or updated, then served. The checks are the ones a real server proved
//! the fake too lenient on:
//!
//! - groups under `k8s.io` and `kubernetes.io` need the `api-approved.kubernetes.io`
//!   annotation (a URL, or a value starting with `unapproved`);
//! - `metadata.name` is `<spec.names.plural>.<spec.group>`;
//! - exactly one version is the storage version;
//! - every version's schema is structural: a `type` on every node (unless it is
//!   `x-kubernetes-int-or-string` or `x-kubernetes-preserve-unknown-fields`), an object at the
//!   root, `items` a single schema, no `$ref`, and never both `properties` and
//!   `additionalProperties`.

use serde_json::Value;

use crate::{resources::ResourceDef, status::ApiError, store::Store};

/// The annotation protected groups need.
pub const APPROVAL: &str = "api-approved.kubernetes.io";

/// Whether `def` is the CustomResourceDefinition resource.
pub(crate) fn is_crd(def: &ResourceDef) -> bool {
    def.group == "apiextensions.k8s.io" && def.plural == "customresourcedefinitions"
}

/// Checks a CRD about to be stored and, when it passes, serves what it defines.
pub(crate) fn admit(store: &mut Store, def: &ResourceDef, object: &Value) -> Result<(), ApiError> {
    if !is_crd(def) {
        return Ok(());
    }
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let invalid =
        |(field, message): (String, String)| ApiError::invalid(def, name, &field, &message);
    let served = check(object).map_err(invalid)?;
    store.install(served);
    Ok(())
}

/// The problem of a CRD (field, message), or what it serves.
fn check(crd: &Value) -> Result<ResourceDef, (String, String)> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    let kind = spec["names"]["kind"].as_str().unwrap_or_default();
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    let protected = |suffix: &str| group == suffix || group.ends_with(&format!(".{suffix}"));
    if protected("k8s.io") || protected("kubernetes.io") {
        let approval = crd["metadata"]["annotations"][APPROVAL]
            .as_str()
            .unwrap_or_default();
        let valid = approval.starts_with("unapproved")
            || approval.starts_with("https://")
            || approval.starts_with("http://");
        if approval.is_empty() {
            return Err((
                format!("metadata.annotations[{APPROVAL}]"),
                format!(
                    "Required value: protected groups must have approval annotation \"{APPROVAL}\", see https://github.com/kubernetes/enhancements/pull/1111"
                ),
            ));
        }
        if !valid {
            return Err((
                format!("metadata.annotations[{APPROVAL}]"),
                format!(
                    "Invalid value: \"{approval}\": protected groups must have approval annotation \"{APPROVAL}\" with either a URL or a reason starting with \"unapproved\", see https://github.com/kubernetes/enhancements/pull/1111"
                ),
            ));
        }
    }
    if name != format!("{plural}.{group}") {
        return Err((
            "metadata.name".into(),
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    let storage = versions.iter().filter(|v| v["storage"] == true).count();
    if storage != 1 {
        return Err((
            "spec.versions".into(),
            format!(
                "Invalid value: {storage}: must have exactly one version marked as storage version"
            ),
        ));
    }
    for (i, version) in versions.iter().enumerate() {
        let at = format!("spec.versions[{i}].schema.openAPIV3Schema");
        let schema = &version["schema"]["openAPIV3Schema"];
        if schema.is_null() {
            return Err((at, "Required value: schemas are required".into()));
        }
        if schema["type"] != "object" {
            return Err((
                format!("{at}.type"),
                "Unsupported value: must be object at the root".into(),
            ));
        }
        structural(schema, &at)?;
    }
    let mut served = ResourceDef::custom(
        group,
        &versions
            .iter()
            .filter(|v| v["served"] == true)
            .filter_map(|v| v["name"].as_str())
            .collect::<Vec<_>>(),
        plural,
        kind,
    );
    if spec["scope"] == "Cluster" {
        served = served.cluster_scoped();
    }
    if versions
        .iter()
        .any(|v| !v["subresources"]["status"].is_null())
    {
        served = served.with_status();
    }
    Ok(served)
}

/// A structural schema node at `at`, and everything below it.
fn structural(node: &Value, at: &str) -> Result<(), (String, String)> {
    let Some(map) = node.as_object() else {
        return Err((at.into(), "Invalid value: must be a schema object".into()));
    };
    if map.contains_key("$ref") {
        return Err((
            format!("{at}.$ref"),
            "Forbidden: $ref is not supported".into(),
        ));
    }
    let open = node["x-kubernetes-int-or-string"] == true
        || node["x-kubernetes-preserve-unknown-fields"] == true;
    if node["type"].as_str().is_none_or(str::is_empty) && !open {
        return Err((
            format!("{at}.type"),
            "Required value: must not be empty for specified object fields".into(),
        ));
    }
    if map.contains_key("properties") && map.contains_key("additionalProperties") {
        return Err((
            format!("{at}.additionalProperties"),
            "Forbidden: additionalProperties and properties are mutual exclusive".into(),
        ));
    }
    if let Some(properties) = node["properties"].as_object() {
        for (name, child) in properties {
            structural(child, &format!("{at}.properties[{name}]"))?;
        }
    }
    match &node["items"] {
        Value::Null => {}
        Value::Array(_) => {
            return Err((
                format!("{at}.items"),
                "Forbidden: items must be a schema object and not an array".into(),
            ));
        }
        items => structural(items, &format!("{at}.items"))?,
    }
    if let Some(additional) = node["additionalProperties"].as_object()
        && !additional.is_empty()
    {
        structural(
            &node["additionalProperties"],
            &format!("{at}.additionalProperties"),
        )?;
    }
    Ok(())
}
