//! Backend selection for farmgate: which of an upstream's servers takes the next request.
//!
//! This crate knows nothing of HTTP or sockets: servers are indices `0..n` with weights, and the
//! caller says, on each pick, which of them are eligible (healthy, not ejected). A [`Balancer`]
//! holds each server's live statistics and the state of one [`Policy`]:
//!
//! - [`Policy::RoundRobin`] — smooth weighted round robin, as nginx does it: a weight-3 server
//!   takes three requests in every cycle of the total weight, spread out rather than in a row.
//! - [`Policy::LeastRequests`] — the server with the fewest requests in flight per unit of weight
//!   (`in_flight / weight`). Ties follow the round robin, so idle servers share by weight and
//!   server 0 is not favoured. Best when request costs vary widely.
//! - [`Policy::P2cEwma`] — power of two choices over peak-EWMA latency, as in Finagle and linkerd:
//!   draw two eligible servers at random, take the one with the lower
//!   `latency estimate × (in_flight + 1) / weight`. The estimate is a moving average with a 10 s
//!   time constant that jumps up at once on a slower response (peak) and decays while the server
//!   is not used, so a slow server is shunned quickly and retried later. Failures count as slow.
//!   A server that has not answered yet is tried at once, but only one request at a time.
//! - [`Policy::Hash`] — consistent hashing on a ring of virtual nodes (about 160 per server of
//!   average weight, placed with XXH64): a key always reaches the same server while the set is
//!   unchanged, on every edge and across restarts; when a server becomes ineligible, only its keys
//!   move, spread over the others. Without a key it falls back to round robin.
//!
//! When the set of servers changes (DNS discovery finds others), [`Balancer::successor`] builds
//! the balancer of the new set and carries over, for every server that stays (same name), its
//! requests in flight and its latency estimate: a request that started on the old balancer ends
//! on the state the new one reads. Only the policy's own layout (the schedule, the ring) is new.
//!
//! The request path takes no lock and allocates nothing: a pick reads and bumps a few atomics
//! (one per server scanned), and the [`Ticket`] it returns counts the request as in flight until it
//! is dropped. [`Ticket::finish`] records the request's latency and outcome for [`Policy::P2cEwma`].
//!
//! ```
//! use std::time::Duration;
//! use farmgate_balance::{Balancer, Policy};
//!
//! let balancer = Balancer::new(Policy::LeastRequests, &[1, 1, 2]);
//! let healthy = [true, false, true];
//! let ticket = balancer.pick(None, |i| healthy[i]).expect("two servers are healthy");
//! assert_ne!(ticket.server(), 1);
//! // ... forward the request to server `ticket.server()` ...
//! ticket.finish(Duration::from_millis(12), false);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod ewma;
mod least_requests;
mod p2c;
mod random;
mod ring;
mod round_robin;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ewma::{Clock, PeakEwma};
use ring::Ring;
pub use round_robin::RoundRobin;

/// How a [`Balancer`] chooses among the eligible servers (see the [crate] documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Smooth weighted round robin.
    RoundRobin,
    /// Fewest requests in flight per unit of weight.
    LeastRequests,
    /// Power of two random choices over peak-EWMA latency.
    P2cEwma,
    /// Consistent hashing of the request's key; round robin for requests without one.
    Hash,
}

/// An upstream's servers, their live statistics, and a [`Policy`] to choose among them.
///
/// Build one per generation of configuration and share it (`&Balancer` or `Arc<Balancer>`)
/// between all threads: every method takes `&self`.
#[derive(Debug)]
pub struct Balancer {
    selector: Selector,
    servers: Box<[Server]>,
    /// The schedule of [`Policy::RoundRobin`], also the tie-break of [`Policy::LeastRequests`] and
    /// the fallback of [`Policy::Hash`] for requests without a key.
    round_robin: RoundRobin,
    clock: Clock,
    /// Each server's name, for [`Balancer::successor`].
    names: Box<[Box<[u8]>]>,
}

impl Balancer {
    /// A balancer over servers `0..weights.len()` with these weights (a weight of 0 counts as 1).
    ///
    /// For [`Policy::Hash`], server `i` is placed on the ring under the name `i` (in decimal), so
    /// the layout holds while the list keeps its order; prefer [`Balancer::with_names`].
    ///
    /// ```
    /// use farmgate_balance::{Balancer, Policy};
    ///
    /// let balancer = Balancer::new(Policy::RoundRobin, &[1, 1, 2]);
    /// let picks: Vec<_> = (0..4)
    ///     .filter_map(|_| balancer.pick(None, |_| true).map(|t| t.server()))
    ///     .collect();
    /// assert_eq!(picks, [2, 0, 1, 2]);
    /// ```
    pub fn new(policy: Policy, weights: &[u32]) -> Balancer {
        Balancer::with_names(
            policy,
            weights.iter().enumerate().map(|(i, &w)| (i.to_string(), w)),
        )
    }

    /// A balancer over named servers, given as `(name, weight)` (a weight of 0 counts as 1).
    ///
    /// The names (distinct, and stable across reloads: the servers' addresses, say) place the
    /// servers on the [`Policy::Hash`] ring, so removing one server from the list moves only that
    /// server's keys, and every edge given the same list sends a key to the same server. Other
    /// policies ignore the names. Server `i` is the `i`th of the list.
    ///
    /// ```
    /// use farmgate_balance::{Balancer, Policy};
    ///
    /// let balancer = Balancer::with_names(
    ///     Policy::Hash,
    ///     [("10.0.0.11:8443", 1), ("10.0.0.12:8443", 1), ("10.0.0.13:8443", 2)],
    /// );
    /// let server = |key: &str| balancer.pick(Some(key.as_bytes()), |_| true).map(|t| t.server());
    /// assert_eq!(server("alice"), server("alice"));
    /// ```
    pub fn with_names<N: AsRef<[u8]>>(
        policy: Policy,
        servers: impl IntoIterator<Item = (N, u32)>,
    ) -> Balancer {
        Balancer::build(policy, servers, Clock::system(), |_| None)
    }

    /// The balancer of a new list of servers (`(name, weight)`, as [`Balancer::with_names`]),
    /// with this one's policy, that keeps each server's requests in flight and latency estimate
    /// where this one has a server of the same name: what a change of the set must not forget.
    /// Tickets taken from this balancer count on the servers they were taken for, in both.
    ///
    /// ```
    /// use std::time::Duration;
    /// use farmgate_balance::{Balancer, Policy};
    ///
    /// let old = Balancer::with_names(Policy::LeastRequests, [("10.0.0.11:8443", 1), ("10.0.0.12:8443", 1)]);
    /// let ticket = old.pick(None, |i| i == 1).expect("server 1 is eligible");
    /// // 10.0.0.11 leaves, 10.0.0.13 comes: 10.0.0.12 is now server 0, its request still in flight.
    /// let new = old.successor([("10.0.0.12:8443", 1), ("10.0.0.13:8443", 1)]);
    /// assert_eq!((new.in_flight(0), new.in_flight(1)), (1, 0));
    /// ticket.finish(Duration::from_millis(3), false);
    /// assert_eq!(new.in_flight(0), 0);
    /// ```
    pub fn successor<N: AsRef<[u8]>>(
        &self,
        servers: impl IntoIterator<Item = (N, u32)>,
    ) -> Balancer {
        Balancer::build(self.policy(), servers, self.clock.same(), |name| {
            let i = self.names.iter().position(|n| **n == *name)?;
            Some(self.servers[i].load.clone())
        })
    }

    /// A balancer over `servers`, each server's load taken from `carried` by its name when it
    /// has one there, else new.
    fn build<N: AsRef<[u8]>>(
        policy: Policy,
        servers: impl IntoIterator<Item = (N, u32)>,
        clock: Clock,
        carried: impl Fn(&[u8]) -> Option<Arc<Load>>,
    ) -> Balancer {
        let servers: Vec<(N, u32)> = servers
            .into_iter()
            .map(|(name, weight)| (name, weight.max(1)))
            .collect();
        let weights: Vec<u32> = servers.iter().map(|&(_, weight)| weight).collect();
        let selector = match policy {
            Policy::RoundRobin => Selector::RoundRobin,
            Policy::LeastRequests => Selector::LeastRequests,
            Policy::P2cEwma => Selector::P2cEwma,
            Policy::Hash => Selector::Hash(Ring::new(&servers)),
        };
        Balancer {
            selector,
            servers: servers
                .iter()
                .map(|(name, weight)| Server {
                    weight: *weight,
                    load: carried(name.as_ref()).unwrap_or_default(),
                })
                .collect(),
            round_robin: RoundRobin::new(&weights),
            clock,
            names: servers
                .iter()
                .map(|(name, _)| Box::from(name.as_ref()))
                .collect(),
        }
    }

    /// The number of servers, eligible or not.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether there are no servers at all (then every pick is `None`).
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// The policy this balancer follows.
    pub fn policy(&self) -> Policy {
        match self.selector {
            Selector::RoundRobin => Policy::RoundRobin,
            Selector::LeastRequests => Policy::LeastRequests,
            Selector::P2cEwma => Policy::P2cEwma,
            Selector::Hash(_) => Policy::Hash,
        }
    }

    /// Requests on `server` whose [`Ticket`] is still alive (0 for an index out of range).
    pub fn in_flight(&self, server: usize) -> usize {
        self.servers
            .get(server)
            .map_or(0, |s| s.load.in_flight.load(Ordering::Relaxed))
    }

    /// Pick a server among those for which `eligible(i)` holds, or `None` if none does.
    ///
    /// Health is the caller's: `eligible` is asked about indices in `0..len()` and should be cheap
    /// (an atomic load), as some policies ask about every server. `key` is the hash key for
    /// [`Policy::Hash`] (`None`: round robin); other policies ignore it. The server counts the
    /// request as in flight until the returned [`Ticket`] is dropped.
    ///
    /// ```
    /// use farmgate_balance::{Balancer, Policy};
    ///
    /// let balancer = Balancer::new(Policy::Hash, &[1, 1, 1]);
    /// let ticket = balancer.pick(Some(b"user-42"), |_| true).expect("all servers are eligible");
    /// let owner = ticket.server();
    /// drop(ticket);
    /// // While its server is out, the key goes elsewhere; it comes back when the server does.
    /// let stand_in = balancer.pick(Some(b"user-42"), |i| i != owner).expect("two are eligible");
    /// assert_ne!(stand_in.server(), owner);
    /// let back = balancer.pick(Some(b"user-42"), |_| true).expect("all servers are eligible");
    /// assert_eq!(back.server(), owner);
    /// // No eligible server, no ticket.
    /// assert!(balancer.pick(Some(b"user-42"), |_| false).is_none());
    /// ```
    #[must_use = "the request counts as in flight only while the ticket lives"]
    pub fn pick(&self, key: Option<&[u8]>, eligible: impl Fn(usize) -> bool) -> Option<Ticket<'_>> {
        let server = match (&self.selector, key) {
            (Selector::RoundRobin, _) | (Selector::Hash(_), None) => {
                self.round_robin.pick(eligible)
            }
            (Selector::LeastRequests, _) => {
                least_requests::pick(&self.servers, &self.round_robin, eligible)
            }
            (Selector::P2cEwma, _) => p2c::pick(&self.servers, self.clock.now(), eligible),
            (Selector::Hash(ring), Some(key)) => ring.pick(key, eligible),
        }?;
        self.servers[server]
            .load
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
        Some(Ticket {
            balancer: self,
            server,
        })
    }
}

/// One request on one server: it counts as in flight until the ticket is dropped.
///
/// Call [`Ticket::finish`] when the response is complete (or has failed) so that its latency feeds
/// the [`Policy::P2cEwma`] estimate; a ticket dropped without `finish` (a cancelled request)
/// records nothing.
#[derive(Debug)]
#[must_use = "the request counts as in flight only while the ticket lives"]
pub struct Ticket<'a> {
    balancer: &'a Balancer,
    server: usize,
}

impl Ticket<'_> {
    /// The index of the chosen server.
    pub fn server(&self) -> usize {
        self.server
    }

    /// The request is over: it took `latency`, and `failed` says whether the server failed it
    /// (connect or TLS error, reset, 5xx — whatever the caller counts against the server).
    ///
    /// Only [`Policy::P2cEwma`] uses the latency; a failure counts as at least twice the server's
    /// current estimate, so a server that fails fast does not attract traffic.
    ///
    /// ```
    /// use std::time::Duration;
    /// use farmgate_balance::{Balancer, Policy};
    ///
    /// let balancer = Balancer::new(Policy::P2cEwma, &[1, 1]);
    /// let ticket = balancer.pick(None, |_| true).expect("both servers are eligible");
    /// let server = ticket.server();
    /// assert_eq!(balancer.in_flight(server), 1);
    /// ticket.finish(Duration::from_millis(8), false);
    /// assert_eq!(balancer.in_flight(server), 0);
    /// ```
    pub fn finish(self, latency: Duration, failed: bool) {
        if let Selector::P2cEwma = self.balancer.selector {
            let now = self.balancer.clock.now();
            self.balancer.servers[self.server]
                .load
                .latency
                .observe(latency, failed, now);
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.balancer.servers[self.server]
            .load
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The policy's own state.
#[derive(Debug)]
enum Selector {
    RoundRobin,
    LeastRequests,
    P2cEwma,
    Hash(Ring),
}

/// One server's weight and live statistics.
#[derive(Debug)]
struct Server {
    weight: u32,
    /// Shared with the balancers before and after this one that have the same server.
    load: Arc<Load>,
}

/// What one server is doing: the part of its state that outlives a change of the set.
///
/// Aligned to its own cache lines (128 bytes covers adjacent-line prefetch), so that threads
/// counting requests on different servers do not contend.
#[derive(Debug)]
#[repr(align(128))]
struct Load {
    in_flight: AtomicUsize,
    latency: PeakEwma,
}

impl Default for Load {
    fn default() -> Self {
        Load {
            in_flight: AtomicUsize::new(0),
            latency: PeakEwma::new(),
        }
    }
}

#[cfg(test)]
impl Balancer {
    /// A balancer whose clock moves only with `self.clock.advance(..)`.
    fn with_manual_clock(policy: Policy, weights: &[u32]) -> Balancer {
        Balancer {
            clock: Clock::Manual(Default::default()),
            ..Balancer::new(policy, weights)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICIES: [Policy; 4] = [
        Policy::RoundRobin,
        Policy::LeastRequests,
        Policy::P2cEwma,
        Policy::Hash,
    ];

    fn keys() -> impl Iterator<Item = Option<Vec<u8>>> {
        (0..1_000).map(|i| (i % 10 != 0).then(|| format!("key-{i}").into_bytes()))
    }

    #[test]
    fn ineligible_servers_are_never_picked() {
        for policy in POLICIES {
            let b = Balancer::new(policy, &[1, 2, 1, 1]);
            let mut counts = [0; 4];
            for key in keys() {
                let ticket = b.pick(key.as_deref(), |i| i != 1);
                if let Some(t) = ticket {
                    counts[t.server()] += 1;
                }
            }
            assert_eq!(counts[1], 0, "{policy:?}: {counts:?}");
            assert_eq!(counts.iter().sum::<usize>(), 1_000, "{policy:?}");
            assert!(
                counts.iter().all(|&c| c == 0 || c > 100),
                "{policy:?}: {counts:?}"
            );
        }
    }

    #[test]
    fn no_eligible_server_gives_no_ticket() {
        for policy in POLICIES {
            let b = Balancer::new(policy, &[1, 1, 1]);
            for key in keys().take(20) {
                assert!(b.pick(key.as_deref(), |_| false).is_none(), "{policy:?}");
            }
            let empty = Balancer::new(policy, &[]);
            assert!(empty.is_empty());
            assert!(empty.pick(Some(b"k"), |_| true).is_none(), "{policy:?}");
            assert!(empty.pick(None, |_| true).is_none(), "{policy:?}");
        }
    }

    #[test]
    fn a_single_server_takes_everything_eligible() {
        for policy in POLICIES {
            let b = Balancer::new(policy, &[3]);
            for key in keys().take(20) {
                assert_eq!(
                    b.pick(key.as_deref(), |_| true).map(|t| t.server()),
                    Some(0)
                );
            }
        }
    }

    #[test]
    fn a_ticket_counts_in_flight_until_it_is_dropped() {
        for policy in POLICIES {
            let b = Balancer::new(policy, &[1]);
            let first = b.pick(Some(b"k"), |_| true);
            let second = b.pick(Some(b"k"), |_| true);
            assert_eq!(b.in_flight(0), 2, "{policy:?}");
            if let Some(t) = first {
                t.finish(Duration::from_millis(3), false);
            }
            assert_eq!(b.in_flight(0), 1, "{policy:?}");
            drop(second);
            assert_eq!(b.in_flight(0), 0, "{policy:?}");
            assert_eq!(b.in_flight(7), 0);
            assert_eq!(b.policy(), policy);
        }
    }

    #[test]
    fn balancers_and_tickets_cross_threads() {
        // The proxy shares one balancer between workers and holds tickets across `.await`.
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Balancer>();
        send_sync::<Ticket<'static>>();
    }

    #[test]
    fn round_robin_follows_weights_exactly() {
        let b = Balancer::new(Policy::RoundRobin, &[1, 1, 2]);
        let mut counts = [0; 3];
        for _ in 0..400 {
            if let Some(t) = b.pick(None, |_| true) {
                counts[t.server()] += 1;
            }
        }
        assert_eq!(counts, [100, 100, 200]);
    }

    #[test]
    fn hash_without_a_key_falls_back_to_round_robin() {
        let b = Balancer::new(Policy::Hash, &[1, 1, 1]);
        let picks: Vec<_> = (0..6)
            .filter_map(|_| b.pick(None, |_| true).map(|t| t.server()))
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn a_successor_keeps_the_load_of_the_servers_that_stay() {
        let old = Balancer::with_manual_clock(Policy::P2cEwma, &[1, 1, 1]);
        old.clock.advance(Duration::from_secs(1));
        let slow = old.pick(None, |i| i == 2);
        if let Some(t) = old.pick(None, |i| i == 1) {
            t.finish(Duration::from_millis(40), false);
        }
        // Server "0" leaves, "1" and "2" stay (in another order), "3" comes.
        let new = old.successor([("2", 1), ("3", 1), ("1", 1)]);
        assert_eq!(new.policy(), Policy::P2cEwma);
        assert_eq!(new.len(), 3);
        assert_eq!(
            (new.in_flight(0), new.in_flight(1), new.in_flight(2)),
            (1, 0, 0)
        );
        let now = new.clock.now();
        assert_eq!(now, old.clock.now(), "one time base for carried estimates");
        let estimate = |i: usize| new.servers[i].load.latency.estimate(now);
        assert!(
            estimate(2).is_some_and(|e| e > 30e6),
            "the 40 ms answer stays"
        );
        assert_eq!(estimate(1), None, "a new server has none");
        // The old request ends on the old balancer and is gone from the new one too.
        drop(slow);
        assert_eq!(new.in_flight(0), 0);
        assert_eq!(old.in_flight(2), 0);
    }

    #[test]
    fn a_successor_rebuilds_the_ring_for_the_new_set() {
        let old = Balancer::with_names(Policy::Hash, [("a", 1), ("b", 1), ("c", 1)]);
        let new = old.successor([("a", 1), ("b", 1)]);
        let fresh = Balancer::with_names(Policy::Hash, [("a", 1), ("b", 1)]);
        for key in keys().flatten() {
            assert_eq!(
                new.pick(Some(&key), |_| true).map(|t| t.server()),
                fresh.pick(Some(&key), |_| true).map(|t| t.server()),
            );
        }
    }

    #[test]
    fn a_weight_of_zero_counts_as_one() {
        let b = Balancer::new(Policy::LeastRequests, &[0, 1]);
        let mut counts = [0; 2];
        for _ in 0..100 {
            if let Some(t) = b.pick(None, |_| true) {
                counts[t.server()] += 1;
            }
        }
        assert_eq!(counts, [50, 50]);
    }
}
