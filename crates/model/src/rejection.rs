//! Objects and members that were refused, with the rule they broke.

use std::fmt;

use serde::Serialize;

use crate::{MemberName, ObjectKey};

/// Why something was refused: a stable, low-cardinality reason for metrics and status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum RejectReason {
    /// The document is not valid YAML, or a file could not be read.
    ParseError,
    /// `apiVersion`/`kind` missing, or a version of a known kind that Bowline does not read.
    UnsupportedApiVersion,
    /// The object breaks a rule of its kind (bad address, bad port, bad name...).
    InvalidObject,
    /// Another document already defines the same object.
    DuplicateObject,
    /// The member's id breaks the id rules, or no id is known.
    InvalidClusterId,
    /// Another admitted member already has the id.
    DuplicateClusterId,
    /// A member's files hold copies of an identity ClusterProperty (`cluster.clusterset.k8s.io`
    /// or `clusterset.k8s.io`) with different values: no copy decides the member's id.
    ConflictingClusterProperty,
    /// The member's `clusterset.k8s.io` names another ClusterSet.
    ClusterSetMismatch,
    /// An east-west gateway Service that cannot be used.
    InvalidGateway,
    /// A ServiceEntry host Bowline does not serve: only `<svc>.<ns>.svc.cluster.local` in the
    /// ServiceEntry's own namespace is.
    UnsupportedHost,
}

impl RejectReason {
    /// The reason as it appears in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ParseError => "ParseError",
            Self::UnsupportedApiVersion => "UnsupportedApiVersion",
            Self::InvalidObject => "InvalidObject",
            Self::DuplicateObject => "DuplicateObject",
            Self::InvalidClusterId => "InvalidClusterId",
            Self::DuplicateClusterId => "DuplicateClusterId",
            Self::ConflictingClusterProperty => "ConflictingClusterProperty",
            Self::ClusterSetMismatch => "ClusterSetMismatch",
            Self::InvalidGateway => "InvalidGateway",
            Self::UnsupportedHost => "UnsupportedHost",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused object (or member), with where it came from and the rule it broke.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    /// The member it belongs to.
    pub member: MemberName,
    /// Where it came from: `file.yaml:12 (document 2)` for manifests, empty when not from a file.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub origin: String,
    /// The object, when its kind and name could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectKey>,
    /// Why.
    pub reason: RejectReason,
    /// The rule broken, in words.
    pub message: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "member {}", self.member)?;
        if !self.origin.is_empty() {
            write!(f, ", {}", self.origin)?;
        }
        if let Some(object) = &self.object {
            write!(f, ", {object}")?;
        }
        write!(f, ": {}: {}", self.reason, self.message)
    }
}
