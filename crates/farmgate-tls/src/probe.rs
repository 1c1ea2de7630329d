//! One TLS handshake with a server, recorded for `farmgate probe`: the chain the server sent,
//! whether it asked for a client certificate and which CA names it advertised, and how the
//! attempt ended, explained with [`explain`](crate::explain).
//!
//! A TLS 1.3 server judges a client certificate only after the client's Finished, so the client
//! sees the handshake complete before the verdict. To learn the verdict without waiting a fixed
//! time, the probe sends close_notify right after the handshake and reads until the server
//! closes (accepted) or sends an alert (refused). The timeout only bounds a server that never
//! answers.
//!
//! Blocking I/O on purpose: one connection, no runtime needed.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use farmgate_identity::CertificateSummary;
use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    AlertDescription, ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::error::X509Error;
use x509_parser::prelude::{FromDer, X509Name};

use crate::{TlsError, TlsErrorKind, TrustStore, explain};

/// Re-exported for callers building a [`ProbeRequest`] and reading an [`Outcome`].
pub use rustls::CertificateError;
/// Re-exported for callers building a [`ProbeRequest`].
pub use rustls_pki_types::ServerName;

/// What to probe and how.
#[derive(Debug)]
pub struct ProbeRequest<'a> {
    /// `HOST:PORT`.
    pub address: &'a str,
    /// Sent as SNI and verified on the server's certificate.
    pub server_name: ServerName<'static>,
    /// Trust for the server's certificate.
    pub trust: &'a TrustStore,
    /// The client certificate to present when asked, if any.
    pub identity: Option<Arc<CertifiedKey>>,
    /// How long to wait for the server at each step before giving up.
    pub timeout: Duration,
}

/// What the probe saw.
#[derive(Debug)]
#[non_exhaustive]
pub struct ProbeReport {
    /// The address connected to, once the connection was made.
    pub peer: Option<SocketAddr>,
    /// The server's chain as it sent it (leaf first), even when we refused it; a certificate
    /// that cannot be read as X.509 is the error that says why.
    pub server_chain: Vec<Result<CertificateSummary, X509Error>>,
    /// `None` before the server's certificate was checked; `Some(Ok)` when it is trusted for the
    /// server name; `Some(Err)` with why not.
    pub server_verdict: Option<Result<(), CertificateError>>,
    /// Present when the server asked for a client certificate.
    pub client_auth: Option<ClientAuthRequest>,
    /// The negotiated protocol version, e.g. `TLSv1_3`.
    pub protocol: Option<String>,
    /// The negotiated cipher suite.
    pub cipher_suite: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
}

/// The server's request for a client certificate.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientAuthRequest {
    /// The CA names it advertised (its trust, usually), as text.
    pub ca_names: Vec<String>,
    /// Whether we sent a certificate in answer.
    pub sent: bool,
}

/// How a probe ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// The handshake completed and the server did not refuse us.
    Accepted,
    /// The server ended the handshake with an alert.
    Refused {
        /// The alert.
        alert: AlertDescription,
        /// What it means, in words.
        explanation: String,
    },
    /// We refused the server's certificate.
    ServerCertificateRefused {
        /// Why, as rustls reported it.
        error: CertificateError,
        /// In words.
        explanation: String,
    },
    /// The connection or the TLS exchange failed otherwise.
    Failed {
        /// What happened, in words.
        explanation: String,
    },
}

impl Outcome {
    /// Whether the server accepted us.
    pub fn is_accepted(&self) -> bool {
        matches!(self, Outcome::Accepted)
    }
}

/// Build the configuration and perform the probe. Errors are about the request (an unusable
/// trust store); everything the server does is in the report.
pub fn probe(request: &ProbeRequest<'_>) -> Result<ProbeReport, TlsError> {
    let at = farmgate_config::Location::argument("--trust");
    let verifier = Arc::new(Recorder {
        inner: crate::server_verifier(request.trust, &at)?,
        seen: Mutex::default(),
    });
    let resolver = Arc::new(Asked {
        identity: request.identity.clone(),
        request: Mutex::default(),
    });
    let config = ClientConfig::builder_with_provider(crate::provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsErrorKind::Build {
            at: at.clone(),
            source,
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_client_cert_resolver(resolver.clone());
    let mut report = ProbeReport {
        peer: None,
        server_chain: Vec::new(),
        server_verdict: None,
        client_auth: None,
        protocol: None,
        cipher_suite: None,
        outcome: Outcome::Accepted,
    };
    report.outcome = run(request, Arc::new(config), &mut report);
    if let Some((chain, verdict)) = verifier.seen.lock().take() {
        report.server_chain = chain
            .iter()
            .map(|der| CertificateSummary::from_der(der.as_ref()))
            .collect();
        report.server_verdict = Some(verdict);
    }
    report.client_auth = resolver.request.lock().take();
    Ok(report)
}

/// Connect, handshake, then learn the verdict.
fn run(request: &ProbeRequest<'_>, config: Arc<ClientConfig>, report: &mut ProbeReport) -> Outcome {
    let mut tcp = match connect(request.address, request.timeout) {
        Ok(tcp) => tcp,
        Err(explanation) => return Outcome::Failed { explanation },
    };
    report.peer = tcp.peer_addr().ok();
    let mut conn = match ClientConnection::new(config, request.server_name.clone()) {
        Ok(conn) => conn,
        Err(e) => {
            return Outcome::Failed {
                explanation: format!("cannot start TLS: {e}"),
            };
        }
    };
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            return failure(&e, request, "during the handshake");
        }
    }
    report.protocol = conn.protocol_version().map(|v| format!("{v:?}"));
    report.cipher_suite = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()));
    // The verdict on our certificate may still be on its way (TLS 1.3): say goodbye and read
    // until the server closes or objects.
    conn.send_close_notify();
    let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
    let mut buf = [0u8; 4096];
    let mut received = 0usize;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Outcome::Accepted,
            // A server that speaks first (a banner) has accepted us; don't read it all.
            Ok(n) if received + n > 64 * 1024 => return Outcome::Accepted,
            Ok(n) => received += n,
            // Closed without close_notify, but without an alert either.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Outcome::Accepted,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // No refusal came: a TLS 1.3 server sends it right after our Finished.
                return Outcome::Accepted;
            }
            Err(e) => return failure(&e, request, "after the handshake"),
        }
    }
}

fn connect(address: &str, timeout: Duration) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {address}: {e}"))?
        .collect();
    let mut last = format!("{address} resolves to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(tcp) => {
                let timeouts = tcp
                    .set_read_timeout(Some(timeout))
                    .and_then(|()| tcp.set_write_timeout(Some(timeout)));
                if let Err(e) = timeouts {
                    return Err(format!(
                        "cannot set timeouts on the connection to {addr}: {e}"
                    ));
                }
                return Ok(tcp);
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}

/// An I/O error from the TLS connection, as an outcome.
fn failure(e: &io::Error, request: &ProbeRequest<'_>, stage: &str) -> Outcome {
    let name = request.server_name.to_str();
    match explain::find_tls_error(e) {
        Some(rustls::Error::AlertReceived(alert)) => Outcome::Refused {
            alert: *alert,
            explanation: explain::refused_by_server(*alert),
        },
        Some(rustls::Error::InvalidCertificate(error)) => Outcome::ServerCertificateRefused {
            error: error.clone(),
            explanation: format!(
                "we refused the server's certificate: {}",
                explain::server_cert_problem(error, &name)
            ),
        },
        Some(other) => Outcome::Failed {
            explanation: explain::tls_failure(other),
        },
        None if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) =>
        {
            Outcome::Failed {
                explanation: format!(
                    "the server did not answer within {:?} {stage}",
                    request.timeout
                ),
            }
        }
        None => Outcome::Failed {
            explanation: format!(
                "the connection failed {stage} without a TLS alert: {e} (a server that refuses a client certificate without saying why closes like this too)"
            ),
        },
    }
}

/// Wraps the upstream server verifier to keep the chain the server sent and the verdict.
#[derive(Debug)]
struct Recorder {
    inner: Arc<crate::ServerVerifier>,
    seen: Mutex<Option<ServerChain>>,
}

type ServerChain = (Vec<CertificateDer<'static>>, Result<(), CertificateError>);

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        let verdict = match &result {
            Ok(_) => Ok(()),
            Err(rustls::Error::InvalidCertificate(e)) => Err(e.clone()),
            Err(other) => Err(CertificateError::Other(rustls::OtherError(Arc::new(
                other.clone(),
            )))),
        };
        *self.seen.lock() = Some((chain, verdict));
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Answers a certificate request with our identity (if any), noting what the server asked.
#[derive(Debug)]
struct Asked {
    identity: Option<Arc<CertifiedKey>>,
    request: Mutex<Option<ClientAuthRequest>>,
}

impl ResolvesClientCert for Asked {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let chosen = self
            .identity
            .clone()
            .filter(|k| k.key.choose_scheme(sigschemes).is_some());
        *self.request.lock() = Some(ClientAuthRequest {
            ca_names: root_hint_subjects.iter().map(|n| name_text(n)).collect(),
            sent: chosen.is_some(),
        });
        chosen
    }

    // Always: the resolver must be asked even without an identity, to learn that the server
    // wanted one.
    fn has_certs(&self) -> bool {
        true
    }
}

/// A distinguished name from a CertificateRequest, as text.
fn name_text(der: &[u8]) -> String {
    match X509Name::from_der(der) {
        Ok((_, name)) => name.to_string(),
        Err(_) => "(a name that cannot be parsed)".to_owned(),
    }
}
