//! Certificates as the ACME client handles them: an issued certificate with its key (as stored
//! and as served), the temporary self-signed certificate served until the first issuance, the
//! tls-alpn-01 challenge certificate, and the certificate request. Made with rcgen, read with
//! x509-parser, served by rustls.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use farmgate_identity::CertificateSummary;
use rcgen::{CertificateParams, CustomExtension, DistinguishedName, DnType, KeyPair};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use crate::AcmeError;

/// The subject of the temporary certificate, so a browser's certificate viewer says what it is.
pub(crate) const TEMPORARY_SUBJECT: &str = "farmgate temporary certificate (ACME issuance pending)";

/// A certificate from the CA with its private key: what is stored, served and renewed.
#[derive(Clone)]
pub(crate) struct Issued {
    /// The chain and signing key, for rustls.
    pub(crate) key: Arc<CertifiedKey>,
    /// The stored form: the private key (PKCS#8 PEM), then the chain (PEM), leaf first.
    pub(crate) pem: String,
    /// The leaf: its names and validity.
    pub(crate) summary: CertificateSummary,
}

/// Names and dates only: the stored form holds the private key.
impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

/// Why a stored or received certificate cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CertProblem {
    #[error("it holds no certificate")]
    NoCertificate,
    #[error("it holds no private key")]
    NoKey,
    #[error("its PEM is invalid")]
    Pem(#[source] rustls_pki_types::pem::Error),
    #[error("its private key cannot be used")]
    Key(#[source] rustls::Error),
    #[error("its private key does not belong to its certificate")]
    KeyMismatch,
    #[error("its certificate cannot be read")]
    X509(#[source] x509_parser::error::X509Error),
}

impl Issued {
    /// Read the stored (or just issued) form: a private key and a chain, in any order.
    pub(crate) fn from_pem(pem: String) -> Result<Issued, CertProblem> {
        let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(CertProblem::Pem)?;
        let leaf = chain.first().ok_or(CertProblem::NoCertificate)?;
        let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => CertProblem::NoKey,
            other => CertProblem::Pem(other),
        })?;
        let summary = CertificateSummary::from_der(leaf.as_ref()).map_err(CertProblem::X509)?;
        let key = certified_key(chain, key)?;
        Ok(Issued { key, pem, summary })
    }

    /// The leaf certificate.
    pub(crate) fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.key.cert.first()
    }

    /// Start of the leaf's validity.
    pub(crate) fn not_before(&self) -> SystemTime {
        self.summary.not_before.into()
    }

    /// End of the leaf's validity.
    pub(crate) fn not_after(&self) -> SystemTime {
        self.summary.not_after.into()
    }

    /// The leaf's DNS names, `a, b`.
    pub(crate) fn names(&self) -> String {
        let names: Vec<&str> = self.summary.dns_names().collect();
        names.join(", ")
    }

    /// Whether it carries every name in `domains` (case aside) and is valid at `now`.
    pub(crate) fn serves(&self, domains: &[String], now: SystemTime) -> bool {
        domains
            .iter()
            .all(|d| self.summary.dns_names().any(|n| n.eq_ignore_ascii_case(d)))
            && self.not_before() <= now + Duration::from_secs(300)
            && now < self.not_after()
    }
}

/// A rustls key for `chain` and `key`, checked to belong together.
fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, CertProblem> {
    let signing = farmgate_tls::provider()
        .key_provider
        .load_private_key(key)
        .map_err(CertProblem::Key)?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|_| CertProblem::KeyMismatch)?;
    Ok(Arc::new(certified))
}

/// A new private key and a certificate request for `domains` (names only in the SANs, as public
/// CAs want). Returns the request (DER) and the key (PKCS#8 PEM).
pub(crate) fn request(domains: &[String]) -> Result<(Vec<u8>, String), AcmeError> {
    let make = |source| AcmeError::Make {
        what: "a certificate request",
        source,
    };
    let key = KeyPair::generate().map_err(make)?;
    let mut params = CertificateParams::new(domains.to_vec()).map_err(make)?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(make)?;
    Ok((csr.der().to_vec(), key.serialize_pem()))
}

/// The self-signed certificate a listener serves until its first certificate is issued: for
/// `domains`, valid for a week, its subject saying what it is.
pub(crate) fn temporary(domains: &[String]) -> Result<Arc<CertifiedKey>, AcmeError> {
    let make = |source| AcmeError::Make {
        what: "the temporary certificate",
        source,
    };
    let mut params = CertificateParams::new(domains.to_vec()).map_err(make)?;
    params
        .distinguished_name
        .push(DnType::CommonName, TEMPORARY_SUBJECT);
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(7);
    self_signed(params, "the temporary certificate")
}

/// The tls-alpn-01 challenge certificate for `domain` (RFC 8737 §3): self-signed, the domain as
/// its only SAN, and the critical acmeIdentifier extension holding the SHA-256 `digest` of the
/// key authorization.
pub(crate) fn alpn_challenge(domain: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, AcmeError> {
    let mut params =
        CertificateParams::new(vec![domain.to_owned()]).map_err(|source| AcmeError::Make {
            what: "a tls-alpn-01 challenge certificate",
            source,
        })?;
    params.distinguished_name = DistinguishedName::new();
    params
        .custom_extensions
        .push(CustomExtension::new_acme_identifier(digest));
    self_signed(params, "a tls-alpn-01 challenge certificate")
}

fn self_signed(
    params: CertificateParams,
    what: &'static str,
) -> Result<Arc<CertifiedKey>, AcmeError> {
    let make = |source| AcmeError::Make { what, source };
    let key = KeyPair::generate().map_err(make)?;
    let cert = params.self_signed(&key).map_err(make)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // Signed just now by this very key, so no `keys_match` (which parses the certificate with
    // webpki, and webpki refuses the critical acmeIdentifier extension of challenge certificates).
    let signing = farmgate_tls::provider()
        .key_provider
        .load_private_key(der)
        .map_err(|source| AcmeError::Issued {
            source: Box::new(CertProblem::Key(source)),
        })?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use x509_parser::prelude::{FromDer as _, X509Certificate};

    use super::*;

    fn domains() -> Vec<String> {
        vec!["www.example.com".into(), "example.com".into()]
    }

    /// A certificate "issued" for `domains` the way the CA would: from our request's key.
    fn issued_pem(domains: &[String]) -> String {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(domains.to_vec())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        format!("{}{}", key.serialize_pem(), cert.pem())
    }

    #[test]
    fn stored_key_and_chain_read_back() {
        let issued = Issued::from_pem(issued_pem(&domains())).unwrap();
        assert_eq!(issued.names(), domains().join(", "));
        let now = SystemTime::now();
        assert!(issued.serves(&domains(), now));
        assert!(issued.serves(&domains()[..1], now));
        assert!(!issued.serves(&["other.example.com".to_owned()], now));
        assert!(!issued.serves(&domains(), issued.not_after()));
    }

    #[test]
    fn a_key_from_another_certificate_is_refused() {
        let one = issued_pem(&domains());
        let other = issued_pem(&domains());
        let key_end = one.find("-----END PRIVATE KEY-----").unwrap() + 26;
        let cert_start = other.find("-----BEGIN CERTIFICATE-----").unwrap();
        let mixed = format!("{}{}", &one[..key_end], &other[cert_start..]);
        assert!(matches!(
            Issued::from_pem(mixed),
            Err(CertProblem::KeyMismatch)
        ));
        assert!(matches!(
            Issued::from_pem(one[..key_end].to_owned()),
            Err(CertProblem::NoCertificate)
        ));
    }

    #[test]
    fn temporary_certificate_says_what_it_is() {
        let key = temporary(&domains()).unwrap();
        let (_, x509) = X509Certificate::from_der(key.cert[0].as_ref()).unwrap();
        assert!(x509.subject().to_string().contains(TEMPORARY_SUBJECT));
        assert!(key.keys_match().is_ok());
    }

    #[test]
    fn challenge_certificate_carries_the_critical_acme_identifier() {
        let digest = [7u8; 32];
        let key = alpn_challenge("www.example.com", &digest).unwrap();
        let (_, x509) = X509Certificate::from_der(key.cert[0].as_ref()).unwrap();
        let ext = x509
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .unwrap();
        assert!(ext.critical);
        // An OCTET STRING of the 32-byte digest.
        assert_eq!(ext.value[..2], [0x04, 32]);
        assert_eq!(ext.value[2..], digest);
    }

    #[test]
    fn request_names_only_the_domains() {
        let (csr, key) = request(&domains()).unwrap();
        assert!(!csr.is_empty());
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    }
}
