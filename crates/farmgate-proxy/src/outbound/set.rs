//! An upstream's servers at one moment: each server with its connections, health and
//! counters, the balancer over them and, with `max_connections_per_server`, their slots, all
//! indexed alike. A listed upstream (`servers`) has one set for its generation's life; a
//! discovered one (`discover`) gets a new set whenever DNS answers differently, built by
//! [`ServerSet::successor`] from the one before.
//!
//! What a server that stays keeps (docs/architecture.md, "DNS discovery"): the same
//! [`ServerRt`] (its pool and idle connections, health, counters), its balancer load
//! (requests in flight, EWMA) and its slots. A server that leaves is only dropped from the
//! set: requests in flight on it hold it (and its pool) until they end, and its idle pooled
//! connections close with the pool when the last of them does. A server that joins a set
//! that already serves, with active health checks, takes no request before its first check
//! passes ([`Health::until_checked`]); the servers of a first answer take requests at once, as
//! listed servers do.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use farmgate_balance::{Balancer, Policy};
use farmgate_config::{Address, Backend, Protocol};
use rustls_pki_types::ServerName;

use super::body::Body;
use super::connect::{Connector, Target};
use super::drain::Drain;
use super::health::Health;
use super::multiplex::Multiplex;
use super::pool::Pool;
use super::queue::{Queue, Slots};
use super::stats::ServerStats;

/// What outlives a generation for each server of one upstream, by address: the runtime keeps
/// it (`generation::Lasting`), this layer only asks.
pub(crate) trait ServerSource: Send + Sync + fmt::Debug {
    /// The traffic counters of the server at `address`, the same for every generation.
    fn stats(&self, address: &str) -> Arc<ServerStats>;
    /// Whether an operator drained the server at `address`, and its requests in flight, the
    /// same for every generation (a drain outlives DNS changes and reloads).
    fn drain(&self, address: &str) -> Arc<Drain>;
    /// The upstream's servers are now `addresses`: the state of the others may go (those
    /// still serving requests keep what they hold).
    fn keep(&self, addresses: &[&str]);
}

/// A server as DNS found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) address: SocketAddr,
    /// Its share of requests: the SRV record's weight (at least 1), or 1.
    pub(crate) weight: u32,
    /// The name its certificate is checked against when the upstream's `tls.server_name`
    /// names none: the name looked up, or the SRV record's target.
    pub(crate) name: Arc<str>,
}

/// How an upstream makes a [`ServerRt`].
#[derive(Debug)]
pub(crate) struct ServerMaker {
    pub(crate) connector: Connector,
    protocol: Protocol,
    idle: Duration,
    pub(crate) source: Arc<dyn ServerSource>,
}

/// The upstream's queue and `max_connections_per_server`, where the slots come from.
pub(crate) type CapRef<'a> = Option<(&'a Queue, u32)>;

impl ServerMaker {
    pub(crate) fn new(
        connector: Connector,
        protocol: Protocol,
        idle: Duration,
        source: Arc<dyn ServerSource>,
    ) -> ServerMaker {
        ServerMaker {
            connector,
            protocol,
            idle,
            source,
        }
    }

    /// The server at `target`, with `health`.
    fn server(&self, target: Target, health: Health) -> ServerRt {
        let address: Arc<str> = Arc::from(target.address.to_string());
        let conns = match self.protocol {
            Protocol::Http1 => Conns::Http1(Arc::new(Pool::new(
                target,
                address.clone(),
                self.connector.clone(),
                self.idle,
            ))),
            Protocol::H2 => Conns::H2(Multiplex::new(
                target,
                address.clone(),
                self.connector.clone(),
                self.idle,
            )),
        };
        ServerRt {
            conns,
            stats: self.source.stats(&address),
            drain: self.source.drain(&address),
            address,
            health: Arc::new(health),
        }
    }
}

/// One server of an upstream.
#[derive(Debug)]
pub(crate) struct ServerRt {
    /// `10.0.0.11:8443`, for logs.
    pub(crate) address: Arc<str>,
    /// The connections to this server.
    pub(crate) conns: Conns,
    pub(crate) health: Arc<Health>,
    /// Requests, errors and response times; the same for every generation (see `stats`).
    pub(crate) stats: Arc<ServerStats>,
    /// Whether an operator drained it, and the requests on it now; the same for every
    /// generation (see `drain`).
    pub(crate) drain: Arc<Drain>,
}

impl ServerRt {
    /// Whether the balancer may give it a request at `now` ([`super::health::now_ms`]):
    /// healthy, not ejected, not drained.
    pub(crate) fn takes_requests(&self, now: u64) -> bool {
        self.health.available(now) && !self.drain.is_draining()
    }
}

/// A server's connections, by the upstream's `protocol`.
#[derive(Debug)]
pub(crate) enum Conns {
    /// HTTP/1.1 keep-alive connections, one request at a time each.
    Http1(Arc<Pool<Body>>),
    /// HTTP/2 connections, requests multiplexed.
    H2(Multiplex<Body>),
}

/// An upstream's servers, balancer and slots at one moment, indexed alike.
#[derive(Debug)]
pub(crate) struct ServerSet {
    pub(crate) servers: Vec<Arc<ServerRt>>,
    /// Each server's share of requests.
    pub(crate) weights: Vec<u32>,
    pub(crate) balancer: Balancer,
    /// Each server's slots with `max_connections_per_server`; empty without.
    pub(crate) slots: Vec<Arc<Slots>>,
}

impl ServerSet {
    /// The servers an upstream lists (`servers`).
    pub(crate) fn listed(
        backends: &[Backend],
        policy: Policy,
        maker: &ServerMaker,
        cap: CapRef<'_>,
    ) -> ServerSet {
        let servers: Vec<Arc<ServerRt>> = backends
            .iter()
            .map(|b| {
                let target = Target {
                    address: b.address.clone(),
                    name: None,
                };
                Arc::new(maker.server(target, Health::default()))
            })
            .collect();
        let weights = backends.iter().map(|b| b.weight).collect();
        ServerSet::assemble(
            servers,
            weights,
            |named| Balancer::with_names(policy, named),
            cap,
        )
    }

    /// No server yet: a discovered upstream before DNS first answers.
    pub(crate) fn empty(policy: Policy) -> ServerSet {
        ServerSet {
            servers: Vec::new(),
            weights: Vec::new(),
            balancer: Balancer::with_names(policy, std::iter::empty::<(&[u8], u32)>()),
            slots: Vec::new(),
        }
    }

    /// The set DNS now answers, `found`, made from this one: a server of both (same address)
    /// is the same [`ServerRt`] with the same balancer load and slots, and takes its weight
    /// from `found`; a new one with active checks (`rise` passes to come up) waits for its
    /// first passing check, unless this set is empty (a first answer).
    pub(crate) fn successor(
        &self,
        found: &[Found],
        maker: &ServerMaker,
        rise: Option<u32>,
        cap: CapRef<'_>,
    ) -> ServerSet {
        let joining = || match rise {
            Some(rise) if !self.servers.is_empty() => Health::until_checked(rise),
            Some(_) | None => Health::default(),
        };
        let servers: Vec<Arc<ServerRt>> = found
            .iter()
            .map(|f| {
                let address = f.address.to_string();
                match self.servers.iter().find(|s| *s.address == *address) {
                    Some(staying) => staying.clone(),
                    None => {
                        let target = Target {
                            address: Address::Socket(f.address),
                            name: ServerName::try_from(f.name.to_string()).ok(),
                        };
                        Arc::new(maker.server(target, joining()))
                    }
                }
            })
            .collect();
        let weights = found.iter().map(|f| f.weight).collect();
        ServerSet::assemble(
            servers,
            weights,
            |named| self.balancer.successor(named),
            cap,
        )
    }

    /// Whether it has no server at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// The servers' addresses, in order.
    pub(crate) fn addresses(&self) -> Vec<&str> {
        self.servers.iter().map(|s| &*s.address).collect()
    }

    /// Whether `server` is one of this set's.
    pub(crate) fn holds(&self, server: &ServerRt) -> bool {
        self.servers.iter().any(|s| std::ptr::eq(&**s, server))
    }

    fn assemble(
        servers: Vec<Arc<ServerRt>>,
        weights: Vec<u32>,
        balancer: impl FnOnce(Vec<(Vec<u8>, u32)>) -> Balancer,
        cap: CapRef<'_>,
    ) -> ServerSet {
        // Servers are placed on the hash ring by address, so a server keeps its keys across
        // changes of the set and on every edge.
        let named = servers
            .iter()
            .zip(&weights)
            .map(|(s, &w)| (s.address.as_bytes().to_vec(), w))
            .collect();
        let slots = match cap {
            Some((queue, max)) => servers
                .iter()
                .map(|s| queue.slots(&s.address, max))
                .collect(),
            None => Vec::new(),
        };
        ServerSet {
            balancer: balancer(named),
            servers,
            weights,
            slots,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use std::time::Duration;

    use parking_lot::Mutex;

    use super::*;

    /// Counters by address, as `Lasting` keeps them.
    #[derive(Debug, Default)]
    struct Kept(Mutex<Vec<(String, Arc<ServerStats>)>>);

    impl ServerSource for Kept {
        fn stats(&self, address: &str) -> Arc<ServerStats> {
            let mut kept = self.0.lock();
            if let Some((_, stats)) = kept.iter().find(|(a, _)| a == address) {
                return stats.clone();
            }
            let stats = Arc::new(ServerStats::default());
            kept.push((address.to_owned(), stats.clone()));
            stats
        }

        fn drain(&self, _address: &str) -> Arc<Drain> {
            Arc::default()
        }

        fn keep(&self, addresses: &[&str]) {
            self.0
                .lock()
                .retain(|(a, _)| addresses.contains(&a.as_str()));
        }
    }

    fn maker() -> ServerMaker {
        let connector = Connector::new(None, None, Duration::from_secs(1), false, None);
        let source: Arc<dyn ServerSource> = Arc::new(Kept::default());
        ServerMaker::new(connector, Protocol::Http1, Duration::from_secs(20), source)
    }

    fn found(addresses: &[(&str, u32)]) -> Vec<Found> {
        addresses
            .iter()
            .map(|&(a, weight)| Found {
                address: a.parse().unwrap(),
                weight,
                name: Arc::from("gates.farm.internal"),
            })
            .collect()
    }

    #[test]
    fn servers_that_stay_keep_their_state_and_new_ones_wait_for_a_check() {
        let maker = maker();
        let queue = Queue::default();
        let first = ServerSet::empty(Policy::LeastRequests).successor(
            &found(&[("127.0.0.11:8443", 1), ("127.0.0.12:8443", 1)]),
            &maker,
            Some(2),
            Some((&queue, 4)),
        );
        assert!(
            first.servers.iter().all(|s| s.health.available(0)),
            "a first answer takes requests at once"
        );
        // A request in flight on .12, counted and holding a slot, as the change comes.
        let ticket = first.balancer.pick(None, |i| i == 1).unwrap();
        let slot = first.slots[1].try_take().unwrap();
        first.servers[1].health.failure(0, false);

        let next = first.successor(
            &found(&[("127.0.0.12:8443", 3), ("127.0.0.13:8443", 1)]),
            &maker,
            Some(2),
            Some((&queue, 4)),
        );
        assert_eq!(next.addresses(), ["127.0.0.12:8443", "127.0.0.13:8443"]);
        assert_eq!(next.weights, [3, 1], "weights come from the answer");
        assert!(
            Arc::ptr_eq(&next.servers[0], &first.servers[1]),
            "the same server"
        );
        assert!(Arc::ptr_eq(
            &next.servers[0].stats,
            &maker.source.stats("127.0.0.12:8443")
        ));
        assert_eq!(
            next.balancer.in_flight(0),
            1,
            "its request in flight counts"
        );
        assert_eq!(next.slots[0].in_use(), 1, "and holds its slot");
        assert!(!next.servers[1].health.available(0), "the new one waits");
        assert_eq!(next.servers[1].health.checked(true, 2, 3), Some(true));
        assert!(next.holds(&first.servers[1]) && !next.holds(&first.servers[0]));

        drop((ticket, slot));
        assert_eq!(next.balancer.in_flight(0), 0);
        assert_eq!(next.slots[0].in_use(), 0);
    }

    #[test]
    fn without_health_checks_a_new_server_takes_requests_at_once() {
        let maker = maker();
        let first = ServerSet::empty(Policy::RoundRobin).successor(
            &found(&[("127.0.0.11:8443", 1)]),
            &maker,
            None,
            None,
        );
        let next = first.successor(
            &found(&[("127.0.0.11:8443", 1), ("127.0.0.12:8443", 1)]),
            &maker,
            None,
            None,
        );
        assert!(next.servers.iter().all(|s| s.health.available(0)));
        assert!(next.slots.is_empty(), "no cap, no slots");
    }
}
