//! Errors building TLS configurations. Each names the configuration key that led to the file.

use std::path::PathBuf;

use farmgate_config::Location;

/// A certificate, key, trust bundle or CRL that cannot be used. See [`TlsErrorKind`].
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct TlsError(Box<TlsErrorKind>);

impl TlsError {
    /// What went wrong.
    pub fn kind(&self) -> &TlsErrorKind {
        &self.0
    }
}

impl From<TlsErrorKind> for TlsError {
    fn from(kind: TlsErrorKind) -> TlsError {
        TlsError(Box::new(kind))
    }
}

/// What is wrong with a certificate, key, trust bundle or CRL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsErrorKind {
    /// The file cannot be read.
    #[error("{at}: cannot read {}", path.display())]
    Read {
        /// The configuration key naming the file.
        at: Location,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid PEM.
    #[error("{at}: {} is not valid PEM", path.display())]
    Pem {
        /// The configuration key naming the file.
        at: Location,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The file holds no certificate.
    #[error("{at}: {} holds no certificate; expected PEM \"-----BEGIN CERTIFICATE-----\" blocks", path.display())]
    NoCertificate {
        /// The configuration key naming the file.
        at: Location,
        /// The file.
        path: PathBuf,
    },
    /// A certificate in the file cannot be parsed.
    #[error("{at}: certificate #{index} in {} is not a valid X.509 certificate", path.display())]
    BadCertificate {
        /// The configuration key naming the file.
        at: Location,
        /// The file.
        path: PathBuf,
        /// 1-based position in the file.
        index: usize,
        /// Why.
        #[source]
        source: webpki::Error,
    },
    /// The file holds no private key.
    #[error("{at}: {} holds no private key; expected a PEM PKCS#8, PKCS#1 (RSA) or SEC1 (EC) key", path.display())]
    NoKey {
        /// The configuration key naming the file.
        at: Location,
        /// The file.
        path: PathBuf,
    },
    /// The private key cannot be used.
    #[error("{at}: the private key in {} cannot be used", path.display())]
    BadKey {
        /// The configuration key naming the file.
        at: Location,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The private key belongs to another certificate.
    #[error("{at}: the private key {} does not belong to the certificate {}; check that both files come from the same issuance", key.display(), cert.display())]
    KeyMismatch {
        /// The configuration key naming the key file.
        at: Location,
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// A CRL cannot be parsed.
    #[error("{at}: {} is not a valid certificate revocation list", path.display())]
    BadCrl {
        /// The configuration key naming the file.
        at: Location,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: webpki::Error,
    },
    /// A CRL is not signed by any trusted CA.
    #[error("{at}: {} is not signed by any CA in this gate's trust: {reason}", path.display())]
    CrlIssuer {
        /// The configuration key naming the file.
        at: Location,
        /// The file.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// The operating system's trust store holds no usable certificate.
    #[error(
        "{at}: \"system\" trust: the operating system's certificate store could not be loaded ({detail})"
    )]
    SystemTrust {
        /// The configuration key.
        at: Location,
        /// What rustls-native-certs reported.
        detail: String,
    },
    /// rustls refused the assembled configuration.
    #[error("{at}: cannot build the TLS configuration")]
    Build {
        /// The configuration table.
        at: Location,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The server verifier cannot be built from the trust anchors.
    #[error("{at}: cannot verify backends with this trust")]
    Verifier {
        /// The configuration table.
        at: Location,
        /// Why.
        #[source]
        source: rustls::client::VerifierBuilderError,
    },
}
