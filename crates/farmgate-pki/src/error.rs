//! [`PkiError`]: what can go wrong minting keys, certificates and CRLs.

use time::OffsetDateTime;
use x509_parser::error::X509Error;

/// Why a key, certificate or CRL could not be created or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// Key generation failed.
    #[error("could not generate a key pair")]
    GenerateKey(#[source] rcgen::Error),
    /// A private key PEM could not be read.
    #[error(
        "the private key is unreadable; expected an unencrypted PKCS#8, SEC1 or PKCS#1 PEM key"
    )]
    KeyPem(#[source] rcgen::Error),
    /// The system random number generator failed (while drawing a serial number).
    #[error("the system random number generator failed")]
    Random(#[source] aws_lc_rs::error::Unspecified),
    /// A name cannot be written into a certificate (e.g. a SAN that is not ASCII).
    #[error("`{name}` cannot be written into a certificate")]
    Name {
        /// The name as given.
        name: String,
        /// Why rcgen refused it.
        #[source]
        source: rcgen::Error,
    },
    /// The validity period ends before it begins.
    #[error(
        "certificate `{subject}` would expire ({not_after}) before it becomes valid ({not_before})"
    )]
    Validity {
        /// The certificate being made.
        subject: String,
        /// Start of the requested validity.
        not_before: OffsetDateTime,
        /// End of the requested validity.
        not_after: OffsetDateTime,
    },
    /// rcgen could not build or sign a certificate.
    #[error("could not create certificate `{subject}`")]
    Certificate {
        /// The certificate being made.
        subject: String,
        /// Why rcgen failed.
        #[source]
        source: rcgen::Error,
    },
    /// The CA certificate PEM is malformed.
    #[error("the CA certificate PEM is unreadable")]
    CaPem(#[source] rustls_pki_types::pem::Error),
    /// The CA certificate PEM holds no certificate.
    #[error("the CA certificate PEM holds no CERTIFICATE block")]
    NoCaCertificate,
    /// A certificate in the CA PEM is not valid X.509.
    #[error("the CA certificate is not valid DER X.509")]
    CaDer(#[source] X509Error),
    /// The loaded certificate may not sign certificates.
    #[error(
        "certificate `{subject}` is not a CA: it lacks basicConstraints CA:TRUE or the \
         keyCertSign key usage"
    )]
    NotACa {
        /// The certificate's subject.
        subject: String,
    },
    /// The private key is not the key of the loaded CA certificate.
    #[error("the private key does not belong to CA certificate `{subject}`")]
    KeyMismatch {
        /// The certificate's subject.
        subject: String,
    },
    /// rcgen could not use the loaded CA certificate as an issuer.
    #[error("CA certificate `{subject}` cannot be used as an issuer")]
    Issuer {
        /// The certificate's subject.
        subject: String,
        /// Why rcgen refused it.
        #[source]
        source: rcgen::Error,
    },
    /// rcgen could not build or sign a CRL.
    #[error("could not create a CRL for `{issuer}`")]
    Crl {
        /// The CA signing the CRL.
        issuer: String,
        /// Why rcgen failed.
        #[source]
        source: rcgen::Error,
    },
}
