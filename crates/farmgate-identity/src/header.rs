//! Header values a gate sends to its application about the verified client: Envoy's
//! `x-forwarded-client-cert` element and the RFC 9440 `Client-Cert` field.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::PeerIdentity;

/// The RFC 9440 `Client-Cert` header value for a certificate: `:<standard base64 of DER>:`
/// (a structured-field byte sequence).
pub fn client_cert_header(der: &[u8]) -> String {
    format!(":{}:", STANDARD.encode(der))
}

/// `Hash=<hex>;Subject="<subject>";URI=<uri>...;DNS=<dns>...`, with values quoted as Envoy
/// does: the subject always, any other value when it holds `,`, `;`, `=` or `"`.
pub(crate) fn xfcc(id: &PeerIdentity) -> String {
    let mut out = format!("Hash={};Subject=", id.fingerprint_hex());
    // Writing into a String cannot fail.
    let _ = write_quoted(&mut out, id.subject());
    for uri in id.uris() {
        out.push_str(";URI=");
        let _ = write_value(&mut out, uri);
    }
    for dns in id.dns_names() {
        out.push_str(";DNS=");
        let _ = write_value(&mut out, dns);
    }
    out
}

/// Writes `value` in double quotes, escaping `"` and `\` with a backslash.
pub(crate) fn write_quoted(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.write_char('\\')?;
        }
        out.write_char(c)?;
    }
    out.write_char('"')
}

/// Writes `value` bare, or quoted when it holds a character that separates XFCC fields.
fn write_value(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    if value.contains([',', ';', '=', '"']) {
        write_quoted(out, value)
    } else {
        out.write_str(value)
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
            id.xfcc(),
            format!(
                "Hash={};Subject=\"CN=edge.farm.test, O=farm\";URI=spiffe://farm/edge;\
                 DNS=edge.farm.test;DNS=alt.farm.test",
                id.fingerprint_hex()
            )
        );
    }

    #[test]
    fn xfcc_quotes_and_escapes() {
        let id = identity(Some(r#"a"b\c"#), &["uri:spiffe://farm/x?a=b;c"]);
        assert_eq!(
            id.xfcc(),
            format!(
                r#"Hash={};Subject="CN=a\"b\\c, O=farm";URI="spiffe://farm/x?a=b;c""#,
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
}
