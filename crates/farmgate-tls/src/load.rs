//! Reading certificates, keys and CRLs from the files a configuration names.

use std::path::Path;
use std::sync::Arc;

use farmgate_config::{CertKey, FileRef};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{TlsError, TlsErrorKind};

/// Read a file named in the configuration.
pub fn read(file: &FileRef) -> Result<Vec<u8>, TlsError> {
    Ok(
        std::fs::read(&file.path).map_err(|source| TlsErrorKind::Read {
            at: file.at.clone(),
            path: file.path.clone(),
            source,
        })?,
    )
}

/// Every certificate in a PEM file, in order; at least one, each a parseable X.509 certificate.
pub fn certificates(file: &FileRef) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(file)?;
    certificates_from_pem(&bytes, file)
}

/// Every certificate in PEM `bytes` that came from `file`.
pub fn certificates_from_pem(
    bytes: &[u8],
    file: &FileRef,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|source| TlsErrorKind::Pem {
            at: file.at.clone(),
            path: file.path.clone(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsErrorKind::NoCertificate {
            at: file.at.clone(),
            path: file.path.clone(),
        }
        .into());
    }
    for (i, cert) in certs.iter().enumerate() {
        webpki::EndEntityCert::try_from(cert).map_err(|source| TlsErrorKind::BadCertificate {
            at: file.at.clone(),
            path: file.path.clone(),
            index: i + 1,
            source,
        })?;
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn private_key(file: &FileRef) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(file)?;
    Ok(PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsErrorKind::NoKey {
            at: file.at.clone(),
            path: file.path.clone(),
        },
        source => TlsErrorKind::Pem {
            at: file.at.clone(),
            path: file.path.clone(),
            source,
        },
    })?)
}

/// A certificate chain with its private key, checked to belong together.
pub fn certified_key(pair: &CertKey) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certificates(&pair.certificate)?;
    let key = private_key(&pair.private_key)?;
    let provider = crate::provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsErrorKind::BadKey {
            at: pair.private_key.at.clone(),
            path: pair.private_key.path.clone(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(Arc::new(certified)),
        Err(_) => Err(TlsErrorKind::KeyMismatch {
            at: pair.private_key.at.clone(),
            key: pair.private_key.path.clone(),
            cert: pair.certificate.path.clone(),
        }
        .into()),
    }
}

/// What a CRL file holds: the CRLs (DER) and the CA certificates appended to them.
#[derive(Debug, Default)]
pub struct CrlFile {
    /// Every CRL in the file, in order, DER.
    pub crls: Vec<Vec<u8>>,
    /// Every certificate in the file, in order: the CAs that signed the CRLs (see
    /// [`crate::crl`]).
    pub ca_certificates: Vec<CertificateDer<'static>>,
}

/// Read a CRL file: one DER CRL, or PEM with one or more `X509 CRL` blocks and optionally the
/// `CERTIFICATE`s of the CAs that signed them. Other PEM blocks are refused, so a key or a CSR
/// given by mistake is reported rather than ignored.
pub fn crl_file(file: &FileRef) -> Result<CrlFile, TlsError> {
    let bytes = read(file)?;
    if !looks_like_pem(&bytes) {
        return Ok(CrlFile {
            crls: vec![bytes],
            ca_certificates: Vec::new(),
        });
    }
    let mut contents = CrlFile::default();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(&bytes) {
        let (kind, der) = section.map_err(|source| TlsErrorKind::Pem {
            at: file.at.clone(),
            path: file.path.clone(),
            source,
        })?;
        match kind {
            SectionKind::Crl => contents.crls.push(der),
            SectionKind::Certificate => contents.ca_certificates.push(CertificateDer::from(der)),
            other => {
                return Err(TlsErrorKind::CrlFileContents {
                    at: file.at.clone(),
                    path: file.path.clone(),
                    found: match other {
                        SectionKind::PrivateKey
                        | SectionKind::RsaPrivateKey
                        | SectionKind::EcPrivateKey => "a private key",
                        SectionKind::Csr => "a certificate request",
                        SectionKind::PublicKey => "a public key",
                        _ => "a PEM block of another kind",
                    },
                }
                .into());
            }
        }
    }
    if contents.crls.is_empty() {
        return Err(TlsErrorKind::NoCrl {
            at: file.at.clone(),
            path: file.path.clone(),
        }
        .into());
    }
    Ok(contents)
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes
        .windows(b"-----BEGIN".len())
        .any(|w| w == b"-----BEGIN")
}

/// A [`FileRef`] for a path outside any configuration (command-line tools).
pub fn file_ref(path: &Path, what: &str) -> FileRef {
    FileRef {
        path: path.to_path_buf(),
        at: farmgate_config::Location::argument(what),
    }
}
