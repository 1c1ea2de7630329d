//! farmgate's ACME client: listeners get and renew their public certificates by themselves.
//!
//! The protocol is instant-acme's (RFC 8555, renewal information RFC 9773, profiles); this crate
//! decides what to order and when, answers the challenges, keeps the state on disk and hands the
//! certificates to the listeners.
//!
//! - An [`Acme`] is the long-lived state of one process: the certificates, the ACME accounts,
//!   the challenge answers being served. A configuration reload builds its listeners with the
//!   *same* `Acme` (`farmgate_proxy::Generation::load_with`), so an order in flight goes on and
//!   the certificate served stays served: nothing is ordered again because of a reload.
//! - [`Acme::certificate`] gives a listener the [`AcmeCertificate`] for its `tls.acme` table:
//!   its [`CertStore`](farmgate_tls::CertStore) serves the stored certificate if it is still
//!   good, otherwise a temporary self-signed one, and later each certificate the CA issues,
//!   swapped in without touching open connections. It does no network I/O, so `farmgate check`
//!   runs it too (which also proves the storage writable).
//! - [`Acme::sync`], once a configuration is in service, starts a task per certificate (and
//!   stops those of certificates no longer configured). The task orders at once if there is no
//!   certificate, then renews when the CA's renewal information says, or at two thirds of the
//!   lifetime (with jitter), retrying with backoff after failures (see `schedule`).
//! - Challenges are answered by the listeners: tls-alpn-01 by the TLS listener itself (its
//!   store answers handshakes offering `acme-tls/1`), http-01 by the plain-HTTP listeners, which
//!   look tokens up with [`Acme::http01`]. Answers are also posted in the storage directory, so
//!   that any edge sharing it answers a validation, whichever edge the CA reaches.
//! - The storage directory holds the account key, each certificate with its key (mode 0600,
//!   replaced atomically) and lock files that keep edges sharing the directory from ordering
//!   the same certificate twice (see `lock`).
//! - [`Acme::status`] is a [`CertificateStatus`] per certificate (state, expiry, next renewal,
//!   last error, counters) for the admin endpoint and metrics; [`Acme::changes`] says when it
//!   changed.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cert;
mod challenge;
mod client;
mod eab;
mod error;
mod lock;
mod managed;
mod order;
mod schedule;
mod status;
mod storage;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use farmgate_config::{Acme as Settings, AcmeCert, Challenge};
use farmgate_tls::CertStore;
use instant_acme::Account;
use tokio::sync::watch;

pub use challenge::HTTP01_PREFIX;
pub use client::{DirectoryCheck, check_directory};
pub use eab::check_eab;
pub use error::AcmeError;
pub use schedule::RenewalBasis;
pub use status::{CertificateState, CertificateStatus, Counters};

use managed::Managed;
use storage::Storage;

/// The ACME state of a process: certificates, accounts and challenge answers. Cheap to clone;
/// clones share everything.
#[derive(Debug, Clone)]
pub struct Acme {
    shared: Arc<Shared>,
}

impl Default for Acme {
    fn default() -> Acme {
        let shared = Arc::new(Shared::default());
        // tls-alpn-01 validations of answers another edge posted in a shared storage. Weak: the
        // answers belong to `shared`, which must not keep itself alive.
        let weak = Arc::downgrade(&shared);
        shared.answers.alpn.set_fallback(move |name| {
            let shared = weak.upgrade()?;
            let storages = shared.storages();
            storages
                .iter()
                .find_map(|storage| challenge::posted_alpn(storage, name))
        });
        Acme { shared }
    }
}

/// A listener's ACME certificate, as a configuration build obtained it from [`Acme`].
#[derive(Debug, Clone)]
pub struct AcmeCertificate {
    managed: Arc<Managed>,
    challenge: Challenge,
}

impl AcmeCertificate {
    /// The store the listener serves from; the ACME client swaps certificates in it.
    pub fn store(&self) -> Arc<CertStore> {
        self.managed.store.clone()
    }

    /// What this certificate is doing now.
    pub fn status(&self) -> CertificateStatus {
        self.managed.status()
    }
}

impl Acme {
    /// An empty state: no certificates, nothing running.
    pub fn new() -> Acme {
        Acme::default()
    }

    /// The certificate `cert` of a listener, ordered from the server `settings` names. The same
    /// settings and names give the same certificate (and store) for as long as it stays
    /// configured. A new one opens the storage directory (creating it, mode 0700, and checking
    /// that it is writable) and loads the stored certificate if it is still good, or makes a
    /// temporary self-signed one. No network I/O; nothing runs until [`Acme::sync`].
    pub fn certificate(
        &self,
        settings: &Settings,
        cert: &AcmeCert,
    ) -> Result<AcmeCertificate, AcmeError> {
        let key = identity(settings, cert);
        let mut certs = self.shared.certs();
        let managed = match certs.get(&key) {
            Some(existing) => existing.clone(),
            None => {
                let created = Arc::new(Managed::new(
                    key.clone(),
                    settings,
                    cert,
                    self.shared.answers.alpn.clone(),
                )?);
                certs.insert(key, created.clone());
                created
            }
        };
        Ok(AcmeCertificate {
            managed,
            challenge: cert.challenge,
        })
    }

    /// Put into service the certificates of the configuration now serving: `in_use` pairs each
    /// listener name with its certificate. Their tasks start (if not running) and certificates
    /// no longer configured stop renewing. Must run inside a tokio runtime.
    pub fn sync<'a>(&self, in_use: impl IntoIterator<Item = (&'a str, &'a AcmeCertificate)>) {
        let mut wanted: HashMap<String, (Arc<Managed>, Challenge, Vec<String>)> = HashMap::new();
        for (listener, cert) in in_use {
            wanted
                .entry(cert.managed.key.clone())
                .or_insert_with(|| (cert.managed.clone(), cert.challenge, Vec::new()))
                .2
                .push(listener.to_owned());
        }
        let mut certs = self.shared.certs();
        for (key, managed) in certs.iter() {
            let kept = wanted
                .get(key)
                .is_some_and(|(w, _, _)| Arc::ptr_eq(w, managed));
            if !kept {
                managed.stop();
            }
        }
        certs.clear();
        for (key, (managed, challenge, listeners)) in wanted {
            managed.serve(&self.shared, challenge, listeners);
            certs.insert(key, managed);
        }
        drop(certs);
        self.shared.changed();
    }

    /// Whether `other` is this same state (a clone of it).
    pub fn is_same(&self, other: &Acme) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Stop every certificate's task (at shutdown). Certificates keep being served.
    pub fn stop(&self) {
        for managed in self.shared.certs().values() {
            managed.stop();
        }
    }

    /// Every configured certificate's status, ordered by first domain.
    pub fn status(&self) -> Vec<CertificateStatus> {
        let mut all: Vec<CertificateStatus> =
            self.shared.certs().values().map(|m| m.status()).collect();
        all.sort_by(|a, b| a.domains.cmp(&b.domains));
        all
    }

    /// Changes whenever any certificate's status changes (an attempt starts or ends, a
    /// certificate is swapped in, a configuration is synced).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// Renew the certificate carrying `domain` now, whatever its schedule (an operator's
    /// request, e.g. after a key compromise). `false` if no configured certificate carries it.
    pub fn renew_now(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut found = false;
        for managed in self.shared.certs().values() {
            if managed.domains.contains(&domain) {
                managed.request_renewal();
                found = true;
            }
        }
        found
    }

    /// The answer to the http-01 challenge `token` (the part of the path after
    /// [`HTTP01_PREFIX`]) while a validation is pending: posted by this process, or by another
    /// edge sharing the storage of a configured certificate.
    pub async fn http01(&self, token: &str) -> Option<Arc<str>> {
        if let Some(answer) = self.shared.answers.http01(token) {
            return Some(answer);
        }
        let storages = self.shared.storages();
        let token = token.to_owned();
        // Files, possibly on a network filesystem: off the runtime's workers.
        tokio::task::spawn_blocking(move || {
            storages
                .iter()
                .find_map(|storage| challenge::posted_http01(storage, &token))
        })
        .await
        .ok()
        .flatten()
    }
}

/// What every certificate task shares.
#[derive(Default)]
pub(crate) struct Shared {
    certs: Mutex<HashMap<String, Arc<Managed>>>,
    /// Accounts by directory, storage and contacts, registered or loaded once.
    accounts: tokio::sync::Mutex<HashMap<String, Account>>,
    answers: challenge::Answers,
    changes: watch::Sender<u64>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("certs", &self.certs)
            .field("answers", &self.answers)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn certs(&self) -> MutexGuard<'_, HashMap<String, Arc<Managed>>> {
        self.certs.lock()
    }

    /// The storage directories of the configured certificates, each once.
    fn storages(&self) -> Vec<Storage> {
        let mut storages: Vec<Storage> = Vec::new();
        for managed in self.certs().values() {
            if !storages
                .iter()
                .any(|s| s.root() == managed.storage().root())
            {
                storages.push(managed.storage().clone());
            }
        }
        storages
    }

    pub(crate) fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The account for `settings`, loaded or registered on first use.
    pub(crate) async fn account(
        &self,
        settings: &Settings,
        storage: &Storage,
    ) -> Result<Account, AcmeError> {
        let key = format!(
            "{}\n{}\n{}",
            settings.directory,
            storage.root().display(),
            settings.contact.join(",")
        );
        let mut accounts = self.accounts.lock().await;
        if let Some(account) = accounts.get(&key) {
            return Ok(account.clone());
        }
        let account = client::account(settings, storage).await?;
        accounts.insert(key, account.clone());
        Ok(account)
    }
}

/// Everything that makes two ACME certificates different.
fn identity(settings: &Settings, cert: &AcmeCert) -> String {
    let mut domains = cert.domains.clone();
    domains.sort_unstable();
    let trust: Vec<String> = settings.trust.iter().map(ToString::to_string).collect();
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        settings.directory,
        settings.storage.path.display(),
        settings.contact.join(","),
        trust.join(","),
        cert.profile.as_deref().unwrap_or(""),
        domains.join(",")
    )
}
