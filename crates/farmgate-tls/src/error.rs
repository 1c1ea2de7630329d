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
    /// A CRL's issuer or dates cannot be read (webpki accepted its structure).
    #[error("{at}: the issuer or dates of the certificate revocation list in {} cannot be read", path.display())]
    CrlUnreadable {
        /// The configuration key naming the file.
        at: Location,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: x509_parser::error::X509Error,
    },
    /// A CRL breaks a rule of the RFC 5280 profile that webpki does not check.
    #[error("{at}: {} is not a conforming certificate revocation list: {problem}", path.display())]
    CrlProfile {
        /// The configuration key naming the file.
        at: Location,
        /// The file.
        path: PathBuf,
        /// Which rule, in words.
        problem: &'static str,
    },
    /// A CRL file holds no CRL.
    #[error("{at}: {} holds no certificate revocation list; expected DER, or PEM \"-----BEGIN X509 CRL-----\" blocks", path.display())]
    NoCrl {
        /// The configuration key naming the file.
        at: Location,
        /// The file.
        path: PathBuf,
    },
    /// A CRL file holds something other than CRLs and CA certificates.
    #[error("{at}: {} holds {found}; a CRL file holds CRLs and, optionally, the certificates of the CAs that signed them", path.display())]
    CrlFileContents {
        /// The configuration key naming the file.
        at: Location,
        /// The file.
        path: PathBuf,
        /// What was found.
        found: &'static str,
    },
    /// A CRL is not signed by any CA of the gate's trust.
    #[error("{at}: {} is issued by \"{issuer}\", which is not a CA of this gate's trust; a CRL must be signed by a CA in `trust`, or by a CA whose certificate is appended to the CRL file and chains to `trust`", path.display())]
    CrlIssuer {
        /// The configuration key naming the file.
        at: Location,
        /// The file.
        path: PathBuf,
        /// The CRL's issuer name.
        issuer: String,
    },
    /// A CRL's signature does not verify with its issuer's key.
    #[error("{at}: the signature of {} does not verify with the key of \"{issuer}\" in this gate's trust (a CA with the same name but another key, or a damaged file?)", path.display())]
    CrlSignature {
        /// The configuration key naming the file.
        at: Location,
        /// The file.
        path: PathBuf,
        /// The CRL's issuer name.
        issuer: String,
        /// Why.
        #[source]
        source: crate::crl::SignatureError,
    },
    /// A CRL is signed by a CA whose certificate does not permit signing CRLs.
    #[error("{at}: {} is signed by \"{issuer}\", whose keyUsage does not include cRLSign, so it may not sign CRLs", path.display())]
    CrlNotSigner {
        /// The configuration key naming the file.
        at: Location,
        /// The file.
        path: PathBuf,
        /// The CRL's issuer name.
        issuer: String,
    },
    /// A CRL's nextUpdate has passed.
    #[error("{at}: {} from \"{issuer}\" expired at {next_update} (its nextUpdate); with it the revocation status of that CA's certificates is unknown and the gate would refuse them all; install a current CRL from the CA", path.display())]
    CrlExpired {
        /// The configuration key naming the file.
        at: Location,
        /// The file.
        path: PathBuf,
        /// The CRL's issuer name.
        issuer: String,
        /// The nextUpdate time, as text.
        next_update: String,
    },
    /// A certificate in a CRL file cannot be read.
    #[error("{at}: certificate #{index} in {} cannot be read", path.display())]
    CrlCertificateUnreadable {
        /// The configuration key naming the file.
        at: Location,
        /// The file.
        path: PathBuf,
        /// 1-based position among the file's certificates.
        index: usize,
        /// Why.
        #[source]
        source: x509_parser::error::X509Error,
    },
    /// A certificate in a CRL file is not a CA certificate.
    #[error("{at}: certificate #{index} in {} (\"{subject}\") is not a CA certificate; a CRL file may only add the CAs that signed its CRLs", path.display())]
    CrlCertificateNotCa {
        /// The configuration key naming the file.
        at: Location,
        /// The file.
        path: PathBuf,
        /// 1-based position among the file's certificates.
        index: usize,
        /// Its subject.
        subject: String,
    },
    /// A CA certificate in a CRL file does not chain to the gate's trust.
    #[error("{at}: certificate #{index} in {} (\"{subject}\") does not chain to this gate's trust: its issuer \"{issuer}\" is neither in `trust` nor another certificate of the file, or its signature does not verify", path.display())]
    CrlCertificateUntrusted {
        /// The configuration key naming the file.
        at: Location,
        /// The file.
        path: PathBuf,
        /// 1-based position among the file's certificates.
        index: usize,
        /// Its subject.
        subject: String,
        /// Its issuer.
        issuer: String,
    },
    /// A certificate in a trust file cannot be a trust anchor: it breaks a rule of RFC 5280 or
    /// of the CA/Browser Forum's root profile that makes its meaning unclear (see
    /// [`profile`](crate::profile)).
    #[error("{at}: certificate #{index} in {} (\"{subject}\") cannot be a trust anchor: {defect}; trust needs the CA certificates that issue your certificates, each well-formed (see docs/verification.md)", path.display())]
    TrustAnchor {
        /// The configuration key naming the file.
        at: Location,
        /// The file.
        path: PathBuf,
        /// 1-based position in the file.
        index: usize,
        /// The certificate's subject, as an RFC 4514 string.
        subject: String,
        /// The rule it breaks.
        defect: crate::profile::Defect,
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
    /// A `ticket_keys` file that is not whole 80-byte keys.
    #[error("{at}: {} holds {len} bytes; a ticket key file holds one or more raw 80-byte keys, one after another, so its size must be a non-zero multiple of 80 (make one with `openssl rand 80 > tickets.key`)", path.display())]
    TicketKeysSize {
        /// The configuration key naming the file.
        at: Location,
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        len: usize,
    },
    /// A key of a `ticket_keys` file that the cipher refused.
    #[error("{at}: key #{index} in {} cannot be used as a session ticket key", path.display())]
    TicketKeyUnusable {
        /// The configuration key naming the file.
        at: Location,
        /// The file.
        path: PathBuf,
        /// 1-based position in the file.
        index: usize,
    },
    /// A listener whose certificate comes from ACME was built without its certificate store.
    #[error("{at}: this listener takes its certificate from ACME, not from files")]
    NotFiles {
        /// The listener's `tls` table.
        at: Location,
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
