//! Taking a server out of rotation at run time (the admin endpoint's drain), and counting what
//! it still carries.
//!
//! A **drained** server takes no new request: the balancer skips it for first attempts and
//! retries alike, as it skips a server that is down. Requests already on it finish, its pooled
//! connections stay (and close when idle, as any do), and its active health checks go on, so
//! `/status` keeps saying whether it is up. Undraining puts it back at once (subject to its
//! health, as always).
//!
//! **In flight** counts the requests on a server from the moment it is chosen for one until the
//! response body has ended, failed or been dropped, and open WebSocket tunnels: what a drain
//! waits for before the server can be stopped (docs/operations.md, "Rolling deploys"). A request
//! pays two atomic additions and a reference count for it, no lock and no allocation; the
//! count rides on the response body, which gives it back when it ends.
//!
//! Both outlive generations: `generation::Lasting` keeps one [`Drain`] per upstream name and
//! server address and hands the same one to every generation, so a reload keeps a drain on an
//! address that remains and counts requests of older generations too. A generation that no
//! longer has the server forgets it when it is swapped in.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// One server's place in rotation and the requests on it: the same for every generation.
#[derive(Debug, Default)]
pub(crate) struct Drain {
    /// When the server was drained, in Unix seconds; 0 while it is in rotation.
    since: AtomicU64,
    /// Requests on the server now (see the module's documentation).
    in_flight: AtomicUsize,
}

/// A request counted in flight on its server until dropped.
#[derive(Debug)]
#[must_use = "the request stops counting when the guard is dropped"]
pub(crate) struct InFlight(Arc<Drain>);

impl Drain {
    /// Whether the server is out of rotation. A relaxed load, like the health flags beside it:
    /// the request path pays nothing more.
    pub(crate) fn is_draining(&self) -> bool {
        self.since.load(Ordering::Relaxed) != 0
    }

    /// When the server was drained (Unix seconds), if it is.
    pub(crate) fn since(&self) -> Option<u64> {
        Some(self.since.load(Ordering::Relaxed)).filter(|&s| s != 0)
    }

    /// Take the server out of rotation, at `now` (Unix seconds); false if it already was (its
    /// drain keeps its first time).
    pub(crate) fn start(&self, now: u64) -> bool {
        self.since
            .compare_exchange(0, now.max(1), Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Put the server back in rotation; false if it was in rotation already.
    pub(crate) fn stop(&self) -> bool {
        self.since.swap(0, Ordering::SeqCst) != 0
    }

    /// Requests on the server now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Count one more request on the server, until the guard is dropped.
    pub(crate) fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_keeps_its_first_time_and_an_undrain_ends_it() {
        let drain = Drain::default();
        assert!(!drain.is_draining());
        assert!(drain.start(1_000));
        assert!(!drain.start(2_000), "already draining");
        assert_eq!(drain.since(), Some(1_000));
        assert!(drain.stop());
        assert!(!drain.stop(), "already in rotation");
        assert_eq!(drain.since(), None);
        assert!(drain.start(0), "a clock at the epoch still drains");
        assert!(drain.is_draining());
    }

    #[test]
    fn requests_count_until_their_guard_is_dropped() {
        let drain = Arc::new(Drain::default());
        let a = drain.enter();
        let b = drain.enter();
        assert_eq!(drain.in_flight(), 2);
        drop(a);
        assert_eq!(drain.in_flight(), 1);
        drop(b);
        assert_eq!(drain.in_flight(), 0);
    }
}
