//! What each ACME certificate is doing, as a snapshot for the admin endpoint, metrics and logs.

use std::path::PathBuf;
use std::time::SystemTime;

use farmgate_config::Challenge;
use farmgate_identity::CertificateSummary;

use crate::RenewalBasis;

/// One ACME certificate right now. Taken by [`Acme::status`](crate::Acme::status) (every
/// certificate) or [`AcmeCertificate::status`](crate::AcmeCertificate::status).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CertificateStatus {
    /// The names on the certificate, as configured.
    pub domains: Vec<String>,
    /// The listeners serving it.
    pub listeners: Vec<String>,
    /// The ACME server's directory URL.
    pub directory: String,
    /// The profile ordered, if configured.
    pub profile: Option<String>,
    /// How control of the names is proven.
    pub challenge: Challenge,
    /// Where the certificate and its key are stored.
    pub file: PathBuf,
    /// The state.
    pub state: CertificateState,
    /// An order is under way now (or waiting for the lock another edge sharing the storage
    /// holds).
    pub ordering: bool,
    /// The served certificate from the CA: names, issuer, validity... (`None` while the
    /// temporary one is served).
    pub certificate: Option<CertificateSummary>,
    /// When the next order is due (a retry after a failure, or the renewal time).
    pub next_renewal: Option<SystemTime>,
    /// What decided `next_renewal`.
    pub renewal_basis: Option<RenewalBasis>,
    /// The last failure, with its causes, until an attempt succeeds.
    pub last_error: Option<String>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// What happened since this certificate was first configured in this process.
    pub counters: Counters,
}

impl CertificateStatus {
    /// Seconds from `now` until the served certificate expires (negative once expired); `None`
    /// while the temporary certificate is served.
    pub fn seconds_until_expiry(&self, now: SystemTime) -> Option<i64> {
        Some(self.certificate.as_ref()?.seconds_until_expiry(now))
    }
}

/// Where a certificate is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateState {
    /// No certificate from the CA yet: the temporary self-signed certificate is served while
    /// orders are attempted (and retried).
    Issuing,
    /// A certificate from the CA is served; its renewal is scheduled.
    Valid,
    /// A renewal is under way (or waiting for another edge's lock); the current certificate is
    /// still served.
    Renewing,
    /// The served certificate has expired: renewals kept failing. See `last_error`.
    Expired,
}

impl CertificateState {
    /// A word for logs and status pages.
    pub fn as_str(&self) -> &'static str {
        match self {
            CertificateState::Issuing => "issuing",
            CertificateState::Valid => "valid",
            CertificateState::Renewing => "renewing",
            CertificateState::Expired => "expired",
        }
    }
}

/// Counts of what happened to one certificate, for metrics. They start at zero when a
/// certificate is first configured in a process, and survive reloads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Orders placed with the ACME server.
    pub orders: u64,
    /// First certificates obtained (the temporary certificate was served until then).
    pub issued: u64,
    /// Failed attempts to obtain a first certificate.
    pub issue_failures: u64,
    /// Certificates renewed.
    pub renewed: u64,
    /// Failed attempts to renew.
    pub renew_failures: u64,
    /// Newer certificates found in storage, renewed by another edge sharing it.
    pub adopted: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use rcgen::{CertificateParams, KeyPair};
    use time::OffsetDateTime;

    use super::*;

    #[test]
    fn seconds_until_expiry_counts_down_through_zero() {
        let not_after = OffsetDateTime::from_unix_timestamp(1_000_000_000).unwrap();
        let mut params = CertificateParams::new(vec!["www.example.com".to_owned()]).unwrap();
        params.not_before = not_after - time::Duration::days(90);
        params.not_after = not_after;
        let der = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
        let expires = SystemTime::from(not_after);
        let mut status = CertificateStatus {
            domains: vec!["www.example.com".into()],
            listeners: Vec::new(),
            directory: String::new(),
            profile: None,
            challenge: Challenge::TlsAlpn01,
            file: PathBuf::new(),
            state: CertificateState::Issuing,
            ordering: false,
            certificate: None,
            next_renewal: None,
            renewal_basis: None,
            last_error: None,
            consecutive_failures: 0,
            counters: Counters::default(),
        };
        assert_eq!(status.seconds_until_expiry(expires), None);
        status.certificate = Some(CertificateSummary::from_der(der.der()).unwrap());
        let before = expires - Duration::from_secs(90);
        assert_eq!(status.seconds_until_expiry(before), Some(90));
        let after = expires + Duration::from_secs(5);
        assert_eq!(status.seconds_until_expiry(after), Some(-5));
    }
}
