//! The certificate profile rules rustls-webpki leaves out: RFC 5280's MUSTs (and a few CA/Browser
//! Forum rules) on serial numbers, names, key identifiers, basic constraints and key usage,
//! extended key usage, name and policy constraints, and keys.
//!
//! They run in two places, with the same rules:
//!
//! - on each **trust anchor** when a trust bundle is loaded ([`Role::Anchor`], see
//!   [`TrustStore`](crate::TrustStore)): a defect that makes the anchor's meaning unclear refuses
//!   the bundle, a mild one is a warning `farmgate check` prints;
//! - on the **path rustls-webpki built** for a peer's chain, end entity and intermediates, as
//!   webpki's path callback, so right after webpki accepted the path (chain to trust under the
//!   purpose, validity dates, CRLs) and before the gate's allow-list. A refusing defect ends the
//!   handshake (refusal reason `profile`); webpki then tries the other paths the chain allows.
//!
//! Each rule is a [`Defect`]; whether it refuses or warns depends on the certificate's [`Role`]
//! ([`Defect::severity`]). Rules that real certificates break (Let's Encrypt, cert-manager,
//! OpenSSL's defaults, EasyRSA, Go before 1.15...) only warn: docs/verification.md says which
//! and why.

use std::fmt;

use rustls_pki_types::UnixTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension, X509Extension};
use x509_parser::prelude::FromDer as _;
use x509_parser::public_key::PublicKey;

/// Where a certificate stands in a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The peer's own certificate (the leaf).
    EndEntity,
    /// A CA certificate between the leaf and the trust anchor.
    Intermediate,
    /// A certificate loaded as a trust anchor.
    Anchor,
}

/// What a [`Defect`] does to the certificate that has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The chain is refused (reason `profile`); an anchor is a load error.
    Refuse,
    /// Reported, not refused: real-world certificates break the rule.
    Warn,
}

/// A rule of the certificate profile that a certificate breaks. The message names the rule
/// and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Defect {
    /// The certificate, or a standard extension in it, cannot be parsed.
    #[error("it, or one of its RFC 5280 extensions, cannot be parsed")]
    Unparsable,
    /// The serial number is zero or negative.
    #[error("its serial number is zero or negative (RFC 5280 4.1.2.2: it must be positive)")]
    SerialNotPositive,
    /// The serial number is longer than 20 octets.
    #[error("its serial number is longer than 20 octets (RFC 5280 4.1.2.2)")]
    SerialTooLong,
    /// A CA certificate with an empty subject.
    #[error(
        "it is a CA with an empty subject (RFC 5280 4.1.2.6: a CA's subject must not be empty)"
    )]
    EmptyCaSubject,
    /// A leaf with neither a subject nor a subjectAltName.
    #[error("it has neither a subject nor a subjectAltName (RFC 5280 4.1.2.6)")]
    NoName,
    /// An empty subject with a non-critical subjectAltName.
    #[error("its subject is empty but its subjectAltName is not critical (RFC 5280 4.2.1.6)")]
    SanNotCritical,
    /// A critical subjectAltName beside a non-empty subject.
    #[error(
        "its subjectAltName is critical although its subject is not empty (CA/B Forum BR 7.1.2.7.12)"
    )]
    SanCriticalWithSubject,
    /// The subject CN is a host name or address that is none of the SANs.
    #[error(
        "its subject CN names a host that is not one of its subjectAltNames (CA/B Forum BR 7.1.4.3)"
    )]
    CommonNameNotInSan,
    /// No authorityKeyIdentifier, though the certificate is not self-issued.
    #[error(
        "it has no authorityKeyIdentifier (RFC 5280 4.2.1.1: required except in self-signed certificates)"
    )]
    MissingAuthorityKeyId,
    /// An authorityKeyIdentifier without its keyIdentifier.
    #[error("its authorityKeyIdentifier has no keyIdentifier (RFC 5280 4.2.1.1)")]
    AuthorityKeyIdWithoutKeyId,
    /// An authorityKeyIdentifier with only one of authorityCertIssuer and
    /// authorityCertSerialNumber.
    #[error(
        "its authorityKeyIdentifier has one of authorityCertIssuer and authorityCertSerialNumber without the other (RFC 5280 4.2.1.1)"
    )]
    AuthorityKeyIdIncomplete,
    /// A self-issued anchor whose authorityKeyIdentifier names another key or issuer.
    #[error(
        "it is self-issued but its authorityKeyIdentifier names another key or issuer (CA/B Forum BR 7.1.2.1.3)"
    )]
    AuthorityKeyIdOtherIssuer,
    /// A self-issued anchor whose authorityKeyIdentifier repeats its own issuer and serial.
    #[error(
        "its authorityKeyIdentifier repeats its own issuer and serial number, which a root should not carry (CA/B Forum BR 7.1.2.1.3)"
    )]
    AuthorityKeyIdIssuerFields,
    /// A CA certificate without subjectKeyIdentifier.
    #[error("it is a CA without subjectKeyIdentifier (RFC 5280 4.2.1.2)")]
    MissingSubjectKeyId,
    /// A trust anchor that is not a CA certificate.
    #[error("it is not a CA certificate: no basicConstraints with cA=TRUE (RFC 5280 4.2.1.9)")]
    NotACa,
    /// A CA certificate whose basicConstraints is not critical.
    #[error("its basicConstraints is not critical (RFC 5280 4.2.1.9)")]
    BasicConstraintsNotCritical,
    /// A pathLenConstraint on a certificate that is not a CA.
    #[error("it has a pathLenConstraint but is not a CA (RFC 5280 4.2.1.9)")]
    PathLenWithoutCa,
    /// A CA certificate whose keyUsage does not include keyCertSign.
    #[error("it is a CA but its keyUsage lacks keyCertSign (RFC 5280 4.2.1.3, 4.2.1.9)")]
    CaWithoutKeyCertSign,
    /// keyCertSign in a certificate that is not a CA.
    #[error("its keyUsage has keyCertSign but it is not a CA (RFC 5280 4.2.1.3)")]
    KeyCertSignWithoutCa,
    /// A keyUsage with no bit set.
    #[error("its keyUsage has no bit set (RFC 5280 4.2.1.3)")]
    EmptyKeyUsage,
    /// A CA certificate without keyUsage.
    #[error("it is a CA without keyUsage (RFC 5280 4.2.1.3)")]
    MissingKeyUsage,
    /// anyExtendedKeyUsage in a leaf.
    #[error("its extendedKeyUsage holds anyExtendedKeyUsage (CA/B Forum BR 7.1.2.7.10)")]
    AnyEku,
    /// A critical extendedKeyUsage in a leaf.
    #[error("its extendedKeyUsage is critical (CA/B Forum BR 7.1.2.7.6)")]
    CriticalEku,
    /// A leaf without extendedKeyUsage (valid for any purpose).
    #[error("it has no extendedKeyUsage, so it is good for any purpose (CA/B Forum BR 7.1.2.7.6)")]
    MissingEku,
    /// An extendedKeyUsage on a trust anchor.
    #[error(
        "it carries an extendedKeyUsage, which a root must not (CA/B Forum BR 7.1.2.1.2); farmgate (rustls-webpki) ignores an anchor's EKU, OpenSSL and Go enforce it on the whole chain"
    )]
    EkuOnAnchor,
    /// nameConstraints in a leaf.
    #[error("it has nameConstraints but is not a CA (RFC 5280 4.2.1.10)")]
    NameConstraintsInEndEntity,
    /// nameConstraints with neither permitted nor excluded subtrees.
    #[error("its nameConstraints has neither permitted nor excluded subtrees (RFC 5280 4.2.1.10)")]
    EmptyNameConstraints,
    /// A non-critical nameConstraints.
    #[error(
        "its nameConstraints is not critical (RFC 5280 4.2.1.10), so verifiers that do not know it may ignore it"
    )]
    NameConstraintsNotCritical,
    /// A DNS name constraint with a leading period.
    #[error(
        "a DNS name constraint starts with a period (RFC 5280 4.2.1.10 has no such form; verifiers read it differently)"
    )]
    NameConstraintLeadingPeriod,
    /// A non-critical policyConstraints.
    #[error("its policyConstraints is not critical (RFC 5280 4.2.1.11)")]
    PolicyConstraintsNotCritical,
    /// A policyConstraints with neither field.
    #[error("its policyConstraints is empty (RFC 5280 4.2.1.11)")]
    EmptyPolicyConstraints,
    /// A non-critical inhibitAnyPolicy.
    #[error("its inhibitAnyPolicy is not critical (RFC 5280 4.2.1.14)")]
    InhibitAnyPolicyNotCritical,
    /// An authorityInfoAccess without any access description.
    #[error("its authorityInfoAccess holds no access description (RFC 5280 4.2.2.1)")]
    EmptyAuthorityInfoAccess,
    /// An RSA key shorter than 2048 bits or not a whole number of bytes.
    #[error(
        "its RSA key is shorter than 2048 bits or not a multiple of 8 bits (CA/B Forum BR 6.1.5)"
    )]
    WeakRsaKey,
    /// A leaf key TLS cannot use here: an EC curve other than P-256/384/521, DSA, or unknown.
    #[error(
        "its key is not RSA, ECDSA on P-256/P-384/P-521 or Ed25519, so it cannot sign a TLS handshake here"
    )]
    UnsupportedKey,
    /// A trust anchor past its notAfter.
    #[error("it has expired; chains to it are refused")]
    Expired,
    /// A trust anchor before its notBefore (a warning: chains to it are still accepted).
    #[error("it is not valid yet (its notBefore is in the future: check the clock)")]
    NotYetValid,
}

impl Defect {
    /// Whether this defect refuses a certificate in `role` or only warns. See
    /// docs/verification.md for why each warning is not a refusal.
    pub fn severity(self, role: Role) -> Severity {
        use Defect as D;
        match (self, role) {
            // kubeadm and other Go tools minted roots with serial 0; an anchor is trusted by
            // choice, and its serial is never looked at.
            (D::SerialNotPositive | D::SerialTooLong, Role::Anchor) => Severity::Warn,
            // OpenSSL 1.1 leaves made with a bare extfile, and Go CAs whose root lacks an SKI,
            // carry no AKI; paths are built by name, so nothing depends on it.
            (D::MissingAuthorityKeyId | D::AuthorityKeyIdWithoutKeyId, Role::EndEntity) => {
                Severity::Warn
            }
            // Roots made by Go before 1.15 lack the SKI. An anchor is trusted by choice, so an
            // intermediate given as one needs no AKI to be found (x509-limbo's own generator
            // omits it on such anchors in valid cases).
            (D::MissingSubjectKeyId | D::MissingAuthorityKeyId, Role::Anchor) => Severity::Warn,
            (
                D::SanCriticalWithSubject
                | D::CommonNameNotInSan
                | D::AuthorityKeyIdIssuerFields
                | D::BasicConstraintsNotCritical
                | D::MissingKeyUsage
                | D::CriticalEku
                | D::MissingEku
                | D::EkuOnAnchor
                | D::NameConstraintsNotCritical
                | D::NameConstraintLeadingPeriod
                | D::Expired
                | D::NotYetValid,
                _,
            ) => Severity::Warn,
            (
                D::Unparsable
                | D::SerialNotPositive
                | D::SerialTooLong
                | D::EmptyCaSubject
                | D::NoName
                | D::SanNotCritical
                | D::MissingAuthorityKeyId
                | D::AuthorityKeyIdWithoutKeyId
                | D::AuthorityKeyIdIncomplete
                | D::AuthorityKeyIdOtherIssuer
                | D::MissingSubjectKeyId
                | D::NotACa
                | D::PathLenWithoutCa
                | D::CaWithoutKeyCertSign
                | D::KeyCertSignWithoutCa
                | D::EmptyKeyUsage
                | D::NameConstraintsInEndEntity
                | D::EmptyNameConstraints
                | D::PolicyConstraintsNotCritical
                | D::EmptyPolicyConstraints
                | D::InhibitAnyPolicyNotCritical
                | D::EmptyAuthorityInfoAccess
                | D::AnyEku
                | D::WeakRsaKey
                | D::UnsupportedKey,
                _,
            ) => Severity::Refuse,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::EndEntity => "end-entity certificate",
            Role::Intermediate => "intermediate",
            Role::Anchor => "trust anchor",
        })
    }
}

/// One certificate of a chain breaking one rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{role} \"{subject}\": {defect}")]
#[non_exhaustive]
pub struct Finding {
    /// The certificate's place in the chain.
    pub role: Role,
    /// Its position in the chain as presented: 0 for the leaf, then 1, 2... for the
    /// intermediates of the verified path.
    pub position: usize,
    /// Its subject, as an RFC 4514 string.
    pub subject: String,
    /// The rule it breaks.
    pub defect: Defect,
}

impl Finding {
    /// Whether it refuses the chain or only warns.
    pub fn severity(&self) -> Severity {
        self.defect.severity(self.role)
    }
}

/// A certificate's subject and every defect it has in `role`, refusing and warning alike.
/// Never panics, whatever `der` holds.
pub fn inspect(der: &[u8], role: Role) -> (String, Vec<Defect>) {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => {
            let subject = farmgate_identity::rfc4514(cert.subject());
            (subject, defects(&cert, role))
        }
        _ => ("(unparsable)".to_owned(), vec![Defect::Unparsable]),
    }
}

/// The profile verdict on a path: the end entity and the intermediates webpki chose (leaf
/// first), without the anchor (checked when it was loaded). `Err` with the first refusing
/// finding; `Ok` with the warnings.
pub fn check_chain(end_entity: &[u8], intermediates: &[&[u8]]) -> Result<Vec<Finding>, Finding> {
    let mut warnings = Vec::new();
    let chain = std::iter::once((Role::EndEntity, end_entity))
        .chain(intermediates.iter().map(|der| (Role::Intermediate, *der)));
    for (position, (role, der)) in chain.enumerate() {
        let (subject, defects) = inspect(der, role);
        for defect in defects {
            let finding = Finding {
                role,
                position,
                subject: subject.clone(),
                defect,
            };
            match finding.severity() {
                Severity::Refuse => return Err(finding),
                Severity::Warn => warnings.push(finding),
            }
        }
    }
    Ok(warnings)
}

/// A certificate's validity period, in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Validity {
    pub(crate) not_before: UnixTime,
    pub(crate) not_after: UnixTime,
}

impl Validity {
    pub(crate) fn of(der: &[u8]) -> Option<Validity> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let at =
            |t: i64| UnixTime::since_unix_epoch(std::time::Duration::from_secs(t.max(0) as u64));
        Some(Validity {
            not_before: at(cert.validity().not_before.timestamp()),
            not_after: at(cert.validity().not_after.timestamp()),
        })
    }

    /// [`Defect::Expired`] or [`Defect::NotYetValid`] at `now`, if either.
    pub(crate) fn defect_at(&self, now: UnixTime) -> Option<Defect> {
        if now.as_secs() > self.not_after.as_secs() {
            Some(Defect::Expired)
        } else if now.as_secs() < self.not_before.as_secs() {
            Some(Defect::NotYetValid)
        } else {
            None
        }
    }
}

/// The extensions the rules read, found once.
#[derive(Default)]
struct Extensions<'c, 'a> {
    basic_constraints: Option<&'c X509Extension<'a>>,
    key_usage: Option<&'c X509Extension<'a>>,
    eku: Option<&'c X509Extension<'a>>,
    ski: bool,
    aki: Option<&'c X509Extension<'a>>,
    san: Option<&'c X509Extension<'a>>,
    name_constraints: Option<&'c X509Extension<'a>>,
    policy_constraints: Option<&'c X509Extension<'a>>,
    inhibit_any_policy: Option<&'c X509Extension<'a>>,
    aia: Option<&'c X509Extension<'a>>,
    unparsable: bool,
}

fn extensions<'c, 'a>(cert: &'c X509Certificate<'a>) -> Extensions<'c, 'a> {
    let mut found = Extensions::default();
    for ext in cert.iter_extensions() {
        match ext.parsed_extension() {
            ParsedExtension::ParseError { .. } => {
                // Only RFC 5280's own extensions (id-ce, id-pe) count; others (CT SCTs,
                // Netscape types) are not ours to judge.
                let oid = ext.oid.to_id_string();
                if oid.starts_with("2.5.29.") || oid.starts_with("1.3.6.1.5.5.7.1.") {
                    found.unparsable = true;
                }
            }
            ParsedExtension::BasicConstraints(_) => found.basic_constraints = Some(ext),
            ParsedExtension::KeyUsage(_) => found.key_usage = Some(ext),
            ParsedExtension::ExtendedKeyUsage(_) => found.eku = Some(ext),
            ParsedExtension::SubjectKeyIdentifier(_) => found.ski = true,
            ParsedExtension::AuthorityKeyIdentifier(_) => found.aki = Some(ext),
            ParsedExtension::SubjectAlternativeName(_) => found.san = Some(ext),
            ParsedExtension::NameConstraints(_) => found.name_constraints = Some(ext),
            ParsedExtension::PolicyConstraints(_) => found.policy_constraints = Some(ext),
            ParsedExtension::InhibitAnyPolicy(_) => found.inhibit_any_policy = Some(ext),
            ParsedExtension::AuthorityInfoAccess(_) => found.aia = Some(ext),
            _ => {}
        }
    }
    found
}

/// Every defect of `cert` in `role`.
fn defects(cert: &X509Certificate<'_>, role: Role) -> Vec<Defect> {
    let mut out = Vec::new();
    let ext = extensions(cert);
    if ext.unparsable {
        out.push(Defect::Unparsable);
    }
    serial(cert.raw_serial(), &mut out);

    let (is_ca, path_len) = match ext.basic_constraints.map(X509Extension::parsed_extension) {
        Some(ParsedExtension::BasicConstraints(bc)) => (bc.ca, bc.path_len_constraint.is_some()),
        _ => (false, false),
    };
    let ca = match role {
        Role::EndEntity => false,
        Role::Intermediate | Role::Anchor => true,
    };
    if role == Role::Anchor && !is_ca {
        out.push(Defect::NotACa);
    }
    if path_len && !is_ca {
        out.push(Defect::PathLenWithoutCa);
    }
    if ca && is_ca && ext.basic_constraints.is_some_and(|e| !e.critical) {
        out.push(Defect::BasicConstraintsNotCritical);
    }

    key_usage(&ext, ca, is_ca, &mut out);
    names(cert, &ext, role, &mut out);
    key_identifiers(cert, &ext, role, &mut out);
    if role == Role::EndEntity {
        end_entity_eku(&ext, &mut out);
    } else if role == Role::Anchor && ext.eku.is_some() {
        out.push(Defect::EkuOnAnchor);
    }
    constraints(&ext, ca, &mut out);
    key(cert, role, &mut out);
    out
}

fn serial(raw: &[u8], out: &mut Vec<Defect>) {
    match raw.first() {
        None => out.push(Defect::Unparsable),
        Some(first) if first & 0x80 != 0 || raw.iter().all(|&b| b == 0) => {
            out.push(Defect::SerialNotPositive);
        }
        Some(_) if raw.len() > 20 => out.push(Defect::SerialTooLong),
        Some(_) => {}
    }
}

fn key_usage(ext: &Extensions<'_, '_>, ca: bool, is_ca: bool, out: &mut Vec<Defect>) {
    match ext.key_usage.map(X509Extension::parsed_extension) {
        Some(ParsedExtension::KeyUsage(ku)) => {
            if ku.flags == 0 {
                out.push(Defect::EmptyKeyUsage);
            } else if ku.key_cert_sign() && !is_ca {
                out.push(Defect::KeyCertSignWithoutCa);
            } else if ca && is_ca && !ku.key_cert_sign() {
                out.push(Defect::CaWithoutKeyCertSign);
            }
        }
        _ if ca && is_ca => out.push(Defect::MissingKeyUsage),
        _ => {}
    }
}

fn names(cert: &X509Certificate<'_>, ext: &Extensions<'_, '_>, role: Role, out: &mut Vec<Defect>) {
    let subject_empty = cert.subject().iter().next().is_none();
    if role != Role::EndEntity {
        if subject_empty {
            out.push(Defect::EmptyCaSubject);
        }
        return;
    }
    let san = ext.san.and_then(|e| match e.parsed_extension() {
        ParsedExtension::SubjectAlternativeName(san) => Some((e.critical, san)),
        _ => None,
    });
    match (subject_empty, &san) {
        (true, None) => out.push(Defect::NoName),
        (true, Some((false, _))) => out.push(Defect::SanNotCritical),
        (false, Some((true, _))) => out.push(Defect::SanCriticalWithSubject),
        _ => {}
    }
    let Some((_, san)) = san else { return };
    let host_names: Vec<String> = san
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            GeneralName::IPAddress(ip) => ip_text(ip),
            _ => None,
        })
        .collect();
    if host_names.is_empty() {
        return;
    }
    for cn in cert.subject().iter_common_name() {
        let Ok(cn) = cn.as_str() else { continue };
        let host_like = !cn.contains(' ') && (cn.contains('.') || cn.contains(':'));
        if host_like && !host_names.iter().any(|name| name == cn) {
            out.push(Defect::CommonNameNotInSan);
            return;
        }
    }
}

/// An IP address SAN (4 or 16 bytes) as text.
pub(crate) fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv4Addr::from(b).to_string()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv6Addr::from(b).to_string()),
        _ => None,
    }
}

fn key_identifiers(
    cert: &X509Certificate<'_>,
    ext: &Extensions<'_, '_>,
    role: Role,
    out: &mut Vec<Defect>,
) {
    let self_issued = cert.subject().as_raw() == cert.issuer().as_raw();
    if role != Role::EndEntity && !ext.ski {
        out.push(Defect::MissingSubjectKeyId);
    }
    let aki = ext.aki.and_then(|e| match e.parsed_extension() {
        ParsedExtension::AuthorityKeyIdentifier(aki) => Some(aki),
        _ => None,
    });
    let Some(aki) = aki else {
        if !self_issued {
            out.push(Defect::MissingAuthorityKeyId);
        }
        return;
    };
    if aki.authority_cert_issuer.is_some() != aki.authority_cert_serial.is_some() {
        out.push(Defect::AuthorityKeyIdIncomplete);
        return;
    }
    let Some(key_id) = &aki.key_identifier else {
        out.push(Defect::AuthorityKeyIdWithoutKeyId);
        return;
    };
    if role != Role::Anchor || !self_issued {
        return;
    }
    // A root's AKI may only repeat its own SKI; issuer and serial, if present, must be its own.
    let own_ski = cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0),
            _ => None,
        });
    let other_key = own_ski.is_some_and(|ski| ski != key_id.0);
    let other_issuer = aki.authority_cert_issuer.as_ref().is_some_and(|names| {
        !names.iter().all(|name| {
            matches!(name, GeneralName::DirectoryName(dn) if dn.as_raw() == cert.subject().as_raw())
        })
    });
    let other_serial = aki
        .authority_cert_serial
        .is_some_and(|serial| serial != cert.raw_serial());
    if other_key || other_issuer || other_serial {
        out.push(Defect::AuthorityKeyIdOtherIssuer);
    } else if aki.authority_cert_issuer.is_some() {
        out.push(Defect::AuthorityKeyIdIssuerFields);
    }
}

fn end_entity_eku(ext: &Extensions<'_, '_>, out: &mut Vec<Defect>) {
    let Some(e) = ext.eku else {
        out.push(Defect::MissingEku);
        return;
    };
    if e.critical {
        out.push(Defect::CriticalEku);
    }
    if let ParsedExtension::ExtendedKeyUsage(eku) = e.parsed_extension()
        && eku.any
    {
        out.push(Defect::AnyEku);
    }
}

fn constraints(ext: &Extensions<'_, '_>, ca: bool, out: &mut Vec<Defect>) {
    if let Some(e) = ext.name_constraints {
        if !ca {
            out.push(Defect::NameConstraintsInEndEntity);
        } else if let ParsedExtension::NameConstraints(nc) = e.parsed_extension() {
            let empty = |subtrees: &Option<Vec<_>>| subtrees.as_ref().is_none_or(Vec::is_empty);
            if empty(&nc.permitted_subtrees) && empty(&nc.excluded_subtrees) {
                out.push(Defect::EmptyNameConstraints);
            } else {
                if !e.critical {
                    out.push(Defect::NameConstraintsNotCritical);
                }
                let subtrees = nc.permitted_subtrees.iter().chain(&nc.excluded_subtrees);
                let leading_period = subtrees.flatten().any(
                    |subtree| matches!(subtree.base, GeneralName::DNSName(name) if name.starts_with('.')),
                );
                if leading_period {
                    out.push(Defect::NameConstraintLeadingPeriod);
                }
            }
        }
    }
    if let Some(e) = ext.policy_constraints {
        if !e.critical {
            out.push(Defect::PolicyConstraintsNotCritical);
        }
        if let ParsedExtension::PolicyConstraints(pc) = e.parsed_extension()
            && pc.require_explicit_policy.is_none()
            && pc.inhibit_policy_mapping.is_none()
        {
            out.push(Defect::EmptyPolicyConstraints);
        }
    }
    if ext.inhibit_any_policy.is_some_and(|e| !e.critical) {
        out.push(Defect::InhibitAnyPolicyNotCritical);
    }
    if let Some(ParsedExtension::AuthorityInfoAccess(aia)) =
        ext.aia.map(X509Extension::parsed_extension)
        && aia.accessdescs.is_empty()
    {
        out.push(Defect::EmptyAuthorityInfoAccess);
    }
}

/// OIDs of the public keys TLS can use here (rustls with aws-lc-rs).
const RSA: &str = "1.2.840.113549.1.1.1";
const EC: &str = "1.2.840.10045.2.1";
const ED25519: &str = "1.3.101.112";
const CURVES: [&str; 3] = ["1.2.840.10045.3.1.7", "1.3.132.0.34", "1.3.132.0.35"];

fn key(cert: &X509Certificate<'_>, role: Role, out: &mut Vec<Defect>) {
    let spki = cert.public_key();
    if let Ok(PublicKey::RSA(rsa)) = spki.parsed() {
        let modulus: &[u8] = {
            let start = rsa
                .modulus
                .iter()
                .position(|&b| b != 0)
                .unwrap_or(rsa.modulus.len());
            &rsa.modulus[start..]
        };
        let bits = match modulus.first() {
            Some(first) => modulus.len() * 8 - first.leading_zeros() as usize,
            None => 0,
        };
        if bits < 2048 || bits % 8 != 0 {
            out.push(Defect::WeakRsaKey);
        }
        return;
    }
    if role != Role::EndEntity {
        return;
    }
    let algorithm = spki.algorithm.algorithm.to_id_string();
    let supported = match algorithm.as_str() {
        RSA | ED25519 => true,
        EC => spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|curve| CURVES.contains(&curve.to_id_string().as_str())),
        _ => false,
    };
    if !supported {
        out.push(Defect::UnsupportedKey);
    }
}
