//! The edge's side of a connection to a backend: server verification and the client certificate.

use std::sync::Arc;

use farmgate_config::{Location, UpstreamTls};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, SignatureScheme};

use crate::{TlsError, TlsErrorKind, TrustStore, load};

/// The rustls client configuration for an upstream: verify each backend against `trust` (the
/// name checked is chosen per connection), present `client_certificate` if configured, offer
/// `alpn` in order, and prefer AES-128-GCM.
pub fn upstream_client_config(
    tls: &UpstreamTls,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsError> {
    let trust = TrustStore::load(&tls.trust, &tls.at)?;
    let verifier = server_verifier(&trust, &tls.at)?;
    let builder = ClientConfig::builder_with_provider(crate::aes128_first())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsErrorKind::Build {
            at: tls.at.clone(),
            source,
        })?
        .with_webpki_verifier(verifier);
    let mut config = match &tls.client_cert {
        Some(pair) => {
            let identity = ClientIdentity(load::certified_key(pair)?);
            builder.with_client_cert_resolver(Arc::new(identity))
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// How the edge verifies a backend's certificate (and `farmgate probe` a server's): rustls'
/// WebPKI server verifier over `trust`, serverAuth across the chain, the name checked per
/// connection. `at` names the configuration that asked, for errors.
pub fn server_verifier(
    trust: &TrustStore,
    at: &Location,
) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    WebPkiServerVerifier::builder_with_provider(trust.root_store(), crate::provider())
        .build()
        .map_err(|source| {
            TlsErrorKind::Verifier {
                at: at.clone(),
                source,
            }
            .into()
        })
}

/// The one identity an upstream presents, whatever CA names the backend hints.
#[derive(Debug)]
struct ClientIdentity(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let scheme = self.0.key.choose_scheme(sigschemes);
        scheme.is_some().then(|| self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
