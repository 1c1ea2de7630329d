//! [`InspectError`]: why a file could not be read as certificates to report on.

use x509_parser::error::X509Error;

/// Why a file to inspect could not be read as certificates. The file itself is named by the
/// caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// The file is not valid PEM.
    #[error("not valid PEM")]
    Pem(#[source] rustls_pki_types::pem::Error),
    /// The file holds no certificate.
    #[error(
        "holds no certificate; expected PEM \"-----BEGIN CERTIFICATE-----\" blocks or one DER certificate"
    )]
    NoCertificate,
    /// A certificate is not valid X.509.
    #[error("certificate #{index} is not a valid X.509 certificate")]
    Der {
        /// 1-based position in the file.
        index: usize,
        /// Why.
        #[source]
        source: X509Error,
    },
}
