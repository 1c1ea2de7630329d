//! The edge's side of a connection to a backend: server verification and the client certificate.

use std::sync::Arc;

use farmgate_config::{Location, UpstreamTls};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, ClientConfig, SignatureScheme};

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
    let builder = ClientConfig::builder_with_provider(aes128_first())
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

/// The provider towards backends: rustls' defaults with AES-128-GCM preferred. Both ends of
/// this hop are ours and every request crosses it, so each record's cost counts: AES-128 runs
/// 10 rounds instead of AES-256's 14, and its TLS 1.3 suite uses SHA-256 instead of SHA-384 in
/// the key schedule. Backends choose by our order (rustls and OpenSSL do by default).
fn aes128_first() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    // A stable sort: AES-128-GCM suites first, everything else in rustls' order.
    provider.cipher_suites.sort_by_key(|suite| {
        !matches!(
            suite.suite(),
            CipherSuite::TLS13_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    Arc::new(provider)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes128_gcm_comes_first_towards_backends() {
        let provider = aes128_first();
        assert_eq!(
            provider.cipher_suites[0].suite(),
            CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        // Nothing is lost, only reordered.
        assert_eq!(
            provider.cipher_suites.len(),
            rustls::crypto::aws_lc_rs::default_provider()
                .cipher_suites
                .len()
        );
    }
}
