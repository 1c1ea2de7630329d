//! Upstreams: pools of servers with their balancing, health, timeouts and TLS/mTLS policy.

use std::time::Duration;

use crate::{Address, CertKey, Location, Trust};

/// Index of an upstream in [`crate::Config::upstreams`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpstreamId(pub usize);

/// A named pool of servers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Upstream {
    /// The name routes refer to.
    pub name: String,
    /// The servers, at least one.
    pub servers: Vec<Backend>,
    /// How a server is chosen for each request.
    pub balance: Balance,
    /// Active health checks; `None` disables them.
    pub health: Option<Health>,
    /// Connection and response timeouts.
    pub timeouts: Timeouts,
    /// TLS towards the servers; `None` speaks plain HTTP.
    pub tls: Option<UpstreamTls>,
    /// Where the upstream is defined.
    pub at: Location,
}

/// One server of an upstream.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Where it listens.
    pub address: Address,
    /// Relative share of requests (≥ 1).
    pub weight: u32,
}

/// How requests are spread over an upstream's servers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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

/// What `balance = "hash"` hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// A request header (lower-case name).
    Header(String),
    /// A cookie.
    Cookie(String),
    /// The client's IP address.
    ClientIp,
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
    /// How long an idle pooled connection is kept.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            response_header: Duration::from_secs(60),
            idle: Duration::from_secs(60),
        }
    }
}

/// TLS (and mutual TLS) towards an upstream's servers.
#[derive(Debug, Clone)]
#[non_exhaustive]
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
