//! [`KeyPair`]: a private key a certificate is issued for or signed with; [`PublicKey`]: a key
//! known only by its public half, which a CA can certify all the same.

use std::fmt;
use std::sync::Arc;

use rcgen::{PublicKeyData, SignatureAlgorithm, SigningKey};
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject as _;

use crate::PkiError;

/// A private key with its public half. Cheap to clone (shared), so one key can back several
/// certificates, as a renewal that keeps the key does.
#[derive(Clone)]
pub struct KeyPair(Arc<rcgen::KeyPair>);

impl KeyPair {
    /// A fresh ECDSA P-256 key.
    pub fn generate() -> Result<Self, PkiError> {
        rcgen::KeyPair::generate()
            .map(Self::from)
            .map_err(PkiError::GenerateKey)
    }

    /// Reads an unencrypted PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub fn from_pem(pem: &str) -> Result<Self, PkiError> {
        rcgen::KeyPair::from_pem(pem)
            .map(Self::from)
            .map_err(PkiError::KeyPem)
    }

    /// The private key as PKCS#8 PEM. Secret: write it to a file only the owner can read.
    pub fn to_pem(&self) -> String {
        self.0.serialize_pem()
    }

    /// The DER SubjectPublicKeyInfo, whose SHA-256 is the key's `spki-sha256:` pin.
    pub fn spki_der(&self) -> Vec<u8> {
        self.0.subject_public_key_info()
    }

    /// The raw public key (for ECDSA, the uncompressed point), as in a certificate's
    /// subjectPublicKey bit string.
    pub(crate) fn public_key_raw(&self) -> &[u8] {
        self.0.public_key_raw()
    }
}

/// The public half of a key: what a certificate certifies. A CA needs no more to renew a
/// certificate for the same key, or to certify a key generated where it lives.
#[derive(Clone)]
pub struct PublicKey(Public);

#[derive(Clone)]
enum Public {
    /// A key pair we hold (only its public half is used).
    Pair(KeyPair),
    /// A SubjectPublicKeyInfo read from a file or a certificate, and its DER.
    Spki(Arc<rcgen::SubjectPublicKeyInfo>, Vec<u8>),
}

impl PublicKey {
    /// The public key of a DER SubjectPublicKeyInfo (as in a certificate).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, PkiError> {
        let spki = rcgen::SubjectPublicKeyInfo::from_der(der).map_err(PkiError::PublicKey)?;
        Ok(Self(Public::Spki(Arc::new(spki), der.to_vec())))
    }

    /// The public key in PEM text: a `PUBLIC KEY` block, or an unencrypted private key
    /// (whose public half is taken).
    pub fn from_pem(pem: &str) -> Result<Self, PkiError> {
        if let Ok(der) = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()) {
            return Self::from_spki_der(der.as_ref());
        }
        let key = KeyPair::from_pem(pem).map_err(|_| PkiError::NoPublicKey)?;
        Ok(Self(Public::Pair(key)))
    }

    /// The DER SubjectPublicKeyInfo, whose SHA-256 is the key's `spki-sha256:` pin.
    pub fn spki_der(&self) -> Vec<u8> {
        match &self.0 {
            Public::Pair(key) => key.spki_der(),
            Public::Spki(_, der) => der.clone(),
        }
    }
}

impl From<KeyPair> for PublicKey {
    fn from(key: KeyPair) -> Self {
        Self(Public::Pair(key))
    }
}

/// Names the algorithm only.
impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey").field(self.algorithm()).finish()
    }
}

/// Lets rcgen certify the key.
impl PublicKeyData for PublicKey {
    fn der_bytes(&self) -> &[u8] {
        match &self.0 {
            Public::Pair(key) => key.der_bytes(),
            Public::Spki(spki, _) => spki.der_bytes(),
        }
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match &self.0 {
            Public::Pair(key) => PublicKeyData::algorithm(key),
            Public::Spki(spki, _) => spki.algorithm(),
        }
    }
}

impl From<rcgen::KeyPair> for KeyPair {
    fn from(key: rcgen::KeyPair) -> Self {
        Self(Arc::new(key))
    }
}

/// Names the algorithm only: the private key never appears in logs.
impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KeyPair").field(self.0.algorithm()).finish()
    }
}

/// Lets rcgen sign with the shared key.
impl PublicKeyData for KeyPair {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.0.algorithm()
    }
}

/// Lets rcgen sign with the shared key.
impl SigningKey for KeyPair {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.sign(msg)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_public_key() {
        let key = KeyPair::generate().unwrap();
        let again = KeyPair::from_pem(&key.to_pem()).unwrap();
        assert_eq!(key.spki_der(), again.spki_der());
        assert!(key.to_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn debug_does_not_show_the_private_key() {
        let key = KeyPair::generate().unwrap();
        let debug = format!("{key:?}");
        assert!(!debug.contains("PRIVATE"), "{debug}");
        assert!(debug.starts_with("KeyPair("), "{debug}");
    }

    #[test]
    fn unreadable_key_pem_is_an_error() {
        assert!(matches!(
            KeyPair::from_pem("nonsense"),
            Err(PkiError::KeyPem(_))
        ));
    }
}
