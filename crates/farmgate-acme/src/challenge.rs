//! Challenge answers while an order is pending: http-01 key authorizations by token (served by
//! the plain-HTTP listeners under `/.well-known/acme-challenge/`), and tls-alpn-01 certificates
//! by name (served by the TLS listeners to handshakes offering `acme-tls/1`).
//!
//! Each answer is also posted as a file in the storage directory, because the CA may validate
//! against any edge of a farm (several edges behind one name, and CAs that validate from
//! several places at once): an edge that has no answer in memory looks in the storage of its
//! certificates, so every edge sharing the storage answers every validation.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use farmgate_tls::AlpnChallenges;
use rustls::sign::CertifiedKey;

use crate::storage::{self, Storage};
use crate::{AcmeError, cert};

/// The path prefix of http-01 challenges (RFC 8555 §8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// Every answer currently posted, shared by all certificates of one [`crate::Acme`].
#[derive(Debug, Default)]
pub(crate) struct Answers {
    // Read only for requests under HTTP01_PREFIX, which are rare: a plain lock is enough.
    http01: Mutex<HashMap<String, Arc<str>>>,
    pub(crate) alpn: Arc<AlpnChallenges>,
}

impl Answers {
    /// The key authorization for http-01 `token`, if a validation is pending.
    pub(crate) fn http01(&self, token: &str) -> Option<Arc<str>> {
        self.tokens().get(token).cloned()
    }

    fn tokens(&self) -> MutexGuard<'_, HashMap<String, Arc<str>>> {
        self.http01.lock()
    }
}

/// The answers one order posted; dropping it takes them down, however the order ended.
#[derive(Debug)]
pub(crate) struct Posted<'a> {
    answers: &'a Answers,
    storage: &'a Storage,
    tokens: Vec<String>,
    names: Vec<String>,
    files: Vec<PathBuf>,
}

impl<'a> Posted<'a> {
    pub(crate) fn new(answers: &'a Answers, storage: &'a Storage) -> Posted<'a> {
        Posted {
            answers,
            storage,
            tokens: Vec::new(),
            names: Vec::new(),
            files: Vec::new(),
        }
    }

    /// Answer http-01 `token` with `key_authorization`.
    pub(crate) fn http01(&mut self, token: &str, key_authorization: &str) -> Result<(), AcmeError> {
        self.answers
            .tokens()
            .insert(token.to_owned(), Arc::from(key_authorization));
        self.tokens.push(token.to_owned());
        let file = self
            .storage
            .http01(token)
            .ok_or_else(|| AcmeError::Damaged {
                path: PathBuf::from(token),
                source: "the ACME server sent an http-01 token that is not base64url".into(),
            })?;
        self.post(file, key_authorization)
    }

    /// Answer tls-alpn-01 validations of `name` with `certificate`, made from
    /// `key_authorization`.
    pub(crate) fn alpn(
        &mut self,
        name: &str,
        key_authorization: &str,
        certificate: Arc<CertifiedKey>,
    ) -> Result<(), AcmeError> {
        self.answers.alpn.insert(name, certificate);
        self.names.push(name.to_owned());
        let file = self
            .storage
            .tls_alpn01(name)
            .ok_or_else(|| AcmeError::Damaged {
                path: PathBuf::from(name),
                source: "not a DNS name".into(),
            })?;
        self.post(file, key_authorization)
    }

    fn post(&mut self, file: PathBuf, key_authorization: &str) -> Result<(), AcmeError> {
        storage::write(&file, key_authorization.as_bytes())?;
        self.files.push(file);
        Ok(())
    }
}

impl Drop for Posted<'_> {
    fn drop(&mut self) {
        let mut tokens = self.answers.tokens();
        for token in &self.tokens {
            tokens.remove(token);
        }
        drop(tokens);
        for name in &self.names {
            self.answers.alpn.remove(name);
        }
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// The http-01 answer another edge posted in `storage` for `token`, if any.
pub(crate) fn posted_http01(storage: &Storage, token: &str) -> Option<Arc<str>> {
    let file = storage.http01(token)?;
    let bytes = std::fs::read(file).ok()?;
    String::from_utf8(bytes).ok().map(Arc::from)
}

/// The tls-alpn-01 certificate for the answer another edge posted in `storage` for `name`.
pub(crate) fn posted_alpn(storage: &Storage, name: &str) -> Option<Arc<CertifiedKey>> {
    let file = storage.tls_alpn01(name)?;
    let key_authorization = std::fs::read(file).ok()?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &key_authorization);
    cert::alpn_challenge(name, digest.as_ref()).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use farmgate_config::{FileRef, Location};

    use super::*;

    #[test]
    fn answers_last_as_long_as_their_order_in_memory_and_in_storage() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&FileRef {
            path: dir.path().join("acme"),
            at: Location::new(Arc::from(std::path::Path::new("edge.toml")), 1, "acme"),
        })
        .unwrap();
        let answers = Answers::default();
        {
            let mut posted = Posted::new(&answers, &storage);
            posted.http01("tok", "tok.thumb").unwrap();
            let challenge = cert::alpn_challenge("www.example.com", &[1; 32]).unwrap();
            posted
                .alpn("www.example.com", "alpn.thumb", challenge)
                .unwrap();
            assert_eq!(answers.http01("tok").as_deref(), Some("tok.thumb"));
            assert!(answers.http01("other").is_none());
            // What another edge sharing the storage finds.
            assert_eq!(posted_http01(&storage, "tok").as_deref(), Some("tok.thumb"));
            assert!(posted_alpn(&storage, "www.example.com").is_some());
            assert!(posted_alpn(&storage, "other.example.com").is_none());
        }
        assert!(answers.http01("tok").is_none());
        assert!(answers.alpn.get("www.example.com").is_none());
        assert!(posted_http01(&storage, "tok").is_none());
        assert!(posted_alpn(&storage, "www.example.com").is_none());
    }
}
