//! [`DnsName`]: the one place farmgate decides what a DNS name is, for allow-list entries,
//! configuration (routes, SNI, backends, ACME domains) and the certificates its CA issues.

use std::fmt;
use std::str::FromStr;

/// Longest DNS name, in characters, without the trailing dot (RFC 1035).
const MAX_NAME: usize = 253;
/// Longest DNS label (RFC 1035).
const MAX_LABEL: usize = 63;

/// A DNS name, checked once when parsed: dot-separated labels of 1 to 63 letters, digits and
/// hyphens, at most 253 characters, held lower-case and without a trailing dot. The leftmost
/// label may be `*`, a wildcard over at least two more labels (`*.farm.example.com`, never
/// `*.com`). An internationalised name is written in its `xn--` form.
///
/// ```
/// use farmgate_identity::{DnsName, DnsNameProblem};
///
/// let name: DnsName = "Edge.Farm.Example.".parse()?;
/// assert_eq!(name.as_str(), "edge.farm.example");
/// assert!("*.farm.example".parse::<DnsName>()?.is_wildcard());
/// assert_eq!("*.com".parse::<DnsName>(), Err(DnsNameProblem::BareWildcard));
/// # Ok::<(), DnsNameProblem>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DnsName(String);

/// What is wrong with the name in a `dns:` allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsNameProblem {
    /// Two dots in a row, or a leading dot.
    #[error("it has an empty label (a leading dot or two dots in a row)")]
    EmptyLabel,
    /// A character other than a letter, digit, hyphen or dot.
    #[error(
        "{0:?} is not allowed; use letters, digits, hyphens and dots \
         (an internationalised name in its xn-- form)"
    )]
    InvalidCharacter(char),
    /// A label longer than 63 characters.
    #[error(
        "label `{label}` is {} characters long; a label holds at most {MAX_LABEL}",
        label.len()
    )]
    LabelTooLong {
        /// The offending label.
        label: String,
    },
    /// A name longer than 253 characters.
    #[error("it is {len} characters long; a DNS name holds at most {MAX_NAME}")]
    NameTooLong {
        /// The name's length in characters.
        len: usize,
    },
    /// `*` somewhere other than as the whole leftmost label.
    #[error("`*` may only be the whole leftmost label, as in `*.farm.example.com`")]
    MisplacedWildcard,
    /// `*` or `*.com`: a wildcard over fewer than two labels.
    #[error(
        "bare wildcard: `*.` must be followed by at least two labels, \
         as in `*.farm.example.com`"
    )]
    BareWildcard,
}

impl DnsName {
    /// Checks `text` and returns it in canonical form: lower-case, without a trailing dot.
    pub fn parse(text: &str) -> Result<DnsName, DnsNameProblem> {
        let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
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
        Ok(DnsName(name))
    }

    /// The name: lower-case, without a trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a `*.parent` wildcard.
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// Whether this name, as an allow-list entry, matches one DNS SAN of a certificate.
    ///
    /// Case is ignored and so is a trailing dot on the SAN. A wildcard `*.example.com` matches
    /// a SAN with exactly one more non-empty leftmost label, and the literal SAN
    /// `*.example.com`; an exact name matches only the same name, so never a wildcard SAN.
    pub fn matches(&self, san: &str) -> bool {
        let san = san.strip_suffix('.').unwrap_or(san);
        if san.eq_ignore_ascii_case(&self.0) {
            return true;
        }
        match (self.0.strip_prefix("*."), san.split_once('.')) {
            (Some(parent), Some((label, rest))) => {
                !label.is_empty() && rest.eq_ignore_ascii_case(parent)
            }
            (None, _) | (_, None) => false,
        }
    }
}

impl FromStr for DnsName {
    type Err = DnsNameProblem;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        DnsName::parse(text)
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for DnsName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<DnsName> for String {
    fn from(name: DnsName) -> String {
        name.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn normalize(text: &str) -> Result<String, DnsNameProblem> {
        DnsName::parse(text).map(String::from)
    }

    /// Whether the allow-list entry `entry` matches `san`.
    fn matches(entry: &str, san: &str) -> bool {
        DnsName::parse(entry).is_ok_and(|name| name.matches(san))
    }

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
    fn parses_and_prints_the_canonical_form() {
        let name: DnsName = "WWW.Example.COM.".parse().unwrap();
        assert_eq!(name.as_str(), "www.example.com");
        assert_eq!(name.to_string(), "www.example.com");
        assert_eq!(name.as_ref(), "www.example.com");
        assert!(!name.is_wildcard());
        assert_eq!(String::from(name.clone()), "www.example.com");
        assert_eq!(DnsName::parse(name.as_str()), Ok(name));
        assert!(DnsName::parse("*.farm.example").is_ok_and(|n| n.is_wildcard()));
        assert_eq!(normalize("a.b.."), Err(DnsNameProblem::EmptyLabel));
        assert_eq!(normalize(""), Err(DnsNameProblem::EmptyLabel));
        assert_eq!(normalize("."), Err(DnsNameProblem::EmptyLabel));
    }

    #[test]
    fn problems_say_what_to_write() {
        for (text, message) in [
            (
                "a..b",
                "it has an empty label (a leading dot or two dots in a row)",
            ),
            (
                "a_b",
                "'_' is not allowed; use letters, digits, hyphens and dots \
                 (an internationalised name in its xn-- form)",
            ),
            (
                "f*.example.com",
                "`*` may only be the whole leftmost label, as in `*.farm.example.com`",
            ),
            (
                "*.com",
                "bare wildcard: `*.` must be followed by at least two labels, as in `*.farm.example.com`",
            ),
        ] {
            assert_eq!(
                DnsName::parse(text).map_err(|e| e.to_string()),
                Err(message.to_owned()),
                "{text}"
            );
        }
        let label = "a".repeat(64);
        assert_eq!(
            DnsNameProblem::LabelTooLong { label }.to_string(),
            format!(
                "label `{}` is 64 characters long; a label holds at most 63",
                "a".repeat(64)
            )
        );
        assert_eq!(
            DnsNameProblem::NameTooLong { len: 300 }.to_string(),
            "it is 300 characters long; a DNS name holds at most 253"
        );
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
