//! Multi-document YAML files → Kubernetes objects, one result per document.

use bowline_k8s_api::{DecodeError, decode};
use bowline_model::{Object, RejectReason};

/// One document of a file and what became of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// Line of the file where the document starts (1-based).
    pub line: usize,
    /// Position among the file's non-empty documents (1-based).
    pub index: usize,
    /// The object, `None` for a kind Bowline does not read, or why it was refused.
    pub result: Result<Option<Object>, DecodeError>,
}

/// Splits a YAML stream into documents at `---` (and `...`) marker lines, keeping the line each
/// starts on. Splitting before parsing keeps one broken document from hiding the others.
pub fn split(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        let marker = line.trim_end();
        if marker == "---" || marker.starts_with("--- ") || marker == "..." {
            docs.push((start, std::mem::take(&mut current)));
            start = i + 1;
            if let Some(rest) = marker.strip_prefix("--- ") {
                current.push_str(rest);
                current.push('\n');
            } else {
                start = i + 2;
            }
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    docs.push((start, current));
    docs.retain(|(_, body)| {
        body.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    docs
}

/// Parses every document of a file.
pub fn parse(text: &str) -> Vec<Document> {
    let mut out = Vec::new();
    for (index, (line, body)) in split(text).into_iter().enumerate() {
        let index = index + 1;
        let value = match serde_saphyr::from_str::<serde_json::Value>(&body) {
            Ok(value) => value,
            Err(e) => {
                out.push(Document {
                    line,
                    index,
                    result: Err(parse_error(yaml_error(&e))),
                });
                continue;
            }
        };
        match value {
            serde_json::Value::Null => {}
            serde_json::Value::Object(_) if is_list(&value) => {
                let items = value
                    .get("items")
                    .and_then(|i| i.as_array())
                    .cloned()
                    .unwrap_or_default();
                out.extend(items.into_iter().map(|item| Document {
                    line,
                    index,
                    result: decode(item),
                }));
            }
            serde_json::Value::Object(_) => out.push(Document {
                line,
                index,
                result: decode(value),
            }),
            _ => out.push(Document {
                line,
                index,
                result: Err(parse_error(
                    "a document must be a Kubernetes object (a YAML mapping)".into(),
                )),
            }),
        }
    }
    out
}

fn is_list(value: &serde_json::Value) -> bool {
    value.get("kind").and_then(|k| k.as_str()) == Some("List")
        && value.get("apiVersion").and_then(|k| k.as_str()) == Some("v1")
}

fn parse_error(message: String) -> DecodeError {
    DecodeError {
        key: None,
        reason: RejectReason::ParseError,
        message,
    }
}

/// The first line of a YAML error: the rest is a source snippet we already locate by line.
fn yaml_error(e: &serde_saphyr::Error) -> String {
    let text = e.to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid YAML");
    format!("invalid YAML: {}", first.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_markers_and_skips_empty_documents() {
        let text = "# header\n---\na: 1\n---\n# only a comment\n---\nb: 2\n...\n--- {c: 3}\n";
        let docs = split(text);
        let summary: Vec<(usize, &str)> = docs.iter().map(|(l, b)| (*l, b.trim())).collect();
        assert_eq!(summary, vec![(3, "a: 1"), (7, "b: 2"), (9, "{c: 3}")]);
    }

    #[test]
    fn one_broken_document_leaves_the_others() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\nkind: [unclosed\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n";
        let docs = parse(text);
        assert_eq!(docs.len(), 3);
        assert!(matches!(docs[0].result, Ok(Some(_))));
        let err = docs[1].result.as_ref().unwrap_err();
        assert_eq!(
            (docs[1].line, docs[1].index, err.reason),
            (5, 2, RejectReason::ParseError)
        );
        assert!(matches!(docs[2].result, Ok(Some(_))));
    }

    #[test]
    fn lists_are_flattened() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n- {apiVersion: v1, kind: Namespace, metadata: {name: b}}\n";
        assert_eq!(parse(text).len(), 2);
    }

    #[test]
    fn scalars_are_refused() {
        let docs = parse("just a string\n");
        assert_eq!(
            docs[0].result.as_ref().unwrap_err().reason,
            RejectReason::ParseError
        );
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary text, and text built from YAML's structural characters, never panics
        /// the splitter or the parser.
        #[test]
        fn parse_never_panics(text in "(apiVersion: v1\n|kind: Service\n|---\n|\\.\\.\\.\n|  |- |: |\\{|\\}|\\[|\\]|'|\"|&a |\\*a|!!str |#|[a-z0-9]{1,6}|\n){0,60}") {
            let _ = super::parse(&text);
        }

        #[test]
        fn parse_never_panics_on_any_string(text in any::<String>()) {
            let _ = super::parse(&text);
        }
    }
}
