//! Kubernetes name rules (RFC 1123 labels and subdomains) used to validate identities and objects.

/// Longest RFC 1123 DNS label.
pub const MAX_LABEL_LEN: usize = 63;
/// Longest RFC 1123 DNS subdomain (a Kubernetes object name).
pub const MAX_SUBDOMAIN_LEN: usize = 253;

/// Why a string is not a valid RFC 1123 label or subdomain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The string is empty.
    #[error("must not be empty")]
    Empty,
    /// The string is longer than the limit.
    #[error("is {len} characters long, more than the {max} allowed")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A character outside `[a-z0-9-]` (and `.` for subdomains).
    #[error("contains {found:?}: only lowercase letters, digits and '-' are allowed{dots}")]
    BadChar {
        /// The offending character.
        found: char,
        /// Suffix explaining whether dots were allowed.
        dots: &'static str,
    },
    /// A label starting or ending with something other than a letter or digit.
    #[error("must start and end with a lowercase letter or digit")]
    BadEdge,
}

/// Checks an RFC 1123 DNS label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn validate_label(s: &str) -> Result<(), NameError> {
    validate_label_inner(s, "")
}

fn validate_label_inner(s: &str, dots: &'static str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > MAX_LABEL_LEN {
        return Err(NameError::TooLong {
            len: s.len(),
            max: MAX_LABEL_LEN,
        });
    }
    if let Some(found) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(NameError::BadChar { found, dots });
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err(NameError::BadEdge);
    }
    Ok(())
}

/// Checks an RFC 1123 DNS subdomain: dot-separated labels, at most 253 characters.
pub fn validate_subdomain(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > MAX_SUBDOMAIN_LEN {
        return Err(NameError::TooLong {
            len: s.len(),
            max: MAX_SUBDOMAIN_LEN,
        });
    }
    s.split('.')
        .try_for_each(|label| validate_label_inner(label, " (and '.' between labels)"))
}

/// Longest total size of an object's annotations (keys and values), as the API server's
/// `TotalAnnotationSizeLimitB`.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// Checks a label value as the API server does: empty, or at most 63 characters of
/// `[A-Za-z0-9_.-]` starting and ending with a letter or digit.
pub fn validate_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    qualified_part(value)
}

/// The name part of a label key, or a label value: at most 63 characters of
/// `[A-Za-z0-9_.-]`, starting and ending with a letter or digit.
fn qualified_part(s: &str) -> Result<(), String> {
    if s.len() > MAX_LABEL_LEN {
        return Err(format!(
            "is {} characters long, more than the {MAX_LABEL_LEN} allowed",
            s.len()
        ));
    }
    if let Some(found) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "contains {found:?}: only letters, digits, '-', '_' and '.' are allowed"
        ));
    }
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge(s.chars().next()) || !edge(s.chars().last()) {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

/// Checks a label or annotation key as the API server does: an optional DNS subdomain
/// prefix and `/`, then a name part (see [`validate_label_value`], but not empty).
pub fn validate_qualified_name(key: &str) -> Result<(), String> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            validate_subdomain(prefix).map_err(|e| format!("prefix {e}"))?;
            name
        }
        None => key,
    };
    if name.is_empty() {
        return Err("must have a name (after the prefix, if any)".into());
    }
    qualified_part(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_and_values_follow_the_api_servers_rules() {
        for ok in ["", "a", "v1.2_x-3", &"a".repeat(63)] {
            assert_eq!(validate_label_value(ok), Ok(()), "{ok:?}");
        }
        for bad in ["-a", "a.", "a b", &"a".repeat(64)] {
            assert!(validate_label_value(bad).is_err(), "{bad:?}");
        }
        for ok in ["app", "app.kubernetes.io/name", "Name_1"] {
            assert_eq!(validate_qualified_name(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "",
            "x/",
            "Bad_Prefix/a",
            "/a",
            &format!("{}/a", "a".repeat(254)),
        ] {
            assert!(validate_qualified_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn labels() {
        let cases: &[(&str, Result<(), NameError>)] = &[
            ("a", Ok(())),
            ("east-1", Ok(())),
            ("721ab723-13bc-11e5-aec2-42010af0021e", Ok(())),
            ("", Err(NameError::Empty)),
            ("-a", Err(NameError::BadEdge)),
            ("a-", Err(NameError::BadEdge)),
            (
                "East",
                Err(NameError::BadChar {
                    found: 'E',
                    dots: "",
                }),
            ),
            (
                "a.b",
                Err(NameError::BadChar {
                    found: '.',
                    dots: "",
                }),
            ),
            (
                "a_b",
                Err(NameError::BadChar {
                    found: '_',
                    dots: "",
                }),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(&validate_label(input), want, "{input:?}");
        }
        assert_eq!(validate_label(&"a".repeat(63)), Ok(()));
        assert_eq!(
            validate_label(&"a".repeat(64)),
            Err(NameError::TooLong { len: 64, max: 63 })
        );
    }

    #[test]
    fn subdomains() {
        assert_eq!(validate_subdomain("cluster.clusterset.k8s.io"), Ok(()));
        assert_eq!(validate_subdomain("a..b"), Err(NameError::Empty));
        assert!(validate_subdomain(&"a.".repeat(127)).is_err());
        assert!(matches!(
            validate_subdomain("a.B"),
            Err(NameError::BadChar { found: 'B', .. })
        ));
    }
}
