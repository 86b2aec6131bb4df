//! Label and field selectors as list and watch requests send them.

use serde_json::Value;

use crate::status::ApiError;

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    /// `key`: the label exists.
    Exists(String),
    /// `!key`: the label does not exist.
    NotExists(String),
    /// `key in (a,b)`, `key=a`, `key==a`.
    In(String, Vec<String>),
    /// `key notin (a,b)`, `key!=a`: absent or another value.
    NotIn(String, Vec<String>),
}

impl Requirement {
    fn matches(&self, lookup: &dyn Fn(&str) -> Option<String>) -> bool {
        match self {
            Self::Exists(key) => lookup(key).is_some(),
            Self::NotExists(key) => lookup(key).is_none(),
            Self::In(key, values) => lookup(key).is_some_and(|v| values.contains(&v)),
            Self::NotIn(key, values) => lookup(key).is_none_or(|v| !values.contains(&v)),
        }
    }
}

/// A parsed `labelSelector` and `fieldSelector`: every requirement must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Selector {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

impl Selector {
    /// Parses the two query parameters; a field selector may only name `metadata.name` and
    /// `metadata.namespace` (what every kind supports).
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, ApiError> {
        let labels = match labels {
            Some(text) => parse_requirements(text)
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
            None => Vec::new(),
        };
        let fields = match fields {
            Some(text) => parse_requirements(text).map_err(|e| {
                ApiError::bad_request(format!("invalid field selector {text:?}: {e}"))
            })?,
            None => Vec::new(),
        };
        for field in &fields {
            let (Requirement::In(key, _) | Requirement::NotIn(key, _)) = field else {
                return Err(ApiError::bad_request(
                    "field selectors support only =, == and !=",
                ));
            };
            if key != "metadata.name" && key != "metadata.namespace" {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {key}"
                )));
            }
        }
        Ok(Self { labels, fields })
    }

    /// Whether the object matches.
    pub fn matches(&self, object: &Value) -> bool {
        let metadata = &object["metadata"];
        let label = |key: &str| metadata["labels"][key].as_str().map(str::to_owned);
        let field = |key: &str| {
            let name = key.strip_prefix("metadata.").unwrap_or(key);
            Some(metadata[name].as_str().unwrap_or_default().to_owned())
        };
        self.labels.iter().all(|r| r.matches(&label))
            && self.fields.iter().all(|r| r.matches(&field))
    }
}

/// Splits at commas outside parentheses and parses each requirement.
fn parse_requirements(text: &str) -> Result<Vec<Requirement>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1).ok_or("unbalanced parentheses")?,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(parse_requirement)
        .collect()
}

fn parse_requirement(text: &str) -> Result<Requirement, String> {
    let key_value = |op: &str| {
        text.split_once(op)
            .map(|(k, v)| (k.trim().to_owned(), vec![v.trim().to_owned()]))
    };
    if let Some(key) = text.strip_prefix('!') {
        return Ok(Requirement::NotExists(checked_key(key.trim())?));
    }
    if let Some((key, values)) = key_value("!=") {
        return Ok(Requirement::NotIn(checked_key(&key)?, values));
    }
    if let Some((key, values)) = key_value("==").or_else(|| key_value("=")) {
        return Ok(Requirement::In(checked_key(&key)?, values));
    }
    for (op, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((key, set)) = text.split_once(op) {
            let set = set.trim();
            let inner = set
                .strip_prefix('(')
                .and_then(|s| s.strip_suffix(')'))
                .ok_or_else(|| format!("{text:?}: expected a parenthesised set"))?;
            let values = inner.split(',').map(|v| v.trim().to_owned()).collect();
            let key = checked_key(key.trim())?;
            return Ok(if negated {
                Requirement::NotIn(key, values)
            } else {
                Requirement::In(key, values)
            });
        }
    }
    Ok(Requirement::Exists(checked_key(text)?))
}

fn checked_key(key: &str) -> Result<String, String> {
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(format!("invalid label key {key:?}"));
    }
    Ok(key.to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(labels: Value) -> Value {
        json!({ "metadata": { "name": "p", "namespace": "ns", "labels": labels } })
    }

    #[test]
    fn label_requirements() {
        let object = pod(json!({ "app": "web", "tier": "front" }));
        let cases = [
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app in (db, web)", true),
            ("app notin (db,web)", false),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
            ("", true),
        ];
        for (text, expected) in cases {
            let selector = Selector::parse(Some(text), None).unwrap();
            assert_eq!(selector.matches(&object), expected, "{text}");
        }
    }

    #[test]
    fn field_requirements() {
        let object = pod(json!({}));
        let selector =
            Selector::parse(None, Some("metadata.name=p,metadata.namespace!=x")).unwrap();
        assert!(selector.matches(&object));
        let selector = Selector::parse(None, Some("metadata.name=q")).unwrap();
        assert!(!selector.matches(&object));
        assert_eq!(
            Selector::parse(None, Some("spec.x=1")).unwrap_err().code,
            400
        );
    }
}
