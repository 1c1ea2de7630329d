//! Distinguished names as RFC 4514 strings that read one way only.
//!
//! `OU=a\,b` is one attribute whose value holds a comma; `OU=a,b` would be two. The rendering
//! follows RFC 4514 (most specific RDN first, `,` between RDNs, `+` inside a multi-valued RDN,
//! short names for the usual attribute types, `#` and the hex of the DER value for anything that
//! is not a string) and, like OpenSSL's `XN_FLAG_RFC2253` that Envoy uses for its XFCC
//! `Subject`, it escapes every byte that is not printable ASCII as `\XX` (each UTF-8 byte of a
//! non-ASCII character, each control character). The result holds printable ASCII only
//! (0x20-0x7E) and never starts or ends with a space.

use std::fmt::Write as _;

use x509_parser::asn1_rs::{Any, Tag, ToDer as _};
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// `name` as an RFC 4514 string, e.g. `CN=edge.farm.test,OU=a\,b,O=farm` for a subject written
/// `O=farm, OU=a,b, CN=edge.farm.test` in the certificate. See the module documentation.
pub fn rfc4514(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attribute) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            write_attribute(&mut out, attribute);
        }
    }
    out
}

/// `TYPE=value` for one attribute.
fn write_attribute(out: &mut String, attribute: &AttributeTypeAndValue<'_>) {
    let oid = attribute.attr_type().to_id_string();
    match short_name(&oid) {
        Some(name) => out.push_str(name),
        None => out.push_str(&oid),
    }
    out.push('=');
    match text(attribute.attr_value()) {
        Some(value) => escape_value(out, &value),
        None => write_hex_value(out, attribute.attr_value()),
    }
}

/// The descriptors RFC 4514 section 3 lists, and the few more OpenSSL prints by name.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "1.2.840.113549.1.9.1" => "emailAddress",
        "2.5.4.5" => "serialNumber",
        "2.5.4.4" => "SN",
        "2.5.4.42" => "GN",
        "2.5.4.12" => "title",
        "2.5.4.17" => "postalCode",
        _ => return None,
    })
}

/// The value as text, for the string types a name may use; `None` for anything else.
fn text(value: &Any<'_>) -> Option<String> {
    let data = value.data;
    match value.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok().map(str::to_owned),
        // T.61 in theory; Latin-1 in every certificate that uses it.
        Tag::TeletexString => Some(data.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => {
            let units: Option<Vec<u16>> = data
                .chunks(2)
                .map(|pair| <[u8; 2]>::try_from(pair).ok().map(u16::from_be_bytes))
                .collect();
            char::decode_utf16(units?)
                .collect::<Result<String, _>>()
                .ok()
        }
        Tag::UniversalString => data
            .chunks(4)
            .map(|quad| {
                <[u8; 4]>::try_from(quad)
                    .ok()
                    .and_then(|b| char::from_u32(u32::from_be_bytes(b)))
            })
            .collect(),
        _ => None,
    }
}

/// Writes `value` escaped as RFC 4514 section 2.4 asks, with every byte outside printable ASCII
/// as `\XX`.
pub(crate) fn escape_value(out: &mut String, value: &str) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\20"),
            ' '..='~' => out.push(c),
            _ => escape_bytes(out, c),
        }
    }
}

/// `\XX` for each UTF-8 byte of `c`, in upper-case hex as OpenSSL writes it.
pub(crate) fn escape_bytes(out: &mut String, c: char) {
    let mut buf = [0u8; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        // Writing into a String cannot fail.
        let _ = write!(out, "\\{b:02X}");
    }
}

/// `#` and the hex of the value's DER encoding (RFC 4514 section 2.4, for non-string values).
fn write_hex_value(out: &mut String, value: &Any<'_>) {
    out.push('#');
    // An Any read from DER can always be written back; should it fail, the value stays empty
    // rather than wrong.
    if let Ok(der) = value.to_der_vec() {
        for b in der {
            // Writing into a String cannot fail.
            let _ = write!(out, "{b:02x}");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};
    use x509_parser::prelude::{FromDer as _, X509Certificate};

    use super::*;

    fn subject(entries: &[(DnType, DnValue)]) -> String {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        for (kind, value) in entries {
            params.distinguished_name.push(kind.clone(), value.clone());
        }
        let der = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
        let (_, cert) = X509Certificate::from_der(der.der()).unwrap();
        rfc4514(cert.subject())
    }

    fn utf8(s: &str) -> DnValue {
        DnValue::Utf8String(s.to_owned())
    }

    #[test]
    fn most_specific_first_with_short_names() {
        assert_eq!(
            subject(&[
                (DnType::OrganizationName, utf8("farm")),
                (DnType::CommonName, utf8("edge.farm.test")),
            ]),
            "CN=edge.farm.test,O=farm"
        );
    }

    #[test]
    fn separators_in_values_are_escaped_so_the_name_reads_one_way() {
        assert_eq!(
            subject(&[(DnType::OrganizationalUnitName, utf8("a,b\nX-Evil: 1"))]),
            r"OU=a\,b\0AX-Evil: 1"
        );
        assert_eq!(
            subject(&[(DnType::CommonName, utf8(r#" #a+b;c<d>e"f\g "#))]),
            r#"CN=\20#a\+b\;c\<d\>e\"f\\g\20"#
        );
        assert_eq!(subject(&[(DnType::CommonName, utf8("#x"))]), r"CN=\#x");
    }

    #[test]
    fn non_ascii_and_control_bytes_become_hex_escapes() {
        assert_eq!(
            subject(&[(DnType::CommonName, utf8("café\u{7f}\t"))]),
            r"CN=caf\C3\A9\7F\09"
        );
        assert_eq!(
            subject(&[(
                DnType::CommonName,
                DnValue::BmpString("h\u{20ac}".try_into().unwrap())
            )]),
            r"CN=h\E2\82\AC"
        );
    }

    #[test]
    fn unknown_types_are_dotted_and_non_strings_hex() {
        assert_eq!(
            subject(&[(DnType::CustomDnType(vec![1, 2, 3, 4]), utf8("x"))]),
            "1.2.3.4=x"
        );
    }
}
