//! Challenge answers while an order is pending: http-01 key authorizations by token (served by
//! the plain-HTTP listeners under `/.well-known/acme-challenge/`), and tls-alpn-01 certificates
//! by name (served by the TLS listeners to handshakes offering `acme-tls/1`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use farmgate_tls::AlpnChallenges;
use rustls::sign::CertifiedKey;

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

    fn tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<str>>> {
        // A panic while holding the lock cannot leave the map half-changed: keep going.
        self.http01.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The answers one order posted; dropping it takes them down, however the order ended.
#[derive(Debug)]
pub(crate) struct Posted<'a> {
    answers: &'a Answers,
    tokens: Vec<String>,
    names: Vec<String>,
}

impl<'a> Posted<'a> {
    pub(crate) fn new(answers: &'a Answers) -> Posted<'a> {
        Posted {
            answers,
            tokens: Vec::new(),
            names: Vec::new(),
        }
    }

    /// Answer http-01 `token` with `key_authorization`.
    pub(crate) fn http01(&mut self, token: &str, key_authorization: &str) {
        self.answers
            .tokens()
            .insert(token.to_owned(), Arc::from(key_authorization));
        self.tokens.push(token.to_owned());
    }

    /// Answer tls-alpn-01 validations of `name` with `certificate`.
    pub(crate) fn alpn(&mut self, name: &str, certificate: Arc<CertifiedKey>) {
        self.answers.alpn.insert(name, certificate);
        self.names.push(name.to_owned());
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_last_as_long_as_their_order() {
        let answers = Answers::default();
        {
            let mut posted = Posted::new(&answers);
            posted.http01("tok", "tok.thumb");
            assert_eq!(answers.http01("tok").as_deref(), Some("tok.thumb"));
            assert!(answers.http01("other").is_none());
        }
        assert!(answers.http01("tok").is_none());
    }
}
