//! Server health: the verdict of active checks (run by the runtime over the upstream's own
//! TLS/mTLS), passive ejection after consecutive failures, and state carried across reloads.
//!
//! A server takes traffic when its active checks say it is up (servers start up, and are
//! always up without `health`) and it is not ejected. Passive ejection: after
//! [`EJECT_AFTER`] consecutive connect/TLS failures or 5xx responses a server is ejected for
//! [`FIRST_EJECTION`], doubling with each ejection in a row up to [`MAX_EJECTION`]; a success
//! resets both. Passive ejection never takes out more than half of an upstream's servers (so
//! never the only one): one broken URL answering 500 must not empty the farm.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Consecutive failures that eject a server.
pub(crate) const EJECT_AFTER: u32 = 3;
/// How long the first ejection lasts.
pub(crate) const FIRST_EJECTION: Duration = Duration::from_secs(5);
/// The longest ejection.
pub(crate) const MAX_EJECTION: Duration = Duration::from_secs(300);

/// Milliseconds since the process's first look at the clock: a cheap, monotonic "now".
pub(crate) fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The health of one server.
#[derive(Debug)]
pub(crate) struct Health {
    /// The verdict of active checks (true until they say otherwise).
    up: AtomicBool,
    /// Consecutive active-check successes or failures (sign by `up` transitions).
    streak: AtomicU32,
    /// Consecutive passive failures.
    failures: AtomicU32,
    /// Ejected until this [`now_ms`]; 0 when not ejected.
    ejected_until: AtomicU64,
    /// Ejections in a row, for the backoff.
    ejections: AtomicU32,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            up: AtomicBool::new(true),
            streak: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
        }
    }
}

impl Health {
    /// The health of a server that joins a serving upstream (DNS discovery) with active checks
    /// (`rise` passes to come up): down until its first check passes, so it takes no request
    /// before a check has seen it answer. A failed first check leaves it needing `rise` passes
    /// in a row, as any server that is down.
    pub(crate) fn until_checked(rise: u32) -> Health {
        let health = Health::default();
        health.up.store(false, Ordering::Relaxed);
        health
            .streak
            .store(rise.saturating_sub(1), Ordering::Relaxed);
        health
    }
}

/// What passive observation concluded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Passive {
    /// Nothing changed.
    Unchanged,
    /// The server was just ejected for this long.
    Ejected(Duration),
}

impl Health {
    /// Whether the server should take a request now.
    pub(crate) fn available(&self, now: u64) -> bool {
        self.up.load(Ordering::Relaxed) && now >= self.ejected_until.load(Ordering::Relaxed)
    }

    /// Whether active checks consider the server up.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Whether it is ejected right now.
    pub(crate) fn is_ejected(&self, now: u64) -> bool {
        now < self.ejected_until.load(Ordering::Relaxed)
    }

    /// A request to this server succeeded.
    pub(crate) fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.ejections.load(Ordering::Relaxed) != 0 {
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// A request to this server failed (connect, TLS, 5xx). `may_eject` is false when ejecting
    /// it would take out too much of its upstream.
    pub(crate) fn failure(&self, now: u64, may_eject: bool) -> Passive {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < EJECT_AFTER || self.is_ejected(now) || !may_eject {
            return Passive::Unchanged;
        }
        self.failures.store(0, Ordering::Relaxed);
        let n = self.ejections.fetch_add(1, Ordering::Relaxed).min(16);
        let length = FIRST_EJECTION.saturating_mul(1 << n).min(MAX_EJECTION);
        let ms = u64::try_from(length.as_millis()).unwrap_or(u64::MAX);
        self.ejected_until
            .store(now.saturating_add(ms), Ordering::Relaxed);
        Passive::Ejected(length)
    }

    /// Record an active check; returns the new verdict if it changed.
    pub(crate) fn checked(&self, ok: bool, rise: u32, fall: u32) -> Option<bool> {
        let up = self.up.load(Ordering::Relaxed);
        if ok == up {
            self.streak.store(0, Ordering::Relaxed);
            return None;
        }
        let streak = self.streak.fetch_add(1, Ordering::Relaxed) + 1;
        let needed = if up { fall } else { rise };
        if streak < needed {
            return None;
        }
        self.streak.store(0, Ordering::Relaxed);
        self.up.store(ok, Ordering::Relaxed);
        if ok {
            // Back from the dead: forget the passive record too.
            self.ejected_until.store(0, Ordering::Relaxed);
            self.ejections.store(0, Ordering::Relaxed);
            self.failures.store(0, Ordering::Relaxed);
        }
        Some(ok)
    }

    /// Take over another generation's state for the same server, so a reload neither revives
    /// a dead server nor forgets an ejection.
    pub(crate) fn inherit(&self, old: &Health) {
        for (new, old) in [
            (&self.streak, &old.streak),
            (&self.failures, &old.failures),
            (&self.ejections, &old.ejections),
        ] {
            new.store(old.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.ejected_until
            .store(old.ejected_until.load(Ordering::Relaxed), Ordering::Relaxed);
        self.up
            .store(old.up.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejected_after_consecutive_failures_with_growing_backoff() {
        let h = Health::default();
        assert!(h.available(0));
        assert_eq!(h.failure(0, true), Passive::Unchanged);
        assert_eq!(h.failure(0, true), Passive::Unchanged);
        assert_eq!(h.failure(0, true), Passive::Ejected(FIRST_EJECTION));
        assert!(!h.available(1));
        assert!(h.available(5_000));
        for _ in 0..2 {
            h.failure(5_000, true);
        }
        assert_eq!(h.failure(5_000, true), Passive::Ejected(FIRST_EJECTION * 2));
        h.success();
        for _ in 0..2 {
            h.failure(20_000, true);
        }
        assert_eq!(
            h.failure(20_000, true),
            Passive::Ejected(FIRST_EJECTION),
            "a success resets the backoff"
        );
    }

    #[test]
    fn a_joining_server_comes_up_on_its_first_passing_check() {
        let h = Health::until_checked(3);
        assert!(!h.available(0), "no request before a check");
        assert_eq!(h.checked(true, 3, 2), Some(true));
        assert!(h.available(0));

        let h = Health::until_checked(2);
        assert_eq!(h.checked(false, 2, 3), None, "still down");
        assert_eq!(h.checked(true, 2, 3), None, "then rise passes in a row");
        assert_eq!(h.checked(true, 2, 3), Some(true));
    }

    #[test]
    fn active_checks_need_fall_and_rise_in_a_row() {
        let h = Health::default();
        assert_eq!(h.checked(false, 2, 3), None);
        assert_eq!(h.checked(true, 2, 3), None, "a success breaks the streak");
        assert_eq!(h.checked(false, 2, 3), None);
        assert_eq!(h.checked(false, 2, 3), None);
        assert_eq!(h.checked(false, 2, 3), Some(false));
        assert!(!h.available(0));
        assert_eq!(h.checked(true, 2, 3), None);
        assert_eq!(h.checked(true, 2, 3), Some(true));
        assert!(h.available(0));
    }
}
