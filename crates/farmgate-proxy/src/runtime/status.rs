//! The `/status` document: what the proxy is doing, as typed data built in one place. The
//! admin endpoint serialises it; the dashboard renders it. Every field is documented in
//! docs/operations.md ("/status").
//!
//! Building it reads counters and parses the certificates in memory; it reads no file and
//! builds no trust store (the warnings were found when the generation was built).

use std::net::SocketAddr;
use std::time::SystemTime;

use farmgate_config::ListenerTls;
use farmgate_doctor::advice::Warning;
use farmgate_doctor::facts::{self, FactId};
use farmgate_tls::{GateStats, RefusalReason, RefusedClient};
use serde::{Deserialize, Serialize};

use crate::generation::{Generation, InUse, Role, route_label};
use crate::outbound::{Known, LastFailure, LastMinute, ServerRt, ServerSet, UpstreamRt, now_ms};

use super::reload::ReloadCounts;

/// The whole document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The farmgate version serving.
    pub version: String,
    /// The configuration file.
    pub config: String,
    /// When this document was made, in Unix seconds.
    pub generated_at: i64,
    /// Client connections open now, over every listener and worker.
    pub open_connections: usize,
    /// Configuration generations alive: 1, plus those that requests still in progress since
    /// a reload hold.
    pub generations: usize,
    /// Reload outcomes since start.
    pub reloads: Reloads,
    /// Each listener, in configuration order.
    pub listeners: Vec<ListenerStatus>,
    /// Each upstream, in configuration order.
    pub upstreams: Vec<UpstreamStatus>,
    /// Each ACME certificate.
    pub acme: Vec<AcmeStatus>,
    /// What `farmgate check` warns about, as found when the running configuration was built.
    pub warnings: Vec<WarningStatus>,
}

/// Reload outcomes since start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reloads {
    /// Reloads that switched to a new configuration.
    pub succeeded: u64,
    /// Reloads that failed; the previous configuration kept serving.
    pub failed: u64,
    /// The most recent reload, if there was one.
    pub last: Option<LastReload>,
}

/// How the most recent reload ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastReload {
    /// When it ended, in Unix seconds.
    pub at: i64,
    /// Whether the new configuration is serving.
    pub succeeded: bool,
    /// Why it failed, with every cause, as logged.
    pub error: Option<String>,
}

/// One listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenerStatus {
    /// Its `name`.
    pub name: String,
    /// The address it is bound to.
    pub address: String,
    /// What it does.
    pub role: ListenerRole,
    /// Its routes' labels (host and path prefix), in order.
    pub routes: Vec<String>,
    /// The leaf certificates it serves.
    pub certificates: Vec<CertificateStatus>,
    /// On a gate: whom it lets in, and whom it let in and refused.
    pub client_auth: Option<ClientAuthStatus>,
}

/// What a listener does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerRole {
    /// Plain HTTP that redirects to HTTPS.
    Redirect,
    /// Plain HTTP.
    Plain,
    /// TLS with a client certificate required: a gate.
    Gate,
    /// TLS without client authentication: an edge.
    Tls,
}

/// A certificate in use: one a listener serves, or an upstream's client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateStatus {
    /// Its subject, as a distinguished name.
    pub subject: String,
    /// Its subject alternative names: `dns:NAME`, `uri:URI`, `ip:ADDRESS`.
    pub sans: Vec<String>,
    /// Its issuer, as a distinguished name.
    pub issuer: String,
    /// Unix seconds.
    pub not_after: i64,
    /// Whole days until it expires (negative: expired).
    pub days_left: i64,
    /// The extended key usage its use needs: `serverAuth` (a listener's) or `clientAuth` (an
    /// upstream's client certificate).
    pub purpose: String,
    /// Its extended key usages by name; `None`: no EKU extension, so any purpose.
    pub eku: Option<Vec<String>>,
    /// Whether every certificate of its chain permits `purpose`. A client certificate that
    /// does not is refused by standard verifiers ("unsupported certificate purpose").
    pub permits: bool,
    /// The dated facts behind the warnings about it (for a client certificate: public CAs
    /// dropping clientAuth), oldest first.
    pub facts: Vec<FactStatus>,
}

/// A gate's client-certificate policy and what it decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientAuthStatus {
    /// Trust anchors: files, `mozilla` or `system`.
    pub trust: Vec<String>,
    /// The allow entries.
    pub allow: Vec<String>,
    /// `client_auth` or `client_or_server_auth`.
    pub eku: String,
    /// Client certificates accepted since start (handshakes, as gates never resume sessions).
    pub accepted: u64,
    /// Client certificates refused since start, for every reason (zeros included).
    pub refused: Vec<RefusalCount>,
    /// Acceptances that needed compatibility mode, by the allow entry that admitted them.
    pub compat_acceptances: Vec<CompatCount>,
    /// The most recent refused clients, newest first.
    pub recent_refusals: Vec<RefusedStatus>,
}

/// Refusals for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalCount {
    /// The reason's label, as in `farmgate_client_cert_refusals_total`: `unknown_ca`,
    /// `purpose`, `not_allowed`...
    pub reason: String,
    /// The rule that failed, in words.
    pub rule: String,
    /// How many since start.
    pub count: u64,
}

/// Compatibility-mode acceptances admitted by one allow entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompatCount {
    /// The allow entry, e.g. `dns:edge.example.com`.
    pub identity: String,
    /// How many since start.
    pub count: u64,
}

/// A client a gate refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedStatus {
    /// When, in Unix seconds.
    pub at: i64,
    /// The reason's label.
    pub reason: String,
    /// The address it connected from, if known.
    pub source: Option<String>,
    /// Its certificate's identity (URI SAN, DNS SAN, CN or key pin), if it presented a
    /// readable one.
    pub identity: Option<String>,
    /// Its certificate's subject, if it presented a readable one.
    pub subject: Option<String>,
    /// Its certificate's SHA-256 fingerprint in hex, if it presented a readable one.
    pub fingerprint: Option<String>,
}

/// One upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamStatus {
    /// Its name.
    pub name: String,
    /// How requests are spread: `round_robin`, `least_requests`, `p2c_ewma`, `hash`.
    pub balance: String,
    /// TLS towards its servers, if any.
    pub tls: Option<UpstreamTlsStatus>,
    /// Connections open to its servers now (in use or idle).
    pub connections_open: i64,
    /// WebSocket tunnels open now through it (across reloads).
    pub tunnels_open: i64,
    /// The most requests in flight on one server; `None`: unlimited.
    pub max_connections_per_server: Option<u32>,
    /// How long a request waits for a server below the cap, in milliseconds.
    pub queue_timeout_ms: u64,
    /// Requests waiting now for a server below the cap (0 without a cap).
    pub queued: usize,
    /// Requests answered 503 after waiting `queue_timeout`, since start (across reloads that
    /// keep a cap on the upstream; `farmgate_upstream_queue_timeouts_total` never forgets).
    pub queue_timeouts: u64,
    /// With `discover`: what DNS answered; `None` for listed servers.
    pub discovery: Option<DiscoveryStatus>,
    /// Each server.
    pub servers: Vec<ServerStatus>,
}

/// An upstream's DNS discovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryStatus {
    /// What is looked up: `dns NAME port N` or `srv NAME`.
    pub lookup: String,
    /// The DNS server asked, or `system` (`/etc/resolv.conf`).
    pub resolver: String,
    /// Whether DNS ever answered (with at least one server); until then the upstream answers
    /// 503.
    pub resolved: bool,
    /// When the last good answer came, in Unix seconds; `None` before the first.
    pub last_answer_at: Option<i64>,
    /// The servers that answer gave.
    pub servers_found: usize,
    /// Its TTL as DNS gave it, in seconds, before clamping to `[min_ttl, max_ttl]`.
    pub ttl_seconds: Option<u64>,
    /// Lookups failed since the last good answer (0: the last lookup answered).
    pub failing: u32,
    /// Failed lookups since start, by reason (zeros included): `resolver_config`, `timeout`,
    /// `nxdomain`, `no_records`, `server_error`, `error`.
    pub failures: Vec<DiscoveryFailureCount>,
    /// The last failed lookup, if any.
    pub last_failure: Option<FailureStatus>,
}

/// Failed lookups for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryFailureCount {
    /// The `reason` label of `farmgate_discovery_failures_total`.
    pub reason: String,
    /// How many since start.
    pub count: u64,
}

/// An upstream's TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamTlsStatus {
    /// The name checked on the servers' certificates.
    pub server_name: Option<String>,
    /// Trust anchors.
    pub trust: Vec<String>,
    /// The client certificate presented to the servers.
    pub client_certificate: Option<CertificateStatus>,
}

/// One server of an upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// As configured.
    pub address: String,
    /// Relative share of requests.
    pub weight: u32,
    /// Whether it takes requests, and if not, why.
    pub state: ServerHealth,
    /// Active health checks pass (always true without `health`).
    pub up: bool,
    /// Passively ejected after consecutive failures.
    pub ejected: bool,
    /// Drained through the admin endpoint: it takes no new requests.
    pub draining: bool,
    /// When it was drained, in Unix seconds.
    #[serde(default)]
    pub draining_since: Option<u64>,
    /// Requests on it now, from the choice of the server to the end of their response body,
    /// and its open WebSockets, whichever generation they started on: what a drain waits for.
    pub in_flight: usize,
    /// With `max_connections_per_server`: its slots taken now, by requests from the choice of
    /// the server to the end of their response body and by open WebSockets, whichever
    /// generation they started on; `None` without a cap.
    pub slots_in_use: Option<u32>,
    /// Requests sent to it since start (responses and failed attempts; across reloads).
    pub requests: u64,
    /// Of those, failed attempts and 5xx responses.
    pub errors: u64,
    /// Its traffic over the last minute.
    pub last_minute: TrafficStatus,
    /// The last failure, if any.
    pub last_failure: Option<FailureStatus>,
}

/// Whether a server takes requests, and if not, the first reason why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerHealth {
    /// It takes requests.
    Up,
    /// Active health checks fail.
    Down,
    /// Passively ejected for a while after consecutive failures.
    Ejected,
    /// Drained by an operator (the admin endpoint): whatever its health, it takes no new
    /// requests until undrained; those in flight finish. Its health checks go on (`up`).
    Draining,
}

impl ServerHealth {
    /// A server's state from its flags: an operator's drain first, then health.
    fn of(up: bool, ejected: bool, draining: bool) -> ServerHealth {
        match (draining, up, ejected) {
            (true, _, _) => ServerHealth::Draining,
            (false, false, _) => ServerHealth::Down,
            (false, true, true) => ServerHealth::Ejected,
            (false, true, false) => ServerHealth::Up,
        }
    }
}

/// `GET /upstreams` on the admin endpoint: each upstream's servers, whether they take
/// requests, and what they still carry; what a script that drains a server reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstreams {
    /// Each upstream, in configuration order.
    pub upstreams: Vec<UpstreamServers>,
}

/// One upstream's servers, for [`Upstreams`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamServers {
    /// The upstream's name.
    pub name: String,
    /// Each server.
    pub servers: Vec<ServerRotation>,
}

/// A server's place in rotation: [`Upstreams`], and the answer to a drain or an undrain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRotation {
    /// As configured, and as the drain path names it.
    pub address: String,
    /// Whether it takes requests, and if not, why.
    pub state: ServerHealth,
    /// Active health checks pass (always true without `health`).
    pub up: bool,
    /// Passively ejected after consecutive failures.
    pub ejected: bool,
    /// Drained: it takes no new requests.
    pub draining: bool,
    /// When it was drained, in Unix seconds.
    pub draining_since: Option<u64>,
    /// Requests on it now, to the end of their response body, and its open WebSockets: 0
    /// means a drained server can be stopped.
    pub in_flight: usize,
    /// Requests sent to it since start (responses and failed attempts; across reloads).
    pub requests: u64,
}

/// The answer to `POST /upstreams/NAME/servers/ADDR/drain` (or `undrain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainAnswer {
    /// The upstream's name.
    pub upstream: String,
    /// The server, as it is now.
    pub server: ServerRotation,
    /// Whether this request changed it (false: it was drained, or in rotation, already).
    pub changed: bool,
    /// Servers of the upstream that take requests now; 0 means every request to it gets a
    /// `503` until one is undrained or healthy again.
    pub available: usize,
}

/// A server's traffic over the last minute (or since start, if that is shorter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficStatus {
    /// Requests per second.
    pub requests_per_second: f64,
    /// Share of requests that failed or were answered 5xx, from 0 to 1.
    pub error_rate: f64,
    /// Median time to the response header, in milliseconds; `None` without responses.
    pub p50_ms: Option<f64>,
    /// 99th percentile time to the response header, in milliseconds.
    pub p99_ms: Option<f64>,
    /// Requests per second in each 5-second interval, oldest first, the current one last.
    pub history: Vec<f64>,
}

/// A server's last failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureStatus {
    /// When, in Unix seconds.
    pub at: i64,
    /// The label of `farmgate_upstream_errors_total` (`connect_refused`,
    /// `client_cert_refused`...), `status_5xx`, or `health_check` (an active check failed).
    pub reason: String,
    /// What happened, as logged.
    pub message: String,
}

/// An ACME certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeStatus {
    /// The names it covers.
    pub domains: Vec<String>,
    /// The listeners serving it.
    pub listeners: Vec<String>,
    /// The ACME directory URL.
    pub directory: String,
    /// The certificate profile asked for.
    pub profile: Option<String>,
    /// Where it stands: `pending`, `valid`, `renewing`, `expired`...
    pub state: String,
    /// Whether an order is in flight.
    pub ordering: bool,
    /// Unix seconds, once a certificate from the CA is served.
    pub not_after: Option<u64>,
    /// Whole days left.
    pub days_left: Option<i64>,
    /// Unix seconds of the next renewal attempt.
    pub next_renewal: Option<u64>,
    /// The last failure, in words.
    pub last_error: Option<String>,
    /// Failures in a row.
    pub consecutive_failures: u32,
}

/// Something `farmgate check` warns about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarningStatus {
    /// What kind: `expires_soon`, `client_certificate_lacks_client_auth`...
    pub kind: String,
    /// The configuration file, line and key it is about.
    pub at: String,
    /// What is wrong and what to do.
    pub message: String,
    /// The dated facts it rests on.
    pub facts: Vec<FactStatus>,
}

/// A dated fact about public CAs, from farmgate's table of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactStatus {
    /// Its name, e.g. `lets_encrypt_last_client_auth`.
    pub id: String,
    /// Who made the change.
    pub ca: String,
    /// The profile or policy concerned.
    pub profile: Option<String>,
    /// When it took effect, `YYYY-MM-DD`.
    pub date: String,
    /// What changed.
    pub change: String,
    /// Where it is published.
    pub source: String,
}

/// What the runtime knows beside the generation.
pub(crate) struct Context<'a> {
    /// Each listener's name and bound address.
    pub(crate) bound: &'a [(String, SocketAddr)],
    pub(crate) open_connections: usize,
    pub(crate) reloads: ReloadCounts,
    pub(crate) last_reload: Option<LastReload>,
    /// The server's metrics registry (some counts live only there).
    pub(crate) metrics: &'a farmgate_admin::Metrics,
}

/// Build the document from the running generation and what the runtime knows.
pub(crate) fn build(generation: &Generation, cx: Context<'_>) -> Status {
    let config = generation.config();
    let now = unix_now();
    let warnings: Vec<WarningStatus> = generation.warnings().iter().map(warning).collect();
    let served = generation.certificates();
    let certs_of = |role: Role, owner: &str| -> Vec<CertificateStatus> {
        served
            .iter()
            .filter(|c| c.role == role && &*c.owner == owner)
            .map(|c| certificate(c, now, generation))
            .collect()
    };
    let listeners = config
        .listeners
        .iter()
        .map(|l| ListenerStatus {
            name: l.name.clone(),
            address: cx
                .bound
                .iter()
                .find(|(name, _)| *name == l.name)
                .map_or_else(|| l.listen.to_string(), |(_, local)| local.to_string()),
            role: role(l.tls.as_ref(), l.redirect_https),
            routes: l.routes.iter().map(route_label).collect(),
            certificates: certs_of(Role::Listener, &l.name),
            client_auth: l
                .tls
                .as_ref()
                .and_then(|t| t.client_auth.as_ref())
                .map(|ca| {
                    let stats = generation
                        .listener_tls(&l.name)
                        .and_then(|t| t.verifier())
                        .map(|v| v.stats().as_ref());
                    gate(ca, stats)
                }),
        })
        .collect();
    let upstreams = generation
        .upstreams
        .iter()
        .map(|u| UpstreamStatus {
            name: u.name.to_string(),
            balance: u.config.balance.as_str().to_owned(),
            tls: u.config.tls.as_ref().map(|t| UpstreamTlsStatus {
                server_name: t.server_name.clone(),
                trust: t.trust.iter().map(ToString::to_string).collect(),
                client_certificate: certs_of(Role::Upstream, &u.name).into_iter().next(),
            }),
            connections_open: u.connections_open(),
            tunnels_open: cx.metrics.tunnels_open(&u.name).get(),
            max_connections_per_server: u.config.max_connections_per_server,
            queue_timeout_ms: u64::try_from(u.config.queue_timeout.as_millis()).unwrap_or(u64::MAX),
            queued: u.queued().unwrap_or(0),
            queue_timeouts: u.queue_timeouts().unwrap_or(0),
            discovery: discovery(u),
            servers: {
                let set = u.servers();
                (0..set.servers.len()).map(|i| server(&set, i)).collect()
            },
        })
        .collect();
    Status {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        config: config.file.display().to_string(),
        generated_at: now,
        open_connections: cx.open_connections,
        generations: generation.lasting().generations_alive(),
        reloads: Reloads {
            succeeded: cx.reloads.succeeded,
            failed: cx.reloads.failed,
            last: cx.last_reload,
        },
        listeners,
        upstreams,
        acme: acme(generation),
        warnings,
    }
}

fn certificate(c: &InUse, now: i64, generation: &Generation) -> CertificateStatus {
    // The facts of the warnings about this very file (an upstream's client certificate).
    let file = match c.role {
        Role::Upstream => generation
            .config()
            .upstreams
            .iter()
            .find(|u| u.name == *c.owner)
            .and_then(|u| u.tls.as_ref()?.client_cert.as_ref())
            .map(|pair| pair.certificate.at.to_string()),
        Role::Listener => None,
    };
    let mut facts: Vec<FactStatus> = Vec::new();
    let about_it = generation
        .warnings()
        .iter()
        .filter(|w| file.as_ref().is_some_and(|f| *f == w.at));
    for id in about_it.flat_map(|w| w.facts.iter().copied()) {
        let fact = fact(id);
        if !facts.contains(&fact) {
            facts.push(fact);
        }
    }
    facts.sort_by(|a, b| a.date.cmp(&b.date));
    let not_after = c.summary.not_after.unix_timestamp();
    CertificateStatus {
        subject: c.summary.subject.clone(),
        sans: c.summary.sans.iter().map(ToString::to_string).collect(),
        issuer: c.summary.issuer.clone(),
        not_after,
        days_left: (not_after - now).div_euclid(86_400),
        purpose: c.role.purpose().to_string(),
        eku: c
            .summary
            .eku
            .as_ref()
            .map(|eku| eku.iter().map(ToString::to_string).collect()),
        permits: c.permits,
        facts,
    }
}

fn gate(policy: &farmgate_config::ClientAuth, stats: Option<&GateStats>) -> ClientAuthStatus {
    let snapshot = stats.map(GateStats::snapshot).unwrap_or_default();
    let count = |reason: RefusalReason| {
        snapshot
            .refused
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    };
    ClientAuthStatus {
        trust: policy.trust.iter().map(ToString::to_string).collect(),
        allow: policy
            .allow
            .rules()
            .iter()
            .map(ToString::to_string)
            .collect(),
        eku: policy.eku.as_str().to_owned(),
        accepted: snapshot.accepted,
        refused: RefusalReason::ALL
            .iter()
            .map(|&reason| RefusalCount {
                reason: reason.label().to_owned(),
                rule: reason.rule().to_owned(),
                count: count(reason),
            })
            .collect(),
        compat_acceptances: snapshot
            .relaxed
            .into_iter()
            .map(|(identity, count)| CompatCount { identity, count })
            .collect(),
        recent_refusals: stats
            .map(GateStats::recent_refusals)
            .unwrap_or_default()
            .iter()
            .rev()
            .map(refused)
            .collect(),
    }
}

fn refused(r: &RefusedClient) -> RefusedStatus {
    RefusedStatus {
        at: unix(r.at),
        reason: r.reason.label().to_owned(),
        source: r.source.map(|s| s.to_string()),
        identity: r.identity.as_ref().map(|id| id.name()),
        subject: r.identity.as_ref().map(|id| id.subject().to_owned()),
        fingerprint: r.identity.as_ref().map(|id| id.fingerprint_hex()),
    }
}

fn discovery(upstream: &UpstreamRt) -> Option<DiscoveryStatus> {
    let discover = upstream.config.discover.as_ref()?;
    let Known {
        good,
        failing,
        last_failure,
        failures,
    } = upstream.discovery.as_ref()?.known();
    Some(DiscoveryStatus {
        lookup: discover.lookup.to_string(),
        resolver: discover
            .resolver
            .map_or_else(|| "system".to_owned(), |r| r.to_string()),
        resolved: good.is_some(),
        last_answer_at: good.as_ref().map(|(_, at)| unix(*at)),
        servers_found: good.as_ref().map_or(0, |(a, _)| a.servers.len()),
        ttl_seconds: good.as_ref().map(|(a, _)| a.ttl.as_secs()),
        failing,
        failures: failures
            .into_iter()
            .map(|(reason, count)| DiscoveryFailureCount {
                reason: reason.to_owned(),
                count,
            })
            .collect(),
        last_failure: last_failure.map(|f| FailureStatus {
            at: unix(f.at),
            reason: f.reason.to_owned(),
            message: f.message,
        }),
    })
}

fn server(set: &ServerSet, i: usize) -> ServerStatus {
    let s = &set.servers[i];
    let rotation = rotation(s);
    ServerStatus {
        address: rotation.address,
        weight: set.weights.get(i).copied().unwrap_or(1),
        state: rotation.state,
        up: rotation.up,
        ejected: rotation.ejected,
        draining: rotation.draining,
        draining_since: rotation.draining_since,
        in_flight: rotation.in_flight,
        slots_in_use: set.slots.get(i).map(|s| s.in_use()),
        requests: rotation.requests,
        errors: s.stats.errors(),
        last_minute: traffic(s.stats.last_minute()),
        last_failure: s.stats.last_failure().map(failure),
    }
}

/// The `GET /upstreams` document of `generation`.
pub(crate) fn upstreams(generation: &Generation) -> Upstreams {
    Upstreams {
        upstreams: generation
            .upstreams
            .iter()
            .map(|u| UpstreamServers {
                name: u.name.to_string(),
                servers: u.servers().servers.iter().map(|s| rotation(s)).collect(),
            })
            .collect(),
    }
}

/// Server `s`'s place in rotation now.
pub(crate) fn rotation(s: &ServerRt) -> ServerRotation {
    let now = now_ms();
    let (up, ejected, draining) = (
        s.health.is_up(),
        s.health.is_ejected(now),
        s.drain.is_draining(),
    );
    ServerRotation {
        address: s.address.to_string(),
        state: ServerHealth::of(up, ejected, draining),
        up,
        ejected,
        draining,
        draining_since: s.drain.since(),
        in_flight: s.drain.in_flight(),
        requests: s.stats.requests(),
    }
}

fn traffic(m: LastMinute) -> TrafficStatus {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    TrafficStatus {
        requests_per_second: m.requests_per_second,
        error_rate: m.error_rate,
        p50_ms: m.p50.map(ms),
        p99_ms: m.p99.map(ms),
        history: m.history,
    }
}

fn failure(f: LastFailure) -> FailureStatus {
    FailureStatus {
        at: i64::try_from(f.at).unwrap_or(i64::MAX),
        reason: f.reason.to_owned(),
        message: f.message,
    }
}

fn acme(generation: &Generation) -> Vec<AcmeStatus> {
    let unix_opt = |t: Option<SystemTime>| {
        t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
    };
    generation
        .acme()
        .status()
        .into_iter()
        .map(|c| AcmeStatus {
            days_left: c
                .seconds_until_expiry(SystemTime::now())
                .map(|s| s.div_euclid(86_400)),
            not_after: c
                .certificate
                .as_ref()
                .and_then(|s| u64::try_from(s.not_after.unix_timestamp()).ok()),
            next_renewal: unix_opt(c.next_renewal),
            state: c.state.as_str().to_owned(),
            domains: c.domains,
            listeners: c.listeners,
            directory: c.directory,
            profile: c.profile,
            ordering: c.ordering,
            last_error: c.last_error,
            consecutive_failures: c.consecutive_failures,
        })
        .collect()
}

fn warning(w: &Warning) -> WarningStatus {
    WarningStatus {
        kind: spelling(&w.kind),
        at: w.at.clone(),
        message: w.message.clone(),
        facts: w.facts.iter().copied().map(fact).collect(),
    }
}

fn fact(id: FactId) -> FactStatus {
    let fact = facts::fact(id);
    FactStatus {
        id: spelling(&fact.id),
        ca: fact.ca.to_owned(),
        profile: fact.profile.map(str::to_owned),
        date: fact.date.to_string(),
        change: fact.change.to_owned(),
        source: fact.source.to_owned(),
    }
}

/// A fieldless enum's name as its serde derive spells it (`expires_soon`), so the spelling
/// is written once, where the enum is.
fn spelling<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> i64 {
    unix(SystemTime::now())
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn role(tls: Option<&ListenerTls>, redirect_https: bool) -> ListenerRole {
    match (tls, redirect_https) {
        (_, true) => ListenerRole::Redirect,
        (None, false) => ListenerRole::Plain,
        (Some(t), false) if t.client_auth.is_some() => ListenerRole::Gate,
        (Some(_), false) => ListenerRole::Tls,
    }
}
