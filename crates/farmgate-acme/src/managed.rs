//! One ACME certificate kept alive: what it serves, when it renews, and the task that does it.
//!
//! The task loops: plan the next step from the state (order now if there is no certificate;
//! otherwise ask the CA's renewal information, or wait for the renewal time; retry with backoff
//! after a failure), sleep until then (or until an operator asks for a renewal), do it. An order
//! runs under the certificate's lock file, and first re-reads the stored certificate, which
//! another edge sharing the storage may have renewed meanwhile. A new certificate is written to
//! storage, then swapped into the listeners' [`CertStore`]: handshakes from then on get it,
//! connections already open keep theirs.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use farmgate_config::{Acme as Settings, AcmeCert, Challenge};
use farmgate_tls::{CertStore, SniCerts};
use instant_acme::CertificateIdentifier;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::cert::{self, Issued};
use crate::error::chain;
use crate::schedule::{self, RenewalBasis};
use crate::status::{CertificateState, CertificateStatus, Counters};
use crate::storage::{self, Storage};
use crate::{AcmeError, Shared, lock, order};

/// Longest an order may take, from placing it to storing the certificate.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest single sleep: a wall-clock jump (suspend, NTP) is noticed within this.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// When renewal information cannot be fetched, ask again after this.
const ARI_UNAVAILABLE: Duration = Duration::from_secs(3600);

/// One certificate: its settings, its store, its state.
#[derive(Debug)]
pub(crate) struct Managed {
    /// Identity: everything that, if changed, makes it another certificate.
    pub(crate) key: String,
    pub(crate) settings: Settings,
    pub(crate) domains: Vec<String>,
    pub(crate) profile: Option<String>,
    storage: Storage,
    /// The certificate file in storage.
    pub(crate) file: PathBuf,
    /// What the listeners serve.
    pub(crate) store: Arc<CertStore>,
    state: Mutex<State>,
    /// Wakes the task: a renewal was requested.
    wake: Notify,
}

#[derive(Debug)]
struct State {
    /// The certificate from the CA being served; `None`: the temporary one is.
    current: Option<Current>,
    challenge: Challenge,
    listeners: Vec<String>,
    /// What to tell when the task starts (a stored file that could not be used).
    stored_problem: Option<String>,
    ordering: bool,
    requested: bool,
    next: Option<(SystemTime, RenewalBasis)>,
    retry_at: Option<SystemTime>,
    last_error: Option<String>,
    failures: u32,
    counters: Counters,
    ari: Ari,
    task: Option<AbortHandle>,
}

#[derive(Debug)]
struct Current {
    issued: Issued,
    /// Where in the renewal range this certificate renews (see [`schedule`]).
    jitter: f64,
}

/// What we know of the CA's renewal information for the current certificate.
#[derive(Debug, Clone, Copy)]
enum Ari {
    /// Not asked yet (a new certificate, or just started).
    Unknown,
    /// The directory offers none: renew by lifetime.
    Unsupported,
    /// Asking failed: renew by lifetime, ask again at `recheck`.
    Unavailable { recheck: SystemTime },
    /// The CA's window says renew at `renew`; ask again at `recheck`.
    Window {
        renew: SystemTime,
        recheck: SystemTime,
    },
}

/// The next thing the task does, and when.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    Order,
    AskRenewalInfo,
}

/// How a new certificate arrived.
enum Arrival {
    Ordered,
    /// Found in storage, renewed by another edge.
    Adopted,
}

impl Managed {
    /// Open storage and load the stored certificate for `cert`, if it is still good; otherwise
    /// make the temporary one. No network: this runs while a configuration is being built.
    pub(crate) fn new(
        key: String,
        settings: &Settings,
        cert: &AcmeCert,
        alpn: Arc<farmgate_tls::AlpnChallenges>,
    ) -> Result<Managed, AcmeError> {
        let storage = Storage::open(&settings.storage)?;
        let stem = storage::certificate_stem(
            settings.directory.as_str(),
            cert.profile.as_deref(),
            &cert.domains,
        );
        let file = storage.certificate(&stem);
        let (current, stored_problem) = match load(&file, &cert.domains) {
            Ok(current) => (current, None),
            Err(e) => (None, Some(chain(&e))),
        };
        let served = match &current {
            Some(issued) => issued.key.clone(),
            None => cert::temporary(&cert.domains)?,
        };
        Ok(Managed {
            key,
            settings: settings.clone(),
            domains: cert.domains.clone(),
            profile: cert.profile.clone(),
            storage,
            file,
            store: Arc::new(CertStore::with_challenges(SniCerts::single(served), alpn)),
            state: Mutex::new(State {
                current: current.map(|issued| Current {
                    issued,
                    jitter: schedule::jitter(),
                }),
                challenge: cert.challenge,
                listeners: Vec::new(),
                stored_problem,
                ordering: false,
                requested: false,
                next: None,
                retry_at: None,
                last_error: None,
                failures: 0,
                counters: Counters::default(),
                ari: Ari::Unknown,
                task: None,
            }),
            wake: Notify::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Adopt the challenge and listeners of the configuration now in service; start the task if
    /// it is not running.
    pub(crate) fn serve(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        challenge: Challenge,
        listeners: Vec<String>,
    ) {
        let mut state = self.state();
        state.challenge = challenge;
        state.listeners = listeners;
        if state.task.is_none() {
            let task = tokio::spawn(self.clone().run(shared.clone()));
            state.task = Some(task.abort_handle());
        }
    }

    /// Stop the task (an order in flight is abandoned; its answers are taken down and its lock
    /// released). Serving goes on while anything still holds the store.
    pub(crate) fn stop(&self) {
        if let Some(task) = self.state().task.take() {
            task.abort();
        }
    }

    /// Renew now, whatever the schedule says.
    pub(crate) fn request_renewal(&self) {
        self.state().requested = true;
        self.wake.notify_one();
    }

    pub(crate) fn status(&self) -> CertificateStatus {
        let state = self.state();
        let now = SystemTime::now();
        let lifecycle = match (&state.current, state.ordering) {
            (None, _) => CertificateState::Issuing,
            (Some(c), _) if c.issued.not_after() <= now => CertificateState::Expired,
            (Some(_), true) => CertificateState::Renewing,
            (Some(_), false) => CertificateState::Valid,
        };
        CertificateStatus {
            domains: self.domains.clone(),
            listeners: state.listeners.clone(),
            directory: self.settings.directory.as_str().to_owned(),
            profile: self.profile.clone(),
            challenge: state.challenge,
            file: self.file.clone(),
            state: lifecycle,
            ordering: state.ordering,
            certificate: state.current.as_ref().map(|c| c.issued.summary.clone()),
            next_renewal: state.next.map(|(at, _)| at),
            renewal_basis: state.next.map(|(_, basis)| basis),
            last_error: state.last_error.clone(),
            consecutive_failures: state.failures,
            counters: state.counters,
        }
    }

    /// The storage directory.
    pub(crate) fn storage(&self) -> &Storage {
        &self.storage
    }

    fn names(&self) -> String {
        self.domains.join(", ")
    }

    async fn run(self: Arc<Self>, shared: Arc<Shared>) {
        self.announce();
        loop {
            let now = SystemTime::now();
            let (wake_at, step) = self.plan(now);
            shared.changed();
            let wait = wake_at
                .duration_since(now)
                .unwrap_or_default()
                .min(MAX_SLEEP);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {
                    if SystemTime::now() < wake_at {
                        continue;
                    }
                }
                _ = self.wake.notified() => continue,
            }
            match step {
                Step::AskRenewalInfo => self.ask_renewal_info(&shared).await,
                Step::Order => self.attempt(&shared).await,
            }
            shared.changed();
        }
    }

    /// Say what is served while nothing has been ordered yet.
    fn announce(&self) {
        let mut state = self.state();
        if let Some(problem) = state.stored_problem.take() {
            tracing::warn!("ACME certificate for {}: {problem}", self.names());
        }
        match &state.current {
            Some(c) => tracing::info!(
                "ACME certificate for {}: serving the stored certificate, valid until {}",
                self.names(),
                when(c.issued.not_after())
            ),
            None => tracing::warn!(
                "ACME certificate for {}: none yet; serving a temporary self-signed certificate \
                 (\"{}\"), which browsers will not trust, until {} issues one",
                self.names(),
                cert::TEMPORARY_SUBJECT,
                self.settings.directory
            ),
        }
    }

    /// The next step and when to take it; records the next order time for the status.
    fn plan(&self, now: SystemTime) -> (SystemTime, Step) {
        let mut state = self.state();
        let (order_at, basis, step_at, step) = if state.requested {
            (now, RenewalBasis::Requested, now, Step::Order)
        } else if let Some(retry) = state.retry_at {
            (retry, RenewalBasis::Retry, retry, Step::Order)
        } else if let Some(current) = &state.current {
            let by_lifetime = schedule::lifetime_renewal(
                current.issued.not_before(),
                current.issued.not_after(),
                current.jitter,
            );
            match state.ari {
                Ari::Unknown => (
                    by_lifetime,
                    RenewalBasis::Lifetime,
                    now,
                    Step::AskRenewalInfo,
                ),
                Ari::Unsupported => (
                    by_lifetime,
                    RenewalBasis::Lifetime,
                    by_lifetime,
                    Step::Order,
                ),
                Ari::Unavailable { recheck } if recheck < by_lifetime => (
                    by_lifetime,
                    RenewalBasis::Lifetime,
                    recheck,
                    Step::AskRenewalInfo,
                ),
                Ari::Unavailable { .. } => (
                    by_lifetime,
                    RenewalBasis::Lifetime,
                    by_lifetime,
                    Step::Order,
                ),
                Ari::Window { renew, recheck } if recheck < renew => (
                    renew,
                    RenewalBasis::RenewalInfo,
                    recheck,
                    Step::AskRenewalInfo,
                ),
                Ari::Window { renew, .. } => (renew, RenewalBasis::RenewalInfo, renew, Step::Order),
            }
        } else {
            (now, RenewalBasis::FirstIssue, now, Step::Order)
        };
        state.next = Some((order_at, basis));
        (step_at, step)
    }

    /// Ask the CA when to renew the current certificate (RFC 9773).
    async fn ask_renewal_info(&self, shared: &Shared) {
        let now = SystemTime::now();
        let Some((leaf, jitter)) = self
            .state()
            .current
            .as_ref()
            .and_then(|c| c.issued.leaf().map(|leaf| (leaf.clone(), c.jitter)))
        else {
            return;
        };
        let ari = match shared.account(&self.settings, &self.storage).await {
            Err(e) => self.no_renewal_info(&e, now),
            Ok(account) => match CertificateIdentifier::try_from(&leaf) {
                // Without an authority key identifier there is nothing to ask about.
                Err(_) => Ari::Unsupported,
                Ok(id) => match account.renewal_info(&id).await {
                    Ok((info, retry_after)) => {
                        let window = &info.suggested_window;
                        let renew = schedule::window_renewal(
                            window.start.into(),
                            window.end.into(),
                            now,
                            jitter,
                        );
                        tracing::info!(
                            "ACME certificate for {}: the CA suggests renewing between {} and {}; renewing at {}",
                            self.names(),
                            when(window.start.into()),
                            when(window.end.into()),
                            when(renew)
                        );
                        Ari::Window {
                            renew,
                            recheck: now + schedule::recheck_after(retry_after),
                        }
                    }
                    Err(instant_acme::Error::Unsupported(_)) => {
                        tracing::info!(
                            "ACME certificate for {}: {} offers no renewal information; renewing at two thirds of the lifetime",
                            self.names(),
                            self.settings.directory
                        );
                        Ari::Unsupported
                    }
                    Err(e) => self.no_renewal_info(&e, now),
                },
            },
        };
        self.state().ari = ari;
    }

    /// Renewal information could not be had this time: renew by lifetime, ask again later.
    fn no_renewal_info(&self, e: &dyn std::error::Error, now: SystemTime) -> Ari {
        tracing::debug!(
            "ACME certificate for {}: no renewal information ({}); asking again in {ARI_UNAVAILABLE:?}",
            self.names(),
            chain(e)
        );
        Ari::Unavailable {
            recheck: now + ARI_UNAVAILABLE,
        }
    }

    /// Order a certificate (or adopt one another edge stored), and serve it; or count the failure
    /// and schedule a retry.
    async fn attempt(&self, shared: &Shared) {
        self.state().ordering = true;
        shared.changed();
        let outcome = tokio::time::timeout(ORDER_TIMEOUT, self.obtain(shared))
            .await
            .unwrap_or(Err(AcmeError::Timeout(ORDER_TIMEOUT)));
        match outcome {
            Ok((issued, arrival)) => self.install(issued, arrival),
            Err(e) => self.failed(&e),
        }
    }

    async fn obtain(&self, shared: &Shared) -> Result<(Issued, Arrival), AcmeError> {
        let _lock = lock::acquire(&Storage::lock_for(&self.file)).await?;
        if let Some(newer) = self.newer_in_storage()? {
            return Ok((newer, Arrival::Adopted));
        }
        let account = shared.account(&self.settings, &self.storage).await?;
        let (challenge, replaces) = {
            let mut state = self.state();
            state.counters.orders += 1;
            let replaces = match state.ari {
                Ari::Window { .. } => state
                    .current
                    .as_ref()
                    .and_then(|c| c.issued.leaf())
                    .and_then(|leaf| CertificateIdentifier::try_from(leaf).ok())
                    .map(CertificateIdentifier::into_owned),
                _ => None,
            };
            (state.challenge, replaces)
        };
        tracing::info!(
            "ACME certificate for {}: ordering from {} ({challenge})",
            self.names(),
            self.settings.directory
        );
        let request = order::Request {
            directory: self.settings.directory.as_str(),
            domains: &self.domains,
            profile: self.profile.as_deref(),
            challenge,
            replaces,
        };
        let issued = order::order(&account, request, &shared.answers, &self.storage).await?;
        // Stored before it is served: a restart, or another edge, finds what we serve.
        storage::write(&self.file, issued.pem.as_bytes())?;
        Ok((issued, Arrival::Ordered))
    }

    /// The stored certificate, if another edge renewed it since we loaded ours and it is not
    /// itself due for renewal.
    fn newer_in_storage(&self) -> Result<Option<Issued>, AcmeError> {
        let now = SystemTime::now();
        let Some(stored) = load(&self.file, &self.domains)? else {
            return Ok(None);
        };
        let state = self.state();
        let newer = state.current.as_ref().is_none_or(|c| {
            c.issued.leaf() != stored.leaf() && stored.not_after() > c.issued.not_after()
        });
        let due = schedule::lifetime_renewal(stored.not_before(), stored.not_after(), 0.0) <= now;
        Ok((newer && !due).then_some(stored))
    }

    fn install(&self, issued: Issued, arrival: Arrival) {
        self.store.replace(SniCerts::single(issued.key.clone()));
        let mut state = self.state();
        let how = match (arrival, state.current.is_some()) {
            (Arrival::Adopted, _) => {
                state.counters.adopted += 1;
                "found in storage, renewed by another farmgate sharing it"
            }
            (Arrival::Ordered, true) => {
                state.counters.renewed += 1;
                "renewed"
            }
            (Arrival::Ordered, false) => {
                state.counters.issued += 1;
                "issued"
            }
        };
        tracing::info!(
            "ACME certificate for {}: {how}, valid until {}; now served",
            self.names(),
            when(issued.not_after())
        );
        let jitter = schedule::jitter();
        // Until renewal information (if any) says otherwise.
        let renew = schedule::lifetime_renewal(issued.not_before(), issued.not_after(), jitter);
        state.next = Some((renew, RenewalBasis::Lifetime));
        state.current = Some(Current { issued, jitter });
        state.ari = match state.ari {
            Ari::Unsupported => Ari::Unsupported,
            _ => Ari::Unknown,
        };
        state.failures = 0;
        state.retry_at = None;
        state.last_error = None;
        state.requested = false;
        state.ordering = false;
    }

    fn failed(&self, e: &AcmeError) {
        let now = SystemTime::now();
        let mut state = self.state();
        state.failures += 1;
        let delay = schedule::retry_delay(state.failures, e.refused_by_ca(), schedule::jitter());
        state.retry_at = Some(now + delay);
        state.next = Some((now + delay, RenewalBasis::Retry));
        state.last_error = Some(chain(e));
        state.requested = false;
        state.ordering = false;
        let serving = match state.current.as_ref().map(|c| c.issued.not_after()) {
            Some(not_after) => {
                state.counters.renew_failures += 1;
                format!("the current certificate (valid until {})", when(not_after))
            }
            None => {
                state.counters.issue_failures += 1;
                "the temporary self-signed certificate".to_owned()
            }
        };
        tracing::warn!(
            "ACME certificate for {}: attempt {} failed: {}; retrying in {}s, serving {serving} meanwhile",
            self.names(),
            state.failures,
            chain(e),
            delay.as_secs()
        );
    }
}

/// The stored certificate at `file` if it carries `domains` and is valid now.
fn load(file: &std::path::Path, domains: &[String]) -> Result<Option<Issued>, AcmeError> {
    let Some(bytes) = storage::read(file)? else {
        return Ok(None);
    };
    let damaged = |source: Box<dyn std::error::Error + Send + Sync>| AcmeError::Damaged {
        path: file.to_path_buf(),
        source,
    };
    let text = String::from_utf8(bytes).map_err(|e| damaged(Box::new(e)))?;
    let issued = Issued::from_pem(text).map_err(|e| damaged(Box::new(e)))?;
    Ok(issued.serves(domains, SystemTime::now()).then_some(issued))
}

/// A time for logs: RFC 3339, UTC.
pub(crate) fn when(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
