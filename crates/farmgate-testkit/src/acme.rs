//! An ACME server's view of a listener: the tls-alpn-01 validation handshake (RFC 8737), which
//! offers only ALPN `acme-tls/1` and accepts whatever certificate it is shown, to look at it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failure here is a test failure

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The ALPN protocol of tls-alpn-01 validations.
pub const ACME_TLS_1: &[u8] = b"acme-tls/1";

/// A server certificate verifier that accepts any certificate and keeps the last one it saw.
#[derive(Debug, Default)]
pub struct AnyServerCert {
    seen: Mutex<Option<CertificateDer<'static>>>,
}

impl AnyServerCert {
    /// The certificate the server showed last.
    pub fn seen(&self) -> Option<CertificateDer<'static>> {
        self.seen.lock().unwrap().clone()
    }

    /// A client configuration using this verifier, offering `alpn`.
    pub fn client_config(self: &Arc<Self>, alpn: &[&[u8]]) -> ClientConfig {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(self.clone())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }
}

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Some(end_entity.clone().into_owned());
        Ok(ServerCertVerified::assertion())
    }

    // The signature is not checked: webpki, which rustls checks it with, refuses the critical
    // acmeIdentifier extension of a challenge certificate; we only look at the certificate.
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Validate tls-alpn-01 on `addr` for `name` as an ACME server does: the certificate shown and
/// the protocol the server agreed to, or why the handshake failed.
pub async fn tls_alpn_validation(
    addr: SocketAddr,
    name: &str,
) -> std::io::Result<(CertificateDer<'static>, Option<Vec<u8>>)> {
    let verifier = Arc::new(AnyServerCert::default());
    let config = verifier.client_config(&[ACME_TLS_1]);
    let tcp = TcpStream::connect(addr).await?;
    let server_name = ServerName::try_from(name.to_owned()).expect("a DNS name");
    let stream = TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await?;
    let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    Ok((verifier.seen().expect("a server certificate"), alpn))
}

/// The value of the acmeIdentifier extension (1.3.6.1.5.5.7.1.31) of certificate `der`: an
/// OCTET STRING holding the SHA-256 of the key authorization.
pub fn acme_identifier(der: &[u8]) -> Option<(bool, Vec<u8>)> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    cert.extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
        .map(|e| (e.critical, e.value.to_vec()))
}
