//! A listener's TLS: rustls `ServerConfig`, SNI certificate selection, session policy, and the
//! answers to ACME tls-alpn-01 validations.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use arc_swap::ArcSwap;
use farmgate_config::{Challenge, ListenerCerts, ListenerTls};
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};

use crate::{ClientVerifier, GateStats, TicketKeys, TlsError, TlsErrorKind, load};

/// The ALPN protocol an ACME server offers, alone, when it validates a tls-alpn-01 challenge
/// (RFC 8737). A connection that negotiates it carries no HTTP and is closed after the handshake.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The certificates a listener serves, chosen by SNI; swappable while running (certificate
/// rotation, ACME) without touching connections already established.
#[derive(Debug)]
pub struct CertStore {
    certs: ArcSwap<SniCerts>,
    /// Where tls-alpn-01 validations find their certificate (ACME listeners only).
    challenges: Option<Arc<AlpnChallenges>>,
}

/// tls-alpn-01 challenge certificates by server name, put here by the ACME client while a
/// validation is pending and served only to handshakes that offer [`ACME_TLS_ALPN`].
#[derive(Default)]
pub struct AlpnChallenges {
    // Read only by validation handshakes, which are rare: a plain lock is enough.
    certs: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// Asked when no certificate is posted here for a name (another edge's validation).
    fallback: Mutex<Option<Arc<AlpnFallback>>>,
}

/// Finds the challenge certificate for a name that this process did not post.
type AlpnFallback = dyn Fn(&str) -> Option<Arc<CertifiedKey>> + Send + Sync;

impl std::fmt::Debug for AlpnChallenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlpnChallenges")
            .field("names", &self.locked().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl AlpnChallenges {
    /// Ask `fallback` for names with no certificate posted here: the ACME client reads the
    /// answers other edges sharing its storage posted, so any edge answers any validation.
    pub fn set_fallback(
        &self,
        fallback: impl Fn(&str) -> Option<Arc<CertifiedKey>> + Send + Sync + 'static,
    ) {
        *self.fallback.lock() = Some(Arc::new(fallback));
    }

    /// Answer validations for `server_name` (lower-case) with `key` until [`Self::remove`].
    pub fn insert(&self, server_name: &str, key: Arc<CertifiedKey>) {
        self.locked().insert(server_name.to_owned(), key);
    }

    /// Stop answering validations for `server_name`.
    pub fn remove(&self, server_name: &str) {
        self.locked().remove(server_name);
    }

    /// The challenge certificate for `server_name`, if a validation is pending.
    pub fn get(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        if let Some(posted) = self.locked().get(server_name).cloned() {
            return Some(posted);
        }
        let fallback = self.fallback.lock().clone()?;
        fallback(server_name)
    }

    fn locked(&self) -> MutexGuard<'_, HashMap<String, Arc<CertifiedKey>>> {
        self.certs.lock()
    }
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
    /// Load the default certificate and every SNI entry of `tls` from their files.
    pub fn load(tls: &ListenerTls) -> Result<SniCerts, TlsError> {
        let ListenerCerts::Files { default, sni } = &tls.certs else {
            return Err(TlsErrorKind::NotFiles { at: tls.at.clone() }.into());
        };
        let default = load::certified_key(default)?;
        let mut exact = HashMap::new();
        let mut wildcard = Vec::new();
        for entry in sni {
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

    /// One certificate for every name (an ACME certificate, or a temporary one).
    pub fn single(key: Arc<CertifiedKey>) -> SniCerts {
        SniCerts {
            default: key,
            exact: HashMap::new(),
            wildcard: Vec::new(),
        }
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
            challenges: None,
        }
    }

    /// A store serving `certs`, and answering tls-alpn-01 validations from `challenges`.
    pub fn with_challenges(certs: SniCerts, challenges: Arc<AlpnChallenges>) -> CertStore {
        CertStore {
            certs: ArcSwap::from_pointee(certs),
            challenges: Some(challenges),
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
        if let Some(challenges) = &self.challenges
            && hello
                .alpn()
                .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN))
        {
            // A validation: its challenge certificate or nothing, never the site's certificate.
            return challenges.get(name.as_deref()?);
        }
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
    /// Build the listener `name`'s TLS from its configuration: load certificates and keys from
    /// their files, and for a gate its trust, CRLs and allow-list.
    pub fn new(name: &str, tls: &ListenerTls) -> Result<ServerTls, TlsError> {
        let store = Arc::new(CertStore::new(SniCerts::load(tls)?));
        ServerTls::with_store(name, tls, store, Arc::default())
    }

    /// Build the listener `name`'s TLS serving the certificates of `store`, which may outlive
    /// this configuration (an ACME certificate kept across reloads). A gate's verifier counts
    /// into `gate_stats`, which may be those of the listener's earlier configurations. A
    /// listener that answers tls-alpn-01 also accepts [`ACME_TLS_ALPN`].
    pub fn with_store(
        name: &str,
        tls: &ListenerTls,
        store: Arc<CertStore>,
        gate_stats: Arc<GateStats>,
    ) -> Result<ServerTls, TlsError> {
        let verifier = match &tls.client_auth {
            Some(policy) => Some(Arc::new(
                ClientVerifier::new(name, policy)?.counting_into(gate_stats),
            )),
            None => None,
        };
        let builder = ServerConfig::builder_with_provider(crate::aes128_first())
            .with_protocol_versions(&[&version::TLS13, &version::TLS12])
            .map_err(|source| TlsErrorKind::Build {
                at: tls.at.clone(),
                source,
            })?;
        let mut config = match &verifier {
            Some(v) => builder.with_client_cert_verifier(v.clone()),
            None => builder.with_no_client_auth(),
        }
        .with_cert_resolver(store.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        if tls
            .acme()
            .is_some_and(|acme| acme.challenge == Challenge::TlsAlpn01)
        {
            // Last: a browser offers h2 or http/1.1 and never gets this; a validator offers only it.
            config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
        }
        // Our order decides the cipher suite: AES-128-GCM (see `aes128_first`), where clients
        // like wrk and OpenSSL's defaults would pick AES-256-GCM with SHA-384.
        config.ignore_client_order = true;
        if verifier.is_some() {
            // Resumption would skip certificate verification, so a gate never resumes: every
            // connection is checked against the current trust and allow-list (docs/architecture.md,
            // "Invariants").
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        } else {
            // One ticket per connection, as Go's servers (Caddy) send: each new connection
            // resumes with one and receives the next. rustls's default of two costs another
            // ticket encryption and record on every full handshake.
            config.send_tls13_tickets = 1;
            config.ticketer = match &tls.ticket_keys {
                // Every edge reading this file opens the others' tickets.
                Some(file) => Arc::new(TicketKeys::load(file)?),
                None => rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|source| {
                    TlsErrorKind::Build {
                        at: tls.at.clone(),
                        source,
                    }
                })?,
            };
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
