//! Who is connected to a listener, counted so that no one client, and no crowd, takes more than
//! `[listener.limits]` allows: open connections in all, open connections per client address
//! (IPv6: per /64, what one subscriber usually holds), and requests per client over time. The
//! counts outlive generations (they are the listener's, not a configuration's); the limits are
//! those of the configuration current when a connection or request arrives. See
//! docs/architecture.md ("Limits").

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use farmgate_admin::{Counter, Metrics, Throttle, unlogged};
use farmgate_config::RateLimit;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::outbound::Chain;

/// Rate-limiter entries kept at most between two purges: past it, idle entries are purged at
/// once. At some 100 bytes each, a few tens of MiB whatever the number of distinct clients.
const MAX_TRACKED: usize = 1 << 18;

/// A client address as limits count it: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ClientKey {
    /// An IPv4 address (IPv4-mapped IPv6 addresses too).
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl ClientKey {
    pub(crate) fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(u32::from(v4)),
                None => ClientKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Which limit refused a client: the `limit` label of `farmgate_limited_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// `max_connections_per_client`: closed before TLS.
    ConnectionsPerClient,
    /// `requests_per_client`: 429.
    RequestsPerClient,
    /// `max_request_body`: 413.
    RequestBody,
    /// `max_request_header`: 431.
    RequestHeader,
    /// `timeouts.request_body`: 408.
    RequestBodyTime,
    /// `timeouts.send`: closed.
    Send,
    /// `max_connections`: accepting paused.
    Connections,
    /// `proxy_protocol`: a connection from a balancer without a valid PROXY header, closed.
    ProxyHeader,
}

impl Limit {
    const ALL: [Limit; 8] = [
        Limit::ConnectionsPerClient,
        Limit::RequestsPerClient,
        Limit::RequestBody,
        Limit::RequestHeader,
        Limit::RequestBodyTime,
        Limit::Send,
        Limit::Connections,
        Limit::ProxyHeader,
    ];

    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Limit::ConnectionsPerClient => "max_connections_per_client",
            Limit::RequestsPerClient => "requests_per_client",
            Limit::RequestBody => "max_request_body",
            Limit::RequestHeader => "max_request_header",
            Limit::RequestBodyTime => "request_body_timeout",
            Limit::Send => "send_timeout",
            Limit::Connections => "max_connections",
            Limit::ProxyHeader => "proxy_protocol",
        }
    }
}

/// The clients of one listener: what they hold, what they were refused.
pub(crate) struct Clients {
    /// The listener's name, for log lines.
    name: Arc<str>,
    open: AtomicUsize,
    /// Woken when a connection closes, for an accept loop waiting below `max_connections`.
    closed: Notify,
    per_client: Mutex<HashMap<ClientKey, u32>>,
    /// The request-rate limiter and the limit it enforces; `None` until a configuration sets
    /// `requests_per_client`.
    rate: ArcSwapOption<Rate>,
    /// `farmgate_limited_total`, by [`Limit`], in [`Limit::ALL`] order.
    limited: Vec<Counter>,
    /// Refusals not yet logged, by [`Limit`]: logged together once a second at most.
    unlogged: [AtomicU64; Limit::ALL.len()],
    /// When refusals were last logged.
    logged: Throttle,
    /// When a connection without a valid PROXY header was last logged.
    proxy_failed: Throttle,
    /// When a failed `accept` was last logged.
    accept_failed: Throttle,
}

/// A request-rate limit and the limiter enforcing it.
struct Rate {
    limit: RateLimit,
    limiter: DefaultKeyedRateLimiter<ClientKey>,
}

/// One open connection, counted against `max_connections` until dropped, but not yet
/// against its client's share: its client is known once a PROXY header, if the connection
/// has one, is read.
pub(crate) struct Open {
    clients: Arc<Clients>,
}

/// One open connection, counted against `max_connections` and its client's share until
/// dropped.
pub(crate) struct Counted {
    open: Open,
    key: ClientKey,
}

impl Open {
    /// The listener's clients.
    pub(crate) fn clients(&self) -> &Arc<Clients> {
        &self.clients
    }

    /// Count this connection against the share of the client at `ip`, unless that client
    /// already has `max_per_client` open (then the refusal is counted and logged, and the
    /// connection is no longer counted at all).
    pub(crate) fn admit(self, ip: IpAddr, max_per_client: u32) -> Option<Counted> {
        let key = ClientKey::of(ip);
        {
            let mut per_client = self.clients.per_client.lock();
            let count = per_client.entry(key).or_insert(0);
            if *count >= max_per_client {
                drop(per_client);
                self.clients.refused(Limit::ConnectionsPerClient);
                return None;
            }
            *count += 1;
        }
        Some(Counted { open: self, key })
    }
}

impl Counted {
    /// The client, as limits count it.
    pub(crate) fn key(&self) -> ClientKey {
        self.key
    }

    /// The listener's clients.
    pub(crate) fn clients(&self) -> &Clients {
        &self.open.clients
    }
}

impl std::fmt::Debug for Open {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Open").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counted").field("key", &self.key).finish()
    }
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients")
            .field("name", &self.name)
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

impl Clients {
    /// The clients of listener `name`, counting refusals into `metrics`.
    pub(crate) fn new(name: &str, metrics: &Metrics) -> Clients {
        Clients {
            name: Arc::from(name),
            open: AtomicUsize::new(0),
            closed: Notify::new(),
            per_client: Mutex::new(HashMap::new()),
            rate: ArcSwapOption::empty(),
            limited: Limit::ALL
                .iter()
                .map(|l| metrics.limited(name, l.label()))
                .collect(),
            unlogged: Default::default(),
            logged: Throttle::default(),
            proxy_failed: Throttle::default(),
            accept_failed: Throttle::default(),
        }
    }

    /// Wait until fewer than `max` connections are open.
    pub(crate) async fn below(&self, max: usize) {
        let mut paused = false;
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.open.load(Ordering::Acquire) < max {
                return;
            }
            if !paused {
                paused = true;
                self.refused(Limit::Connections);
            }
            closed.await;
        }
    }

    /// Wait until a connection closes or `limit` passes, whichever comes first: after a
    /// failed `accept` (out of file descriptors), a closed connection frees one.
    pub(crate) async fn closed_or(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.closed.notified()).await;
    }

    /// Count a connection just accepted against `max_connections` (the accept loop waits
    /// [`below`](Self::below) it first).
    pub(crate) fn open_one(self: &Arc<Self>) -> Open {
        self.open.fetch_add(1, Ordering::AcqRel);
        Open {
            clients: self.clone(),
        }
    }

    /// A connection from `peer`, a `proxy_protocol` source, was closed without a valid PROXY
    /// header (`why`): counted as a `proxy_protocol` refusal, logged once a second at most.
    pub(crate) fn refused_proxy_header(&self, peer: SocketAddr, why: &dyn std::error::Error) {
        let i = Limit::ALL
            .iter()
            .position(|l| *l == Limit::ProxyHeader)
            .unwrap_or(0);
        if let Some(counter) = self.limited.get(i) {
            counter.inc();
        }
        if let Some(more) = self.proxy_failed.admit() {
            tracing::warn!(
                listener = %self.name,
                %peer,
                "closed a connection from a proxy_protocol source: {}{} (farmgate_limited_total{{limit=\"proxy_protocol\"}}; docs/troubleshooting.md)",
                Chain(why),
                unlogged(more)
            );
        }
    }

    /// Whether client `key` may make one more request under `limit`; if not, how long until
    /// it may (the refusal is counted and logged).
    pub(crate) fn check_rate(&self, key: ClientKey, limit: RateLimit) -> Result<(), Duration> {
        let checked = match self.rate.load().as_deref() {
            Some(rate) if rate.limit == limit => rate.limiter.check_key(&key),
            // The first request under this limit (at start, or after a reload changed it).
            _ => self.limiter(limit).limiter.check_key(&key),
        };
        checked.map_err(|not_until| {
            self.refused(Limit::RequestsPerClient);
            not_until.wait_time_from(DefaultClock::default().now())
        })
    }

    /// The limiter for `limit`, made now unless a concurrent request just made it.
    fn limiter(&self, limit: RateLimit) -> Arc<Rate> {
        loop {
            let current = self.rate.load_full();
            if let Some(rate) = current.as_ref().filter(|r| r.limit == limit) {
                return rate.clone();
            }
            let fresh = Arc::new(Rate {
                limit,
                limiter: DefaultKeyedRateLimiter::keyed(quota(limit)),
            });
            let before = self.rate.compare_and_swap(&current, Some(fresh.clone()));
            let swapped = match (before.as_ref(), current.as_ref()) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if swapped {
                return fresh;
            }
        }
    }

    /// Forget clients whose request budget is full again, so memory stays bounded whatever
    /// the number of distinct clients. Called every few seconds.
    pub(crate) fn purge(&self) {
        if let Some(rate) = self.rate.load().as_deref() {
            rate.limiter.retain_recent();
            rate.limiter.shrink_to_fit();
        }
    }

    /// A client was refused by `limit`: count it, and log the refusals of the last second at
    /// most once a second (under attack they come by the thousand; the log line comes once).
    pub(crate) fn refused(&self, limit: Limit) {
        let i = Limit::ALL.iter().position(|l| *l == limit).unwrap_or(0);
        if let Some(counter) = self.limited.get(i) {
            counter.inc();
        }
        self.unlogged[i].fetch_add(1, Ordering::Relaxed);
        if limit == Limit::RequestsPerClient {
            // Many rate-limiter entries: purge idle ones now rather than at the next tick.
            if let Some(rate) = self.rate.load().as_deref()
                && rate.limiter.len() > MAX_TRACKED
            {
                rate.limiter.retain_recent();
            }
        }
        if self.logged.admit().is_none() {
            return;
        }
        let counts: Vec<String> = Limit::ALL
            .iter()
            .zip(&self.unlogged)
            .filter_map(|(limit, n)| {
                let n = n.swap(0, Ordering::Relaxed);
                (n > 0).then(|| format!("{} by {}", n, limit.label()))
            })
            .collect();
        tracing::warn!(
            listener = %self.name,
            "limits refused clients: {} (farmgate_limited_total; docs/operations.md, \"Under attack\")",
            counts.join(", ")
        );
    }

    /// Whether to log a failed `accept` now (once a second at most), and if so the words
    /// saying how many failed unlogged before it.
    pub(crate) fn log_accept_failure(&self) -> Option<String> {
        self.accept_failed.admit().map(unlogged)
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Client addresses with a connection open (memory is bounded by the open connections).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.per_client.lock().len()
    }
}

/// governor's quota for `limit`: one request every `per / rate`, `burst` at once.
fn quota(limit: RateLimit) -> Quota {
    let rate = limit.rate.max(1);
    let every = (limit.per / rate).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(every)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut per_client = self.open.clients.per_client.lock();
        if let Some(count) = per_client.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                per_client.remove(&self.key);
            }
        }
        // Then `open` goes, counting the connection out of `max_connections`.
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.clients.open.fetch_sub(1, Ordering::AcqRel);
        self.clients.closed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    fn clients() -> Arc<Clients> {
        Arc::new(Clients::new("edge", &Metrics::new()))
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::5".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::5".parse().unwrap();
        assert_eq!(ClientKey::of(a), ClientKey::of(b));
        assert_ne!(ClientKey::of(a), ClientKey::of(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(ClientKey::of(mapped), ClientKey::of(v4));
    }

    #[test]
    fn a_client_gets_its_share_and_the_table_forgets_it_when_it_leaves() {
        let clients = clients();
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let held: Vec<Counted> = (0..3)
            .map_while(|_| clients.open_one().admit(ip, 3))
            .collect();
        assert_eq!(held.len(), 3);
        assert!(
            clients.open_one().admit(ip, 3).is_none(),
            "the fourth is refused"
        );
        let other = clients.open_one().admit("127.0.0.10".parse().unwrap(), 3);
        assert!(other.is_some(), "another client is not affected");
        assert_eq!(clients.open(), 4);
        drop(held);
        drop(other);
        assert_eq!(clients.open(), 0);
        assert_eq!(clients.tracked(), 0);
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds_per_client() {
        let clients = clients();
        let limit = RateLimit {
            rate: 1,
            per: Duration::from_secs(3600),
            burst: 5,
        };
        let a = ClientKey::of("127.0.0.9".parse().unwrap());
        let b = ClientKey::of("127.0.0.10".parse().unwrap());
        for _ in 0..5 {
            assert!(clients.check_rate(a, limit).is_ok());
        }
        let wait = clients.check_rate(a, limit).unwrap_err();
        assert!(wait > Duration::from_secs(3000), "{wait:?}");
        assert!(clients.check_rate(b, limit).is_ok(), "another client");
        let raised = RateLimit { burst: 6, ..limit };
        assert!(
            clients.check_rate(a, raised).is_ok(),
            "a changed limit starts afresh"
        );
    }
}
