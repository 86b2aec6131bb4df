//! Export scope: which members an export reaches (KEP-1645's "exporting to any set of
//! clusters", kubernetes/enhancements#6329).
//!
//! Where an export goes, first found wins:
//! 1. the user's ServiceExport's annotation [`EXPORT_TO`] (member ids, comma-separated) or
//!    [`EXPORT_TO_SELECTOR`] (a label selector over the labels members carry in
//!    `bowline.yaml`);
//! 2. the same annotation on the Service;
//! 3. the same annotation on the Namespace;
//! 4. `export.namespaces.<namespace>` in `bowline.yaml`;
//! 5. every member.
//!
//! An export always reaches its own member as well. Each member's import then combines the
//! exports that reach it, and only those.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use serde::Serialize;

use crate::Labels;

/// Annotation naming the member ids an export reaches, comma-separated.
pub const EXPORT_TO: &str = "multicluster.bowline.io/export-to";
/// Annotation selecting the members an export reaches by their configured labels.
pub const EXPORT_TO_SELECTOR: &str = "multicluster.bowline.io/export-to-selector";

/// Where an export goes, as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ExportTo {
    /// These member ids.
    Members(Vec<String>),
    /// The members whose labels match.
    Selector(Selector),
}

impl ExportTo {
    /// Parses [`EXPORT_TO`]'s value: member ids separated by commas (spaces around them are
    /// ignored); at least one.
    pub fn members(text: &str) -> Result<Self, String> {
        let ids: Vec<String> = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if ids.is_empty() {
            return Err(format!(
                "{EXPORT_TO} {text:?} names no member: list member ids separated by commas"
            ));
        }
        for id in &ids {
            crate::ClusterId::new(id)
                .map_err(|e| format!("{EXPORT_TO} {text:?}: {id:?} cannot be a member id: {e}"))?;
        }
        Ok(Self::Members(ids))
    }

    /// Reads a scope from an object's annotations: `None` when neither is set.
    pub fn from_annotations(annotations: &Labels) -> Option<Result<Self, String>> {
        match (
            annotations.get(EXPORT_TO),
            annotations.get(EXPORT_TO_SELECTOR),
        ) {
            (None, None) => None,
            (Some(_), Some(_)) => Some(Err(format!(
                "both {EXPORT_TO} and {EXPORT_TO_SELECTOR} are set: use one"
            ))),
            (Some(ids), None) => Some(Self::members(ids)),
            (None, Some(selector)) => Some(
                Selector::parse(selector)
                    .map(Self::Selector)
                    .map_err(|e| format!("{EXPORT_TO_SELECTOR} {selector:?}: {e}")),
            ),
        }
    }
}

impl fmt::Display for ExportTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Members(ids) => write!(f, "{EXPORT_TO}={:?}", ids.join(",")),
            Self::Selector(s) => write!(f, "{EXPORT_TO_SELECTOR}={:?}", s.to_string()),
        }
    }
}

/// What set an export's scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ScopeOrigin {
    /// The user's ServiceExport's annotation.
    ServiceExport,
    /// The Service's annotation.
    Service,
    /// The Namespace's annotation.
    Namespace,
    /// `export.namespaces` in `bowline.yaml`.
    Config,
}

impl fmt::Display for ScopeOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ServiceExport => "ServiceExport annotation",
            Self::Service => "Service annotation",
            Self::Namespace => "Namespace annotation",
            Self::Config => "bowline.yaml export.namespaces",
        })
    }
}

/// An export's scope and what set it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    /// Where it goes.
    pub to: ExportTo,
    /// What said so.
    pub origin: ScopeOrigin,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.origin, self.to)
    }
}

/// The scope settings of `bowline.yaml`: per-namespace defaults and members' labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeConfig {
    /// `export.namespaces.<namespace>`: where the namespace's exports go unless their
    /// objects say.
    pub namespaces: BTreeMap<String, ExportTo>,
    /// `members[].labels`, by member name: what [`EXPORT_TO_SELECTOR`] selects on.
    pub member_labels: BTreeMap<String, Labels>,
}

impl ScopeConfig {
    /// The scope of an export in `namespace`, from the annotations of its user ServiceExport
    /// (none for an auto-export), its Service and its Namespace, then the configured
    /// default. `Ok(None)`: every member. An annotation that does not parse is an error
    /// naming the object it is on; it is not skipped for the next source.
    pub fn scope(
        &self,
        namespace: &str,
        export: Option<&Labels>,
        service: Option<&Labels>,
        namespace_annotations: Option<&Labels>,
    ) -> Result<Option<Scope>, String> {
        let sources = [
            (export, ScopeOrigin::ServiceExport),
            (service, ScopeOrigin::Service),
            (namespace_annotations, ScopeOrigin::Namespace),
        ];
        for (annotations, origin) in sources {
            if let Some(found) = annotations.and_then(ExportTo::from_annotations) {
                return found
                    .map(|to| Some(Scope { to, origin }))
                    .map_err(|e| format!("{origin}: {e}"));
            }
        }
        Ok(self.namespaces.get(namespace).map(|to| Scope {
            to: to.clone(),
            origin: ScopeOrigin::Config,
        }))
    }
}

/// A Kubernetes label selector in its string form (`a=b,c!=d,e in (f,g),h notin (i),j,!k`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Selector {
    text: String,
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Requirement {
    key: String,
    op: Op,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Op {
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
    Exists,
    DoesNotExist,
}

impl Serialize for Selector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Selector {
    /// Parses the string form. The empty selector matches everything, as in Kubernetes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text)? {
            let part = part.trim();
            if part.is_empty() {
                if text.trim().is_empty() {
                    continue;
                }
                return Err("an empty requirement between commas".into());
            }
            requirements.push(requirement(part)?);
        }
        Ok(Self {
            text: text.trim().to_string(),
            requirements,
        })
    }

    /// True when `labels` satisfy every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| {
            let value = labels.get(&r.key);
            match &r.op {
                Op::In(values) => value.is_some_and(|v| values.contains(v)),
                Op::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
                Op::Exists => value.is_some(),
                Op::DoesNotExist => value.is_none(),
            }
        })
    }
}

/// Splits on the commas outside parentheses.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("a ')' without '(' at byte {i}"))?;
            }
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth > 0 {
        return Err("a '(' is not closed".into());
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement {
            key: label_key(key.trim())?,
            op: Op::DoesNotExist,
        });
    }
    for (token, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((key, rest)) = part.split_once(token) {
            let rest = rest.trim();
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("{part:?}: the values must be in parentheses"))?;
            let values = inner
                .split(',')
                .map(|v| label_value(v.trim()))
                .collect::<Result<BTreeSet<_>, _>>()?;
            let key = label_key(key.trim())?;
            let op = if negated {
                Op::NotIn(values)
            } else {
                Op::In(values)
            };
            return Ok(Requirement { key, op });
        }
    }
    for (token, negated) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((key, value)) = part.split_once(token) {
            let values = BTreeSet::from([label_value(value.trim())?]);
            let key = label_key(key.trim())?;
            let op = if negated {
                Op::NotIn(values)
            } else {
                Op::In(values)
            };
            return Ok(Requirement { key, op });
        }
    }
    Ok(Requirement {
        key: label_key(part)?,
        op: Op::Exists,
    })
}

/// Checks one label (`members[].labels` in `bowline.yaml`), as a selector reads it.
pub fn validate_label(key: &str, value: &str) -> Result<(), String> {
    label_key(key)?;
    label_value(value)?;
    Ok(())
}

/// A label key: an optional DNS prefix and `/`, then a name of at most 63 characters.
fn label_key(key: &str) -> Result<String, String> {
    let name = key.rsplit_once('/').map_or(key, |(_, n)| n);
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if ok {
        Ok(key.to_string())
    } else {
        Err(format!("{key:?} is not a label key"))
    }
}

/// A label value: empty, or at most 63 alphanumerics, `-`, `_`, `.`, alphanumeric at both ends.
fn label_value(value: &str) -> Result<String, String> {
    let ok = value.is_empty()
        || (value.len() <= 63
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric())
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
    if ok {
        Ok(value.to_string())
    } else {
        Err(format!("{value:?} is not a label value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_match_as_kubernetes_does() {
        let billing = labels(&[("team", "billing"), ("env", "prod")]);
        let web = labels(&[("team", "web")]);
        let cases = [
            ("team=billing", true, false),
            ("team==billing", true, false),
            ("team!=billing", false, true),
            ("team in (billing, web)", true, true),
            ("team notin (web)", true, false),
            ("env", true, false),
            ("!env", false, true),
            ("team in (billing),env=prod", true, false),
            ("", true, true),
            ("example.com/tier", false, false),
        ];
        for (text, a, b) in cases {
            let s = Selector::parse(text).unwrap();
            assert_eq!((s.matches(&billing), s.matches(&web)), (a, b), "{text}");
            assert_eq!(s.to_string(), text);
        }
    }

    #[test]
    fn bad_selectors_and_lists_say_what_is_wrong() {
        for (text, needle) in [
            ("team in billing", "parentheses"),
            ("team in (a", "not closed"),
            ("a),b", "without '('"),
            ("team=bil ling", "not a label value"),
            ("a,,b", "empty requirement"),
            ("=x", "not a label key"),
        ] {
            let e = Selector::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
        assert!(
            ExportTo::members(" , ")
                .unwrap_err()
                .contains("names no member")
        );
        assert!(ExportTo::members("a,B_c").unwrap_err().contains("\"B_c\""));
        assert_eq!(
            ExportTo::members(" a, b ").unwrap(),
            ExportTo::Members(vec!["a".into(), "b".into()])
        );
        let both = labels(&[(EXPORT_TO, "a"), (EXPORT_TO_SELECTOR, "x=y")]);
        assert!(
            ExportTo::from_annotations(&both)
                .unwrap()
                .unwrap_err()
                .contains("use one")
        );
        assert_eq!(ExportTo::from_annotations(&Labels::new()), None);
    }
}
