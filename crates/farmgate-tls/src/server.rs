//! A listener's TLS: rustls `ServerConfig`, SNI certificate selection, session policy.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use farmgate_config::ListenerTls;
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};

use crate::{ClientVerifier, TlsError, TlsErrorKind, load};

/// The certificates a listener serves, chosen by SNI; swappable while running (certificate
/// rotation, ACME) without touching connections already established.
#[derive(Debug)]
pub struct CertStore {
    certs: ArcSwap<SniCerts>,
}

/// One snapshot of a listener's certificates.
#[derive(Debug)]
pub struct SniCerts {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `(".example.com", key)` for `*.example.com`.
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
}

impl SniCerts {
    /// Load the default certificate and every SNI entry of `tls`.
    pub fn load(tls: &ListenerTls) -> Result<SniCerts, TlsError> {
        let default = load::certified_key(&tls.default)?;
        let mut exact = HashMap::new();
        let mut wildcard = Vec::new();
        for entry in &tls.sni {
            let key = load::certified_key(&entry.cert)?;
            match entry.server_name.strip_prefix('*') {
                Some(suffix) => wildcard.push((suffix.to_owned(), key)),
                None => {
                    exact.insert(entry.server_name.clone(), key);
                }
            }
        }
        Ok(SniCerts {
            default,
            exact,
            wildcard,
        })
    }

    /// The certificate for `server_name` (lower-case), or the default.
    pub fn select(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = server_name else {
            return &self.default;
        };
        if let Some(key) = self.exact.get(name) {
            return key;
        }
        self.wildcard
            .iter()
            .find(|(suffix, _)| {
                name.strip_suffix(suffix.as_str())
                    .is_some_and(|label| !label.is_empty() && !label.contains('.'))
            })
            .map_or(&self.default, |(_, key)| key)
    }

    /// Every certificate chain served, default first.
    pub fn all(&self) -> impl Iterator<Item = &Arc<CertifiedKey>> {
        std::iter::once(&self.default)
            .chain(self.exact.values())
            .chain(self.wildcard.iter().map(|(_, k)| k))
    }
}

impl CertStore {
    /// A store serving `certs`.
    pub fn new(certs: SniCerts) -> CertStore {
        CertStore {
            certs: ArcSwap::from_pointee(certs),
        }
    }

    /// Serve `certs` to every handshake from now on.
    pub fn replace(&self, certs: SniCerts) {
        self.certs.store(Arc::new(certs));
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<SniCerts> {
        self.certs.load_full()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls hands us the SNI already validated as a DNS name; it is ASCII but may be mixed case.
        let name = hello.server_name().map(str::to_ascii_lowercase);
        Some(self.certs.load().select(name.as_deref()).clone())
    }
}

/// A listener's TLS termination, ready for tokio-rustls.
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    store: Arc<CertStore>,
    verifier: Option<Arc<ClientVerifier>>,
}

impl ServerTls {
    /// Build the listener `name`'s TLS from its configuration: load certificates and keys, and for
    /// a gate its trust, CRLs and allow-list.
    pub fn new(name: &str, tls: &ListenerTls) -> Result<ServerTls, TlsError> {
        let store = Arc::new(CertStore::new(SniCerts::load(tls)?));
        let verifier = match &tls.client_auth {
            Some(policy) => Some(Arc::new(ClientVerifier::new(name, policy)?)),
            None => None,
        };
        let builder = ServerConfig::builder_with_provider(crate::aes128_first())
            .with_protocol_versions(&[&version::TLS13, &version::TLS12])
            .map_err(|source| TlsErrorKind::Build {
                at: tls.default.certificate.at.clone(),
                source,
            })?;
        let mut config = match &verifier {
            Some(v) => builder.with_client_cert_verifier(v.clone()),
            None => builder.with_no_client_auth(),
        }
        .with_cert_resolver(store.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Our order decides the cipher suite: AES-128-GCM (see `aes128_first`), where clients
        // like wrk and OpenSSL's defaults would pick AES-256-GCM with SHA-384.
        config.ignore_client_order = true;
        if verifier.is_some() {
            // Resumption would skip certificate verification, so a gate never resumes: every
            // connection is checked against the current trust and allow-list (DESIGN.md).
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        } else {
            config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|source| {
                TlsErrorKind::Build {
                    at: tls.default.certificate.at.clone(),
                    source,
                }
            })?;
        }
        Ok(ServerTls {
            config: Arc::new(config),
            store,
            verifier,
        })
    }

    /// The rustls configuration.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// The certificates served.
    pub fn store(&self) -> &Arc<CertStore> {
        &self.store
    }

    /// The gate's verifier, if this listener requires client certificates.
    pub fn verifier(&self) -> Option<&Arc<ClientVerifier>> {
        self.verifier.as_ref()
    }
}
