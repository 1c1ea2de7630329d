//! [`Authority`]: a CA that signs certificates, and the [`Issued`] certificates it returns.

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, CrlDistributionPoint, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyIdMethod, KeyUsagePurpose,
    NameConstraints, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::extensions::ParsedExtension;
use x509_parser::nom;
use x509_parser::prelude::FromDer as _;

use crate::crl::Revoked;
use crate::spec::{CaSpec, CertSpec, Usage};
use crate::{Crl, KeyPair, PkiError, PublicKey, constraints, crl, pem};

/// A certificate authority that can sign: its certificate, its key, and the chain from its
/// certificate up to (not including) the root.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    subject: String,
    key_id: KeyIdMethod,
    cert_der: Vec<u8>,
    cert_pem: String,
    /// PEM of this CA's certificate and of its issuers, excluding the root; empty for a root.
    chain: Vec<String>,
}

/// A certificate fresh from [`Authority::certify`], for a key the CA does not hold.
#[derive(Debug, Clone)]
pub struct Certified {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The certificate alone, PEM.
    pub cert_pem: String,
    /// The certificate then the issuing intermediates, PEM, without the root.
    pub chain_pem: String,
    /// The serial number, big-endian, as written in the certificate (positive, 16 bytes).
    pub serial: Vec<u8>,
}

/// A certificate fresh from [`Authority::issue`], with its key.
#[derive(Clone)]
pub struct Issued {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The certificate alone, PEM.
    pub cert_pem: String,
    /// The certified key.
    pub key: KeyPair,
    /// The certified key, PKCS#8 PEM.
    pub key_pem: String,
    /// The certificate then the issuing intermediates, PEM, without the root: what a TLS peer
    /// presents.
    pub chain_pem: String,
    /// The serial number, big-endian, as written in the certificate (positive, 16 bytes).
    pub serial: Vec<u8>,
}

impl Authority {
    /// Creates a self-signed root CA.
    pub fn new_root(spec: &CaSpec) -> Result<Self, PkiError> {
        let key = key_or_generate(&spec.key)?;
        let mut params = ca_params(spec)?;
        // A root's serial is random too; its authority key identifier would only repeat its
        // subject key identifier.
        params.serial_number = Some(random_serial()?);
        let cert = params
            .self_signed(&key)
            .map_err(|source| PkiError::Certificate {
                subject: spec.name.clone(),
                source,
            })?;
        Ok(Self {
            subject: format!("CN={}", spec.name),
            key_id: params.key_identifier_method.clone(),
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            chain: Vec::new(),
        })
    }

    /// Loads an existing CA from its certificate PEM and private key PEM. The certificate PEM
    /// may continue with the CA's own chain (its issuers); a self-signed root in it is dropped.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let ders = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(PkiError::CaPem)?;
        let Some(ca_der) = ders.first() else {
            return Err(PkiError::NoCaCertificate);
        };
        let key = KeyPair::from_pem(key_pem)?;

        let ca = parse(ca_der)?;
        let subject = ca.subject().to_string();
        let can_sign = ca.is_ca()
            && ca
                .key_usage()
                .ok()
                .flatten()
                .is_none_or(|ku| ku.value.key_cert_sign());
        if !can_sign {
            return Err(PkiError::NotACa { subject });
        }
        if ca.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::KeyMismatch { subject });
        }
        let key_id = match subject_key_id(&ca) {
            Some(id) => KeyIdMethod::PreSpecified(id),
            None => KeyIdMethod::Sha256,
        };

        let mut chain = Vec::new();
        for der in &ders {
            let cert = parse(der)?;
            if cert.subject().as_raw() != cert.issuer().as_raw() {
                chain.push(pem::encode("CERTIFICATE", der));
            }
        }
        let issuer = Issuer::from_ca_cert_der(ca_der, key).map_err(|source| PkiError::Issuer {
            subject: subject.clone(),
            source,
        })?;
        Ok(Self {
            issuer,
            subject,
            key_id,
            cert_der: ca_der.to_vec(),
            cert_pem: pem::encode("CERTIFICATE", ca_der),
            chain,
        })
    }

    /// Creates an intermediate CA signed by this one.
    pub fn intermediate(&self, spec: &CaSpec) -> Result<Self, PkiError> {
        let key = key_or_generate(&spec.key)?;
        let mut params = ca_params(spec)?;
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        let cert =
            params
                .signed_by(&key, &self.issuer)
                .map_err(|source| PkiError::Certificate {
                    subject: spec.name.clone(),
                    source,
                })?;
        let cert_pem = cert.pem();
        let mut chain = vec![cert_pem.clone()];
        chain.extend(self.chain.iter().cloned());
        Ok(Self {
            subject: format!("CN={}", spec.name),
            key_id: params.key_identifier_method.clone(),
            cert_der: cert.der().to_vec(),
            cert_pem,
            issuer: Issuer::new(params, key),
            chain,
        })
    }

    /// Issues a leaf certificate with a random, positive 16-byte serial number, for the key of
    /// `spec` or a fresh one.
    pub fn issue(&self, spec: &CertSpec) -> Result<Issued, PkiError> {
        let key = key_or_generate(&spec.key)?;
        let certified = self.certify(spec, &PublicKey::from(key.clone()))?;
        Ok(Issued {
            cert_der: certified.cert_der,
            cert_pem: certified.cert_pem,
            key_pem: key.to_pem(),
            key,
            chain_pem: certified.chain_pem,
            serial: certified.serial,
        })
    }

    /// Certifies `key`, whose private half this CA never sees (a renewal that keeps the key,
    /// a key generated where it lives), as `spec` describes; `spec.key` is ignored.
    pub fn certify(&self, spec: &CertSpec, key: &PublicKey) -> Result<Certified, PkiError> {
        let subject = spec.describe();
        check_validity(&subject, spec.not_before, spec.not_after)?;
        let serial = random_serial()?;

        let mut params = CertificateParams::default();
        params.distinguished_name =
            distinguished_name(spec.common_name.as_deref(), spec.organization.as_deref());
        for name in &spec.dns_names {
            params.subject_alt_names.push(SanType::DnsName(ia5(name)?));
        }
        for ip in &spec.ip_addresses {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        for uri in &spec.uris {
            params.subject_alt_names.push(SanType::URI(ia5(uri)?));
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = spec.usages.iter().map(|u| eku(*u)).collect();
        if !spec.crl_urls.is_empty() {
            params.crl_distribution_points = vec![CrlDistributionPoint {
                uris: spec.crl_urls.clone(),
            }];
        }
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.serial_number = Some(serial.clone());
        params.use_authority_key_identifier_extension = true;

        let cert = params
            .signed_by(key, &self.issuer)
            .map_err(|source| PkiError::Certificate { subject, source })?;
        let cert_pem = cert.pem();
        Ok(Certified {
            cert_der: cert.der().to_vec(),
            chain_pem: format!("{cert_pem}{}", self.chain_pem()),
            cert_pem,
            serial: serial.to_bytes(),
        })
    }

    /// Signs CRL number `number` listing `revoked`, valid from `this_update` to `next_update`.
    pub fn crl_numbered(
        &self,
        revoked: &[Revoked],
        number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Crl, PkiError> {
        crl::sign_numbered(
            &self.issuer,
            &self.key_id,
            revoked,
            &number.to_be_bytes(),
            this_update,
            next_update,
        )
        .map_err(|source| PkiError::Crl {
            issuer: self.subject.clone(),
            source,
        })
    }

    /// Signs a CRL listing these serial numbers as revoked (since `this_update`). The CRL
    /// number is derived from `this_update`, so later CRLs have larger numbers.
    pub fn crl<S: AsRef<[u8]>>(
        &self,
        revoked_serials: impl IntoIterator<Item = S>,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Crl, PkiError> {
        crl::sign(
            &self.issuer,
            &self.key_id,
            revoked_serials,
            this_update,
            next_update,
        )
        .map_err(|source| PkiError::Crl {
            issuer: self.subject.clone(),
            source,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA's private key, PKCS#8 PEM. Secret: write it to a file only the owner can read.
    pub fn key_pem(&self) -> String {
        self.issuer.key().to_pem()
    }

    /// The CA's key.
    pub fn key(&self) -> &KeyPair {
        self.issuer.key()
    }

    /// The CA's subject distinguished name as text, e.g. `CN=farm root CA`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// This CA's certificate followed by its issuers up to (excluding) the root, PEM: what
    /// follows a leaf in a chain. Empty for a root.
    pub fn chain_pem(&self) -> String {
        self.chain.concat()
    }
}

/// Shows the subject only: the key stays out of logs.
impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authority")
            .field("subject", &self.subject)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// Shows everything but the private key.
impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key", &self.key)
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

fn ca_params(spec: &CaSpec) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(Some(&spec.name), None);
    params.is_ca = IsCa::Ca(match spec.path_len {
        Some(len) => BasicConstraints::Constrained(len),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.extended_key_usages = spec.usages.iter().map(|u| eku(*u)).collect();
    if !spec.permitted_uri_hosts.is_empty() {
        // rcgen writes DNS, IP, e-mail and directory-name subtrees only; the extension with a
        // URI subtree is written whole here (constraints.rs).
        params
            .custom_extensions
            .push(constraints::name_constraints(spec));
    } else if !spec.permitted_dns.is_empty() || !spec.permitted_ips.is_empty() {
        let dns = spec
            .permitted_dns
            .iter()
            .map(|name| GeneralSubtree::DnsName(name.clone()));
        let ips = spec.permitted_ips.iter().map(|range| {
            GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
                range.network(),
                range.prefix_len(),
            ))
        });
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: dns.chain(ips).collect(),
            excluded_subtrees: Vec::new(),
        });
    }
    check_validity(&spec.name, spec.not_before, spec.not_after)?;
    params.not_before = spec.not_before;
    params.not_after = spec.not_after;
    Ok(params)
}

fn check_validity(
    subject: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<(), PkiError> {
    if not_after <= not_before {
        return Err(PkiError::Validity {
            subject: subject.to_owned(),
            not_before,
            not_after,
        });
    }
    Ok(())
}

fn distinguished_name(common_name: Option<&str>, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(cn) = common_name {
        dn.push(DnType::CommonName, cn);
    }
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    dn
}

fn eku(usage: Usage) -> ExtendedKeyUsagePurpose {
    match usage {
        Usage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
        Usage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
    }
}

fn ia5(name: &str) -> Result<rcgen::string::Ia5String, PkiError> {
    name.try_into().map_err(|source| PkiError::Name {
        name: name.to_owned(),
        source,
    })
}

fn key_or_generate(key: &Option<KeyPair>) -> Result<KeyPair, PkiError> {
    match key {
        Some(key) => Ok(key.clone()),
        None => KeyPair::generate(),
    }
}

/// 16 random bytes with the top bit clear (a positive INTEGER) and a non-zero first byte (so
/// the DER encoding keeps all 16 bytes and equals what we report).
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(PkiError::Random)?;
    bytes[0] = (bytes[0] & 0x7f).max(1);
    Ok(SerialNumber::from_slice(&bytes))
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, PkiError> {
    match X509Certificate::from_der(der) {
        Ok((_, cert)) => Ok(cert),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(PkiError::CaDer(e)),
        Err(nom::Err::Incomplete(_)) => Err(PkiError::CaDer(X509Error::InvalidCertificate)),
    }
}

fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use rustls_pki_types::UnixTime;
    use time::Duration;
    use webpki::{
        CertRevocationList, EndEntityCert, KeyUsage, OwnedCertRevocationList, RevocationCheckDepth,
        RevocationOptionsBuilder,
    };

    use super::*;

    fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// webpki's verdict on a presented chain (leaf first) against `root`.
    fn verify(
        root: &Authority,
        chain_pem: &str,
        usage: KeyUsage,
        crl: Option<&Crl>,
    ) -> Result<(), webpki::Error> {
        let certs = pem_certs(chain_pem);
        let root_der = CertificateDer::from(root.cert_der());
        let anchors = [webpki::anchor_from_trusted_cert(&root_der).unwrap()];
        let crls: Vec<CertRevocationList<'_>> = crl
            .map(|crl| OwnedCertRevocationList::from_der(crl.der()).unwrap().into())
            .into_iter()
            .collect();
        let crl_refs: Vec<&CertRevocationList<'_>> = crls.iter().collect();
        let revocation = (!crl_refs.is_empty()).then(|| {
            RevocationOptionsBuilder::new(&crl_refs)
                .unwrap()
                .with_depth(RevocationCheckDepth::EndEntity)
                .build()
        });
        EndEntityCert::try_from(&certs[0])
            .unwrap()
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                &certs[1..],
                UnixTime::now(),
                usage,
                revocation,
                None,
            )
            .map(|_| ())
    }

    fn hierarchy() -> (Authority, Authority) {
        let root = Authority::new_root(&CaSpec::new("test root")).unwrap();
        let intermediate = root
            .intermediate(&CaSpec::new("test intermediate").path_len(0))
            .unwrap();
        (root, intermediate)
    }

    fn x509(der: &[u8]) -> X509Certificate<'_> {
        parse(der).unwrap()
    }

    /// (serverAuth, clientAuth) from the EKU extension; `None` without the extension.
    fn ekus(der: &[u8]) -> Option<(bool, bool)> {
        let cert = x509(der);
        let eku = cert.extended_key_usage().unwrap()?;
        Some((eku.value.server_auth, eku.value.client_auth))
    }

    #[test]
    fn client_chain_verifies_for_client_auth_only() {
        let (root, intermediate) = hierarchy();
        let client = intermediate
            .issue(&CertSpec::client("edge.farm.test"))
            .unwrap();
        assert_eq!(
            verify(&root, &client.chain_pem, KeyUsage::client_auth(), None),
            Ok(())
        );
        assert!(matches!(
            verify(&root, &client.chain_pem, KeyUsage::server_auth(), None),
            Err(webpki::Error::RequiredEkuNotFoundContext(_))
        ));
    }

    #[test]
    fn server_chain_verifies_for_server_auth_and_its_name() {
        let (root, intermediate) = hierarchy();
        let server = intermediate
            .issue(&CertSpec::server("backend.farm.test").ip("127.0.0.1".parse().unwrap()))
            .unwrap();
        assert_eq!(
            verify(&root, &server.chain_pem, KeyUsage::server_auth(), None),
            Ok(())
        );
        assert!(verify(&root, &server.chain_pem, KeyUsage::client_auth(), None).is_err());
        let der = CertificateDer::from(server.cert_der.as_slice());
        let ee = EndEntityCert::try_from(&der).unwrap();
        for name in ["backend.farm.test", "127.0.0.1"] {
            let name = rustls_pki_types::ServerName::try_from(name).unwrap();
            assert_eq!(ee.verify_is_valid_for_subject_name(&name), Ok(()));
        }
    }

    #[test]
    fn leaf_signed_by_root_verifies_without_intermediates() {
        let (root, _) = hierarchy();
        let client = root.issue(&CertSpec::client("edge")).unwrap();
        assert_eq!(client.chain_pem, client.cert_pem);
        assert_eq!(
            verify(&root, &client.chain_pem, KeyUsage::client_auth(), None),
            Ok(())
        );
    }

    #[test]
    fn chain_is_leaf_then_intermediate_without_root() {
        let (root, intermediate) = hierarchy();
        let leaf = intermediate.issue(&CertSpec::client("edge")).unwrap();
        let chain = pem_certs(&leaf.chain_pem);
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0].as_ref(), leaf.cert_der);
        assert_eq!(chain[1].as_ref(), intermediate.cert_der());
        assert!(root.chain_pem().is_empty());
        assert_eq!(intermediate.chain_pem(), intermediate.cert_pem());
    }

    #[test]
    fn ekus_are_present_or_absent_as_specified() {
        let (_, intermediate) = hierarchy();
        let client = intermediate.issue(&CertSpec::client("c")).unwrap();
        let (server, client) = ekus(&client.cert_der).unwrap();
        assert!(client && !server);

        let both = CertSpec::client("b").usages(&[Usage::ServerAuth, Usage::ClientAuth]);
        let both = intermediate.issue(&both).unwrap();
        let (server, client) = ekus(&both.cert_der).unwrap();
        assert!(client && server);

        let none = intermediate
            .issue(&CertSpec::client("n").usages(&[]))
            .unwrap();
        assert!(x509(&none.cert_der).extended_key_usage().unwrap().is_none());
        assert!(
            x509(intermediate.cert_der())
                .extended_key_usage()
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn leaf_without_eku_verifies_for_any_purpose() {
        let (root, intermediate) = hierarchy();
        let leaf = intermediate
            .issue(&CertSpec::client("any").usages(&[]))
            .unwrap();
        assert_eq!(
            verify(&root, &leaf.chain_pem, KeyUsage::client_auth(), None),
            Ok(())
        );
        assert_eq!(
            verify(&root, &leaf.chain_pem, KeyUsage::server_auth(), None),
            Ok(())
        );
    }

    #[test]
    fn server_auth_only_intermediate_refuses_client_leaves() {
        let root = Authority::new_root(&CaSpec::new("public-like root")).unwrap();
        let spec = CaSpec::new("public-like intermediate").usages(&[Usage::ServerAuth]);
        let intermediate = root.intermediate(&spec).unwrap();
        let (server, client) = ekus(intermediate.cert_der()).unwrap();
        assert!(server && !client);

        let client = intermediate.issue(&CertSpec::client("edge")).unwrap();
        assert!(verify(&root, &client.chain_pem, KeyUsage::client_auth(), None).is_err());
        let server = intermediate
            .issue(&CertSpec::server("www").no_common_name())
            .unwrap();
        assert_eq!(
            verify(&root, &server.chain_pem, KeyUsage::server_auth(), None),
            Ok(())
        );
    }

    #[test]
    fn ca_certificates_are_cas() {
        let (root, intermediate) = hierarchy();
        let root_cert = x509(root.cert_der());
        assert!(root_cert.is_ca());
        assert_eq!(root_cert.subject().as_raw(), root_cert.issuer().as_raw());
        let bc = x509(intermediate.cert_der())
            .basic_constraints()
            .unwrap()
            .unwrap()
            .value
            .clone();
        assert!(bc.ca);
        assert_eq!(bc.path_len_constraint, Some(0));
        let leaf = intermediate.issue(&CertSpec::client("edge")).unwrap();
        assert!(!x509(&leaf.cert_der).is_ca());
    }

    #[test]
    fn name_constraints_present_when_asked_and_enforced() {
        let root = Authority::new_root(&CaSpec::new("root")).unwrap();
        let constrained = root
            .intermediate(&CaSpec::new("farm only").permit_dns("farm.test"))
            .unwrap();
        let constrained_cert = x509(constrained.cert_der());
        let nc = constrained_cert.name_constraints().unwrap().unwrap();
        assert!(nc.critical);
        assert_eq!(nc.value.permitted_subtrees.as_ref().map(Vec::len), Some(1));
        assert!(x509(root.cert_der()).name_constraints().unwrap().is_none());

        let inside = constrained
            .issue(&CertSpec::client("edge.farm.test"))
            .unwrap();
        assert_eq!(
            verify(&root, &inside.chain_pem, KeyUsage::client_auth(), None),
            Ok(())
        );
        let outside = constrained
            .issue(&CertSpec::client("edge.elsewhere.test"))
            .unwrap();
        assert_eq!(
            verify(&root, &outside.chain_pem, KeyUsage::client_auth(), None),
            Err(webpki::Error::NameConstraintViolation)
        );
    }

    #[test]
    fn serials_are_random_positive_and_as_written() {
        let (_, intermediate) = hierarchy();
        let a = intermediate.issue(&CertSpec::client("a")).unwrap();
        let b = intermediate.issue(&CertSpec::client("a")).unwrap();
        assert_eq!(a.serial.len(), 16);
        assert!(a.serial[0] > 0 && a.serial[0] < 0x80);
        assert_ne!(a.serial, b.serial);
        assert_eq!(x509(&a.cert_der).raw_serial(), a.serial.as_slice());
    }

    #[test]
    fn validity_is_as_specified_and_checked() {
        let (root, intermediate) = hierarchy();
        let now = OffsetDateTime::now_utc();
        let expired =
            CertSpec::client("old").valid(now - Duration::days(10), now - Duration::days(1));
        let expired = intermediate.issue(&expired).unwrap();
        assert!(matches!(
            verify(&root, &expired.chain_pem, KeyUsage::client_auth(), None),
            Err(webpki::Error::CertExpired { .. })
        ));
        let validity = x509(&expired.cert_der).validity().clone();
        assert_eq!(
            validity.not_after.timestamp(),
            (now - Duration::days(1)).unix_timestamp()
        );

        let backwards = CertSpec::client("x").valid(now, now - Duration::days(1));
        assert!(matches!(
            intermediate.issue(&backwards),
            Err(PkiError::Validity { .. })
        ));
    }

    #[test]
    fn renewal_with_the_same_key_keeps_the_public_key() {
        let (_, intermediate) = hierarchy();
        let first = intermediate.issue(&CertSpec::client("edge")).unwrap();
        let renewed = intermediate
            .issue(&CertSpec::client("edge").with_key(first.key.clone()))
            .unwrap();
        assert_eq!(
            x509(&first.cert_der).public_key().raw,
            x509(&renewed.cert_der).public_key().raw
        );
        assert_eq!(first.key_pem, renewed.key_pem);
        assert_ne!(first.cert_der, renewed.cert_der);
    }

    #[test]
    fn crl_lists_the_revoked_serial_and_webpki_refuses_it() {
        let (root, intermediate) = hierarchy();
        let revoked = intermediate.issue(&CertSpec::client("revoked")).unwrap();
        let kept = intermediate.issue(&CertSpec::client("kept")).unwrap();
        let now = OffsetDateTime::now_utc();
        let crl = intermediate
            .crl(
                [&revoked.serial],
                now - Duration::minutes(1),
                now + Duration::days(7),
            )
            .unwrap();
        assert!(crl.pem().starts_with("-----BEGIN X509 CRL-----"));

        let owned = CertRevocationList::from(OwnedCertRevocationList::from_der(crl.der()).unwrap());
        assert!(owned.find_serial(&revoked.serial).unwrap().is_some());
        assert!(owned.find_serial(&kept.serial).unwrap().is_none());

        let (_, parsed) = x509_parser::parse_x509_crl(crl.der()).unwrap();
        let listed: Vec<&[u8]> = parsed
            .iter_revoked_certificates()
            .map(|r| r.raw_serial())
            .collect();
        assert_eq!(listed, [revoked.serial.as_slice()]);
        assert_eq!(
            parsed.issuer().as_raw(),
            x509(intermediate.cert_der()).subject().as_raw()
        );

        assert_eq!(
            verify(
                &root,
                &revoked.chain_pem,
                KeyUsage::client_auth(),
                Some(&crl)
            ),
            Err(webpki::Error::CertRevoked)
        );
        assert_eq!(
            verify(&root, &kept.chain_pem, KeyUsage::client_auth(), Some(&crl)),
            Ok(())
        );
    }

    #[test]
    fn later_crls_have_larger_numbers() {
        let (_, intermediate) = hierarchy();
        let now = OffsetDateTime::now_utc();
        let number = |at: OffsetDateTime| {
            let crl = intermediate
                .crl::<&[u8]>([], at, at + Duration::days(1))
                .unwrap();
            let (_, parsed) = x509_parser::parse_x509_crl(crl.der()).unwrap();
            parsed.crl_number().unwrap().clone()
        };
        assert!(number(now) < number(now + Duration::seconds(1)));
    }

    #[test]
    fn loaded_ca_issues_certificates_that_chain() {
        let (root, intermediate) = hierarchy();
        // The file holds the intermediate, then the root, as `ca init` output bundles often do.
        let bundle = format!("{}{}", intermediate.cert_pem(), root.cert_pem());
        let loaded = Authority::from_pem(&bundle, &intermediate.key_pem()).unwrap();
        assert_eq!(loaded.cert_der(), intermediate.cert_der());
        assert_eq!(loaded.subject(), "CN=test intermediate");
        assert_eq!(pem_certs(&loaded.chain_pem()).len(), 1);

        let leaf = loaded.issue(&CertSpec::client("edge")).unwrap();
        assert_eq!(
            verify(&root, &leaf.chain_pem, KeyUsage::client_auth(), None),
            Ok(())
        );
        let leaf_cert = x509(&leaf.cert_der);
        let aki = leaf_cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.clone(),
                _ => None,
            });
        assert_eq!(
            aki.map(|id| id.0.to_vec()),
            subject_key_id(&x509(intermediate.cert_der()))
        );

        let now = OffsetDateTime::now_utc();
        let crl = loaded
            .crl([&leaf.serial], now, now + Duration::days(1))
            .unwrap();
        assert_eq!(
            verify(&root, &leaf.chain_pem, KeyUsage::client_auth(), Some(&crl)),
            Err(webpki::Error::CertRevoked)
        );

        let loaded_root = Authority::from_pem(root.cert_pem(), &root.key_pem()).unwrap();
        assert!(loaded_root.chain_pem().is_empty());
    }

    #[test]
    fn loading_refuses_wrong_key_leaf_and_empty_pem() {
        let (root, intermediate) = hierarchy();
        assert!(matches!(
            Authority::from_pem(intermediate.cert_pem(), &root.key_pem()),
            Err(PkiError::KeyMismatch { .. })
        ));
        let leaf = intermediate.issue(&CertSpec::client("edge")).unwrap();
        let e = Authority::from_pem(&leaf.cert_pem, &leaf.key_pem).unwrap_err();
        assert!(
            matches!(&e, PkiError::NotACa { subject } if subject == "CN=edge"),
            "{e}"
        );
        assert!(matches!(
            Authority::from_pem("", &root.key_pem()),
            Err(PkiError::NoCaCertificate)
        ));
        assert!(matches!(
            Authority::from_pem(root.cert_pem(), "junk"),
            Err(PkiError::KeyPem(_))
        ));
    }

    #[test]
    fn debug_output_keeps_keys_out() {
        let (_, intermediate) = hierarchy();
        let leaf = intermediate.issue(&CertSpec::client("edge")).unwrap();
        assert!(!format!("{leaf:?}").contains("PRIVATE KEY"));
        assert!(!format!("{intermediate:?}").contains("PRIVATE KEY"));
    }
}
