//! Auto-export policy: whether a member's Service is exported to the ClusterSet, and why.
//!
//! Precedence, first match wins:
//! 1. the Service's host matches an `export.clusterLocal` pattern (most specific pattern
//!    decides; a `!`-prefixed pattern makes an exception): never exported;
//! 2. the user's own ServiceExport: exported;
//! 3. the Service's `bowline.io/export` label, then annotation (`"true"`/`"false"`);
//! 4. the Namespace's `bowline.io/export` label;
//! 5. `export.default` (`all` or `none`).
//!
//! ExternalName Services are never auto-exported (MCS forbids exporting them).

use std::fmt;

use serde::Serialize;

use crate::{Labels, ServiceType, objects::Service};

/// Label (on Services and Namespaces) and annotation (on Services) that opt in or out.
pub const EXPORT_LABEL: &str = "bowline.io/export";
/// Label on objects Bowline manages, saying which part of Bowline manages them.
pub const MANAGED_BY_LABEL: &str = "bowline.io/managed-by";
/// Label selector of the objects without [`MANAGED_BY_LABEL`]: those Bowline did not write.
pub const NOT_MANAGED: &str = "!bowline.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`] on ServiceExports written by auto-export.
pub const AUTO_EXPORT: &str = "auto-export";

/// `export.default`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportDefault {
    /// Export every Service unless opted out.
    All,
    /// Export only Services opted in.
    None,
}

/// One `export.clusterLocal` pattern: an exact host or a `*.`-prefixed suffix, possibly negated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct HostPattern(String);

impl HostPattern {
    /// Wraps a pattern as written in the configuration.
    pub fn new(pattern: impl Into<String>) -> Self {
        Self(pattern.into())
    }

    fn body(&self) -> &str {
        self.0.strip_prefix('!').unwrap_or(&self.0)
    }

    /// True for `!` exceptions.
    pub fn negated(&self) -> bool {
        self.0.starts_with('!')
    }

    /// How specifically it matches `host`: `None` when it does not; longer is more specific,
    /// and an exact match beats every wildcard.
    pub fn specificity(&self, host: &str) -> Option<usize> {
        let body = self.body();
        if body == "*" {
            return Some(0);
        }
        match body.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .filter(|rest| rest.ends_with('.'))
                .map(|_| suffix.len()),
            None => (body == host).then_some(usize::MAX),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The auto-export policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportPolicy {
    /// Default for Services without an opinion.
    pub default: ExportDefault,
    /// Hosts never exported.
    pub cluster_local: Vec<HostPattern>,
    /// Where exports go (every member unless something says).
    pub scope: crate::scope::ScopeConfig,
}

impl Default for ExportPolicy {
    fn default() -> Self {
        Self {
            default: ExportDefault::All,
            cluster_local: vec![HostPattern::new("*.kube-system.svc.cluster.local")],
            scope: crate::scope::ScopeConfig::default(),
        }
    }
}

/// What decided an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "camelCase")]
pub enum Decision {
    /// The host matches a cluster-local pattern.
    ClusterLocal {
        /// The pattern.
        pattern: String,
    },
    /// The user's own ServiceExport.
    ServiceExport,
    /// The Service's label.
    ServiceLabel {
        /// Exported or not.
        export: bool,
    },
    /// The Service's annotation.
    ServiceAnnotation {
        /// Exported or not.
        export: bool,
    },
    /// The Namespace's label.
    NamespaceLabel {
        /// Exported or not.
        export: bool,
    },
    /// `export.default`.
    Default {
        /// The default.
        default: ExportDefault,
    },
    /// ExternalName Services are not auto-exported.
    ExternalName,
    /// No Service and no ServiceExport.
    Nothing,
}

impl Decision {
    /// True when the decision exports.
    pub fn exports(&self) -> bool {
        match self {
            Self::ServiceExport => true,
            Self::ServiceLabel { export }
            | Self::ServiceAnnotation { export }
            | Self::NamespaceLabel { export } => *export,
            Self::Default { default } => *default == ExportDefault::All,
            Self::ClusterLocal { .. } | Self::ExternalName | Self::Nothing => false,
        }
    }

    /// True when the export comes from auto-export (Bowline writes the ServiceExport).
    pub fn is_auto(&self) -> bool {
        self.exports() && *self != Self::ServiceExport
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = |e: &bool| if *e { "exported" } else { "not exported" };
        match self {
            Self::ClusterLocal { pattern } => write!(
                f,
                "not exported: cluster-local host (export.clusterLocal {pattern:?})"
            ),
            Self::ServiceExport => write!(f, "exported: the member has a ServiceExport"),
            Self::ServiceLabel { export } => {
                write!(f, "{}: Service label {EXPORT_LABEL}={export}", verb(export))
            }
            Self::ServiceAnnotation { export } => write!(
                f,
                "{}: Service annotation {EXPORT_LABEL}={export}",
                verb(export)
            ),
            Self::NamespaceLabel { export } => write!(
                f,
                "{}: Namespace label {EXPORT_LABEL}={export}",
                verb(export)
            ),
            Self::Default {
                default: ExportDefault::All,
            } => write!(f, "exported: export.default is all"),
            Self::Default {
                default: ExportDefault::None,
            } => write!(f, "not exported: export.default is none"),
            Self::ExternalName => {
                write!(f, "not exported: ExternalName Services cannot be exported")
            }
            Self::Nothing => write!(f, "not exported: no Service and no ServiceExport"),
        }
    }
}

fn opinion(map: &Labels) -> Option<bool> {
    match map.get(EXPORT_LABEL).map(String::as_str) {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    }
}

impl ExportPolicy {
    /// The cluster-local pattern deciding `host`, if any: the most specific match, and only
    /// when it is not an exception.
    pub fn cluster_local(&self, host: &str) -> Option<&HostPattern> {
        self.cluster_local
            .iter()
            .filter_map(|p| Some((p.specificity(host)?, p)))
            .max_by_key(|(specificity, p)| (*specificity, p.negated()))
            .map(|(_, p)| p)
            .filter(|p| !p.negated())
    }

    /// Decides whether a member's `namespace/name` is exported.
    pub fn decide(
        &self,
        namespace: &str,
        name: &str,
        service: Option<&Service>,
        namespace_labels: Option<&Labels>,
        user_export: bool,
    ) -> Decision {
        let host = format!("{name}.{namespace}.svc.cluster.local");
        if let Some(pattern) = self.cluster_local(&host) {
            return Decision::ClusterLocal {
                pattern: pattern.to_string(),
            };
        }
        if user_export {
            return Decision::ServiceExport;
        }
        let Some(service) = service else {
            return Decision::Nothing;
        };
        if service.service_type == ServiceType::ExternalName {
            return Decision::ExternalName;
        }
        if let Some(export) = opinion(&service.meta.labels) {
            return Decision::ServiceLabel { export };
        }
        if let Some(export) = opinion(&service.meta.annotations) {
            return Decision::ServiceAnnotation { export };
        }
        if let Some(export) = namespace_labels.and_then(opinion) {
            return Decision::NamespaceLabel { export };
        }
        Decision::Default {
            default: self.default,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unmanaged_selector_names_the_managed_by_label() {
        assert_eq!(NOT_MANAGED, format!("!{MANAGED_BY_LABEL}"));
    }
}
