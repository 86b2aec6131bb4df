//! Cluster identity (KEP-2149): the member id, where it comes from and the rules it must follow.

use std::{fmt, sync::Arc};

use serde::Serialize;

use crate::names::{self, NameError};

/// Name of the `ClusterProperty` holding a member's id.
pub const CLUSTER_ID_PROPERTY: &str = "cluster.clusterset.k8s.io";
/// The id's name in KEP-2149's earlier text (a `ClusterProperty`, or OCM's `ClusterClaim`):
/// read after [`CLUSTER_ID_PROPERTY`].
pub const LEGACY_ID_PROPERTY: &str = "id.k8s.io";
/// Name of the `ClusterProperty` naming the ClusterSet a member belongs to.
pub const CLUSTERSET_PROPERTY: &str = "clusterset.k8s.io";
/// Largest `ClusterProperty` value, in Unicode code points (KEP-2149).
pub const MAX_PROPERTY_VALUE_CODE_POINTS: usize = 128_000;

/// A validated cluster id: an RFC 1123 DNS label of at most 63 characters, so that it fits the
/// `multicluster.kubernetes.io/source-cluster` label and one label of an MCS DNS name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ClusterId(Arc<str>);

/// Why a value cannot be a cluster id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "cluster id {value:?} {source}; a cluster id must be an RFC 1123 DNS label (lowercase letters, digits and '-', at most 63 characters) to be used in MCS labels and DNS names"
)]
pub struct ClusterIdError {
    /// The refused value, cut to 80 characters.
    pub value: String,
    /// The rule it breaks.
    pub source: NameError,
}

impl ClusterId {
    /// Validates `value` as a cluster id.
    pub fn new(value: &str) -> Result<Self, ClusterIdError> {
        names::validate_label(value).map_err(|source| ClusterIdError {
            value: value.chars().take(80).collect(),
            source,
        })?;
        Ok(Self(value.into()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Ids as a list for messages: `a, b, c`.
pub fn join_ids<'a>(ids: impl IntoIterator<Item = &'a ClusterId>) -> String {
    let ids: Vec<&str> = ids.into_iter().map(ClusterId::as_str).collect();
    ids.join(", ")
}

/// Maps keyed by id can be looked up by a plain `&str` (proxies name their member so).
impl std::borrow::Borrow<str> for ClusterId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// The configured name of a member (unique in the configuration), used before and beside its id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct MemberName(Arc<str>);

impl MemberName {
    /// Wraps a configured member name.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self(name.into())
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemberName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MemberName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Where a member's id came from, in order of precedence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum IdSource {
    /// The `cluster.clusterset.k8s.io` `ClusterProperty`.
    ClusterProperty,
    /// The `id.k8s.io` `ClusterProperty` (KEP-2149's earlier name).
    LegacyClusterProperty,
    /// The `id.k8s.io` `ClusterClaim` (Open Cluster Management's).
    ClusterClaim,
    /// The member's `id` in the configuration.
    Config,
    /// The UID of the member's `kube-system` Namespace.
    KubeSystemUid,
}

/// What a member offers for its identity; the input of [`derive_identity`].
#[derive(Clone, Debug, Default)]
pub struct IdentityInputs<'a> {
    /// Value of the `cluster.clusterset.k8s.io` ClusterProperty, if present.
    pub id_property: Option<&'a str>,
    /// True when a `cluster.clusterset.k8s.io` ClusterProperty exists but was rejected.
    pub id_property_rejected: bool,
    /// Value of the `id.k8s.io` ClusterProperty, if present.
    pub legacy_property: Option<&'a str>,
    /// Value of the `id.k8s.io` ClusterClaim, if present.
    pub claim: Option<&'a str>,
    /// Value of the `clusterset.k8s.io` ClusterProperty, if present.
    pub clusterset_property: Option<&'a str>,
    /// The `id` configured for the member.
    pub configured_id: Option<&'a str>,
    /// UID of the `kube-system` Namespace, if known.
    pub kube_system_uid: Option<&'a str>,
}

/// Why a member cannot be admitted to the ClusterSet under any id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The chosen id breaks the id rules.
    #[error("{source} (from {from:?})")]
    InvalidId {
        /// The rule broken.
        source: ClusterIdError,
        /// Where the value came from.
        from: IdSource,
    },
    /// The id ClusterProperty exists but was rejected (see `/debug/rejected`).
    #[error(
        "ClusterProperty {CLUSTER_ID_PROPERTY} is invalid and no earlier valid version is known"
    )]
    RejectedIdProperty,
    /// The member's files disagree on an identity ClusterProperty: the source's report,
    /// naming every copy.
    #[error("{0}")]
    ConflictingProperty(String),
    /// Nothing names the member.
    #[error(
        "no id: no ClusterProperty {CLUSTER_ID_PROPERTY}, no configured id and no kube-system Namespace UID"
    )]
    NoId,
    /// The member says it belongs to another ClusterSet.
    #[error(
        "ClusterProperty {CLUSTERSET_PROPERTY} is {found:?} but this ClusterSet is {expected:?}"
    )]
    ClusterSetMismatch {
        /// Value of the member's `clusterset.k8s.io` property.
        found: String,
        /// The configured `clusterSet`.
        expected: String,
    },
}

/// Derives a member's id: the `cluster.clusterset.k8s.io` ClusterProperty, else the configured
/// id, else the `kube-system` Namespace UID; and checks its `clusterset.k8s.io` against the
/// configured ClusterSet. Uniqueness across members is the registry's business.
pub fn derive_identity(
    inputs: &IdentityInputs<'_>,
    cluster_set: &str,
) -> Result<(ClusterId, IdSource), IdentityError> {
    if let Some(found) = inputs.clusterset_property
        && found != cluster_set
    {
        return Err(IdentityError::ClusterSetMismatch {
            found: found.chars().take(80).collect(),
            expected: cluster_set.to_string(),
        });
    }
    let (value, from) = match (inputs.id_property, inputs.id_property_rejected) {
        (Some(v), _) => (v, IdSource::ClusterProperty),
        (None, true) => return Err(IdentityError::RejectedIdProperty),
        (None, false) => {
            let sources = [
                (inputs.legacy_property, IdSource::LegacyClusterProperty),
                (inputs.claim, IdSource::ClusterClaim),
                (inputs.configured_id, IdSource::Config),
                (inputs.kube_system_uid, IdSource::KubeSystemUid),
            ];
            sources
                .into_iter()
                .find_map(|(value, from)| Some((value?, from)))
                .ok_or(IdentityError::NoId)?
        }
    };
    ClusterId::new(value)
        .map(|id| (id, from))
        .map_err(|source| IdentityError::InvalidId { source, from })
}

/// When the sources of a member's id that are present disagree (the kube-system UID aside,
/// which is a fallback, not a claim): the first wins, and this names every value and its
/// source, for `/debug/members` and the log.
pub fn id_disagreement(inputs: &IdentityInputs<'_>) -> Option<String> {
    let claims: Vec<(&str, &str)> = [
        (
            inputs.id_property,
            "ClusterProperty cluster.clusterset.k8s.io",
        ),
        (inputs.legacy_property, "ClusterProperty id.k8s.io"),
        (inputs.claim, "ClusterClaim id.k8s.io"),
        (inputs.configured_id, "the configured id"),
    ]
    .into_iter()
    .filter_map(|(value, source)| Some((value?, source)))
    .collect();
    let first = claims.first()?.0;
    if claims.iter().all(|(value, _)| *value == first) {
        return None;
    }
    let listed: Vec<String> = claims
        .iter()
        .map(|(value, source)| format!("{source} says {value:?}"))
        .collect();
    Some(format!(
        "the id sources disagree: {}; the first wins",
        listed.join(", ")
    ))
}

/// Checks a `ClusterProperty` value against the KEP-2149 size limit.
pub fn validate_property_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("spec.value must not be empty".into());
    }
    let code_points = value.chars().count();
    if code_points > MAX_PROPERTY_VALUE_CODE_POINTS {
        return Err(format!(
            "spec.value holds {code_points} code points, more than the {MAX_PROPERTY_VALUE_CODE_POINTS} allowed by KEP-2149"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(
        prop: Option<&'a str>,
        cfg: Option<&'a str>,
        uid: Option<&'a str>,
    ) -> IdentityInputs<'a> {
        IdentityInputs {
            id_property: prop,
            configured_id: cfg,
            kube_system_uid: uid,
            ..Default::default()
        }
    }

    #[test]
    fn id_precedence_and_validation() {
        let uid = "721ab723-13bc-11e5-aec2-42010af0021e";
        let long = "a".repeat(64);
        let max = "a".repeat(63);
        type Want = Result<(String, IdSource), &'static str>;
        let cases: Vec<(&str, IdentityInputs<'_>, Want)> = vec![
            (
                "property wins",
                inputs(Some("east"), Some("cfg"), Some(uid)),
                Ok(("east".into(), IdSource::ClusterProperty)),
            ),
            (
                "config next",
                inputs(None, Some("cfg"), Some(uid)),
                Ok(("cfg".into(), IdSource::Config)),
            ),
            (
                "kube-system uid last",
                inputs(None, None, Some(uid)),
                Ok((uid.into(), IdSource::KubeSystemUid)),
            ),
            ("nothing", inputs(None, None, None), Err("no id")),
            (
                "63 chars",
                inputs(Some(&max), None, None),
                Ok((max.clone(), IdSource::ClusterProperty)),
            ),
            (
                "too long",
                inputs(Some(&long), None, None),
                Err("64 characters long"),
            ),
            (
                "uppercase",
                inputs(Some("East"), None, None),
                Err("contains 'E'"),
            ),
            (
                "dotted",
                inputs(Some("east.example"), None, None),
                Err("contains '.'"),
            ),
            (
                "leading dash",
                inputs(None, Some("-east"), None),
                Err("must start and end"),
            ),
            (
                "empty",
                inputs(Some(""), None, None),
                Err("must not be empty"),
            ),
        ];
        for (name, input, want) in cases {
            let got = derive_identity(&input, "set");
            match (got, want) {
                (Ok((id, from)), Ok((want_id, want_from))) => {
                    assert_eq!((id.as_str(), from), (want_id.as_str(), want_from), "{name}")
                }
                (Err(e), Err(needle)) => assert!(e.to_string().contains(needle), "{name}: {e}"),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn clusterset_must_match() {
        let mut i = inputs(Some("east"), None, None);
        i.clusterset_property = Some("other");
        assert_eq!(
            derive_identity(&i, "prod"),
            Err(IdentityError::ClusterSetMismatch {
                found: "other".into(),
                expected: "prod".into()
            })
        );
        i.clusterset_property = Some("prod");
        assert!(derive_identity(&i, "prod").is_ok());
    }

    #[test]
    fn rejected_property_does_not_fall_back() {
        let i = IdentityInputs {
            id_property_rejected: true,
            configured_id: Some("cfg"),
            ..Default::default()
        };
        assert_eq!(
            derive_identity(&i, "set"),
            Err(IdentityError::RejectedIdProperty)
        );
    }

    #[test]
    fn property_value_size() {
        assert!(validate_property_value(&"é".repeat(128_000)).is_ok());
        let err = validate_property_value(&"é".repeat(128_001)).unwrap_err();
        assert!(err.contains("128001 code points"), "{err}");
        assert!(validate_property_value("").is_err());
    }
}
