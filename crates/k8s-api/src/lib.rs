//! Kubernetes wire types Bowline reads, and their conversion into [`bowline_model`] objects.
//!
//! Core kinds come from `k8s-openapi`; the CRDs (MCS ServiceExport/ServiceImport, KEP-2149
//! ClusterProperty, Istio's WorkloadEntry/WorkloadGroup/ServiceEntry) are declared in [`crds`]
//! as `CustomResource` types with the upstream field names and schemas, so users' YAML works
//! unchanged and `bowline install` can ship the CustomResourceDefinitions. [`decode`] turns one object, as
//! JSON, into a model object, or says which rule it broke.

mod convert;
pub mod crds;

use bowline_model::{Object, ObjectKey, ObjectKind, RejectReason};
use serde::de::DeserializeOwned;

/// An object that could not be read, with as much of its identity as is known.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}: {message}", key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
pub struct DecodeError {
    /// The object, when its kind and name could be read.
    pub key: Option<ObjectKey>,
    /// Why it was refused.
    pub reason: RejectReason,
    /// The rule broken, naming the field.
    pub message: String,
}

/// `apiVersion`s Bowline reads for each kind.
pub fn supported_versions(kind: ObjectKind) -> &'static [&'static str] {
    match kind {
        ObjectKind::Namespace | ObjectKind::Node | ObjectKind::Pod | ObjectKind::Service => &["v1"],
        ObjectKind::EndpointSlice => &["discovery.k8s.io/v1"],
        ObjectKind::ServiceExport | ObjectKind::ServiceImport => &[
            "multicluster.x-k8s.io/v1alpha1",
            "multicluster.x-k8s.io/v1beta1",
        ],
        ObjectKind::ClusterProperty => &["about.k8s.io/v1alpha1", "about.k8s.io/v1beta1"],
        ObjectKind::WorkloadEntry | ObjectKind::WorkloadGroup | ObjectKind::ServiceEntry => &[
            "networking.istio.io/v1",
            "networking.istio.io/v1beta1",
            "networking.istio.io/v1alpha3",
        ],
        ObjectKind::PeerAuthentication => &["security.istio.io/v1", "security.istio.io/v1beta1"],
        ObjectKind::ClusterClaim => &["cluster.open-cluster-management.io/v1alpha1"],
    }
}

fn kind_named(kind: &str) -> Option<ObjectKind> {
    ObjectKind::ALL.into_iter().find(|k| k.as_str() == kind)
}

/// A kind Bowline reads under `api_version` that `kind` is a likely typo of (case aside, at
/// most two edits away): `v1 Servise` is reported, a Deployment or a `rbac/v1 Role` is not.
fn near_kind(api_version: &str, kind: &str) -> Option<ObjectKind> {
    let kind = kind.to_ascii_lowercase();
    ObjectKind::ALL.into_iter().find(|k| {
        supported_versions(*k).contains(&api_version)
            && edits(&k.as_str().to_ascii_lowercase(), &kind) <= 2
    })
}

/// The Levenshtein distance between `a` and `b`.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Decodes one Kubernetes object given as JSON.
///
/// Returns `Ok(None)` for kinds Bowline does not read (Deployments, ConfigMaps...), which are
/// normal in a cluster's manifests. Namespaced objects without a namespace land in `default`,
/// as `kubectl apply` would put them.
pub fn decode(value: serde_json::Value) -> Result<Option<Object>, DecodeError> {
    let api_version = value
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let kind_name = value
        .get("kind")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if api_version.is_empty() || kind_name.is_empty() {
        return Err(DecodeError {
            key: None,
            reason: RejectReason::InvalidObject,
            message: "apiVersion and kind are required".into(),
        });
    }
    let Some(kind) = kind_named(kind_name) else {
        if let Some(near) = near_kind(api_version, kind_name) {
            return Err(DecodeError {
                key: None,
                reason: RejectReason::InvalidObject,
                message: format!(
                    "kind {:?} of {api_version} is not a kind Bowline reads; did you mean {near}? (kinds Bowline does not read are ignored)",
                    bowline_model::echo::capped(kind_name, 64)
                ),
            });
        }
        return Ok(None);
    };
    let key = key_of(kind, &value);
    if !supported_versions(kind).contains(&api_version) {
        return Err(DecodeError {
            key: Some(key),
            reason: RejectReason::UnsupportedApiVersion,
            message: format!(
                "apiVersion {api_version:?} is not read for {kind}; use one of {:?}",
                supported_versions(kind)
            ),
        });
    }
    let value = match prepare(kind, value) {
        Ok(value) => value,
        Err(message) => {
            return Err(DecodeError {
                key: Some(key),
                reason: RejectReason::InvalidObject,
                message,
            });
        }
    };
    let converted = match kind {
        ObjectKind::Namespace => wire(value).and_then(convert::namespace),
        ObjectKind::Node => wire(value).and_then(convert::node),
        ObjectKind::Pod => wire(value).and_then(convert::pod),
        ObjectKind::Service => wire(value).and_then(convert::service),
        ObjectKind::EndpointSlice => wire(value).and_then(convert::endpoint_slice),
        ObjectKind::ServiceExport => wire(value).and_then(convert::service_export),
        ObjectKind::ServiceImport => wire(value).and_then(convert::service_import),
        ObjectKind::ClusterProperty => wire(value).and_then(convert::cluster_property),
        ObjectKind::WorkloadEntry => wire(value).and_then(convert::workload_entry),
        ObjectKind::WorkloadGroup => wire(value).and_then(convert::workload_group),
        ObjectKind::ServiceEntry => wire(value).and_then(convert::service_entry),
        ObjectKind::PeerAuthentication => wire(value).and_then(convert::peer_authentication),
        ObjectKind::ClusterClaim => wire(value).and_then(convert::cluster_claim),
    };
    converted.map(Some).map_err(|message| DecodeError {
        key: Some(key),
        reason: RejectReason::InvalidObject,
        message,
    })
}

/// Readies a CRD object for its `CustomResource` type, which needs `metadata` and `spec`.
///
/// A missing (or null) `metadata` or `spec` reads as empty, as it did on the wire types before,
/// except a ServiceImport's spec, which is required. Status is written by controllers (other
/// implementations, older mcs-api versions) and Bowline reads only `status.clusters` of a
/// ServiceImport and the `Healthy` condition of a WorkloadEntry, so the rest of it is dropped
/// unread: a condition in an older shape must not
/// make the object unreadable.
fn prepare(kind: ObjectKind, mut value: serde_json::Value) -> Result<serde_json::Value, String> {
    let crd = matches!(
        kind,
        ObjectKind::ServiceExport
            | ObjectKind::ServiceImport
            | ObjectKind::ClusterProperty
            | ObjectKind::WorkloadEntry
            | ObjectKind::WorkloadGroup
            | ObjectKind::ServiceEntry
            | ObjectKind::PeerAuthentication
            | ObjectKind::ClusterClaim
    );
    let Some(object) = value.as_object_mut().filter(|_| crd) else {
        return Ok(value);
    };
    let absent = |v: Option<&serde_json::Value>| v.is_none_or(serde_json::Value::is_null);
    if absent(object.get("spec")) {
        if kind == ObjectKind::ServiceImport {
            return Err("spec is required".into());
        }
        object.insert("spec".into(), serde_json::json!({}));
    }
    if absent(object.get("metadata")) {
        object.insert("metadata".into(), serde_json::json!({}));
    }
    let kept = match kind {
        ObjectKind::ServiceImport => object
            .get_mut("status")
            .and_then(|s| s.get_mut("clusters"))
            .map(|clusters| serde_json::json!({ "clusters": clusters.take() })),
        // Only the `Healthy` condition's status, which decides whether the entry serves.
        ObjectKind::WorkloadEntry => object
            .get("status")
            .and_then(|s| s.get("conditions"))
            .and_then(serde_json::Value::as_array)
            .and_then(|conditions| {
                conditions
                    .iter()
                    .find(|c| c.get("type").and_then(serde_json::Value::as_str) == Some("Healthy"))
            })
            .and_then(|c| c.get("status").and_then(serde_json::Value::as_str))
            .map(|status| {
                serde_json::json!({ "conditions": [{ "type": "Healthy", "status": status }] })
            }),
        _ => None,
    };
    object.remove("status");
    if let Some(status) = kept {
        object.insert("status".into(), status);
    }
    Ok(value)
}

/// Deserializes the wire type, naming the field that failed.
fn wire<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.into_inner().to_string()
        } else {
            format!("{path}: {}", e.into_inner())
        }
    })
}

/// Best-effort identity of a document, for error reports.
fn key_of(kind: ObjectKind, value: &serde_json::Value) -> ObjectKey {
    let meta = value.get("metadata");
    let field = |name: &str| {
        meta.and_then(|m| m.get(name))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    };
    let namespace = match (kind.cluster_scoped(), field("namespace")) {
        (true, _) => "",
        (false, "") => "default",
        (false, ns) => ns,
    };
    // The key of a refused object is echoed in logs and `/debug/rejected`: a name or
    // namespace far over the API server's limits is cut there (and refused by `meta`).
    let cut = |s: &'_ str| {
        bowline_model::echo::capped(s, 2 * bowline_model::names::MAX_SUBDOMAIN_LEN).into_owned()
    };
    ObjectKey::new(kind, cut(namespace), cut(field("name")))
}
