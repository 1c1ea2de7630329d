//! [`PeerIdentity`]: the names and hashes of a peer certificate that allow-lists and headers use.

use std::fmt;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::extensions::GeneralName;
use x509_parser::nom;
use x509_parser::prelude::FromDer as _;

use crate::header;

/// The identity a peer proved with its certificate.
///
/// Built from an already verified certificate with [`PeerIdentity::from_der`]. It keeps the
/// names as they are written in the certificate; matching rules (case, trailing dots, wildcards)
/// live in [`AllowRule`](crate::AllowRule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    subject: String,
    common_name: Option<String>,
    dns_names: Vec<String>,
    uris: Vec<String>,
    spki_sha256: [u8; 32],
    fingerprint_sha256: [u8; 32],
}

/// Why a certificate could not be read as a peer identity.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The bytes are not a DER-encoded X.509 certificate.
    #[error("the peer certificate is not a DER-encoded X.509 certificate")]
    Parse(#[source] X509Error),
    /// A certificate was read, but bytes follow it.
    #[error("the peer certificate is followed by {0} bytes of trailing data")]
    TrailingData(usize),
    /// The subject common name is not a text string.
    #[error("the peer certificate's subject common name is not a text string")]
    CommonName(#[source] X509Error),
    /// The subject holds more than one common name, so `cn:` matching would be ambiguous.
    #[error("the peer certificate's subject has {0} common names; an identity has at most one")]
    MultipleCommonNames(usize),
    /// The subject alternative name extension is malformed or repeated.
    #[error("the peer certificate's subject alternative names are unreadable")]
    SubjectAltNames(#[source] X509Error),
}

impl PeerIdentity {
    /// Reads the identity from a DER-encoded certificate (the leaf of a verified chain).
    pub fn from_der(der: &[u8]) -> Result<Self, IdentityError> {
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| match e {
            nom::Err::Error(e) | nom::Err::Failure(e) => IdentityError::Parse(e),
            nom::Err::Incomplete(_) => IdentityError::Parse(X509Error::InvalidCertificate),
        })?;
        if !rest.is_empty() {
            return Err(IdentityError::TrailingData(rest.len()));
        }

        let subject = crate::rfc4514(cert.subject());

        let mut common_names = cert.subject().iter_common_name();
        let common_name = match common_names.next() {
            None => None,
            Some(cn) => Some(cn.as_str().map_err(IdentityError::CommonName)?.to_owned()),
        };
        let extra = common_names.count();
        if extra > 0 {
            return Err(IdentityError::MultipleCommonNames(extra + 1));
        }

        let mut dns_names = Vec::new();
        let mut uris = Vec::new();
        let san = cert.subject_alternative_name();
        if let Some(san) = san.map_err(IdentityError::SubjectAltNames)? {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                    GeneralName::URI(uri) => uris.push((*uri).to_owned()),
                    // IP addresses, e-mail addresses and others are not identities an allow-list
                    // names; entries that are not valid UTF-8 can match nothing.
                    _ => {}
                }
            }
        }

        Ok(Self {
            subject,
            common_name,
            dns_names,
            uris,
            spki_sha256: sha256(cert.public_key().raw),
            fingerprint_sha256: sha256(der),
        })
    }

    /// The subject distinguished name as an RFC 4514 string, e.g. `CN=edge.farm.test,O=farm`:
    /// separators inside values escaped (`OU=a\,b`), every byte outside printable ASCII as
    /// `\XX` (see [`rfc4514`](crate::rfc4514)), so it reads one way only and is safe in a log
    /// line or a header.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The subject common name, if there is one (newer public certificates omit it).
    pub fn common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }

    /// The DNS subject alternative names, as written in the certificate.
    pub fn dns_names(&self) -> &[String] {
        &self.dns_names
    }

    /// The URI subject alternative names (e.g. SPIFFE IDs), as written in the certificate.
    pub fn uris(&self) -> &[String] {
        &self.uris
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo: what `spki-sha256:` entries pin.
    pub fn spki_sha256(&self) -> &[u8; 32] {
        &self.spki_sha256
    }

    /// [`spki_sha256`](Self::spki_sha256) in standard base64 with padding, the form
    /// `spki-sha256:` allow-list entries use.
    pub fn spki_pin(&self) -> String {
        STANDARD.encode(self.spki_sha256)
    }

    /// SHA-256 of the whole certificate DER.
    pub fn fingerprint_sha256(&self) -> &[u8; 32] {
        &self.fingerprint_sha256
    }

    /// [`fingerprint_sha256`](Self::fingerprint_sha256) in lowercase hex without separators.
    pub fn fingerprint_hex(&self) -> String {
        hex(&self.fingerprint_sha256)
    }

    /// A short name for logs and headers: the first URI SAN, else the first DNS SAN, else the
    /// common name, else `spki-sha256:<pin>`.
    pub fn name(&self) -> String {
        self.uris
            .first()
            .or(self.dns_names.first())
            .or(self.common_name.as_ref())
            .cloned()
            .unwrap_or_else(|| format!("spki-sha256:{}", self.spki_pin()))
    }

    /// One element of Envoy's `x-forwarded-client-cert` header describing this identity:
    /// `Hash=<hex>;Subject="<subject>";URI=<uri>;DNS=<dns>...`, always a valid header value
    /// (see [`FieldValue`](crate::FieldValue)) in which no SAN can forge a field.
    pub fn xfcc(&self) -> crate::FieldValue {
        header::xfcc(self)
    }
}

/// For refusal log lines: `subject="...", sans=[dns:a, uri:b], sha256=<hex>`. Printable ASCII
/// only: the subject is an RFC 4514 string (its `"` and `\` already escaped), and a SAN that
/// holds anything but plain visible characters is quoted and escaped as in XFCC, so a
/// certificate cannot break a log line.
impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "subject=\"{}\", sans=[", self.subject)?;
        let dns = self.dns_names.iter().map(|n| ("dns", n));
        let uri = self.uris.iter().map(|u| ("uri", u));
        for (i, (kind, name)) in dns.chain(uri).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{kind}:")?;
            header::write_value(f, name)?;
        }
        write!(f, "], sha256={}", self.fingerprint_hex())
    }
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    // A SHA-256 digest is always 32 bytes long.
    out.copy_from_slice(digest(&SHA256, data).as_ref());
    out
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing into a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    use super::*;

    /// A self-signed test certificate with the given subject CN and SANs (`dns:`/`uri:` text).
    pub(crate) fn cert(cn: Option<&str>, sans: &[&str]) -> Vec<u8> {
        cert_with_key(cn, sans, &KeyPair::generate().unwrap())
    }

    pub(crate) fn cert_with_key(cn: Option<&str>, sans: &[&str], key: &KeyPair) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params
            .distinguished_name
            .push(DnType::OrganizationName, "farm");
        for san in sans {
            let (kind, value) = san.split_once(':').unwrap();
            let value = value.to_owned().try_into().unwrap();
            params.subject_alt_names.push(match kind {
                "dns" => SanType::DnsName(value),
                "uri" => SanType::URI(value),
                _ => panic!("test SAN kind {kind}"),
            });
        }
        params.self_signed(key).unwrap().der().to_vec()
    }

    pub(crate) fn identity(cn: Option<&str>, sans: &[&str]) -> PeerIdentity {
        PeerIdentity::from_der(&cert(cn, sans)).unwrap()
    }

    #[test]
    fn reads_subject_names_and_sans() {
        let id = identity(
            Some("edge.farm.test"),
            &[
                "dns:edge.farm.test",
                "uri:spiffe://farm/edge",
                "dns:Alt.Farm.Test.",
            ],
        );
        assert_eq!(id.subject(), "O=farm,CN=edge.farm.test");
        assert_eq!(id.common_name(), Some("edge.farm.test"));
        assert_eq!(id.dns_names(), ["edge.farm.test", "Alt.Farm.Test."]);
        assert_eq!(id.uris(), ["spiffe://farm/edge"]);
    }

    #[test]
    fn certificate_without_common_name() {
        let id = identity(None, &["dns:www.example.com"]);
        assert_eq!(id.common_name(), None);
        assert_eq!(id.subject(), "O=farm");
    }

    #[test]
    fn hashes_match_the_der() {
        let key = KeyPair::generate().unwrap();
        let der = cert_with_key(Some("a"), &[], &key);
        let id = PeerIdentity::from_der(&der).unwrap();
        assert_eq!(id.fingerprint_sha256(), &sha256(&der));
        assert_eq!(id.fingerprint_hex().len(), 64);
        assert!(
            id.fingerprint_hex()
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        use rcgen::PublicKeyData as _;
        assert_eq!(id.spki_sha256(), &sha256(&key.subject_public_key_info()));
        assert_eq!(
            STANDARD.decode(id.spki_pin()).unwrap(),
            id.spki_sha256().as_slice()
        );
        assert_eq!(id.spki_pin().len(), 44);
    }

    #[test]
    fn same_key_gives_same_pin_different_fingerprint() {
        let key = KeyPair::generate().unwrap();
        let a = PeerIdentity::from_der(&cert_with_key(Some("a"), &[], &key)).unwrap();
        let b = PeerIdentity::from_der(&cert_with_key(Some("b"), &[], &key)).unwrap();
        assert_eq!(a.spki_pin(), b.spki_pin());
        assert_ne!(a.fingerprint_hex(), b.fingerprint_hex());
    }

    #[test]
    fn name_prefers_uri_then_dns_then_cn_then_pin() {
        let all = identity(Some("cn"), &["dns:d.example", "uri:spiffe://farm/u"]);
        assert_eq!(all.name(), "spiffe://farm/u");
        assert_eq!(identity(Some("cn"), &["dns:d.example"]).name(), "d.example");
        assert_eq!(identity(Some("cn"), &[]).name(), "cn");
        let bare = identity(None, &[]);
        assert_eq!(bare.name(), format!("spki-sha256:{}", bare.spki_pin()));
    }

    #[test]
    fn display_for_logs() {
        let id = identity(
            Some("say \"hi\""),
            &["dns:a.example", "uri:spiffe://farm/b"],
        );
        assert_eq!(
            id.to_string(),
            format!(
                r#"subject="O=farm,CN=say \"hi\"", sans=[dns:a.example, uri:spiffe://farm/b], sha256={}"#,
                id.fingerprint_hex()
            )
        );
    }

    #[test]
    fn rejects_garbage_and_trailing_data() {
        assert!(matches!(
            PeerIdentity::from_der(b"not a certificate"),
            Err(IdentityError::Parse(_))
        ));
        let mut der = cert(Some("a"), &[]);
        der.extend_from_slice(b"xx");
        assert!(matches!(
            PeerIdentity::from_der(&der),
            Err(IdentityError::TrailingData(2))
        ));
    }

    #[test]
    fn rejects_two_common_names() {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "a");
        // rcgen keeps one value per attribute type; the CN OID as a custom type adds a second.
        params
            .distinguished_name
            .push(DnType::CustomDnType(vec![2, 5, 4, 3]), "b");
        let der = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
        assert!(matches!(
            PeerIdentity::from_der(der.der()),
            Err(IdentityError::MultipleCommonNames(2))
        ));
    }
}
