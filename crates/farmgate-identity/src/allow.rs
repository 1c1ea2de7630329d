//! Allow-lists: which verified peers a gate lets in.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::PeerIdentity;
use crate::dns::{DnsName, DnsNameProblem};

/// One allow-list entry, as written in configuration: `dns:NAME`, `uri:URI`, `cn:NAME` or
/// `spki-sha256:BASE64`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AllowRule {
    /// A DNS SAN: compared case-insensitively and exactly (a trailing dot ignored); `*.parent`
    /// matches exactly one more leftmost label.
    Dns(DnsName),
    /// A URI SAN (e.g. a SPIFFE ID), compared exactly.
    Uri(String),
    /// The subject common name, compared exactly. Legacy: newer certificates omit the CN.
    Cn(String),
    /// The SHA-256 of the certificate's DER SubjectPublicKeyInfo: survives renewals that keep
    /// the key.
    SpkiSha256([u8; 32]),
}

/// The kind of an [`AllowRule`], displayed as its prefix without the colon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleKind {
    /// `dns:`
    Dns,
    /// `uri:`
    Uri,
    /// `cn:`
    Cn,
    /// `spki-sha256:`
    SpkiSha256,
}

/// Why an allow-list entry could not be parsed. Each message says what to write instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AllowRuleError {
    /// The entry has no `kind:` prefix.
    #[error(
        "allow-list entry `{entry}` does not say what it matches: {} \
         (e.g. `dns:edge.example.com`)",
        ExpectedPrefixes
    )]
    MissingPrefix {
        /// The entry as written.
        entry: String,
    },
    /// The entry's prefix is not one farmgate knows.
    #[error(
        "allow-list entry `{entry}` starts with unknown prefix `{prefix}:`; {}{}",
        ExpectedPrefixes,
        uri_hint(.entry)
    )]
    UnknownPrefix {
        /// The entry as written.
        entry: String,
        /// The text before the first colon.
        prefix: String,
    },
    /// Nothing follows the prefix.
    #[error("allow-list entry `{kind}:` is empty; write a value after the colon, e.g. `{}`", example(*.kind))]
    EmptyValue {
        /// The entry's kind.
        kind: RuleKind,
    },
    /// The name in a `dns:` entry is not a valid DNS name or wildcard.
    #[error("allow-list entry `dns:{name}` is not a valid DNS name: {problem}")]
    InvalidDnsName {
        /// The name as written.
        name: String,
        /// What is wrong with it.
        problem: DnsNameProblem,
    },
    /// The value of a `uri:` entry is not an absolute URI.
    #[error(
        "allow-list entry `uri:{uri}` has no scheme; write an absolute URI such as \
         `uri:spiffe://farm.example/edge`"
    )]
    UriWithoutScheme {
        /// The URI as written.
        uri: String,
    },
    /// The value of a `uri:` entry holds whitespace or a control character.
    #[error(
        "allow-list entry `uri:{uri}` contains {found:?}; a URI SAN never holds whitespace \
         or control characters"
    )]
    InvalidUriCharacter {
        /// The URI as written.
        uri: String,
        /// The first offending character.
        found: char,
    },
    /// The value of a `spki-sha256:` entry is neither base64 nor hex.
    #[error(
        "allow-list entry `spki-sha256:{value}` is neither standard base64 (44 characters \
         ending in `=`) nor 64 hex digits"
    )]
    SpkiPinEncoding {
        /// The value as written.
        value: String,
        /// Why it is not base64.
        #[source]
        source: base64::DecodeError,
    },
    /// The value of a `spki-sha256:` entry decodes to something other than 32 bytes.
    #[error(
        "allow-list entry `spki-sha256:{value}` decodes to {len} bytes, but a SHA-256 pin is \
         32 bytes: write the base64 of the SHA-256 of the DER SubjectPublicKeyInfo"
    )]
    SpkiPinLength {
        /// The value as written.
        value: String,
        /// The decoded length.
        len: usize,
    },
}

impl AllowRule {
    /// Whether this entry admits the peer.
    pub fn matches(&self, id: &PeerIdentity) -> bool {
        match self {
            Self::Dns(name) => id.dns_names().iter().any(|san| name.matches(san)),
            Self::Uri(uri) => id.uris().iter().any(|san| san == uri),
            Self::Cn(cn) => id.common_name() == Some(cn.as_str()),
            Self::SpkiSha256(pin) => id.spki_sha256() == pin,
        }
    }

    /// The kind of entry.
    pub fn kind(&self) -> RuleKind {
        match self {
            Self::Dns(_) => RuleKind::Dns,
            Self::Uri(_) => RuleKind::Uri,
            Self::Cn(_) => RuleKind::Cn,
            Self::SpkiSha256(_) => RuleKind::SpkiSha256,
        }
    }

    /// Whether this is a `dns:*.parent` wildcard entry.
    pub fn is_wildcard(&self) -> bool {
        matches!(self, Self::Dns(name) if name.is_wildcard())
    }

    /// Whether this entry names one peer in a way a publicly issued server certificate can be
    /// held to: an exact `dns:` name or an `spki-sha256:` pin. A wildcard, a URI or a CN cannot,
    /// so `eku = "client_or_server_auth"` admits a chain only through such an entry.
    pub fn is_exact_name_or_pin(&self) -> bool {
        match self {
            Self::Dns(name) => !name.is_wildcard(),
            Self::SpkiSha256(_) => true,
            Self::Uri(_) | Self::Cn(_) => false,
        }
    }
}

impl FromStr for AllowRule {
    type Err = AllowRuleError;

    /// Parses `dns:NAME`, `uri:URI`, `cn:NAME` or `spki-sha256:BASE64` (or 64 hex digits).
    /// Prefixes are case-insensitive, so `DNS:name` as printed by `openssl x509 -text` works.
    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let Some((prefix, value)) = entry.split_once(':') else {
            return Err(AllowRuleError::MissingPrefix {
                entry: entry.to_owned(),
            });
        };
        let kind = RuleKind::from_prefix(prefix).ok_or_else(|| AllowRuleError::UnknownPrefix {
            entry: entry.to_owned(),
            prefix: prefix.to_owned(),
        })?;
        if value.is_empty() {
            return Err(AllowRuleError::EmptyValue { kind });
        }
        match kind {
            RuleKind::Dns => DnsName::parse(value).map(Self::Dns).map_err(|problem| {
                AllowRuleError::InvalidDnsName {
                    name: value.to_owned(),
                    problem,
                }
            }),
            RuleKind::Uri => parse_uri(value).map(Self::Uri),
            RuleKind::Cn => Ok(Self::Cn(value.to_owned())),
            RuleKind::SpkiSha256 => parse_pin(value).map(Self::SpkiSha256),
        }
    }
}

/// The entry's text form, which parses back to the same rule. A pin is always shown in base64.
impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.kind())?;
        match self {
            Self::Dns(name) => f.write_str(name.as_str()),
            Self::Uri(value) | Self::Cn(value) => f.write_str(value),
            Self::SpkiSha256(pin) => f.write_str(&STANDARD.encode(pin)),
        }
    }
}

impl RuleKind {
    /// Every kind, in the order messages list them.
    pub const ALL: [RuleKind; 4] = [Self::Dns, Self::Uri, Self::Cn, Self::SpkiSha256];

    /// The prefix as written in configuration, without the colon.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Uri => "uri",
            Self::Cn => "cn",
            Self::SpkiSha256 => "spki-sha256",
        }
    }

    fn from_prefix(prefix: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.prefix().eq_ignore_ascii_case(prefix))
    }
}

impl fmt::Display for RuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix())
    }
}

/// An ordered list of [`AllowRule`]s; a peer is allowed when any rule matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    rules: Vec<AllowRule>,
}

impl AllowList {
    /// An allow-list of these rules, in this order.
    pub fn new(rules: Vec<AllowRule>) -> Self {
        Self { rules }
    }

    /// The rules, in configuration order.
    pub fn rules(&self) -> &[AllowRule] {
        &self.rules
    }

    /// Whether the list has no rules (and so admits nobody).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule that admits the peer, for logs and metrics; `None` means refuse.
    pub fn matching(&self, id: &PeerIdentity) -> Option<&AllowRule> {
        self.rules.iter().find(|rule| rule.matches(id))
    }
}

impl FromIterator<AllowRule> for AllowList {
    fn from_iter<I: IntoIterator<Item = AllowRule>>(rules: I) -> Self {
        Self::new(rules.into_iter().collect())
    }
}

fn parse_uri(uri: &str) -> Result<String, AllowRuleError> {
    if let Some(found) = uri.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(AllowRuleError::InvalidUriCharacter {
            uri: uri.to_owned(),
            found,
        });
    }
    // RFC 3986: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then ":" and more.
    let has_scheme = uri.split_once(':').is_some_and(|(scheme, rest)| {
        let mut chars = scheme.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            && !rest.is_empty()
    });
    if has_scheme {
        Ok(uri.to_owned())
    } else {
        Err(AllowRuleError::UriWithoutScheme {
            uri: uri.to_owned(),
        })
    }
}

fn parse_pin(value: &str) -> Result<[u8; 32], AllowRuleError> {
    let bytes = match hex_digest(value) {
        Some(bytes) => return Ok(bytes),
        None => STANDARD
            .decode(value)
            .map_err(|source| AllowRuleError::SpkiPinEncoding {
                value: value.to_owned(),
                source,
            })?,
    };
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| AllowRuleError::SpkiPinLength {
            value: value.to_owned(),
            len: bytes.len(),
        })
}

/// 64 hex digits (either case) as 32 bytes; `None` for anything else.
fn hex_digest(value: &str) -> Option<[u8; 32]> {
    if value.len() != 64 {
        return None;
    }
    let mut out = [0; 32];
    for (byte, pair) in out.iter_mut().zip(value.as_bytes().chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// `expected one of dns:, uri:, cn:, spki-sha256:`, from [`RuleKind::ALL`]: the text every error
/// about a missing or unknown prefix ends with.
struct ExpectedPrefixes;

impl fmt::Display for ExpectedPrefixes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected one of ")?;
        for (i, kind) in RuleKind::ALL.iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            write!(f, "{separator}{kind}:")?;
        }
        Ok(())
    }
}

fn uri_hint(entry: &str) -> &'static str {
    if entry.contains("://") {
        " (for a URI SAN, write `uri:` before it)"
    } else {
        ""
    }
}

fn example(kind: RuleKind) -> &'static str {
    match kind {
        RuleKind::Dns => "dns:edge.example.com",
        RuleKind::Uri => "uri:spiffe://farm.example/edge",
        RuleKind::Cn => "cn:edge.example.com",
        RuleKind::SpkiSha256 => "spki-sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::peer::tests::{cert_with_key, identity};

    fn rule(text: &str) -> AllowRule {
        text.parse().unwrap()
    }

    fn error(text: &str) -> AllowRuleError {
        text.parse::<AllowRule>().unwrap_err()
    }

    #[test]
    fn parses_each_kind() {
        assert_eq!(
            rule("dns:Edge.Example.com."),
            AllowRule::Dns(DnsName::parse("edge.example.com").unwrap())
        );
        assert_eq!(
            rule("DNS:edge.example.com"),
            AllowRule::Dns(DnsName::parse("edge.example.com").unwrap())
        );
        assert_eq!(
            rule("uri:spiffe://farm/edge"),
            AllowRule::Uri("spiffe://farm/edge".into())
        );
        assert_eq!(rule("cn:Legacy Edge"), AllowRule::Cn("Legacy Edge".into()));
        let pin = [7u8; 32];
        assert_eq!(
            rule(&format!("spki-sha256:{}", STANDARD.encode(pin))),
            AllowRule::SpkiSha256(pin)
        );
        assert_eq!(
            rule(&format!("spki-sha256:{}", "07".repeat(32))),
            AllowRule::SpkiSha256(pin)
        );
        assert_eq!(
            rule(&format!("spki-sha256:{}", "AB".repeat(32))),
            AllowRule::SpkiSha256([0xab; 32])
        );
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "dns:edge.example.com",
            "dns:*.farm.example.com",
            "uri:spiffe://farm/edge",
            "cn:Legacy Edge",
            "spki-sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        ] {
            assert_eq!(rule(text).to_string(), text);
            assert_eq!(rule(&rule(text).to_string()), rule(text));
        }
        assert_eq!(
            rule("DNS:EDGE.example.com.").to_string(),
            "dns:edge.example.com"
        );
        assert_eq!(
            rule(&format!("spki-sha256:{}", "00".repeat(32))).to_string(),
            format!("spki-sha256:{}", STANDARD.encode([0u8; 32]))
        );
    }

    #[test]
    fn exact_names_and_pins_can_hold_a_public_certificate() {
        assert!(rule("dns:edge.example.com").is_exact_name_or_pin());
        assert!(
            rule("spki-sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=").is_exact_name_or_pin()
        );
        assert!(!rule("dns:*.farm.example.com").is_exact_name_or_pin());
        assert!(!rule("uri:spiffe://farm/edge").is_exact_name_or_pin());
        assert!(!rule("cn:edge.example.com").is_exact_name_or_pin());
    }

    #[test]
    fn expected_prefixes_come_from_the_kinds() {
        assert_eq!(
            ExpectedPrefixes.to_string(),
            "expected one of dns:, uri:, cn:, spki-sha256:"
        );
        for kind in RuleKind::ALL {
            assert_eq!(RuleKind::from_prefix(kind.prefix()), Some(kind));
            assert_eq!(
                RuleKind::from_prefix(&kind.prefix().to_uppercase()),
                Some(kind)
            );
        }
        assert_eq!(RuleKind::from_prefix("ip"), None);
    }

    #[test]
    fn kinds_display_as_their_prefix() {
        assert_eq!(rule("dns:a.b").kind(), RuleKind::Dns);
        assert_eq!(rule("uri:a:b").kind().to_string(), "uri");
        assert_eq!(RuleKind::Cn.to_string(), "cn");
        assert_eq!(RuleKind::SpkiSha256.to_string(), "spki-sha256");
    }

    #[test]
    fn missing_and_unknown_prefixes_list_the_known_ones() {
        let e = error("edge.example.com");
        assert!(matches!(e, AllowRuleError::MissingPrefix { .. }));
        assert!(
            e.to_string()
                .contains("expected one of dns:, uri:, cn:, spki-sha256:"),
            "{e}"
        );

        let e = error("ip:10.0.0.1");
        assert!(matches!(&e, AllowRuleError::UnknownPrefix { prefix, .. } if prefix == "ip"));
        assert!(
            e.to_string()
                .contains("expected one of dns:, uri:, cn:, spki-sha256:"),
            "{e}"
        );

        let e = error("spiffe://farm/edge");
        assert!(e.to_string().contains("write `uri:` before it"), "{e}");
    }

    #[test]
    fn empty_values_are_refused() {
        for (text, kind) in [
            ("dns:", RuleKind::Dns),
            ("uri:", RuleKind::Uri),
            ("cn:", RuleKind::Cn),
            ("spki-sha256:", RuleKind::SpkiSha256),
        ] {
            let e = error(text);
            assert!(
                matches!(e, AllowRuleError::EmptyValue { kind: k } if k == kind),
                "{text}"
            );
            assert!(e.to_string().contains("is empty"), "{e}");
        }
    }

    #[test]
    fn invalid_dns_names_say_why() {
        let e = error("dns:*");
        assert!(matches!(
            &e,
            AllowRuleError::InvalidDnsName {
                problem: DnsNameProblem::BareWildcard,
                ..
            }
        ));
        assert!(e.to_string().contains("bare wildcard"), "{e}");
        assert!(error("dns:*.com").to_string().contains("bare wildcard"));
        assert!(matches!(
            error("dns:edge_1.example"),
            AllowRuleError::InvalidDnsName {
                problem: DnsNameProblem::InvalidCharacter('_'),
                ..
            }
        ));
        assert!(matches!(
            error("dns:a.*.example"),
            AllowRuleError::InvalidDnsName {
                problem: DnsNameProblem::MisplacedWildcard,
                ..
            }
        ));
        assert_eq!(
            error("dns:a..b").to_string(),
            "allow-list entry `dns:a..b` is not a valid DNS name: \
             it has an empty label (a leading dot or two dots in a row)"
        );
    }

    #[test]
    fn uris_need_a_scheme() {
        for bad in [
            "uri:farm/edge",
            "uri://farm/edge",
            "uri:1x:y",
            "uri:spiffe:",
        ] {
            let e = error(bad);
            assert!(
                matches!(e, AllowRuleError::UriWithoutScheme { .. }),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains("spiffe://"), "{e}");
        }
        assert!(matches!(
            error("uri:spiffe://farm/edge "),
            AllowRuleError::InvalidUriCharacter { found: ' ', .. }
        ));
        assert_eq!(
            rule("uri:urn:farm:edge"),
            AllowRule::Uri("urn:farm:edge".into())
        );
    }

    #[test]
    fn pins_must_be_32_bytes_of_base64_or_hex() {
        let e = error("spki-sha256:not base64!");
        assert!(matches!(e, AllowRuleError::SpkiPinEncoding { .. }));
        assert!(std::error::Error::source(&e).is_some());
        assert!(e.to_string().contains("64 hex digits"), "{e}");
        // URL-safe base64 is not the standard alphabet.
        let url_safe = STANDARD
            .encode([0xfb; 32])
            .replace('+', "-")
            .replace('/', "_");
        assert!(matches!(
            error(&format!("spki-sha256:{url_safe}")),
            AllowRuleError::SpkiPinEncoding { .. }
        ));
        let e = error(&format!("spki-sha256:{}", STANDARD.encode([1u8; 20])));
        assert!(matches!(e, AllowRuleError::SpkiPinLength { len: 20, .. }));
        assert!(e.to_string().contains("32 bytes"), "{e}");
        // 63 hex digits are neither hex of 32 bytes nor base64.
        assert!(
            error(&format!("spki-sha256:{}", "a".repeat(63)))
                .to_string()
                .contains("hex")
        );
    }

    #[test]
    fn dns_rules_match_sans_not_the_common_name() {
        let id = identity(Some("cn.example.com"), &["dns:Edge.Example.com."]);
        assert!(rule("dns:edge.example.com").matches(&id));
        assert!(!rule("dns:cn.example.com").matches(&id));
        assert!(!rule("dns:other.example.com").matches(&id));
    }

    #[test]
    fn wildcard_rules_match_one_label_and_the_literal_wildcard() {
        let wildcard = rule("dns:*.farm.example");
        assert!(wildcard.is_wildcard());
        assert!(wildcard.matches(&identity(None, &["dns:edge.farm.example"])));
        assert!(wildcard.matches(&identity(None, &["dns:*.farm.example"])));
        assert!(!wildcard.matches(&identity(None, &["dns:a.edge.farm.example"])));
        assert!(!wildcard.matches(&identity(None, &["dns:farm.example"])));
        // A non-wildcard entry never matches a wildcard SAN.
        let exact = rule("dns:edge.farm.example");
        assert!(!exact.is_wildcard());
        assert!(!exact.matches(&identity(None, &["dns:*.farm.example"])));
    }

    #[test]
    fn uri_rules_match_exactly() {
        let id = identity(None, &["uri:spiffe://farm/edge"]);
        assert!(rule("uri:spiffe://farm/edge").matches(&id));
        assert!(!rule("uri:spiffe://farm/Edge").matches(&id));
        assert!(!rule("uri:spiffe://farm/edge/x").matches(&id));
        assert!(!rule("uri:spiffe://farm").matches(&id));
    }

    #[test]
    fn cn_rules_match_exactly_and_need_a_cn() {
        assert!(rule("cn:edge").matches(&identity(Some("edge"), &[])));
        assert!(!rule("cn:Edge").matches(&identity(Some("edge"), &[])));
        assert!(!rule("cn:edge").matches(&identity(None, &["dns:edge"])));
    }

    #[test]
    fn spki_rules_match_the_key_across_certificates() {
        let key = rcgen::KeyPair::generate().unwrap();
        let old = PeerIdentity::from_der(&cert_with_key(Some("old"), &[], &key)).unwrap();
        let renewed = PeerIdentity::from_der(&cert_with_key(Some("new"), &[], &key)).unwrap();
        let pin = rule(&format!("spki-sha256:{}", old.spki_pin()));
        assert!(pin.matches(&old));
        assert!(pin.matches(&renewed));
        assert!(!pin.matches(&identity(Some("old"), &[])));
    }

    #[test]
    fn allow_list_reports_the_first_matching_rule() {
        let list: AllowList = [
            "dns:other.example",
            "uri:spiffe://farm/edge",
            "dns:edge.example",
        ]
        .into_iter()
        .map(rule)
        .collect();
        assert!(!list.is_empty());
        assert_eq!(list.rules().len(), 3);
        let id = identity(
            Some("edge"),
            &["dns:edge.example", "uri:spiffe://farm/edge"],
        );
        assert_eq!(list.matching(&id), Some(&list.rules()[1]));
        assert_eq!(list.matching(&identity(Some("edge"), &[])), None);
        assert!(AllowList::default().is_empty());
        assert_eq!(AllowList::new(Vec::new()).matching(&id), None);
    }
}
