//! [`Report`]: what a certificate (chain) is good for, as `farmgate inspect` shows it.
//!
//! For every certificate: names, issuer, validity, key and extended key usages (a
//! [`CertificateSummary`]). For the chain: whether it leads to the bundled public roots
//! (webpki-roots, `trust = ["mozilla"]`) or to the trust given. Then four plain
//! [`Verdicts`], each "no" with its [`Reason`]s:
//!
//! - **server**: a TLS client would accept it as a server certificate;
//! - **client**: standard verifiers (OpenSSL and so nginx, Go, rustls) would accept it as a client
//!   certificate: every certificate in the chain that has an EKU extension must permit clientAuth;
//! - **gate strict**: a farmgate gate with `eku = "client_auth"` (the default) accepts it, and
//!   with which allow-list entries;
//! - **gate compat**: a gate with `eku = "client_or_server_auth"` accepts it, and with which
//!   entries (a chain that only permits serverAuth needs an exact `dns:` or `spki-sha256:` one).
//!
//! Path validation is never done here: the client and gate verdicts run the gate's own
//! [`ClientVerifier`], the server verdict runs rustls-webpki as the edge's upstream client does.

use std::path::Path;
use std::sync::Arc;

use farmgate_config::{EkuPolicy, Location, Trust};
use farmgate_identity::CertificateSummary;
use farmgate_tls::{ClientVerifier, RefusalReason, TrustStore};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::InspectError;
pub use crate::reason::{CertLabel, Purpose, Reason};
use crate::verdict::Context;
pub use crate::verdict::{Verdict, Verdicts};

/// Trust to judge chains against: the bundled public roots, and optionally the operator's.
#[derive(Debug, Clone)]
pub struct Inspector {
    public: TrustStore,
    given: Option<(TrustStore, String)>,
}

/// Everything `farmgate inspect` says about one file.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// The file, as named on the command line or in the configuration.
    pub file: String,
    /// When the verdicts hold (RFC 3339).
    pub inspected_at: String,
    /// The certificates in file order: the leaf first.
    pub certificates: Vec<CertificateInfo>,
    /// Where the chain leads.
    pub chain: ChainInfo,
    /// What the certificate is good for.
    pub verdicts: Verdicts,
}

/// One certificate of the chain: its summary (serialised in place, field by field), where it
/// sits, and its days as of the report.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CertificateInfo {
    /// 1-based position in the file.
    pub index: usize,
    /// What the certificate says about itself.
    #[serde(flatten)]
    pub summary: CertificateSummary,
    /// Whole days until `not_after`, rounded down; negative once expired.
    pub days_left: i64,
    /// Whole days from `not_before` to `not_after`.
    pub lifetime_days: i64,
}

/// Where the chain leads.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ChainInfo {
    /// Whether it leads to the bundled public roots (webpki-roots, `"mozilla"`).
    pub public_roots: Reach,
    /// Whether it leads to the trust given; `None` when none was given.
    pub trust: Option<Reach>,
    /// The trust given, as named (e.g. `ca.pem`).
    pub trust_label: Option<String>,
    /// The trust the verdicts were judged against.
    pub verdicts_against: String,
}

/// Whether a chain leads to a set of trust anchors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reach {
    /// A valid path leads to one of them.
    Yes,
    /// No valid path leads to any of them.
    No,
    /// Cannot be told: there is no moment when every certificate in the file is valid (e.g. an
    /// expired leaf from an intermediate issued after it expired), so no path can be checked.
    Unknown,
}

impl Reach {
    /// Only [`Reach::Yes`].
    pub fn is_yes(self) -> bool {
        self == Reach::Yes
    }
}

impl Inspector {
    /// Judge chains against the bundled public roots and, if given, against `trust` (named
    /// `label` in reports, e.g. the file name).
    pub fn new(trust: Option<(TrustStore, String)>) -> Inspector {
        Inspector {
            public: public_roots(),
            given: trust,
        }
    }

    /// Reads a PEM file's certificates (or one DER certificate) and reports on them as of `now`.
    pub fn inspect(
        &self,
        file: &str,
        contents: &[u8],
        now: OffsetDateTime,
    ) -> Result<Report, InspectError> {
        let chain = read_chain(contents)?;
        self.inspect_chain(file, &chain, now)
    }

    /// Reports on a chain (leaf first) as of `now`.
    pub fn inspect_chain(
        &self,
        file: &str,
        chain: &[CertificateDer<'_>],
        now: OffsetDateTime,
    ) -> Result<Report, InspectError> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(InspectError::NoCertificate);
        };
        // Reports speak in whole seconds, as certificates do.
        let now = now.replace_nanosecond(0).unwrap_or(now);
        let certificates = chain
            .iter()
            .enumerate()
            .map(|(i, der)| CertificateInfo::read(i + 1, der, now))
            .collect::<Result<Vec<_>, _>>()?;

        // Whether a chain leads somewhere does not depend on today's date: judge it at a
        // moment every certificate in the file is valid.
        let at = moment_within(&certificates, now);
        let public_roots = leads_to(&self.public, leaf, intermediates, at);
        let to_given = self
            .given
            .as_ref()
            .map(|(store, _)| leads_to(store, leaf, intermediates, at));
        let (anchors, against, leads) = match (&self.given, to_given) {
            (Some((store, label)), Some(Reach::Yes)) => {
                (store, format!("--trust {label}"), Reach::Yes)
            }
            _ if public_roots.is_yes() => (&self.public, PUBLIC_ROOTS.to_owned(), Reach::Yes),
            (Some((store, label)), reach) => (
                store,
                format!("--trust {label}"),
                reach.unwrap_or(Reach::No),
            ),
            (None, _) => (&self.public, PUBLIC_ROOTS.to_owned(), public_roots),
        };

        let verdicts = Context {
            certificates: &certificates,
            anchors,
            chain: (leaf, intermediates),
            leads,
            against: &against,
            suggest_trust: self.given.is_none(),
            now,
            public_roots: public_roots.is_yes(),
        }
        .verdicts();

        Ok(Report {
            file: file.to_owned(),
            inspected_at: rfc3339(now),
            chain: ChainInfo {
                public_roots,
                trust: to_given,
                trust_label: self.given.as_ref().map(|(_, label)| label.clone()),
                verdicts_against: against,
            },
            verdicts,
            certificates,
        })
    }
}

impl CertificateInfo {
    fn read(
        index: usize,
        der: &CertificateDer<'_>,
        now: OffsetDateTime,
    ) -> Result<CertificateInfo, InspectError> {
        let summary = CertificateSummary::from_der(der.as_ref())
            .map_err(|source| InspectError::Der { index, source })?;
        Ok(CertificateInfo {
            index,
            days_left: summary.days_left(now),
            lifetime_days: summary.lifetime_days(),
            summary,
        })
    }

    /// `#2 (CN=farm issuing CA)`: how reasons refer to it; by its first SAN when its subject
    /// is empty, as in newer public certificates.
    pub fn label(&self) -> CertLabel {
        let name = match (self.summary.subject.is_empty(), self.summary.sans.first()) {
            (false, _) => self.summary.subject.clone(),
            (true, Some(san)) => san.to_string(),
            (true, None) => "empty subject".to_owned(),
        };
        CertLabel {
            index: self.index,
            name,
        }
    }
}

/// Every certificate in a PEM file, or the single certificate of a DER file.
pub fn read_chain(contents: &[u8]) -> Result<Vec<CertificateDer<'static>>, InspectError> {
    let is_pem = contents
        .windows(b"-----BEGIN".len())
        .any(|w| w == b"-----BEGIN");
    let chain = if is_pem {
        CertificateDer::pem_slice_iter(contents)
            .collect::<Result<Vec<_>, _>>()
            .map_err(InspectError::Pem)?
    } else if contents.is_empty() {
        Vec::new()
    } else {
        vec![CertificateDer::from(contents.to_vec())]
    };
    if chain.is_empty() {
        return Err(InspectError::NoCertificate);
    }
    Ok(chain)
}

/// How reports name the bundled public roots.
const PUBLIC_ROOTS: &str = "the bundled public roots (mozilla)";

/// The bundled Mozilla roots, as a gate with `trust = ["mozilla"]` has them.
fn public_roots() -> TrustStore {
    let at = Location::new(Arc::from(Path::new("<bundled>")), 0, "trust");
    // Loading the bundled roots reads no file and cannot fail; an empty store would only
    // make every "leads to public roots" answer no.
    TrustStore::load(&[Trust::Mozilla], &at).unwrap_or_default()
}

/// Whether the chain leads to `store`: the gate's verifier, in compatibility mode with an
/// empty allow-list, gets as far as the allow-list.
fn leads_to(
    store: &TrustStore,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    at: OffsetDateTime,
) -> Reach {
    let verifier = ClientVerifier::from_parts(
        "inspect",
        store.clone(),
        Default::default(),
        EkuPolicy::ClientOrServerAuth,
        Vec::new(),
    );
    match verifier.check(leaf, intermediates, unix(at)) {
        Ok(_) => Reach::Yes,
        Err(refusal) => match refusal.reason {
            RefusalReason::NotAllowed => Reach::Yes,
            // `at` is a moment every certificate is valid, if there is one.
            RefusalReason::Expired | RefusalReason::NotYetValid => Reach::Unknown,
            _ => Reach::No,
        },
    }
}

/// `now` if every certificate is valid then, else the middle of the time they are all valid.
fn moment_within(certificates: &[CertificateInfo], now: OffsetDateTime) -> OffsetDateTime {
    let from = certificates.iter().map(|c| c.summary.not_before).max();
    let until = certificates.iter().map(|c| c.summary.not_after).min();
    match (from, until) {
        (Some(from), Some(until)) if from <= until => {
            if (from..=until).contains(&now) {
                now
            } else {
                from + (until - from) / 2
            }
        }
        _ => now,
    }
}

/// `at` as rustls-webpki takes it.
pub(crate) fn unix(at: OffsetDateTime) -> UnixTime {
    let seconds = u64::try_from(at.unix_timestamp()).unwrap_or(0);
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds))
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}
