//! The edge's side of a connection to a backend: server verification and the client certificate.

use std::sync::Arc;

use farmgate_config::{Location, UpstreamTls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::ParsedCertificate;
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, OtherError, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::path::{self, PathError};
use crate::profile::Finding;
use crate::verifier::classify;
use crate::{TlsError, TlsErrorKind, TrustStore, load};

/// The rustls client configuration for an upstream: verify each backend against `trust` with
/// [`ServerVerifier`] (the name checked is chosen per connection), present `client_certificate` if configured, offer
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
        .dangerous()
        .with_custom_certificate_verifier(verifier);
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

/// How the edge verifies a backend's certificate (and `farmgate probe` a server's): see
/// [`ServerVerifier`]. `at` names the configuration that asked, for errors.
pub fn server_verifier(trust: &TrustStore, at: &Location) -> Result<Arc<ServerVerifier>, TlsError> {
    let webpki = WebPkiServerVerifier::builder_with_provider(trust.root_store(), crate::provider())
        .build()
        .map_err(|source| TlsErrorKind::Verifier {
            at: at.clone(),
            source,
        })?;
    Ok(Arc::new(ServerVerifier {
        trust: trust.clone(),
        algorithms: crate::provider().signature_verification_algorithms,
        webpki,
    }))
}

/// The edge's verifier of backend certificates: serverAuth across the chain to `trust`, the
/// name checked per connection, as rustls' WebPKI verifier does; then, like the gate, the
/// [`profile`](crate::profile) checks on the path and the trust anchor's expiry. A
/// profile refusal is a `CertificateError::Other` holding the [`Finding`], which
/// [`explain`](crate::explain) puts into words.
#[derive(Debug)]
pub struct ServerVerifier {
    trust: TrustStore,
    algorithms: WebPkiSupportedAlgorithms,
    /// rustls' own verifier, for the signatures of the handshake.
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerVerifier {
    /// The profile warnings of `end_entity`'s path to trust, or why the path is refused; the
    /// verdict the handshake gets, without the name check.
    pub fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<Vec<Finding>, rustls::Error> {
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| rustls::Error::InvalidCertificate(classify(&e).1))?;
        let refused = match path::verify(
            &cert,
            &self.trust,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            self.algorithms.all,
        ) {
            Ok(warnings) => return Ok(warnings),
            Err(refused) => refused,
        };
        Err(match refused {
            PathError::Profile(finding) => rustls::Error::InvalidCertificate(
                CertificateError::Other(OtherError(Arc::new(finding))),
            ),
            PathError::Anchor(_, e) | PathError::Webpki(e) => {
                rustls::Error::InvalidCertificate(classify(&e).1)
            }
        })
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let warnings = self.check(end_entity, intermediates, now)?;
        rustls::client::verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
        for warning in &warnings {
            tracing::debug!(server_name = ?server_name, defect = ?warning.defect, "backend chain accepted with a profile warning: {warning}");
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
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
