//! DNS names in `dns:` allow-list entries: what may be written, and how it matches a SAN.

use std::fmt;

/// Longest DNS name, in characters, without the trailing dot (RFC 1035).
const MAX_NAME: usize = 253;
/// Longest DNS label (RFC 1035).
const MAX_LABEL: usize = 63;

/// What is wrong with the name in a `dns:` allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnsNameProblem {
    /// Two dots in a row, or a leading dot.
    EmptyLabel,
    /// A character other than a letter, digit, hyphen or dot.
    InvalidCharacter(char),
    /// A label longer than 63 characters.
    LabelTooLong {
        /// The offending label.
        label: String,
    },
    /// A name longer than 253 characters.
    NameTooLong {
        /// The name's length in characters.
        len: usize,
    },
    /// `*` somewhere other than as the whole leftmost label.
    MisplacedWildcard,
    /// `*` or `*.com`: a wildcard over fewer than two labels.
    BareWildcard,
}

impl fmt::Display for DnsNameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyLabel => {
                f.write_str("it has an empty label (a leading dot or two dots in a row)")
            }
            Self::InvalidCharacter(c) => write!(
                f,
                "{c:?} is not allowed; use letters, digits, hyphens and dots \
                 (an internationalised name in its xn-- form)"
            ),
            Self::LabelTooLong { label } => write!(
                f,
                "label `{label}` is {} characters long; a label holds at most {MAX_LABEL}",
                label.len()
            ),
            Self::NameTooLong { len } => {
                write!(
                    f,
                    "it is {len} characters long; a DNS name holds at most {MAX_NAME}"
                )
            }
            Self::MisplacedWildcard => {
                f.write_str("`*` may only be the whole leftmost label, as in `*.farm.example.com`")
            }
            Self::BareWildcard => f.write_str(
                "bare wildcard: `*.` must be followed by at least two labels, \
                 as in `*.farm.example.com`",
            ),
        }
    }
}

/// Turns the text of a `dns:` entry into its canonical form: lowercase, without a trailing dot.
pub(crate) fn normalize(name: &str) -> Result<String, DnsNameProblem> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.len() > MAX_NAME {
        return Err(DnsNameProblem::NameTooLong { len: name.len() });
    }
    let labels: Vec<&str> = name.split('.').collect();
    for (i, label) in labels.iter().enumerate() {
        if label.is_empty() {
            return Err(DnsNameProblem::EmptyLabel);
        }
        if *label == "*" && i == 0 {
            continue;
        }
        if label.contains('*') {
            return Err(DnsNameProblem::MisplacedWildcard);
        }
        if let Some(c) = label
            .chars()
            .find(|c| !c.is_ascii_alphanumeric() && *c != '-')
        {
            return Err(DnsNameProblem::InvalidCharacter(c));
        }
        if label.len() > MAX_LABEL {
            let label = (*label).to_owned();
            return Err(DnsNameProblem::LabelTooLong { label });
        }
    }
    if labels[0] == "*" && labels.len() < 3 {
        return Err(DnsNameProblem::BareWildcard);
    }
    Ok(name)
}

/// Whether a `dns:` entry matches one DNS SAN of a certificate.
///
/// Case is ignored and so is a trailing dot on either side. An entry `*.example.com` matches a
/// SAN with exactly one more non-empty leftmost label, and the literal SAN `*.example.com`; any
/// other entry matches only the same name, so never a wildcard SAN.
pub(crate) fn matches(entry: &str, san: &str) -> bool {
    let entry = entry.strip_suffix('.').unwrap_or(entry);
    let san = san.strip_suffix('.').unwrap_or(san);
    if san.eq_ignore_ascii_case(entry) {
        return true;
    }
    match (entry.strip_prefix("*."), san.split_once('.')) {
        (Some(parent), Some((label, rest))) => {
            !label.is_empty() && rest.eq_ignore_ascii_case(parent)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_and_trailing_dot() {
        assert_eq!(
            normalize("Edge.Farm.Example."),
            Ok("edge.farm.example".into())
        );
        assert_eq!(normalize("*.Farm.example"), Ok("*.farm.example".into()));
        assert_eq!(normalize("localhost"), Ok("localhost".into()));
        assert_eq!(
            normalize("xn--bcher-kva.example"),
            Ok("xn--bcher-kva.example".into())
        );
    }

    #[test]
    fn rejects_malformed_names() {
        assert_eq!(normalize("a..b"), Err(DnsNameProblem::EmptyLabel));
        assert_eq!(normalize(".a"), Err(DnsNameProblem::EmptyLabel));
        assert_eq!(
            normalize("a_b.example"),
            Err(DnsNameProblem::InvalidCharacter('_'))
        );
        assert_eq!(
            normalize("bücher.example"),
            Err(DnsNameProblem::InvalidCharacter('ü'))
        );
        assert_eq!(normalize("a b"), Err(DnsNameProblem::InvalidCharacter(' ')));
        let long_label = "a".repeat(64);
        assert_eq!(
            normalize(&format!("{long_label}.example")),
            Err(DnsNameProblem::LabelTooLong { label: long_label })
        );
        assert!(normalize(&format!("{}.example", "a".repeat(63))).is_ok());
        let long_name = ["a".repeat(63).as_str(); 4].join("."); // 255 characters
        assert_eq!(
            normalize(&long_name),
            Err(DnsNameProblem::NameTooLong { len: 255 })
        );
    }

    #[test]
    fn wildcards_only_as_a_whole_leftmost_label_over_two_labels() {
        assert_eq!(normalize("*"), Err(DnsNameProblem::BareWildcard));
        assert_eq!(normalize("*.com"), Err(DnsNameProblem::BareWildcard));
        assert_eq!(normalize("*.com."), Err(DnsNameProblem::BareWildcard));
        assert_eq!(
            normalize("f*.example.com"),
            Err(DnsNameProblem::MisplacedWildcard)
        );
        assert_eq!(
            normalize("a.*.example.com"),
            Err(DnsNameProblem::MisplacedWildcard)
        );
        assert_eq!(
            normalize("*.*.example.com"),
            Err(DnsNameProblem::MisplacedWildcard)
        );
        assert!(normalize("*.example.com").is_ok());
    }

    #[test]
    fn exact_entries_ignore_case_and_trailing_dot() {
        assert!(matches("edge.example.com", "edge.example.com"));
        assert!(matches("edge.example.com", "EDGE.Example.com"));
        assert!(matches("edge.example.com", "edge.example.com."));
        assert!(matches("Edge.example.com.", "edge.example.com"));
        assert!(!matches("edge.example.com", "other.example.com"));
        assert!(!matches("edge.example.com", "edge.example.com.evil"));
        assert!(!matches("example.com", "edge.example.com"));
    }

    #[test]
    fn exact_entries_never_match_wildcard_sans() {
        assert!(!matches("edge.example.com", "*.example.com"));
    }

    #[test]
    fn wildcard_entries_match_exactly_one_more_label() {
        let entry = "*.example.com";
        assert!(matches(entry, "a.example.com"));
        assert!(matches(entry, "A.EXAMPLE.COM."));
        assert!(matches(entry, "*.example.com"));
        assert!(!matches(entry, "example.com"));
        assert!(!matches(entry, ".example.com"));
        assert!(!matches(entry, "a.b.example.com"));
        assert!(!matches(entry, "aexample.com"));
        assert!(!matches(entry, "a.example.com.evil"));
    }
}
