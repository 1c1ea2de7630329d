//! Upstreams: pools of servers with their balancing, health, timeouts and TLS/mTLS policy.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::spelling::{Expected, spelled};
use crate::{Address, CertKey, Location, Trust};

/// An upstream of one [`Config`](crate::Config), as a route names it: only the builder makes
/// one, so it always indexes [`Config::upstreams`](crate::Config::upstreams) of the
/// configuration it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpstreamId(usize);

impl UpstreamId {
    /// The upstream at `index` in the configuration being built.
    pub(crate) fn new(index: usize) -> Self {
        UpstreamId(index)
    }

    /// Its index in [`Config::upstreams`](crate::Config::upstreams) (and in anything built
    /// from them in the same order).
    pub fn index(self) -> usize {
        self.0
    }
}

/// A named pool of servers.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The name routes refer to.
    pub name: String,
    /// The servers listed in `servers`: at least one, or none when they are found through
    /// DNS ([`Upstream::discover`]; the two keys are mutually exclusive).
    pub servers: Vec<Backend>,
    /// Where the servers are found at run time (`discover`), instead of `servers`.
    pub discover: Option<Discover>,
    /// How a server is chosen for each request.
    pub balance: Balance,
    /// The HTTP version spoken to the servers.
    pub protocol: Protocol,
    /// The most requests in flight on one server (HTTP/1.1 connections, or HTTP/2 streams);
    /// `None`: unlimited. Requests beyond it wait, first come first served.
    pub max_connections_per_server: Option<u32>,
    /// How long a request waits for a server below `max_connections_per_server`; over: 503.
    pub queue_timeout: Duration,
    /// `send_proxy`: every connection to the servers starts with a PROXY header of this
    /// version naming the client; `None`: none.
    pub send_proxy: Option<ProxyVersion>,
    /// Active health checks; `None` disables them.
    pub health: Option<Health>,
    /// Connection and response timeouts.
    pub timeouts: Timeouts,
    /// TLS towards the servers; `None` speaks plain HTTP.
    pub tls: Option<UpstreamTls>,
    /// Where the upstream is defined.
    pub at: Location,
}

/// The largest `weight` a server may have.
pub const MAX_WEIGHT: u32 = 1000;

/// One server of an upstream.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Where it listens.
    pub address: Address,
    /// Relative share of requests (≥ 1).
    pub weight: u32,
}

/// The shortest time a DNS answer is kept by default (`discover.min_ttl`).
pub const DEFAULT_MIN_TTL: Duration = Duration::from_secs(1);
/// The longest time a DNS answer is kept by default (`discover.max_ttl`).
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(300);

/// An upstream's servers found through DNS (`discover`), looked up again as the answer's TTL
/// says, within `[min_ttl, max_ttl]`.
#[derive(Debug, Clone)]
pub struct Discover {
    /// What is looked up.
    pub lookup: Lookup,
    /// The DNS server asked (`resolver`); `None`: the system's, from `/etc/resolv.conf`.
    pub resolver: Option<SocketAddr>,
    /// An answer is kept at least this long, whatever its TTL.
    pub min_ttl: Duration,
    /// And at most this long.
    pub max_ttl: Duration,
    /// Where the table is written.
    pub at: Location,
}

impl Discover {
    /// Whether `other` asks the same question of the same server with the same TTL bounds:
    /// then what one found still answers the other (a reload keeps it). Where each is written
    /// does not matter.
    pub fn asks_like(&self, other: &Discover) -> bool {
        self.lookup == other.lookup
            && self.resolver == other.resolver
            && self.min_ttl == other.min_ttl
            && self.max_ttl == other.max_ttl
    }
}

/// The DNS question of [`Discover`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// `dns = NAME, port = N`: every A and AAAA record of NAME, each a server on `port`.
    Dns {
        /// The name, lower-case, without a trailing dot.
        name: String,
        /// The servers' port.
        port: u16,
    },
    /// `srv = NAME`: the SRV records of NAME of the lowest priority; each target's addresses
    /// are servers on the record's port, with its weight.
    Srv {
        /// The name, lower-case, without a trailing dot.
        name: String,
    },
}

impl Lookup {
    /// The name looked up.
    pub fn name(&self) -> &str {
        match self {
            Lookup::Dns { name, .. } | Lookup::Srv { name } => name,
        }
    }
}

/// As logs and `/status` show it: `dns gates.farm.internal port 8443`, `srv _gate._tcp.farm.internal`.
impl fmt::Display for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lookup::Dns { name, port } => write!(f, "dns {name} port {port}"),
            Lookup::Srv { name } => write!(f, "srv {name}"),
        }
    }
}

/// How requests are spread over an upstream's servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    /// Weighted round robin (default).
    RoundRobin,
    /// The server with the fewest requests in flight.
    LeastRequests,
    /// Power of two choices over peak-EWMA latency.
    P2cEwma,
    /// Consistent hashing on a request key.
    Hash(HashKey),
}

impl Balance {
    /// The configuration spelling: `round_robin`, `least_requests`, `p2c_ewma` or `hash`.
    pub fn as_str(&self) -> &'static str {
        self.kind().as_str()
    }

    /// The word `balance` is written with.
    pub(crate) fn kind(&self) -> BalanceKind {
        match self {
            Balance::RoundRobin => BalanceKind::RoundRobin,
            Balance::LeastRequests => BalanceKind::LeastRequests,
            Balance::P2cEwma => BalanceKind::P2cEwma,
            Balance::Hash(_) => BalanceKind::Hash,
        }
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

spelled! {
    /// The HTTP version an upstream's servers are spoken to in (`protocol`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum Protocol (what: "protocol", quoted: true) {
        /// HTTP/1.1 over pooled keep-alive connections (default).
        #[default]
        Http1 = "http1" ("default"),
        /// HTTP/2: ALPN `h2` (only) over TLS, prior-knowledge cleartext HTTP/2 (h2c) on a
        /// plain upstream; requests multiplexed over one connection per server and worker.
        H2 = "h2",
    }
}

spelled! {
    /// The PROXY protocol version an upstream's connections start with (`send_proxy`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ProxyVersion (what: "send_proxy", quoted: true) {
        /// The text header: `PROXY TCP4 192.0.2.7 10.0.0.1 51234 443`.
        V1 = "v1",
        /// The binary header (HAProxy's `send-proxy-v2`).
        V2 = "v2",
    }
}

spelled! {
    /// A [`Balance`] as the word `balance` is written with, before the hash key is read.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum BalanceKind (what: "balance", quoted: false) {
        /// `round_robin` (the default).
        RoundRobin = "round_robin",
        /// `least_requests`.
        LeastRequests = "least_requests",
        /// `p2c_ewma`.
        P2cEwma = "p2c_ewma",
        /// `hash`, with `hash_key`.
        Hash = "hash",
    }
}

/// What `balance = "hash"` hashes: `hash_key = "header:NAME" | "cookie:NAME" | "client_ip"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// A request header (lower-case name).
    Header(String),
    /// A cookie.
    Cookie(String),
    /// The client's IP address.
    ClientIp,
}

/// `hash_key`'s words: a prefix before a name, or the whole value.
const HEADER: &str = "header";
const COOKIE: &str = "cookie";
const CLIENT_IP: &str = "client_ip";

impl HashKey {
    /// Parse `header:NAME` (NAME lower-cased), `cookie:NAME` or `client_ip`; a NAME is letters,
    /// digits, `-`, `_` and `.`.
    pub fn parse(text: &str) -> Option<HashKey> {
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        match text.split_once(':') {
            Some((HEADER, name)) if token(name) => Some(HashKey::Header(name.to_ascii_lowercase())),
            Some((COOKIE, name)) if token(name) => Some(HashKey::Cookie(name.to_owned())),
            None if text == CLIENT_IP => Some(HashKey::ClientIp),
            Some(_) | None => None,
        }
    }

    /// The forms `hash_key` takes, as an error lists them.
    pub fn expected() -> Expected {
        Expected::new(
            &[("header:NAME", ""), ("cookie:NAME", ""), ("client_ip", "")],
            true,
        )
    }
}

/// The key as written: `header:x-user`, `cookie:session`, `client_ip`.
impl fmt::Display for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashKey::Header(name) => write!(f, "{HEADER}:{name}"),
            HashKey::Cookie(name) => write!(f, "{COOKIE}:{name}"),
            HashKey::ClientIp => f.write_str(CLIENT_IP),
        }
    }
}

/// Active health checking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Path requested with GET.
    pub path: String,
    /// Time between checks.
    pub interval: Duration,
    /// Time a check may take.
    pub timeout: Duration,
    /// Consecutive successes to mark a server up.
    pub rise: u32,
    /// Consecutive failures to mark a server down.
    pub fall: u32,
}

/// Upstream timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect plus TLS handshake.
    pub connect: Duration,
    /// From sending the request until the response header arrives.
    pub response_header: Duration,
    /// How long an idle pooled connection is kept (never longer than the server's
    /// `Keep-Alive: timeout=N` allows).
    pub idle: Duration,
    /// A tunnel (WebSocket) that moves no byte either way for this long is closed.
    pub tunnel_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            response_header: Duration::from_secs(60),
            // Below a farmgate gate's keep-alive (its `request_header`, 30 s by default) by a
            // margin, so that an edge never reuses a connection a gate may be closing.
            idle: Duration::from_secs(20),
            tunnel_idle: Duration::from_secs(3600),
        }
    }
}

/// TLS (and mutual TLS) towards an upstream's servers.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// SNI and the name verified on the servers' certificates; `None` uses each server's host.
    pub server_name: Option<String>,
    /// Trust anchors for the servers' certificates.
    pub trust: Vec<Trust>,
    /// The identity presented to the servers; `None` presents none.
    pub client_cert: Option<CertKey>,
    /// Where the table is defined.
    pub at: Location,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balance_is_spelled_by_its_kind() {
        let balances = [
            Balance::RoundRobin,
            Balance::LeastRequests,
            Balance::P2cEwma,
            Balance::Hash(HashKey::ClientIp),
        ];
        for balance in &balances {
            assert_eq!(
                BalanceKind::parse(balance.as_str()),
                Some(balance.kind()),
                "{balance}"
            );
        }
        assert_eq!(Balance::Hash(HashKey::ClientIp).to_string(), "hash");
    }

    #[test]
    fn hash_keys_round_trip() {
        for text in ["header:x-user", "cookie:Session_1", "client_ip"] {
            assert_eq!(
                HashKey::parse(text).map(|k| k.to_string()).as_deref(),
                Some(text)
            );
        }
        assert_eq!(
            HashKey::parse("header:X-User"),
            Some(HashKey::Header("x-user".into()))
        );
        for bad in ["ip", "header:", "header", "cookie:a b", "client_ip:x", ""] {
            assert_eq!(HashKey::parse(bad), None, "{bad}");
        }
        // Each form an error lists parses, once NAME is filled in.
        for form in HashKey::expected().words() {
            assert!(
                HashKey::parse(&form.replace("NAME", "n")).is_some(),
                "{form}"
            );
        }
    }
}
