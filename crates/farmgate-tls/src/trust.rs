//! Trust anchors from `trust = [...]`: PEM files, `"mozilla"` and `"system"`, each certificate
//! linted against RFC 5280 and the CA/Browser Forum root profile as it is loaded (see
//! [`profile`](crate::profile)).
//!
//! - In a **file**, an anchor with a clear defect (not a CA, inconsistent basicConstraints and
//!   keyUsage, an unparsable extension, an authorityKeyIdentifier naming another issuer...) is a
//!   load error naming the file, the certificate's position, its subject and the defect; a mild
//!   one (no subjectKeyIdentifier, an EKU, a non-critical basicConstraints...) is an
//!   [`AnchorWarning`] that `farmgate check` prints.
//! - In the **system** store, which the operator does not write, an anchor with a clear defect
//!   is left out (not trusted) and reported as a warning, so one odd certificate from a
//!   distribution does not stop a gate.
//! - **mozilla** anchors are trusted as shipped (webpki-roots carries no certificates to lint;
//!   a test lints the same roots' certificates).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use farmgate_config::{Location, Trust};
use rustls::DistinguishedName;
use rustls_pki_types::{CertificateDer, Der, TrustAnchor, UnixTime};

use crate::profile::{self, Defect, Role, Severity, Validity};
use crate::uri_constraints::{self, UriConstraints};
use crate::{TlsError, TlsErrorKind, load};

/// A set of trust anchors with where each came from.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    anchors: Vec<TrustAnchor<'static>>,
    /// Per anchor: its subject and validity, when it came with a certificate (files, the system
    /// store; not `mozilla`), to refuse chains to it outside its dates.
    validity: Vec<Option<(String, Validity)>>,
    /// Per anchor: the URI name constraints taken out of what webpki sees, checked on each
    /// accepted path instead (see [`uri_constraints`](crate::uri_constraints)).
    uri_constraints: Vec<Option<UriConstraints>>,
    /// The anchors' certificates where we have them (PEM files, the system store), for
    /// diagnostics; `mozilla` anchors come without certificates.
    certificates: Vec<CertificateDer<'static>>,
    warnings: Vec<AnchorWarning>,
    has_public_roots: bool,
}

/// A trust anchor that was loaded (or, from the system store, left out) with a defect worth
/// telling: what `farmgate check` prints as a warning.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AnchorWarning {
    /// The configuration key and file it came from.
    pub source: AnchorSource,
    /// Its 1-based position in the file or the store.
    pub index: usize,
    /// Its subject, as an RFC 4514 string.
    pub subject: String,
    /// The rule it breaks.
    pub defect: Defect,
    /// Whether it was left out: a system-store certificate with a defect that would refuse it
    /// in a file.
    pub skipped: bool,
}

/// Where an anchor came from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnchorSource {
    /// A PEM file named in `trust`.
    File {
        /// The configuration key.
        at: Location,
        /// The file.
        path: PathBuf,
    },
    /// The operating system's store, `"system"`.
    System {
        /// The configuration key.
        at: Location,
    },
}

/// `FILE:LINE: KEY: certificate #N in PATH ("SUBJECT"): DEFECT`, one line.
impl fmt::Display for AnchorWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            AnchorSource::File { at, path } => write!(
                f,
                "{at}: trust anchor #{} in {} (\"{}\"): {}",
                self.index,
                path.display(),
                self.subject,
                self.defect
            )?,
            AnchorSource::System { at } => write!(
                f,
                "{at}: \"system\" trust anchor #{} (\"{}\"): {}",
                self.index, self.subject, self.defect
            )?,
        }
        if self.skipped {
            f.write_str("; left out of the trusted set")?;
        }
        Ok(())
    }
}

impl TrustStore {
    /// Load every source in `trust`. `at` is the configuration key, for `"system"` errors.
    pub fn load(trust: &[Trust], at: &Location) -> Result<TrustStore, TlsError> {
        let now = UnixTime::now();
        let mut store = TrustStore::default();
        for source in trust {
            match source {
                Trust::Mozilla => {
                    store
                        .anchors
                        .extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                    store.validity.resize(store.anchors.len(), None);
                    store.uri_constraints.resize(store.anchors.len(), None);
                    store.has_public_roots = true;
                }
                Trust::System => {
                    store.load_system(at, now)?;
                    store.has_public_roots = true;
                }
                Trust::File(file) => {
                    for (i, cert) in load::certificates(file)?.into_iter().enumerate() {
                        let anchor = webpki::anchor_from_trusted_cert(&cert)
                            .map_err(|source| TlsErrorKind::BadCertificate {
                                at: file.at.clone(),
                                path: file.path.clone(),
                                index: i + 1,
                                source,
                            })?
                            .to_owned();
                        let source = AnchorSource::File {
                            at: file.at.clone(),
                            path: file.path.clone(),
                        };
                        let linted = lint(&cert, i + 1, &source, now);
                        if let Some(defect) = linted.refusal {
                            return Err(TlsErrorKind::TrustAnchor {
                                at: file.at.clone(),
                                path: file.path.clone(),
                                index: i + 1,
                                subject: linted.subject,
                                defect,
                            }
                            .into());
                        }
                        store.warnings.extend(linted.warnings);
                        store.push(anchor, cert, linted.subject);
                    }
                }
            }
        }
        Ok(store)
    }

    fn load_system(&mut self, at: &Location, now: UnixTime) -> Result<(), TlsError> {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            let detail = match found.errors.first() {
                Some(e) => e.to_string(),
                None => "it holds no certificate".to_owned(),
            };
            return Err(TlsErrorKind::SystemTrust {
                at: at.clone(),
                detail,
            }
            .into());
        }
        let source = AnchorSource::System { at: at.clone() };
        for (i, cert) in found.certs.into_iter().enumerate() {
            let linted = lint(&cert, i + 1, &source, now);
            let anchor = webpki::anchor_from_trusted_cert(&cert).map(|a| a.to_owned());
            let refusal = match (&anchor, linted.refusal) {
                (Err(_), _) => Some(Defect::Unparsable),
                (Ok(_), refusal) => refusal,
            };
            self.warnings.extend(linted.warnings);
            match (anchor, refusal) {
                (Ok(anchor), None) => self.push(anchor, cert, linted.subject),
                (_, Some(defect)) => self.warnings.push(AnchorWarning {
                    source: source.clone(),
                    index: i + 1,
                    subject: linted.subject,
                    defect,
                    skipped: true,
                }),
                // anchor_from_trusted_cert failing always sets a refusal above.
                (Err(_), None) => {}
            }
        }
        Ok(())
    }

    fn push(
        &mut self,
        mut anchor: TrustAnchor<'static>,
        cert: CertificateDer<'static>,
        subject: String,
    ) {
        self.validity
            .push(Validity::of(cert.as_ref()).map(|v| (subject, v)));
        let split = anchor
            .name_constraints
            .as_ref()
            .and_then(|nc| uri_constraints::split(nc.as_ref()));
        let uris = split.map(|(rest, uris)| {
            anchor.name_constraints = rest.map(Der::from);
            uris
        });
        self.uri_constraints.push(uris);
        self.anchors.push(anchor);
        self.certificates.push(cert);
    }

    /// The anchors, for rustls-webpki.
    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// The anchor certificates loaded from files or the system store.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }

    /// What the trust-anchor lint found that does not refuse the bundle: mild defects of loaded
    /// anchors, and system-store anchors left out. `farmgate check` prints them, one per line.
    pub fn warnings(&self) -> &[AnchorWarning] {
        &self.warnings
    }

    /// Whether public (WebPKI) roots are trusted: `"mozilla"` or `"system"`.
    pub fn has_public_roots(&self) -> bool {
        self.has_public_roots
    }

    /// The anchors' subject names, as sent in a CertificateRequest.
    pub fn subjects(&self) -> Vec<DistinguishedName> {
        self.anchors
            .iter()
            .map(|a| DistinguishedName::in_sequence(a.subject.as_ref()))
            .collect()
    }

    /// A rustls root store with the same anchors.
    pub fn root_store(&self) -> Arc<rustls::RootCertStore> {
        Arc::new(rustls::RootCertStore {
            roots: self.anchors.clone(),
        })
    }

    /// The URI name constraints of `anchor`, one of [`anchors`](Self::anchors), that webpki
    /// does not see.
    pub(crate) fn anchor_uri_constraints(
        &self,
        anchor: &TrustAnchor<'_>,
    ) -> Option<&UriConstraints> {
        self.uri_constraints.get(self.index_of(anchor)?)?.as_ref()
    }

    fn index_of(&self, anchor: &TrustAnchor<'_>) -> Option<usize> {
        self.anchors.iter().position(|a| {
            std::ptr::from_ref(a).cast::<()>() == std::ptr::from_ref(anchor).cast::<()>()
        })
    }

    /// The subject and validity of `anchor`, one of [`anchors`](Self::anchors), if it came with
    /// a certificate.
    pub(crate) fn anchor_validity(&self, anchor: &TrustAnchor<'_>) -> Option<(&str, Validity)> {
        let index = self.index_of(anchor)?;
        self.validity
            .get(index)?
            .as_ref()
            .map(|(subject, validity)| (subject.as_str(), *validity))
    }
}

/// An anchor certificate's lint: its subject, the first refusing defect, and the warnings.
struct Linted {
    subject: String,
    refusal: Option<Defect>,
    warnings: Vec<AnchorWarning>,
}

fn lint(cert: &CertificateDer<'_>, index: usize, source: &AnchorSource, now: UnixTime) -> Linted {
    let (subject, mut defects) = profile::inspect(cert.as_ref(), Role::Anchor);
    if let Some(defect) = Validity::of(cert.as_ref()).and_then(|v| v.defect_at(now)) {
        defects.push(defect);
    }
    let refusal = defects
        .iter()
        .copied()
        .find(|d| d.severity(Role::Anchor) == Severity::Refuse);
    let warnings = defects
        .into_iter()
        .filter(|d| d.severity(Role::Anchor) == Severity::Warn)
        .map(|defect| AnchorWarning {
            source: source.clone(),
            index,
            subject: subject.clone(),
            defect,
            skipped: false,
        })
        .collect();
    Linted {
        subject,
        refusal,
        warnings,
    }
}
