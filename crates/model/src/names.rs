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

#[cfg(test)]
mod tests {
    use super::*;

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
