//! The `/status` document: what the proxy is doing, as typed data built in one place. The
//! admin endpoint serialises it; the dashboard renders it. Every field is documented in
//! docs/operations.md ("/status").

use std::net::SocketAddr;
use std::time::SystemTime;

use farmgate_config::ListenerTls;
use farmgate_doctor::advice::Warning;
use serde::Serialize;

use crate::generation::{Generation, Role, route_label};
use crate::outbound::now_ms;

use super::reload::ReloadCounts;

/// The whole document.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The configuration file.
    pub config: String,
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
    pub warnings: Vec<Warning>,
}

/// Reload outcomes since start.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Reloads {
    /// Reloads that switched to a new configuration.
    pub succeeded: u64,
    /// Reloads that failed; the previous configuration kept serving.
    pub failed: u64,
}

/// One listener.
#[derive(Debug, Clone, Serialize)]
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
    /// On a gate: whom it lets in.
    pub client_auth: Option<ClientAuthStatus>,
}

/// What a listener does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// A certificate in use.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateStatus {
    /// Its subject, as a distinguished name.
    pub subject: String,
    /// Unix seconds.
    pub not_after: i64,
    /// Whole days until it expires (negative: expired).
    pub days_left: i64,
}

/// A gate's client-certificate policy.
#[derive(Debug, Clone, Serialize)]
pub struct ClientAuthStatus {
    /// Trust anchors: files, `mozilla` or `system`.
    pub trust: Vec<String>,
    /// The allow entries.
    pub allow: Vec<String>,
    /// `client_auth` or `client_or_server_auth`.
    pub eku: &'static str,
}

/// One upstream.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamStatus {
    /// Its name.
    pub name: String,
    /// How requests are spread.
    pub balance: &'static str,
    /// TLS towards its servers, if any.
    pub tls: Option<UpstreamTlsStatus>,
    /// Connections open to its servers now (in use or idle).
    pub connections_open: i64,
    /// Each server.
    pub servers: Vec<ServerStatus>,
}

/// An upstream's TLS.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamTlsStatus {
    /// The name checked on the servers' certificates.
    pub server_name: Option<String>,
    /// Trust anchors.
    pub trust: Vec<String>,
    /// The client certificate presented to the servers.
    pub client_certificate: Option<CertificateStatus>,
}

/// One server of an upstream.
#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    /// As configured.
    pub address: String,
    /// Relative share of requests.
    pub weight: u32,
    /// Active health checks pass (always true without `health`).
    pub up: bool,
    /// Passively ejected after consecutive failures.
    pub ejected: bool,
    /// Requests on it now.
    pub in_flight: usize,
}

/// An ACME certificate.
#[derive(Debug, Clone, Serialize)]
pub struct AcmeStatus {
    /// The names it covers.
    pub domains: Vec<String>,
    /// The listeners serving it.
    pub listeners: Vec<String>,
    /// The ACME directory URL.
    pub directory: String,
    /// The certificate profile asked for.
    pub profile: Option<String>,
    /// Where it stands.
    pub state: &'static str,
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

/// Build the document from the running generation, the bound addresses, the open
/// connections and the reload counts.
pub(crate) fn build(
    generation: &Generation,
    bound: &[(String, SocketAddr)],
    open_connections: usize,
    reloads: ReloadCounts,
) -> Status {
    let config = generation.config();
    let now = SystemTime::now();
    let served = generation.certificates();
    let certs_of = |role: Role, owner: &str| -> Vec<CertificateStatus> {
        served
            .iter()
            .filter(|c| c.role == role && &*c.owner == owner)
            .map(|c| CertificateStatus {
                subject: c.summary.subject.clone(),
                not_after: c.summary.not_after.unix_timestamp(),
                days_left: c.summary.days_left(now),
            })
            .collect()
    };
    let listeners = config
        .listeners
        .iter()
        .map(|l| ListenerStatus {
            name: l.name.clone(),
            address: bound
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
                .map(|ca| ClientAuthStatus {
                    trust: ca.trust.iter().map(ToString::to_string).collect(),
                    allow: ca.allow.rules().iter().map(ToString::to_string).collect(),
                    eku: ca.eku.as_str(),
                }),
        })
        .collect();
    let health_now = now_ms();
    let upstreams = generation
        .upstreams
        .iter()
        .map(|u| UpstreamStatus {
            name: u.name.to_string(),
            balance: u.config.balance.as_str(),
            tls: u.config.tls.as_ref().map(|t| UpstreamTlsStatus {
                server_name: t.server_name.clone(),
                trust: t.trust.iter().map(ToString::to_string).collect(),
                client_certificate: certs_of(Role::Upstream, &u.name).into_iter().next(),
            }),
            connections_open: u.connections_open(),
            servers: u
                .servers
                .iter()
                .enumerate()
                .map(|(i, s)| ServerStatus {
                    address: s.address.to_string(),
                    weight: u.config.servers.get(i).map_or(1, |c| c.weight),
                    up: s.health.is_up(),
                    ejected: s.health.is_ejected(health_now),
                    in_flight: u.in_flight(i),
                })
                .collect(),
        })
        .collect();
    let unix = |t: Option<SystemTime>| {
        t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
    };
    let acme = generation
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
            next_renewal: unix(c.next_renewal),
            state: c.state.as_str(),
            domains: c.domains,
            listeners: c.listeners,
            directory: c.directory,
            profile: c.profile,
            ordering: c.ordering,
            last_error: c.last_error,
            consecutive_failures: c.consecutive_failures,
        })
        .collect();
    Status {
        config: config.file.display().to_string(),
        open_connections,
        generations: generation.lasting().generations_alive(),
        reloads: Reloads {
            succeeded: reloads.succeeded,
            failed: reloads.failed,
        },
        listeners,
        upstreams,
        acme,
        warnings: generation.warnings().to_vec(),
    }
}

fn role(tls: Option<&ListenerTls>, redirect_https: bool) -> ListenerRole {
    match (tls, redirect_https) {
        (_, true) => ListenerRole::Redirect,
        (None, false) => ListenerRole::Plain,
        (Some(t), false) if t.client_auth.is_some() => ListenerRole::Gate,
        (Some(_), false) => ListenerRole::Tls,
    }
}
