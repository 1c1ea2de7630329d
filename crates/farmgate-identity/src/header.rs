//! Header values a gate sends to its application about the verified client: Envoy's
//! `x-forwarded-client-cert` element and the RFC 9440 `Client-Cert` field.
//!
//! Both come out as a [`FieldValue`]: text that any HTTP implementation accepts as a header
//! value, whatever the client's certificate holds, so the identity always reaches the
//! application. Nothing is dropped: a byte that cannot stand in a header value is written as
//! `\XX`, the way Envoy (through OpenSSL's RFC 2253 printing) writes the subject.

use std::fmt;
use std::ops::Deref;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::PeerIdentity;
use crate::dn::escape_bytes;

/// A header field value that is valid by construction: printable ASCII only (bytes 0x20 to
/// 0x7E: no control character, no byte above 0x7E), never empty, never starting or ending with
/// a space. That is RFC 9110's `field-value` without obs-text, so `http::HeaderValue::from_str`
/// and `from_bytes` accept it, and no reader can split it into two header lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldValue(String);

impl FieldValue {
    /// Enforces the guarantee on text built by this module: a byte outside it is written as
    /// `\XX`. The builders escape everything already (the tests check that they never need
    /// this); it keeps the guarantee true even if one of them is wrong.
    fn new(text: String) -> FieldValue {
        let last = text.chars().count().saturating_sub(1);
        let outside =
            |(i, c): (usize, char)| !matches!(c, ' '..='~') || (c == ' ' && (i == 0 || i == last));
        if text.is_empty() || text.chars().enumerate().any(outside) {
            let mut out = String::with_capacity(text.len() + 8);
            for (i, c) in text.chars().enumerate() {
                if outside((i, c)) {
                    escape_bytes(&mut out, c);
                } else {
                    out.push(c);
                }
            }
            if out.is_empty() {
                out.push_str("\"\"");
            }
            return FieldValue(out);
        }
        FieldValue(text)
    }

    /// The value as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value as bytes, e.g. for `http::HeaderValue::from_bytes`.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The value as an owned `String`.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl Deref for FieldValue {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for FieldValue {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<[u8]> for FieldValue {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The RFC 9440 `Client-Cert` header value for a certificate: `:<standard base64 of DER>:`
/// (a structured-field byte sequence).
pub fn client_cert_header(der: &[u8]) -> FieldValue {
    FieldValue::new(format!(":{}:", STANDARD.encode(der)))
}

/// `Hash=<hex>;Subject="<RFC 4514 subject>";URI=<uri>...;DNS=<dns>...`: the subject always in
/// double quotes (its RFC 4514 escaping already writes `"` and `\` as `\"` and `\\`), any other
/// value bare unless it holds a separator, a quote, a backslash or a byte outside visible ASCII,
/// in which case it is quoted with `\"`, `\\` and `\XX` escapes.
pub(crate) fn xfcc(id: &PeerIdentity) -> FieldValue {
    let mut out = format!("Hash={};Subject=\"{}\"", id.fingerprint_hex(), id.subject());
    // Writing into a String cannot fail.
    for uri in id.uris() {
        out.push_str(";URI=");
        let _ = write_value(&mut out, uri);
    }
    for dns in id.dns_names() {
        out.push_str(";DNS=");
        let _ = write_value(&mut out, dns);
    }
    FieldValue::new(out)
}

/// Writes `value` in double quotes, `"` and `\` escaped with a backslash and every character
/// outside printable ASCII as `\XX` per UTF-8 byte.
fn write_quoted(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.write_char('\\')?;
                out.write_char(c)?;
            }
            ' '..='~' => out.write_char(c)?,
            _ => {
                let mut escaped = String::new();
                escape_bytes(&mut escaped, c);
                out.write_str(&escaped)?;
            }
        }
    }
    out.write_char('"')
}

/// Writes `value` bare, or quoted when it holds anything but visible ASCII other than the XFCC
/// separators `,` `;` `=`, a quote or a backslash (an empty value is quoted too).
pub(crate) fn write_value(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    let bare = !value.is_empty()
        && value
            .chars()
            .all(|c| matches!(c, '!'..='~') && !matches!(c, ',' | ';' | '=' | '"' | '\\'));
    if bare {
        out.write_str(value)
    } else {
        write_quoted(out, value)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::peer::tests::{cert, identity};

    #[test]
    fn xfcc_lists_hash_subject_uris_and_dns_names() {
        let id = identity(
            Some("edge.farm.test"),
            &[
                "dns:edge.farm.test",
                "dns:alt.farm.test",
                "uri:spiffe://farm/edge",
            ],
        );
        assert_eq!(
            id.xfcc().as_str(),
            format!(
                "Hash={};Subject=\"O=farm,CN=edge.farm.test\";URI=spiffe://farm/edge;\
                 DNS=edge.farm.test;DNS=alt.farm.test",
                id.fingerprint_hex()
            )
        );
    }

    #[test]
    fn xfcc_quotes_and_escapes() {
        let id = identity(Some(r#"a"b\c"#), &["uri:spiffe://farm/x?a=b;c"]);
        assert_eq!(
            id.xfcc().as_str(),
            format!(
                r#"Hash={};Subject="O=farm,CN=a\"b\\c";URI="spiffe://farm/x?a=b;c""#,
                id.fingerprint_hex()
            )
        );
    }

    #[test]
    fn client_cert_is_a_structured_byte_sequence() {
        let der = cert(Some("a"), &[]);
        let value = client_cert_header(&der);
        let inner = value.strip_prefix(':').unwrap().strip_suffix(':').unwrap();
        assert_eq!(STANDARD.decode(inner).unwrap(), der);
    }

    #[test]
    fn field_value_escapes_what_a_builder_missed() {
        assert_eq!(FieldValue::new("a\nb ".to_owned()).as_str(), r"a\0Ab\20");
        assert_eq!(FieldValue::new(String::new()).as_str(), "\"\"");
        let fine = "Hash=ab;Subject=\"CN=a b\"";
        assert_eq!(FieldValue::new(fine.to_owned()).as_str(), fine);
    }
}
