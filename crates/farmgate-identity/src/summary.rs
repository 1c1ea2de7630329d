//! [`CertificateSummary`]: what one certificate says about itself (names, issuer, validity,
//! key, purposes, hashes), read once for every place that shows a certificate to people:
//! `farmgate inspect` and `farmgate probe`, ACME status, the admin status page and metrics.
//!
//! A summary verifies nothing and refuses nothing it can read: a malformed extension reads as
//! absent (or, for the extended key usage, as permitting nothing, as a verifier would treat it).
//! Only bytes that are not an X.509 certificate at all are an error.

use std::fmt;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::ser::{Serialize, SerializeStruct as _, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::extensions::{ExtendedKeyUsage, GeneralName};
use x509_parser::nom;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_SIG_ED448, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer as _;

use crate::peer::{hex, sha256};

const SECONDS_PER_DAY: i64 = 86_400;

/// One certificate as people read it. Built with [`CertificateSummary::from_der`].
///
/// Serialised (serde) with the fields below under the same names, the dates both as RFC 3339
/// text (`not_before`, `not_after`) and as Unix seconds (`not_before_unix`, `not_after_unix`),
/// SANs as `dns:NAME` / `uri:URI` / `ip:ADDRESS` / `email:ADDRESS` text, the extended key
/// usages by name (`serverAuth`, `clientAuth`, or a dotted OID), `spki_sha256` in base64 (the
/// `spki-sha256:` pin) and `sha256` in hex. Days left depend on when you ask, so they are not
/// part of it: see [`days_left`](Self::days_left).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let key = rcgen::KeyPair::generate()?;
/// # let der = rcgen::CertificateParams::new(vec!["edge.farm.example".to_owned()])?
/// #     .self_signed(&key)?
/// #     .der()
/// #     .to_vec();
/// use farmgate_identity::{CertificateSummary, KeyPurpose};
///
/// let cert = CertificateSummary::from_der(&der)?;
/// assert_eq!(cert.dns_names().collect::<Vec<_>>(), ["edge.farm.example"]);
/// assert!(cert.permits(KeyPurpose::ClientAuth)); // no EKU extension: any purpose
/// assert!(cert.days_left(std::time::SystemTime::now()) >= 0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateSummary {
    /// Subject distinguished name, e.g. `CN=edge.farm.example, O=farm`; empty in newer public
    /// certificates.
    pub subject: String,
    /// Subject common name, if any.
    pub common_name: Option<String>,
    /// Subject alternative names, in certificate order (kinds other than these four left out).
    pub sans: Vec<SubjectAltName>,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number, hex bytes separated by colons.
    pub serial: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity (the certificate is valid up to and including this second).
    pub not_after: OffsetDateTime,
    /// Key type, e.g. `ECDSA P-256`, `RSA 2048`, `Ed25519`.
    pub key: String,
    /// Whether it is a CA certificate (basicConstraints CA:TRUE).
    pub ca: bool,
    /// Whether its subject and issuer are the same name (a root, usually).
    pub self_signed: bool,
    /// Extended key usages; `None`: no EKU extension, so any purpose. A malformed extension
    /// reads as an empty list: it permits nothing a verifier would accept.
    pub eku: Option<Vec<KeyPurpose>>,
    /// SHA-256 of the DER SubjectPublicKeyInfo: what `spki-sha256:` allow entries pin.
    pub spki_sha256: [u8; 32],
    /// SHA-256 of the whole certificate DER: its fingerprint.
    pub sha256: [u8; 32],
}

/// One subject alternative name. Displayed (and serialised) as `dns:NAME`, `uri:URI`,
/// `ip:ADDRESS` or `email:ADDRESS`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubjectAltName {
    /// A dNSName, as written in the certificate.
    Dns(String),
    /// A uniformResourceIdentifier, e.g. a SPIFFE ID.
    Uri(String),
    /// An iPAddress.
    Ip(IpAddr),
    /// An rfc822Name.
    Email(String),
}

/// One extended key usage (RFC 5280 §4.2.1.12). Displayed (and serialised) by its RFC name:
/// `serverAuth`, `clientAuth`, `codeSigning`, `emailProtection`, `timeStamping`,
/// `OCSPSigning`, `anyExtendedKeyUsage`, or the dotted OID of any other.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyPurpose {
    /// TLS server authentication (`id-kp-serverAuth`).
    ServerAuth,
    /// TLS client authentication (`id-kp-clientAuth`).
    ClientAuth,
    /// Code signing.
    CodeSigning,
    /// E-mail protection (S/MIME).
    EmailProtection,
    /// Time stamping.
    TimeStamping,
    /// OCSP response signing.
    OcspSigning,
    /// `anyExtendedKeyUsage`: every purpose.
    Any,
    /// Any other purpose, as a dotted OID.
    Other(String),
}

impl CertificateSummary {
    /// Reads a DER-encoded certificate. Bytes after the certificate are ignored.
    pub fn from_der(der: &[u8]) -> Result<CertificateSummary, X509Error> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| match e {
            nom::Err::Error(e) | nom::Err::Failure(e) => e,
            nom::Err::Incomplete(_) => X509Error::InvalidCertificate,
        })?;
        let registry = x509_parser::objects::oid_registry();
        let subject = cert
            .subject()
            .to_string_with_registry(registry)
            .unwrap_or_else(|_| cert.subject().to_string());
        let issuer = cert
            .issuer()
            .to_string_with_registry(registry)
            .unwrap_or_else(|_| cert.issuer().to_string());
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        let sans = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(SubjectAltName::from_general_name)
                .collect(),
            _ => Vec::new(),
        };
        let eku = match cert.extended_key_usage() {
            Ok(Some(eku)) => Some(KeyPurpose::list(eku.value)),
            Err(_) => Some(Vec::new()),
            Ok(None) => None,
        };
        let validity = cert.validity();
        Ok(CertificateSummary {
            subject,
            common_name,
            sans,
            issuer,
            serial: cert.raw_serial_as_string(),
            not_before: validity.not_before.to_datetime(),
            not_after: validity.not_after.to_datetime(),
            key: key_type(&cert),
            ca: cert.is_ca(),
            self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
            eku,
            spki_sha256: sha256(cert.public_key().raw),
            sha256: sha256(der),
        })
    }

    /// Seconds from `now` until [`not_after`](Self::not_after); negative once it has expired.
    pub fn seconds_until_expiry(&self, now: impl Into<OffsetDateTime>) -> i64 {
        (self.not_after - now.into()).whole_seconds()
    }

    /// Whole days from `now` until [`not_after`](Self::not_after), rounded down: 0 on its last
    /// day, negative as soon as it has expired (-1 during the first day after).
    pub fn days_left(&self, now: impl Into<OffsetDateTime>) -> i64 {
        self.seconds_until_expiry(now).div_euclid(SECONDS_PER_DAY)
    }

    /// Whether it is within its validity at `now` (both ends included).
    pub fn is_valid_at(&self, now: impl Into<OffsetDateTime>) -> bool {
        (self.not_before..=self.not_after).contains(&now.into())
    }

    /// Whole days from [`not_before`](Self::not_before) to [`not_after`](Self::not_after).
    pub fn lifetime_days(&self) -> i64 {
        (self.not_after - self.not_before).whole_days()
    }

    /// Whether its extended key usage permits `purpose`: it has no EKU extension, or lists the
    /// purpose or `anyExtendedKeyUsage`. A chain permits a purpose only if every certificate
    /// in it does (OpenSSL, Go and rustls check the intermediates too).
    pub fn permits(&self, purpose: KeyPurpose) -> bool {
        self.eku
            .as_ref()
            .is_none_or(|list| list.iter().any(|p| *p == purpose || *p == KeyPurpose::Any))
    }

    /// The DNS SANs, as written in the certificate.
    pub fn dns_names(&self) -> impl Iterator<Item = &str> {
        self.sans.iter().filter_map(|san| match san {
            SubjectAltName::Dns(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// The URI SANs (SPIFFE IDs, usually).
    pub fn uris(&self) -> impl Iterator<Item = &str> {
        self.sans.iter().filter_map(|san| match san {
            SubjectAltName::Uri(uri) => Some(uri.as_str()),
            _ => None,
        })
    }

    /// The IP address SANs.
    pub fn ip_addresses(&self) -> impl Iterator<Item = IpAddr> {
        self.sans.iter().filter_map(|san| match san {
            SubjectAltName::Ip(ip) => Some(*ip),
            _ => None,
        })
    }

    /// [`spki_sha256`](Self::spki_sha256) in standard base64 with padding, as
    /// `spki-sha256:` allow entries write it.
    pub fn spki_pin(&self) -> String {
        STANDARD.encode(self.spki_sha256)
    }

    /// [`sha256`](Self::sha256) in lowercase hex without separators.
    pub fn fingerprint_hex(&self) -> String {
        hex(&self.sha256)
    }
}

/// The fields as documented on [`CertificateSummary`].
impl Serialize for CertificateSummary {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("CertificateSummary", 15)?;
        s.serialize_field("subject", &self.subject)?;
        s.serialize_field("common_name", &self.common_name)?;
        s.serialize_field("sans", &self.sans)?;
        s.serialize_field("issuer", &self.issuer)?;
        s.serialize_field("serial", &self.serial)?;
        s.serialize_field("not_before", &rfc3339(self.not_before))?;
        s.serialize_field("not_before_unix", &self.not_before.unix_timestamp())?;
        s.serialize_field("not_after", &rfc3339(self.not_after))?;
        s.serialize_field("not_after_unix", &self.not_after.unix_timestamp())?;
        s.serialize_field("key", &self.key)?;
        s.serialize_field("ca", &self.ca)?;
        s.serialize_field("self_signed", &self.self_signed)?;
        s.serialize_field("eku", &self.eku)?;
        s.serialize_field("spki_sha256", &self.spki_pin())?;
        s.serialize_field("sha256", &self.fingerprint_hex())?;
        s.end()
    }
}

impl SubjectAltName {
    fn from_general_name(name: &GeneralName<'_>) -> Option<SubjectAltName> {
        Some(match name {
            GeneralName::DNSName(dns) => SubjectAltName::Dns((*dns).to_owned()),
            GeneralName::URI(uri) => SubjectAltName::Uri((*uri).to_owned()),
            GeneralName::RFC822Name(mail) => SubjectAltName::Email((*mail).to_owned()),
            GeneralName::IPAddress(bytes) => SubjectAltName::Ip(ip_address(bytes)?),
            _ => return None,
        })
    }
}

impl fmt::Display for SubjectAltName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectAltName::Dns(name) => write!(f, "dns:{name}"),
            SubjectAltName::Uri(uri) => write!(f, "uri:{uri}"),
            SubjectAltName::Ip(ip) => write!(f, "ip:{ip}"),
            SubjectAltName::Email(mail) => write!(f, "email:{mail}"),
        }
    }
}

impl Serialize for SubjectAltName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl KeyPurpose {
    /// The purposes an EKU extension lists, the well-known ones first.
    fn list(eku: &ExtendedKeyUsage<'_>) -> Vec<KeyPurpose> {
        let known = [
            (eku.server_auth, KeyPurpose::ServerAuth),
            (eku.client_auth, KeyPurpose::ClientAuth),
            (eku.code_signing, KeyPurpose::CodeSigning),
            (eku.email_protection, KeyPurpose::EmailProtection),
            (eku.time_stamping, KeyPurpose::TimeStamping),
            (eku.ocsp_signing, KeyPurpose::OcspSigning),
            (eku.any, KeyPurpose::Any),
        ];
        known
            .into_iter()
            .filter_map(|(present, purpose)| present.then_some(purpose))
            .chain(
                eku.other
                    .iter()
                    .map(|oid| KeyPurpose::Other(oid.to_id_string())),
            )
            .collect()
    }

    /// The RFC 5280 name, e.g. `clientAuth`; a dotted OID for [`KeyPurpose::Other`].
    pub fn name(&self) -> &str {
        match self {
            KeyPurpose::ServerAuth => "serverAuth",
            KeyPurpose::ClientAuth => "clientAuth",
            KeyPurpose::CodeSigning => "codeSigning",
            KeyPurpose::EmailProtection => "emailProtection",
            KeyPurpose::TimeStamping => "timeStamping",
            KeyPurpose::OcspSigning => "OCSPSigning",
            KeyPurpose::Any => "anyExtendedKeyUsage",
            KeyPurpose::Other(oid) => oid,
        }
    }
}

impl fmt::Display for KeyPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for KeyPurpose {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

fn key_type(cert: &X509Certificate<'_>) -> String {
    let spki = cert.public_key();
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        let name = match curve {
            Some(c) if c == OID_EC_P256 => "P-256".to_owned(),
            Some(c) if c == OID_NIST_EC_P384 => "P-384".to_owned(),
            Some(c) if c == OID_NIST_EC_P521 => "P-521".to_owned(),
            Some(c) => c.to_id_string(),
            None => "(unnamed curve)".to_owned(),
        };
        format!("ECDSA {name}")
    } else if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let bits = spki.parsed().map(|key| key.key_size()).unwrap_or(0);
        format!("RSA {bits}")
    } else if *algorithm == OID_SIG_ED25519 {
        "Ed25519".to_owned()
    } else if *algorithm == OID_SIG_ED448 {
        "Ed448".to_owned()
    } else {
        format!("unknown ({})", algorithm.to_id_string())
    }
}

fn ip_address(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::{Duration as StdDuration, SystemTime};

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        SanType,
    };
    use time::{Duration, macros::datetime};

    use super::*;

    const NOT_BEFORE: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);
    const NOT_AFTER: OffsetDateTime = datetime!(2026-01-31 00:00:00 UTC);

    fn params() -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.not_before = NOT_BEFORE;
        params.not_after = NOT_AFTER;
        params
    }

    fn summary(params: &CertificateParams, key: &KeyPair) -> CertificateSummary {
        CertificateSummary::from_der(params.self_signed(key).unwrap().der()).unwrap()
    }

    fn edge() -> (CertificateParams, KeyPair) {
        let mut params = params();
        params
            .distinguished_name
            .push(DnType::CommonName, "edge.farm.test");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "farm");
        params.subject_alt_names = vec![
            SanType::DnsName("edge.farm.test".try_into().unwrap()),
            SanType::URI("spiffe://farm.test/edge".try_into().unwrap()),
            SanType::IpAddress("10.0.0.1".parse().unwrap()),
            SanType::IpAddress("::1".parse().unwrap()),
            SanType::Rfc822Name("ops@farm.test".try_into().unwrap()),
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        (params, KeyPair::generate().unwrap())
    }

    #[test]
    fn reads_names_issuer_dates_key_and_purposes() {
        let (params, key) = edge();
        let cert = summary(&params, &key);
        assert_eq!(cert.subject, "CN=edge.farm.test, O=farm");
        assert_eq!(cert.common_name.as_deref(), Some("edge.farm.test"));
        assert_eq!(cert.issuer, cert.subject);
        assert!(cert.self_signed);
        assert!(!cert.ca);
        let sans: Vec<String> = cert.sans.iter().map(ToString::to_string).collect();
        assert_eq!(
            sans,
            [
                "dns:edge.farm.test",
                "uri:spiffe://farm.test/edge",
                "ip:10.0.0.1",
                "ip:::1",
                "email:ops@farm.test"
            ]
        );
        assert_eq!(cert.dns_names().collect::<Vec<_>>(), ["edge.farm.test"]);
        assert_eq!(cert.uris().collect::<Vec<_>>(), ["spiffe://farm.test/edge"]);
        assert_eq!(cert.ip_addresses().count(), 2);
        assert_eq!(cert.not_before, NOT_BEFORE);
        assert_eq!(cert.not_after, NOT_AFTER);
        assert_eq!(cert.lifetime_days(), 30);
        assert_eq!(cert.key, "ECDSA P-256");
        assert_eq!(cert.eku, Some(vec![KeyPurpose::ClientAuth]));
        assert!(!cert.serial.is_empty());
    }

    #[test]
    fn hashes_are_those_of_the_peer_identity() {
        let (params, key) = edge();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        let cert = CertificateSummary::from_der(&der).unwrap();
        let id = crate::PeerIdentity::from_der(&der).unwrap();
        assert_eq!(&cert.spki_sha256, id.spki_sha256());
        assert_eq!(cert.spki_pin(), id.spki_pin());
        assert_eq!(cert.fingerprint_hex(), id.fingerprint_hex());
    }

    #[test]
    fn days_left_round_down_and_go_negative_the_moment_it_expires() {
        let (params, key) = edge();
        let cert = summary(&params, &key);
        let at = |offset: Duration| NOT_AFTER + offset;
        assert_eq!(cert.seconds_until_expiry(at(Duration::seconds(-90))), 90);
        assert_eq!(cert.days_left(at(-Duration::days(10))), 10);
        assert_eq!(cert.days_left(at(-Duration::hours(30))), 1);
        assert_eq!(cert.days_left(at(-Duration::hours(1))), 0);
        assert_eq!(cert.days_left(NOT_AFTER), 0);
        assert!(cert.is_valid_at(NOT_AFTER));
        assert_eq!(cert.seconds_until_expiry(at(Duration::seconds(1))), -1);
        assert_eq!(cert.days_left(at(Duration::seconds(1))), -1);
        assert!(!cert.is_valid_at(at(Duration::seconds(1))));
        assert_eq!(cert.days_left(at(Duration::days(10))), -10);
        assert!(!cert.is_valid_at(NOT_BEFORE - Duration::seconds(1)));
    }

    #[test]
    fn now_may_be_a_system_time() {
        let (params, key) = edge();
        let cert = summary(&params, &key);
        let now = SystemTime::UNIX_EPOCH
            + StdDuration::from_secs(u64::try_from(NOT_AFTER.unix_timestamp()).unwrap())
            - StdDuration::from_secs(86_400 * 3);
        assert_eq!(cert.days_left(now), 3);
        assert_eq!(cert.seconds_until_expiry(now), 3 * 86_400);
    }

    #[test]
    fn purposes_are_permitted_by_absence_by_name_or_by_any() {
        let key = KeyPair::generate().unwrap();
        let with = |ekus: Vec<ExtendedKeyUsagePurpose>| {
            let mut params = params();
            params.extended_key_usages = ekus;
            summary(&params, &key)
        };
        let none = with(Vec::new());
        assert_eq!(none.eku, None);
        assert!(none.permits(KeyPurpose::ClientAuth));
        assert!(none.permits(KeyPurpose::ServerAuth));

        let server = with(vec![ExtendedKeyUsagePurpose::ServerAuth]);
        assert!(server.permits(KeyPurpose::ServerAuth));
        assert!(!server.permits(KeyPurpose::ClientAuth));

        let any = with(vec![
            ExtendedKeyUsagePurpose::CodeSigning,
            ExtendedKeyUsagePurpose::Any,
            ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 4, 1, 99999, 1]),
        ]);
        assert!(any.permits(KeyPurpose::ClientAuth));
        let names: Vec<String> = any.eku.unwrap().iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            ["codeSigning", "anyExtendedKeyUsage", "1.3.6.1.4.1.99999.1"]
        );
    }

    #[test]
    fn a_ca_without_a_subject_reads_as_such() {
        let mut params = params();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = summary(&params, &KeyPair::generate().unwrap());
        assert!(cert.ca);
        assert_eq!(cert.subject, "");
        assert_eq!(cert.common_name, None);
        assert!(cert.sans.is_empty());
    }

    #[test]
    fn serialises_dates_both_ways_and_hashes_as_allow_entries_write_them() {
        let (params, key) = edge();
        let cert = summary(&params, &key);
        let json = serde_json::to_value(&cert).unwrap();
        assert_eq!(json["not_before"], "2026-01-01T00:00:00Z");
        assert_eq!(json["not_after"], "2026-01-31T00:00:00Z");
        assert_eq!(json["not_after_unix"], NOT_AFTER.unix_timestamp());
        assert_eq!(json["not_before_unix"], NOT_BEFORE.unix_timestamp());
        assert_eq!(json["sans"][0], "dns:edge.farm.test");
        assert_eq!(json["sans"][2], "ip:10.0.0.1");
        assert_eq!(json["eku"][0], "clientAuth");
        assert_eq!(json["spki_sha256"], cert.spki_pin());
        assert_eq!(json["sha256"], cert.fingerprint_hex());
        assert_eq!(json["common_name"], "edge.farm.test");
        assert_eq!(json["key"], "ECDSA P-256");
        assert_eq!(json["ca"], false);
        assert_eq!(json.as_object().unwrap().len(), 15);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(CertificateSummary::from_der(b"not a certificate").is_err());
        assert!(CertificateSummary::from_der(b"").is_err());
    }
}
