//! Certificate revocation lists on a gate: `crl = [...]`.
//!
//! A file holds one DER CRL, or PEM: one or more `X509 CRL` blocks and, optionally, the
//! `CERTIFICATE`s of the CAs that signed them. Every CRL is checked when the configuration is
//! built (so `farmgate check` and a reload report a bad one with its file, line and key):
//!
//! - **Issuer.** It must be signed by a CA of the gate's trust: either a trust anchor itself, or
//!   a CA certificate from the same file that chains to a trust anchor, signature by signature.
//!   The usual private PKI has the gate trust only the root while the issuing intermediate signs
//!   the CRL: append the intermediate's certificate to the CRL file. Certificates in a CRL file
//!   only establish who may sign CRLs; they never become trust anchors or chain links for
//!   clients.
//! - **Signature.** It must verify with that CA's key, using the signature algorithms of the
//!   handshake (the aws-lc-rs provider's), so load and handshake never disagree; a CA whose
//!   certificate carries a keyUsage must have `cRLSign`.
//! - **Well-formed.** rustls-webpki must parse it, and it must carry a non-critical CRL number
//!   (RFC 5280 5.2.3).
//! - **Current.** Its nextUpdate must be in the future.
//!
//! At the handshake rustls-webpki checks every certificate of the client's chain against the CRL
//! its issuer signed (verifying the CRL's signature again with the key in the validated path).
//! A CRL that expires while the gate runs leaves the status of the certificates in its scope
//! unknown: the gate refuses them (reason `revocation_unknown`, alert `unknown_ca`) and its log
//! line names the expired CRL. This fails closed, as OpenSSL and nginx do; see
//! docs/revocation.md.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use farmgate_config::FileRef;
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use x509_parser::asn1_rs::{Any, FromDer, Tag};

use crate::{TlsError, TlsErrorKind, TrustStore, load};

/// One CRL a gate checks client chains against, with where it came from.
#[derive(Debug)]
pub struct RevocationList {
    crl: webpki::CertRevocationList<'static>,
    path: PathBuf,
    issuer: String,
    next_update: UnixTime,
    /// nextUpdate as the CRL says it, for messages.
    next_update_text: String,
}

impl RevocationList {
    /// The CRL, for rustls-webpki.
    pub fn crl(&self) -> &webpki::CertRevocationList<'static> {
        &self.crl
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The issuer's distinguished name, e.g. `CN=farm issuing CA`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// When the issuer promised the next CRL; from then on this one is expired.
    pub fn next_update(&self) -> UnixTime {
        self.next_update
    }

    /// Whether the CRL has expired at `now`.
    pub fn is_expired(&self, now: UnixTime) -> bool {
        now.as_secs() >= self.next_update.as_secs()
    }
}

/// `PATH from "ISSUER" (nextUpdate TIME)`, for log lines.
impl fmt::Display for RevocationList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} from \"{}\" (nextUpdate {})",
            self.path.display(),
            self.issuer,
            self.next_update_text
        )
    }
}

/// Why a signature (of a CRL, or of a CA certificate in a CRL file) was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signature does not verify with the signer's public key.
    #[error("the signature does not verify with the issuer's public key")]
    Invalid,
    /// No supported algorithm matches the signature algorithm and the signer's key type.
    #[error("its signature algorithm is not supported for the issuer's key type")]
    UnsupportedAlgorithm,
    /// The signed structure or the signer's key is not well-formed DER.
    #[error("the signed data or the issuer's public key is malformed")]
    Malformed,
}

/// Load the CRLs `files` name and check each against `trust` at time `now` (see the module
/// documentation for the rules).
pub fn load(
    files: &[FileRef],
    trust: &TrustStore,
    now: UnixTime,
) -> Result<Vec<RevocationList>, TlsError> {
    let algorithms = crate::provider().signature_verification_algorithms.all;
    let mut lists = Vec::new();
    for file in files {
        let contents = load::crl_file(file)?;
        let signers = signers(file, trust, &contents.ca_certificates, algorithms)?;
        for der in &contents.crls {
            lists.push(check(file, der, &signers, now, algorithms)?);
        }
    }
    Ok(lists)
}

/// A CA that may sign CRLs for a gate: its subject and key (DER contents, as webpki stores them).
struct Signer {
    subject: Vec<u8>,
    spki: Vec<u8>,
    /// Whether its certificate's keyUsage, if any, permits CRL signing.
    crl_sign: bool,
}

/// The CAs that may sign the CRLs of `file`: the trust anchors, and the CA certificates in the
/// file that chain to them.
fn signers(
    file: &FileRef,
    trust: &TrustStore,
    certificates: &[CertificateDer<'static>],
    algorithms: &[&dyn SignatureVerificationAlgorithm],
) -> Result<Vec<Signer>, TlsError> {
    // Anchors loaded from certificates carry a keyUsage to check, as webpki checks
    // intermediates'; anchors without one (the bundled public roots) are taken as they are.
    let mut signers = Vec::new();
    for der in trust.certificates() {
        let Ok(anchor) = webpki::anchor_from_trusted_cert(der) else {
            continue;
        };
        let crl_sign = match x509_parser::parse_x509_certificate(der.as_ref()) {
            Ok((_, cert)) => !matches!(cert.key_usage(), Ok(Some(ku)) if !ku.value.crl_sign()),
            Err(_) => true,
        };
        signers.push(Signer {
            subject: anchor.subject.to_vec(),
            spki: anchor.subject_public_key_info.to_vec(),
            crl_sign,
        });
    }
    for anchor in trust.anchors() {
        let known = signers.iter().any(|s| {
            s.subject == anchor.subject.as_ref()
                && s.spki == anchor.subject_public_key_info.as_ref()
        });
        if !known {
            signers.push(Signer {
                subject: anchor.subject.to_vec(),
                spki: anchor.subject_public_key_info.to_vec(),
                crl_sign: true,
            });
        }
    }
    let mut pending = Vec::new();
    for (i, der) in certificates.iter().enumerate() {
        let index = i + 1;
        let bad = |source| TlsErrorKind::BadCertificate {
            at: file.at.clone(),
            path: file.path.clone(),
            index,
            source,
        };
        let cert = webpki::EndEntityCert::try_from(der).map_err(bad)?;
        let anchor = webpki::anchor_from_trusted_cert(der).map_err(bad)?;
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| {
            TlsErrorKind::CrlCertificateUnreadable {
                at: file.at.clone(),
                path: file.path.clone(),
                index,
                source: e.into(),
            }
        })?;
        if !parsed.is_ca() {
            return Err(TlsErrorKind::CrlCertificateNotCa {
                at: file.at.clone(),
                path: file.path.clone(),
                index,
                subject: parsed.subject().to_string(),
            }
            .into());
        }
        let crl_sign = match parsed.key_usage() {
            Ok(Some(ku)) => ku.value.crl_sign(),
            Ok(None) => true,
            Err(source) => {
                return Err(TlsErrorKind::CrlCertificateUnreadable {
                    at: file.at.clone(),
                    path: file.path.clone(),
                    index,
                    source,
                }
                .into());
            }
        };
        pending.push(Pending {
            index,
            issuer: cert.issuer().to_vec(),
            subject_text: parsed.subject().to_string(),
            issuer_text: parsed.issuer().to_string(),
            der: der.as_ref(),
            signer: Signer {
                subject: anchor.subject.to_vec(),
                spki: anchor.subject_public_key_info.to_vec(),
                crl_sign,
            },
        });
    }
    // Admit every certificate signed by an admitted CA, until nothing changes: the file may list
    // a chain in any order.
    loop {
        let before = pending.len();
        let mut i = 0;
        while i < pending.len() {
            let signed_by_admitted = signers.iter().any(|s| {
                s.subject == pending[i].issuer
                    && verify(pending[i].der, &s.spki, algorithms).is_ok()
            });
            if signed_by_admitted {
                signers.push(pending.swap_remove(i).signer);
            } else {
                i += 1;
            }
        }
        if pending.len() == before {
            break;
        }
    }
    match pending.into_iter().min_by_key(|p| p.index) {
        Some(stranger) => Err(TlsErrorKind::CrlCertificateUntrusted {
            at: file.at.clone(),
            path: file.path.clone(),
            index: stranger.index,
            subject: stranger.subject_text,
            issuer: stranger.issuer_text,
        }
        .into()),
        None => Ok(signers),
    }
}

/// A CA certificate from a CRL file not yet known to chain to trust.
struct Pending<'a> {
    index: usize,
    issuer: Vec<u8>,
    subject_text: String,
    issuer_text: String,
    der: &'a [u8],
    signer: Signer,
}

/// Parse one CRL and check its issuer, signature and freshness.
fn check(
    file: &FileRef,
    der: &[u8],
    signers: &[Signer],
    now: UnixTime,
    algorithms: &[&dyn SignatureVerificationAlgorithm],
) -> Result<RevocationList, TlsError> {
    let crl =
        webpki::OwnedCertRevocationList::from_der(der).map_err(|source| TlsErrorKind::BadCrl {
            at: file.at.clone(),
            path: file.path.clone(),
            source,
        })?;
    let crl = webpki::CertRevocationList::from(crl);
    let (_, parsed) =
        x509_parser::parse_x509_crl(der).map_err(|e| TlsErrorKind::CrlUnreadable {
            at: file.at.clone(),
            path: file.path.clone(),
            source: e.into(),
        })?;
    let issuer = parsed.issuer().to_string();
    // RFC 5280 5.2.3: a CRL carries a non-critical CRL number. webpki does not insist; a CRL
    // without one comes from a misconfigured CA tool, better said now than guessed at later.
    let number = parsed
        .extensions()
        .iter()
        .find(|e| e.oid == x509_parser::oid_registry::OID_X509_EXT_CRL_NUMBER);
    let profile = match number {
        None => Some(
            "it has no CRL number (RFC 5280 requires one; with `openssl ca`, configure a crlnumber file)",
        ),
        Some(e) if e.critical => {
            Some("its CRL number extension is marked critical (RFC 5280 forbids it)")
        }
        Some(_) => None,
    };
    if let Some(problem) = profile {
        return Err(TlsErrorKind::CrlProfile {
            at: file.at.clone(),
            path: file.path.clone(),
            problem,
        }
        .into());
    }
    let named: Vec<&Signer> = signers
        .iter()
        .filter(|s| s.subject == crl.issuer())
        .collect();
    if named.is_empty() {
        return Err(TlsErrorKind::CrlIssuer {
            at: file.at.clone(),
            path: file.path.clone(),
            issuer,
        }
        .into());
    }
    // Several CAs may share a name (a re-keyed CA): the CRL must verify with one of them.
    let mut failure = SignatureError::Invalid;
    let mut signer = None;
    for candidate in named {
        match verify(der, &candidate.spki, algorithms) {
            Ok(()) => {
                signer = Some(candidate);
                break;
            }
            Err(e) => failure = e,
        }
    }
    let Some(signer) = signer else {
        return Err(TlsErrorKind::CrlSignature {
            at: file.at.clone(),
            path: file.path.clone(),
            issuer,
            source: failure,
        }
        .into());
    };
    if !signer.crl_sign {
        return Err(TlsErrorKind::CrlNotSigner {
            at: file.at.clone(),
            path: file.path.clone(),
            issuer,
        }
        .into());
    }
    // webpki refuses a CRL without nextUpdate, so a parsed one always has it; were it missing,
    // the epoch makes the CRL count as expired rather than valid forever.
    let next_update = parsed.next_update();
    let secs = next_update.map_or(0, |t| u64::try_from(t.timestamp()).unwrap_or(0));
    let list = RevocationList {
        crl,
        path: file.path.clone(),
        issuer,
        next_update: UnixTime::since_unix_epoch(Duration::from_secs(secs)),
        next_update_text: next_update.map_or_else(|| "missing".to_owned(), |t| t.to_string()),
    };
    if list.is_expired(now) {
        return Err(TlsErrorKind::CrlExpired {
            at: file.at.clone(),
            path: file.path.clone(),
            issuer: list.issuer,
            next_update: list.next_update_text,
        }
        .into());
    }
    Ok(list)
}

/// Verify the signature of `signed` (a DER certificate or CRL: `SEQUENCE { tbs, algorithm,
/// signature }`) with the key `spki` (the contents of a SubjectPublicKeyInfo, as webpki keeps
/// trust anchors), trying every provider algorithm for that signature algorithm and key type,
/// as webpki does.
fn verify(
    signed: &[u8],
    spki: &[u8],
    algorithms: &[&dyn SignatureVerificationAlgorithm],
) -> Result<(), SignatureError> {
    let (tbs, algorithm, signature) = signed_parts(signed).ok_or(SignatureError::Malformed)?;
    let (key_algorithm, key) = spki_parts(spki).ok_or(SignatureError::Malformed)?;
    let mut supported = false;
    for alg in algorithms.iter().filter(|a| {
        a.signature_alg_id().as_ref() == algorithm
            && a.public_key_alg_id().as_ref() == key_algorithm
    }) {
        supported = true;
        if alg.verify_signature(key, tbs, signature).is_ok() {
            return Ok(());
        }
    }
    Err(if supported {
        SignatureError::Invalid
    } else {
        SignatureError::UnsupportedAlgorithm
    })
}

/// `(tbs with its header, signature algorithm contents, signature bits)` of a signed structure.
fn signed_parts(der: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (rest, outer) = Any::from_der(der).ok()?;
    if !rest.is_empty() || outer.tag() != Tag::Sequence {
        return None;
    }
    let (after_tbs, _) = Any::from_der(outer.data).ok()?;
    let tbs = &outer.data[..outer.data.len() - after_tbs.len()];
    let (after_alg, algorithm) = Any::from_der(after_tbs).ok()?;
    let (end, signature) = Any::from_der(after_alg).ok()?;
    if !end.is_empty() || algorithm.tag() != Tag::Sequence {
        return None;
    }
    Some((tbs, algorithm.data, bit_string(&signature)?))
}

/// `(algorithm contents, key bits)` of SubjectPublicKeyInfo contents.
fn spki_parts(spki: &[u8]) -> Option<(&[u8], &[u8])> {
    let (rest, algorithm) = Any::from_der(spki).ok()?;
    let (end, key) = Any::from_der(rest).ok()?;
    if !end.is_empty() || algorithm.tag() != Tag::Sequence {
        return None;
    }
    Some((algorithm.data, bit_string(&key)?))
}

/// The bytes of a BIT STRING with no unused bits, as signatures and keys are.
fn bit_string<'a>(any: &Any<'a>) -> Option<&'a [u8]> {
    match (any.tag(), any.data.split_first()) {
        (Tag::BitString, Some((0, bits))) => Some(bits),
        _ => None,
    }
}
