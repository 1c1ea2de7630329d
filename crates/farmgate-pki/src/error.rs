//! [`PkiError`]: what can go wrong minting keys, certificates and CRLs, keeping a CA in a
//! directory.

use std::path::PathBuf;

use time::OffsetDateTime;
use x509_parser::error::X509Error;

/// Why a key, certificate or CRL could not be created, loaded, written or read. Messages about
/// files name the file and say what to do.
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
    /// `ca init` found a CA (or part of one) where it would write.
    #[error(
        "{} already exists: farmgate never overwrites a CA; choose another --dir, or move the \
         old CA away yourself if you really mean to replace it",
        path.display()
    )]
    CaExists {
        /// The existing file.
        path: PathBuf,
    },
    /// `ca issue` found no CA in the directory.
    #[error(
        "{} holds no CA ({} is missing); create one with `farmgate ca init --dir {}`",
        dir.display(),
        crate::store::CA_CERT,
        dir.display()
    )]
    NoCa {
        /// The directory.
        dir: PathBuf,
    },
    /// The CA in a directory cannot sign.
    #[error("the CA in {} cannot be used", dir.display())]
    CaFiles {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: Box<PkiError>,
    },
    /// A certificate or key file would be overwritten.
    #[error(
        "{} already exists: farmgate never overwrites certificates or keys; choose another \
         --out, or remove the old files first",
        path.display()
    )]
    FileExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A directory cannot be created.
    #[error("cannot create directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file cannot be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A wildcard where one exact name is needed (a client identity, a name constraint).
    #[error("`{name}` is a wildcard; {what} names exactly one DNS name")]
    Wildcard {
        /// The name as given.
        name: String,
        /// What needs an exact name, e.g. "a client identity".
        what: &'static str,
    },
    /// `--spiffe` was given something other than a SPIFFE ID.
    #[error(
        "`{uri}` is not a SPIFFE ID; write spiffe://TRUST-DOMAIN/PATH, e.g. \
         spiffe://farm.example/edge"
    )]
    NotSpiffe {
        /// The URI as given.
        uri: String,
    },
    /// The name lies outside the CA's name constraints, so verifiers would refuse the
    /// certificate.
    #[error(
        "`{name}` is outside this CA's name constraints (it may only certify names under {}): \
         OpenSSL, Go and rustls would refuse the certificate",
        permitted.join(", ")
    )]
    OutsideConstraints {
        /// The name as given.
        name: String,
        /// The DNS subtrees the CA permits.
        permitted: Vec<String>,
    },
    /// A lifetime of zero days.
    #[error("--days 0: a certificate must be valid for at least one day")]
    ZeroDays,
    /// The certificate would expire after its CA.
    #[error(
        "a {days}-day certificate would outlive its CA, which expires {ca_not_after}; \
         use a smaller --days, or create a new CA"
    )]
    OutlivesCa {
        /// The requested lifetime.
        days: u32,
        /// When the CA expires.
        ca_not_after: OffsetDateTime,
    },
    /// A public key cannot be used (an algorithm rcgen cannot certify, a damaged key).
    #[error("the public key cannot be certified")]
    PublicKey(#[source] rcgen::Error),
    /// A key file holds no public key farmgate can read.
    #[error(
        "the key file holds no usable key; expected a PUBLIC KEY PEM, or an unencrypted \
         PKCS#8, SEC1 or PKCS#1 private key PEM"
    )]
    NoPublicKey,
    /// A certificate file holds no readable certificate.
    #[error("{} holds no readable certificate (expected a PEM CERTIFICATE block)", path.display())]
    CertFile {
        /// The file.
        path: PathBuf,
    },
    /// A certificate given to renew or revoke was issued by another CA.
    #[error(
        "{} was issued by \"{issuer}\", not by this CA (\"{ca}\"); give the --dir of the CA \
         that issued it",
        path.display()
    )]
    NotIssuedHere {
        /// The certificate file.
        path: PathBuf,
        /// Its issuer.
        issuer: String,
        /// This CA's subject.
        ca: String,
    },
    /// `--renew` was given a CA certificate.
    #[error(
        "{} is a CA certificate; renew a leaf certificate, or create a new intermediate with \
         `farmgate ca init --intermediate`",
        path.display()
    )]
    RenewCa {
        /// The certificate file.
        path: PathBuf,
    },
    /// A serial number the index does not list.
    #[error(
        "no certificate with serial {serial} in {}; give the certificate itself with --cert \
         FILE (a certificate issued before the CA kept an index is added to it then)",
        index.display()
    )]
    UnknownSerial {
        /// The serial, lower-case hex.
        serial: String,
        /// The index file.
        index: PathBuf,
    },
    /// A certificate revoked once already.
    #[error("certificate {serial} was already revoked at {at}")]
    AlreadyRevoked {
        /// The serial, lower-case hex.
        serial: String,
        /// When it was revoked.
        at: OffsetDateTime,
    },
    /// The issuance index is not what farmgate wrote.
    #[error("{} is damaged; restore it from a backup", path.display())]
    IndexDamaged {
        /// The index file.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: serde_json::Error,
    },
    /// The issuance index was written by a newer farmgate.
    #[error(
        "{} has format version {found}, which this farmgate does not know; use a newer farmgate",
        path.display()
    )]
    IndexVersion {
        /// The index file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// A CRL distribution point that is not an http:// or https:// URL.
    #[error(
        "`{url}` is not a CRL URL; write an http:// or https:// URL, e.g. \
         http://pki.farm.example/farm-ca.crl"
    )]
    CrlUrl {
        /// The URL as given.
        url: String,
    },
    /// A CRL valid for no time at all.
    #[error("a CRL must be valid for some time; give --valid, e.g. 7d")]
    CrlValidity,
    /// A CRL valid past what a certificate's time can say (the year 9999).
    #[error("a CRL cannot be valid that long; give a shorter --valid, e.g. 7d")]
    CrlTooLong,
    /// `--renew` was given a certificate that names nothing.
    #[error(
        "{} names no DNS name, IP address or URI to renew it for; issue a new certificate instead",
        path.display()
    )]
    RenewNameless {
        /// The certificate file.
        path: PathBuf,
    },
    /// `--permit-uri` on an intermediate.
    #[error(
        "URI name constraints go on the root, not on an intermediate: rustls-webpki (farmgate's \
         gates) refuses every URI name below an intermediate that constrains them; give \
         --permit-uri to `farmgate ca init` of the root"
    )]
    UriConstraintOnIntermediate,
}
