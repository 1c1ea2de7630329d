//! [`KeyPair`]: a private key a certificate is issued for or signed with.

use std::fmt;
use std::sync::Arc;

use rcgen::{PublicKeyData, SignatureAlgorithm, SigningKey};

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
