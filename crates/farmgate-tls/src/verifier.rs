//! The gate: a rustls `ClientCertVerifier` built on rustls-webpki.
//!
//! Order, as docs/architecture.md ("Invariants") fixes it: the chain must lead to `trust` under the configured purpose
//! (with validity dates and revocation checked on the way), then the path webpki accepted must
//! follow the certificate profile ([`profile`](crate::profile): RFC 5280 rules webpki leaves
//! out, and the trust anchor's expiry), then the certificate's identity must match the
//! allow-list. The first failure ends the handshake with the fitting TLS alert and is
//! logged once, with the rule that failed and the certificate's subject, SANs and fingerprint.

use std::fmt;
use std::sync::Arc;

use farmgate_config::{ClientAuth, EkuPolicy};
use farmgate_identity::{AllowList, AllowRule, PeerIdentity};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::KeyUsage;

use crate::crl::{self, RevocationList};
use crate::path::{self, PathError};
use crate::profile::Finding;
use crate::{GateStats, TlsError, TrustStore};

/// Why a gate refused a client certificate; also the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalReason {
    /// The client presented no certificate (rustls refuses it before the verifier runs; the
    /// listener counts it).
    NoCertificate,
    /// The certificate or chain cannot be parsed.
    BadEncoding,
    /// The chain does not lead to a trusted CA.
    UnknownCa,
    /// A certificate in the chain has expired.
    Expired,
    /// A certificate in the chain is not valid yet.
    NotYetValid,
    /// The chain does not permit the required purpose (extended key usage).
    Purpose,
    /// A certificate in the chain is revoked.
    Revoked,
    /// Revocation status could not be established (e.g. the CRL has expired).
    RevocationUnknown,
    /// A signature in the chain is invalid or uses an unsupported algorithm.
    BadSignature,
    /// webpki accepted the chain, but a certificate on its path breaks a rule of the RFC 5280
    /// profile (a [`Defect`](crate::profile::Defect), named in the log line). TLS alert
    /// `bad_certificate`.
    Profile,
    /// The chain is valid but the identity is not on the allow-list.
    NotAllowed,
    /// Anything else the path validation rejected (name constraints, path length...).
    Invalid,
}

impl RefusalReason {
    /// Every reason, in declaration order (the order of [`GateStats`] snapshots).
    pub const ALL: [RefusalReason; 12] = [
        RefusalReason::NoCertificate,
        RefusalReason::BadEncoding,
        RefusalReason::UnknownCa,
        RefusalReason::Expired,
        RefusalReason::NotYetValid,
        RefusalReason::Purpose,
        RefusalReason::Revoked,
        RefusalReason::RevocationUnknown,
        RefusalReason::BadSignature,
        RefusalReason::Profile,
        RefusalReason::NotAllowed,
        RefusalReason::Invalid,
    ];

    /// Position in [`RefusalReason::ALL`].
    pub(crate) fn index(self) -> usize {
        // A fieldless enum without explicit discriminants counts from 0 in declaration order,
        // the order of ALL (checked by a test below).
        self as usize
    }

    /// Short label, e.g. for metrics: `unknown_ca`, `not_allowed`.
    pub fn label(&self) -> &'static str {
        match self {
            RefusalReason::NoCertificate => "no_certificate",
            RefusalReason::BadEncoding => "bad_encoding",
            RefusalReason::UnknownCa => "unknown_ca",
            RefusalReason::Expired => "expired",
            RefusalReason::NotYetValid => "not_yet_valid",
            RefusalReason::Purpose => "purpose",
            RefusalReason::Revoked => "revoked",
            RefusalReason::RevocationUnknown => "revocation_unknown",
            RefusalReason::BadSignature => "bad_signature",
            RefusalReason::Profile => "profile",
            RefusalReason::NotAllowed => "not_allowed",
            RefusalReason::Invalid => "invalid",
        }
    }

    /// The rule of the gate that failed, in words.
    pub fn rule(&self) -> &'static str {
        match self {
            RefusalReason::NoCertificate => "a client certificate is required",
            RefusalReason::BadEncoding => "certificate must be well-formed",
            RefusalReason::UnknownCa => "chain must lead to a CA in trust",
            RefusalReason::Expired | RefusalReason::NotYetValid => {
                "certificates must be within their validity dates"
            }
            RefusalReason::Purpose => "chain must permit the required purpose (eku)",
            RefusalReason::Revoked | RefusalReason::RevocationUnknown => {
                "certificates must not be revoked (crl)"
            }
            RefusalReason::BadSignature => "signatures must verify",
            RefusalReason::Profile => "certificates must follow the RFC 5280 profile",
            RefusalReason::NotAllowed => "identity must match an allow entry",
            RefusalReason::Invalid => "chain must satisfy path validation",
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A client certificate the gate accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Who the client is.
    pub identity: PeerIdentity,
    /// The allow entry that let it in.
    pub rule: AllowRule,
    /// Whether the chain only passed under the server-auth purpose (compatibility mode).
    pub relaxed: bool,
}

/// A client certificate the gate refused.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The failed rule.
    pub reason: RefusalReason,
    /// What exactly failed, in words.
    pub detail: String,
    /// The certificate's identity, when it could be parsed.
    pub identity: Option<PeerIdentity>,
    /// The rustls error that ends the handshake (and chooses the alert).
    pub error: CertificateError,
}

/// The gate's client-certificate verifier.
#[derive(Debug)]
pub struct ClientVerifier {
    listener: Arc<str>,
    trust: TrustStore,
    subjects: Vec<DistinguishedName>,
    allow: AllowList,
    eku: EkuPolicy,
    crls: Vec<RevocationList>,
    algorithms: WebPkiSupportedAlgorithms,
    stats: Arc<GateStats>,
}

impl ClientVerifier {
    /// Build the verifier for a listener's `client_auth` table: loads trust and CRLs, checking
    /// each CRL's issuer, signature and freshness now (see [`crl`](crate::crl)).
    pub fn new(listener: &str, policy: &ClientAuth) -> Result<ClientVerifier, TlsError> {
        let trust = TrustStore::load(&policy.trust, &policy.at)?;
        let crls = crl::load(&policy.crl, &trust, UnixTime::now())?;
        Ok(Self::from_parts(
            listener,
            trust,
            policy.allow.clone(),
            policy.eku,
            crls,
        ))
    }

    /// Build from already loaded parts.
    pub fn from_parts(
        listener: &str,
        trust: TrustStore,
        allow: AllowList,
        eku: EkuPolicy,
        crls: Vec<RevocationList>,
    ) -> ClientVerifier {
        ClientVerifier {
            listener: Arc::from(listener),
            subjects: trust.subjects(),
            trust,
            allow,
            eku,
            crls,
            algorithms: crate::provider().signature_verification_algorithms,
            stats: Arc::new(GateStats::default()),
        }
    }

    /// This verifier, counting into `stats` instead of counters of its own: the counters of
    /// earlier configurations of the same listener, so that they keep counting across reloads.
    pub fn counting_into(mut self, stats: Arc<GateStats>) -> ClientVerifier {
        self.stats = stats;
        self
    }

    /// What this verifier decided so far: refusals by reason, and the acceptances that needed
    /// compatibility mode. Counted by handshakes only, not by [`check`](Self::check).
    pub fn stats(&self) -> &Arc<GateStats> {
        &self.stats
    }

    /// The CRLs client chains are checked against.
    pub fn revocation_lists(&self) -> &[RevocationList] {
        &self.crls
    }

    /// Run the gate's checks on a presented chain, without logging.
    pub fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<Accepted, Box<Refusal>> {
        let identity = PeerIdentity::from_der(end_entity.as_ref()).ok();
        let refuse = |reason, detail: String, error| {
            Box::new(Refusal {
                reason,
                detail,
                identity: identity.clone(),
                error,
            })
        };
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|e| {
            refuse(
                RefusalReason::BadEncoding,
                format!("the certificate cannot be parsed: {e}"),
                CertificateError::BadEncoding,
            )
        })?;
        let relaxed = match self.path(&cert, intermediates, now, KeyUsage::client_auth()) {
            Ok(warnings) => {
                self.note(&warnings);
                false
            }
            Err(PathError::Webpki(e))
                if self.eku == EkuPolicy::ClientOrServerAuth && is_purpose_error(&e) =>
            {
                match self.path(&cert, intermediates, now, KeyUsage::server_auth()) {
                    Ok(warnings) => {
                        self.note(&warnings);
                        true
                    }
                    Err(e) => return Err(self.refusal(e, identity.clone())),
                }
            }
            Err(e) => return Err(self.refusal(e, identity.clone())),
        };
        let Some(identity) = identity else {
            return Err(refuse(
                RefusalReason::BadEncoding,
                "the certificate's names cannot be read".into(),
                CertificateError::BadEncoding,
            ));
        };
        let rule = if relaxed {
            self.allow
                .rules()
                .iter()
                .find(|r| r.is_exact_name_or_pin() && r.matches(&identity))
        } else {
            self.allow.matching(&identity)
        };
        match rule {
            Some(rule) => Ok(Accepted {
                identity,
                rule: rule.clone(),
                relaxed,
            }),
            None => {
                let detail = if relaxed {
                    "the chain permits only serverAuth, so compatibility mode needs an exact dns: or spki-sha256: allow entry, and none matches".to_owned()
                } else {
                    "no allow entry matches this identity".to_owned()
                };
                Err(Box::new(Refusal {
                    reason: RefusalReason::NotAllowed,
                    detail,
                    identity: Some(identity),
                    error: CertificateError::ApplicationVerificationFailure,
                }))
            }
        }
    }

    fn path(
        &self,
        cert: &webpki::EndEntityCert<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: KeyUsage,
    ) -> Result<Vec<Finding>, PathError> {
        let crls: Vec<&webpki::CertRevocationList<'_>> =
            self.crls.iter().map(RevocationList::crl).collect();
        let revocation = webpki::RevocationOptionsBuilder::new(&crls).ok().map(|b| {
            b.with_depth(webpki::RevocationCheckDepth::Chain)
                .with_status_policy(webpki::UnknownStatusPolicy::Allow)
                .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
                .build()
        });
        path::verify(
            cert,
            &self.trust,
            intermediates,
            now,
            usage,
            revocation,
            self.algorithms.all,
        )
    }

    /// The profile warnings of an accepted chain: worth a debug line, not a refusal.
    fn note(&self, warnings: &[Finding]) {
        for warning in warnings {
            tracing::debug!(listener = %self.listener, defect = ?warning.defect, "client chain accepted with a profile warning: {warning}");
        }
    }

    fn refusal(&self, e: PathError, identity: Option<PeerIdentity>) -> Box<Refusal> {
        let e = match e {
            PathError::Webpki(e) => e,
            PathError::Profile(finding) => {
                return Box::new(Refusal {
                    reason: RefusalReason::Profile,
                    detail: format!("the chain breaks the certificate profile: {finding}"),
                    identity,
                    error: CertificateError::BadEncoding,
                });
            }
            PathError::Anchor(finding, e) => {
                let (reason, error) = classify(&e);
                return Box::new(Refusal {
                    reason,
                    detail: format!("the chain leads to an expired trust anchor: {finding}"),
                    identity,
                    error,
                });
            }
        };
        let (reason, error) = classify(&e);
        let detail = match (&e, reason, self.eku) {
            (webpki::Error::CrlExpired { time, .. }, _, _) => self.expired_crls(*time),
            (webpki::Error::CertRevoked, _, _) => format!(
                "the certificate or a CA certificate of its chain is listed as revoked in a CRL ({})",
                self.crl_files()
            ),
            (_, RefusalReason::RevocationUnknown, _) => format!(
                "revocation status cannot be established: the chain's CA has the name of a CRL's issuer but the CRL does not verify with its key, or that CA may not sign CRLs ({e}; CRLs: {})",
                self.crl_files()
            ),
            (_, reason, eku) => self.path_detail(&e, reason, eku),
        };
        Box::new(Refusal {
            reason,
            detail,
            identity,
            error,
        })
    }

    fn path_detail(&self, e: &webpki::Error, reason: RefusalReason, eku: EkuPolicy) -> String {
        match (reason, eku) {
            (RefusalReason::Purpose, EkuPolicy::ClientAuth) => "the chain does not permit TLS client authentication (no clientAuth EKU on the certificate or a CA above it); public CAs stopped issuing it in 2026, see docs/migration.md".to_string(),
            (RefusalReason::Purpose, EkuPolicy::ClientOrServerAuth) => {
                "the chain permits neither clientAuth nor serverAuth".to_owned()
            }
            (RefusalReason::UnknownCa, _) => {
                "the chain does not lead to a CA in this gate's trust".to_owned()
            }
            _ => match e {
                webpki::Error::CertExpired { time, not_after } => format!(
                    "the certificate, or one in its chain, expired {} ago",
                    ago(*not_after, *time)
                ),
                webpki::Error::CertNotValidYet { time, not_before } => format!(
                    "the certificate, or one in its chain, becomes valid only in {} (check the clocks)",
                    ago(*time, *not_before)
                ),
                other => other.to_string(),
            },
        }
    }

    /// Which CRLs had expired at `at`, in words.
    fn expired_crls(&self, at: UnixTime) -> String {
        let expired: Vec<String> = self
            .crls
            .iter()
            .filter(|l| l.is_expired(at))
            .map(|l| format!("{l}, {} ago", ago(l.next_update(), at)))
            .collect();
        format!(
            "the CRL for this chain has expired, so its revocation status is unknown and the gate refuses it (fail closed); install a current CRL: {}",
            expired.join("; ")
        )
    }

    fn crl_files(&self) -> String {
        self.crls
            .iter()
            .map(|l| l.path().display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How long before `now` the moment `then` was, e.g. `3h 5m`.
fn ago(then: UnixTime, now: UnixTime) -> String {
    let secs = now.as_secs().saturating_sub(then.as_secs());
    let (days, hours, minutes) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    match (days, hours) {
        (0, 0) => format!("{minutes}m {}s", secs % 60),
        (0, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.subjects
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.check(end_entity, intermediates, now) {
            Ok(accepted) => {
                let relaxed_by = accepted.relaxed.then(|| accepted.rule.to_string());
                self.stats.record_accepted(relaxed_by.as_deref());
                if accepted.relaxed {
                    tracing::warn!(
                        listener = %self.listener,
                        identity = %accepted.identity.name(),
                        rule = %accepted.rule,
                        "client certificate accepted only in WebPKI compatibility mode: its chain permits serverAuth, not clientAuth; move this client to a private-CA identity (docs/migration.md)"
                    );
                }
                Ok(ClientCertVerified::assertion())
            }
            Err(refusal) => {
                self.stats.record_refusal(
                    refusal.reason,
                    refusal.identity.as_ref(),
                    crate::source::current(),
                );
                match &refusal.identity {
                    Some(id) => tracing::warn!(
                        listener = %self.listener,
                        reason = %refusal.reason,
                        rule = refusal.reason.rule(),
                        certificate = %id,
                        "client certificate refused: {}", refusal.detail
                    ),
                    None => tracing::warn!(
                        listener = %self.listener,
                        reason = %refusal.reason,
                        rule = refusal.reason.rule(),
                        "client certificate refused: {}", refusal.detail
                    ),
                }
                Err(rustls::Error::InvalidCertificate(refusal.error))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[allow(deprecated)] // older webpki versions still return the variants without context
fn is_purpose_error(e: &webpki::Error) -> bool {
    matches!(
        e,
        webpki::Error::RequiredEkuNotFound
            | webpki::Error::RequiredEkuNotFoundContext(_)
            | webpki::Error::EmptyEkuExtension
    )
}

/// Map a path-validation error to our reason and to the rustls error that picks the TLS alert
/// (with the context rustls' own verifiers give where the words need it: the dates).
#[allow(deprecated)] // older webpki versions still return the variants without context
pub(crate) fn classify(e: &webpki::Error) -> (RefusalReason, CertificateError) {
    use webpki::Error as E;
    match e {
        E::UnknownIssuer => (RefusalReason::UnknownCa, CertificateError::UnknownIssuer),
        E::CertExpired { time, not_after } => (
            RefusalReason::Expired,
            CertificateError::ExpiredContext {
                time: *time,
                not_after: *not_after,
            },
        ),
        E::CertNotValidYet { time, not_before } => (
            RefusalReason::NotYetValid,
            CertificateError::NotValidYetContext {
                time: *time,
                not_before: *not_before,
            },
        ),
        E::CertRevoked => (RefusalReason::Revoked, CertificateError::Revoked),
        E::UnknownRevocationStatus => (
            RefusalReason::RevocationUnknown,
            CertificateError::UnknownRevocationStatus,
        ),
        E::CrlExpired { .. } => (
            RefusalReason::RevocationUnknown,
            CertificateError::ExpiredRevocationList,
        ),
        E::InvalidCrlSignatureForPublicKey
        | E::IssuerNotCrlSigner
        | E::UnsupportedCrlSignatureAlgorithm
        | E::UnsupportedCrlSignatureAlgorithmContext(_)
        | E::UnsupportedCrlSignatureAlgorithmForPublicKey
        | E::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_) => (
            RefusalReason::RevocationUnknown,
            CertificateError::UnknownRevocationStatus,
        ),
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => {
            (RefusalReason::Purpose, CertificateError::InvalidPurpose)
        }
        E::BadDer
        | E::BadDerTime
        | E::TrailingData(_)
        | E::UnsupportedCertVersion
        | E::InvalidCertValidity => (RefusalReason::BadEncoding, CertificateError::BadEncoding),
        E::InvalidSignatureForPublicKey
        | E::UnsupportedSignatureAlgorithm
        | E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKey
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            #[allow(deprecated)]
            let error = CertificateError::BadSignature;
            (RefusalReason::BadSignature, error)
        }
        other => (
            RefusalReason::Invalid,
            CertificateError::Other(OtherError(Arc::new(other.clone()))),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_once_in_declaration_order() {
        for (i, reason) in RefusalReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason}");
        }
        let labels: std::collections::HashSet<&str> = RefusalReason::ALL
            .iter()
            .map(RefusalReason::label)
            .collect();
        assert_eq!(labels.len(), RefusalReason::ALL.len());
    }

    #[test]
    fn expired_crl_is_revocation_unknown_with_the_unknown_ca_alert() {
        let e = webpki::Error::CrlExpired {
            time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(10)),
            next_update: UnixTime::since_unix_epoch(std::time::Duration::from_secs(5)),
        };
        let (reason, error) = classify(&e);
        assert_eq!(reason, RefusalReason::RevocationUnknown);
        assert_eq!(
            rustls::AlertDescription::from(error),
            rustls::AlertDescription::UnknownCA
        );
        let (reason, error) = classify(&webpki::Error::CertRevoked);
        assert_eq!(reason, RefusalReason::Revoked);
        assert_eq!(
            rustls::AlertDescription::from(error),
            rustls::AlertDescription::CertificateRevoked
        );
    }

    #[test]
    fn ago_reads_like_a_duration() {
        let at = |s| UnixTime::since_unix_epoch(std::time::Duration::from_secs(s));
        assert_eq!(ago(at(0), at(59)), "0m 59s");
        assert_eq!(ago(at(0), at(3_700)), "1h 1m");
        assert_eq!(ago(at(0), at(90_000)), "1d 1h");
    }
}
