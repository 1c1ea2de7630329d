//! Trust anchors from `trust = [...]`: PEM files, `"mozilla"` and `"system"`.

use std::sync::Arc;

use farmgate_config::{Location, Trust};
use rustls::DistinguishedName;
use rustls_pki_types::{CertificateDer, TrustAnchor};

use crate::{TlsError, TlsErrorKind, load};

/// A set of trust anchors with where each came from.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    anchors: Vec<TrustAnchor<'static>>,
    /// The anchors' certificates where we have them (PEM files, the system store), for
    /// diagnostics; `mozilla` anchors come without certificates.
    certificates: Vec<CertificateDer<'static>>,
    has_public_roots: bool,
}

impl TrustStore {
    /// Load every source in `trust`. `at` is the configuration key, for `"system"` errors.
    pub fn load(trust: &[Trust], at: &Location) -> Result<TrustStore, TlsError> {
        let mut store = TrustStore::default();
        for source in trust {
            match source {
                Trust::Mozilla => {
                    store
                        .anchors
                        .extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                    store.has_public_roots = true;
                }
                Trust::System => {
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
                    for cert in found.certs {
                        // The system store holds odd certificates now and then; skip what
                        // cannot be an anchor rather than refusing the whole store.
                        if let Ok(anchor) = webpki::anchor_from_trusted_cert(&cert) {
                            store.anchors.push(anchor.to_owned());
                            store.certificates.push(cert);
                        }
                    }
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
                        store.anchors.push(anchor);
                        store.certificates.push(cert);
                    }
                }
            }
        }
        Ok(store)
    }

    /// The anchors, for rustls-webpki.
    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// The anchor certificates loaded from files or the system store.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
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
}
