//! The identity headers a gate sends its application are valid header values whatever the
//! client certificate holds, and no name in it can forge an XFCC field: a reader that splits on
//! `,` `;` `=` outside quotes finds exactly the fields farmgate wrote, with the values the
//! certificate holds.

use std::sync::OnceLock;

use farmgate_identity::{FieldValue, PeerIdentity, client_cert_header};
use proptest::prelude::*;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

/// One key for every certificate: generating keys is the slow part, and irrelevant here.
fn key() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| KeyPair::generate().unwrap())
}

/// A certificate with this subject OU and these SANs, or `None` when rcgen refuses the names
/// (a CA would never sign it either).
fn certificate(ou: &str, dns: &[String], uris: &[String]) -> Option<Vec<u8>> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "edge");
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, ou);
    for name in dns {
        params
            .subject_alt_names
            .push(SanType::DnsName(name.clone().try_into().ok()?));
    }
    for uri in uris {
        params
            .subject_alt_names
            .push(SanType::URI(uri.clone().try_into().ok()?));
    }
    Some(params.self_signed(key()).ok()?.der().to_vec())
}

/// The fields of an XFCC header as an independent reader splits them: elements at `,`, fields
/// at `;`, key and value at the first `=`, all outside double quotes (where `\` escapes the
/// next character). Quoted values are returned with their quotes removed but escapes kept.
fn fields(header: &str) -> Result<Vec<Vec<(String, String)>>, String> {
    let mut elements = vec![Vec::new()];
    let mut chars = header.chars().peekable();
    loop {
        let mut key = String::new();
        loop {
            match chars.next() {
                Some('=') => break,
                Some(c @ (',' | ';' | '"')) => return Err(format!("{c:?} in a key: {header}")),
                Some(c) => key.push(c),
                None => return Err(format!("a key without value: {header}")),
            }
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => {
                        value.push('\\');
                        value.push(chars.next().ok_or("a dangling backslash")?);
                    }
                    Some(c) => value.push(c),
                    None => return Err(format!("an unclosed quote: {header}")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if matches!(c, ',' | ';') {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        elements.last_mut().ok_or("no element")?.push((key, value));
        match chars.next() {
            None => return Ok(elements),
            Some(';') => {}
            Some(',') => elements.push(Vec::new()),
            Some(c) => return Err(format!("{c:?} after a quoted value: {header}")),
        }
    }
}

/// A quoted XFCC value's escapes undone: `\"`, `\\`, and `\XX` for one byte.
fn unescape(value: &str) -> String {
    let mut bytes = Vec::new();
    let raw = value.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' && i + 1 < raw.len() {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) if raw[i + 1] != b'\\' && raw[i + 1] != b'"' => {
                    bytes.push(b);
                    i += 3;
                }
                _ => {
                    bytes.push(raw[i + 1]);
                    i += 2;
                }
            }
        } else {
            bytes.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8(bytes).unwrap()
}

/// Printable ASCII only, no space at either end: what [`FieldValue`] promises.
fn assert_field_value(value: &FieldValue) {
    let bytes = value.as_bytes();
    assert!(!bytes.is_empty());
    assert!(bytes.iter().all(|b| (0x20..=0x7e).contains(b)), "{value}");
    assert_ne!(bytes.first(), Some(&b' '));
    assert_ne!(bytes.last(), Some(&b' '));
}

/// The XFCC of `der` says exactly what the certificate holds, in fields no name can add to.
fn check_xfcc(der: &[u8]) -> Result<(), TestCaseError> {
    let Ok(identity) = PeerIdentity::from_der(der) else {
        // The gate refuses a certificate whose names cannot be read; it sends no headers.
        return Ok(());
    };
    let xfcc = identity.xfcc();
    assert_field_value(&xfcc);
    assert_field_value(&client_cert_header(der));
    let elements = fields(&xfcc).map_err(TestCaseError::fail)?;
    prop_assert_eq!(elements.len(), 1, "{}", xfcc);
    let element = &elements[0];
    let mut expected = vec![
        ("Hash".to_owned(), identity.fingerprint_hex()),
        ("Subject".to_owned(), identity.subject().to_owned()),
    ];
    expected.extend(
        identity
            .uris()
            .iter()
            .map(|u| ("URI".to_owned(), u.clone())),
    );
    expected.extend(
        identity
            .dns_names()
            .iter()
            .map(|d| ("DNS".to_owned(), d.clone())),
    );
    let got: Vec<(String, String)> = element
        .iter()
        .map(|(k, v)| {
            let v = if k == "Subject" {
                v.clone()
            } else {
                unescape(v)
            };
            (k.clone(), v)
        })
        .collect();
    prop_assert_eq!(got, expected, "{}", xfcc);
    Ok(())
}

#[test]
fn a_newline_in_the_subject_and_separators_in_sans_reach_the_app_escaped() {
    let dns = vec![
        "a;DNS=admin.farm.test".to_owned(),
        "b\",URI=spiffe://farm/admin".to_owned(),
        "c\r\nX-Evil: 1".to_owned(),
    ];
    let uris = vec!["spiffe://farm/x;y=\"z\",w\n".to_owned()];
    let der = certificate("a,b\nX-Evil: 1", &dns, &uris).unwrap();
    let identity = PeerIdentity::from_der(&der).unwrap();
    assert_eq!(identity.subject(), r"OU=a\,b\0AX-Evil: 1,CN=edge");
    let xfcc = identity.xfcc();
    assert_eq!(
        xfcc.as_str(),
        format!(
            "Hash={};Subject=\"OU=a\\,b\\0AX-Evil: 1,CN=edge\";\
             URI=\"spiffe://farm/x;y=\\\"z\\\",w\\0A\";\
             DNS=\"a;DNS=admin.farm.test\";\
             DNS=\"b\\\",URI=spiffe://farm/admin\";\
             DNS=\"c\\0D\\0AX-Evil: 1\"",
            identity.fingerprint_hex()
        )
    );
    check_xfcc(&der).unwrap();
}

#[test]
fn non_ascii_subjects_are_hex_escaped_like_envoy() {
    let der = certificate("Bücher – ✓", &[], &[]).unwrap();
    let identity = PeerIdentity::from_der(&der).unwrap();
    assert_eq!(
        identity.subject(),
        r"OU=B\C3\BCcher \E2\80\93 \E2\9C\93,CN=edge"
    );
    check_xfcc(&der).unwrap();
}

proptest! {
    #[test]
    fn no_san_or_subject_can_forge_an_xfcc_field(
        ou in "[ -~\u{0}-\u{1f}\u{7f}-\u{3ff}]{0,24}",
        dns in prop::collection::vec("[\u{1}-\u{7f}]{1,24}", 0..4),
        uris in prop::collection::vec("[a-z]{1,6}:[\u{1}-\u{7f}]{0,24}", 0..3),
    ) {
        if let Some(der) = certificate(&ou, &dns, &uris) {
            check_xfcc(&der)?;
        }
    }
}
