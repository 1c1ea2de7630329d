//! An upstream at run time: its servers, balancer and pooled client.

use std::borrow::Cow;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use farmgate_admin::{Histogram, Metrics};
use farmgate_balance::{Balancer, Policy};
use farmgate_config::{Balance, HashKey, Upstream};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use rustls_pki_types::ServerName;

use crate::body::Body;
use crate::connect::{ConnectError, Connector};
use crate::error::{BuildError, Failure};
use crate::health::{self, Health, Passive};
use crate::pool::{Pool, SendError};

/// ALPN offered to backends. HTTP/1.1 only: the pool speaks HTTP/1.1, which carries the
/// client's Host header unchanged.
const UPSTREAM_ALPN: &[&[u8]] = &[b"http/1.1"];

/// Most attempts a replayable request gets (the first and two retries on other servers).
const MAX_ATTEMPTS: usize = 3;
/// Retry budget, in tenths of a retry: each request deposits [`DEPOSIT`], each retry costs
/// [`RETRY_COST`]. So retries stay below about one in five requests, with a reserve of ten
/// retries for a quiet upstream, and a failing farm is not hammered with amplified load.
const DEPOSIT: i64 = 2;
const RETRY_COST: i64 = 10;
const BUDGET_RESERVE: i64 = 100;
const BUDGET_CAP: i64 = 1_000;

/// One server of an upstream.
#[derive(Debug)]
pub(crate) struct ServerRt {
    /// `10.0.0.11:8443`, for logs.
    pub(crate) address: Arc<str>,
    /// Idle connections to this server.
    pool: Arc<Pool>,
    pub(crate) health: Arc<Health>,
}

/// An upstream ready to take requests.
#[derive(Debug)]
pub(crate) struct UpstreamRt {
    pub(crate) name: Arc<str>,
    pub(crate) servers: Vec<ServerRt>,
    balancer: Balancer,
    hash_key: Option<HashKey>,
    connector: Connector,
    pub(crate) config: Upstream,
    retry_budget: AtomicI64,
    /// Resolved on first use: the registry lives in the server, not in the generation.
    response_seconds: OnceLock<Histogram>,
    /// The client certificate presented to the servers (leaf, DER), for expiry reports.
    pub(crate) client_leaf: Option<Vec<u8>>,
}

/// A request ready to go upstream: its head, and its body unless it can be replayed.
pub(crate) struct Outgoing {
    pub(crate) parts: http::request::Parts,
    /// `None` when the request has no body, so that it can be sent again to another server.
    pub(crate) body: Option<Body>,
}

impl UpstreamRt {
    pub(crate) fn build(config: &Upstream) -> Result<UpstreamRt, BuildError> {
        let (tls, server_name) = match &config.tls {
            Some(tls) => {
                let client = farmgate_tls::upstream_client_config(tls, UPSTREAM_ALPN)?;
                let name = match &tls.server_name {
                    Some(n) => Some(ServerName::try_from(n.clone()).map_err(|_| {
                        BuildError::ServerName {
                            at: tls.at.clone(),
                            name: n.clone(),
                        }
                    })?),
                    None => None,
                };
                (Some(client), name)
            }
            None => (None, None),
        };
        let scheme = if tls.is_some() {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let connector = Connector::new(tls, server_name, config.timeouts.connect);
        let servers = config
            .servers
            .iter()
            .map(|s| {
                let text = s.address.to_string();
                let target = Authority::try_from(text.as_str())
                    .ok()
                    .and_then(|authority| {
                        Uri::builder()
                            .scheme(scheme.clone())
                            .authority(authority)
                            .path_and_query("/")
                            .build()
                            .ok()
                    })
                    .ok_or_else(|| BuildError::ServerName {
                        at: config.at.clone(),
                        name: text.clone(),
                    })?;
                Ok(ServerRt {
                    address: Arc::from(text),
                    pool: Arc::new(Pool::new(target, connector.clone(), config.timeouts.idle)),
                    health: Arc::new(Health::default()),
                })
            })
            .collect::<Result<Vec<_>, BuildError>>()?;
        let client_leaf = match config.tls.as_ref().and_then(|t| t.client_cert.as_ref()) {
            Some(pair) => farmgate_tls::load::certificates(&pair.certificate)?
                .into_iter()
                .next()
                .map(|c| c.as_ref().to_vec()),
            None => None,
        };
        let (policy, hash_key) = match &config.balance {
            Balance::RoundRobin => (Policy::RoundRobin, None),
            Balance::LeastRequests => (Policy::LeastRequests, None),
            Balance::P2cEwma => (Policy::P2cEwma, None),
            Balance::Hash(key) => (Policy::Hash, Some(key.clone())),
        };
        let balancer = Balancer::with_names(
            policy,
            servers
                .iter()
                .zip(&config.servers)
                .map(|(s, c)| (s.address.as_bytes().to_vec(), c.weight)),
        );
        Ok(UpstreamRt {
            name: Arc::from(config.name.as_str()),
            servers,
            balancer,
            hash_key,
            connector,
            config: config.clone(),
            retry_budget: AtomicI64::new(BUDGET_RESERVE),
            response_seconds: OnceLock::new(),
            client_leaf,
        })
    }

    /// Connections opened to this upstream's servers so far.
    pub(crate) fn connections_opened(&self) -> u64 {
        self.connector.opened()
    }

    /// Connections to this upstream's servers open now (in use or idle in the pool).
    pub(crate) fn connections_open(&self) -> i64 {
        self.connector.open()
    }

    /// Close surplus idle connections to every server (see `pool`); returns how many.
    pub(crate) fn sweep_idle(&self) -> usize {
        self.servers.iter().map(|s| s.pool.sweep()).sum()
    }

    /// Idle pooled connections to this upstream's servers.
    pub(crate) fn idle_connections(&self) -> usize {
        self.servers.iter().map(|s| s.pool.idle()).sum()
    }

    /// The balancer, for in-flight counts.
    pub(crate) fn in_flight(&self, server: usize) -> usize {
        self.balancer.in_flight(server)
    }

    /// The bytes `balance = "hash"` hashes for this request, if any.
    pub(crate) fn hash_key<'r>(
        &self,
        parts: &'r http::request::Parts,
        client: &'r [u8],
    ) -> Option<Cow<'r, [u8]>> {
        match self.hash_key.as_ref()? {
            HashKey::Header(name) => parts
                .headers
                .get(name.as_str())
                .map(|v| Cow::Borrowed(v.as_bytes())),
            HashKey::Cookie(name) => cookie(&parts.headers, name).map(Cow::Borrowed),
            HashKey::ClientIp => Some(Cow::Borrowed(client)),
        }
    }

    /// Send a request to a server chosen by the balancer among the healthy ones. A request
    /// that can be replayed (no body, idempotent method) and fails before any response byte
    /// arrived is retried on another server, within the attempt limit and the retry budget.
    pub(crate) async fn dispatch(
        &self,
        request: Outgoing,
        key: Option<&[u8]>,
        metrics: &Metrics,
    ) -> Result<(Response<Body>, &ServerRt), Failure> {
        let replayable =
            request.body.is_none() && crate::pool::is_idempotent(&request.parts.method);
        let budget = self.retry_budget.fetch_add(DEPOSIT, Ordering::Relaxed);
        if budget > BUDGET_CAP {
            self.retry_budget.fetch_sub(DEPOSIT, Ordering::Relaxed);
        }
        let Outgoing {
            parts: mut head,
            mut body,
        } = request;
        origin_form(&mut head.uri);
        let attempts = MAX_ATTEMPTS.min(self.servers.len());
        // The head is copied for an attempt only while a later one may need it; the last
        // possible attempt (the only one, for most requests) takes it.
        let mut parts = Some(head);
        let mut tried = [usize::MAX; MAX_ATTEMPTS];
        let now = health::now_ms();
        let mut attempt = 0;
        let mut last_failure = None;
        loop {
            let picked = self.balancer.pick(key, |i| {
                self.servers[i].health.available(now) && !tried.contains(&i)
            });
            let Some(ticket) = picked else {
                // With nothing left to retry on, the client hears about the real failure.
                return Err(last_failure.unwrap_or_else(|| self.none_available()));
            };
            let index = ticket.server();
            tried[attempt] = index;
            let server = &self.servers[index];
            let may_retry = replayable && attempt + 1 < attempts;
            let req = match parts.as_ref() {
                Some(head) if may_retry => replay(head),
                _ => {
                    let mut head = parts.take().ok_or_else(|| {
                        Failure::internal("the request was already sent".to_owned())
                    })?;
                    // Extensions belong to the downstream connection, not to this request.
                    head.extensions.clear();
                    Request::from_parts(head, body.take().unwrap_or(Body::Empty))
                }
            };
            let started = Instant::now();
            let kept = parts.as_ref().filter(|_| may_retry);
            match self.send(server, req, kept).await {
                Ok(response) => {
                    let elapsed = started.elapsed();
                    let failed = response.status().is_server_error();
                    self.observe(server, failed);
                    ticket.finish(elapsed, failed);
                    self.response_seconds
                        .get_or_init(|| metrics.upstream_seconds(&self.name))
                        .observe(elapsed);
                    return Ok((response, server));
                }
                Err(failure) => {
                    self.observe(server, true);
                    ticket.finish(started.elapsed(), true);
                    metrics.upstream_error(&self.name, failure.reason);
                    attempt += 1;
                    let retry = replayable
                        && failure.before_response
                        && attempt < attempts
                        && self.withdraw_retry();
                    if !retry {
                        return Err(failure);
                    }
                    metrics.retry(&self.name);
                    tracing::info!(upstream = %self.name, server = %server.address, "retrying on another server: {}", failure.cause);
                    last_failure = Some(failure);
                }
            }
        }
    }

    fn none_available(&self) -> Failure {
        Failure::unavailable(format!(
            "upstream {}: no healthy server (all are down or ejected)",
            self.name
        ))
        .because("no_healthy_server")
    }

    fn withdraw_retry(&self) -> bool {
        let before = self.retry_budget.fetch_sub(RETRY_COST, Ordering::Relaxed);
        if before >= RETRY_COST {
            return true;
        }
        self.retry_budget.fetch_add(RETRY_COST, Ordering::Relaxed);
        tracing::warn!(upstream = %self.name, "retry budget exhausted: not retrying, so a failing farm is not amplified");
        false
    }

    /// Passive health: count the outcome against the server.
    fn observe(&self, server: &ServerRt, failed: bool) {
        if !failed {
            server.health.success();
            return;
        }
        let now = health::now_ms();
        let out = self
            .servers
            .iter()
            .filter(|s| !s.health.available(now))
            .count();
        let may_eject = (out + 1) * 2 <= self.servers.len();
        if let Passive::Ejected(length) = server.health.failure(now, may_eject) {
            tracing::warn!(upstream = %self.name, server = %server.address, "server ejected for {}: {} failures in a row", show(length), health::EJECT_AFTER);
        }
    }

    /// Send `req` (its URI in origin form) to `server` over a pooled connection; `kept` is a
    /// head the caller keeps anyway, to build the request again from if the pool must resend it.
    pub(crate) async fn send(
        &self,
        server: &ServerRt,
        req: Request<Body>,
        kept: Option<&http::request::Parts>,
    ) -> Result<Response<Body>, Failure> {
        let wait = self.config.timeouts.response_header;
        match tokio::time::timeout(wait, server.pool.send(req, kept)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(classify(e, &server.address)),
            Err(_) => Err(Failure::timeout(format!(
                "backend {} sent no response header within {}",
                server.address,
                show(wait)
            ))
            .because("response_timeout")),
        }
    }
}

/// HTTP/2 clients' absolute URIs lose scheme and authority (the Host header carries the
/// latter): backends get origin form.
fn origin_form(uri: &mut Uri) {
    if uri.scheme().is_some() || uri.path_and_query().is_none() {
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *uri = Uri::from(path);
    }
}

/// A copy of a body-less request, for one attempt.
fn replay(parts: &http::request::Parts) -> Request<Body> {
    crate::pool::bodyless(&parts.method, &parts.uri, parts.version, &parts.headers)
}

/// The value of cookie `name` in the request's Cookie headers.
fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let (k, v) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
            (k == name.as_bytes()).then(|| &v[1..])
        })
}

fn show(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Turn a pool error into the status and the cause in words.
fn classify(e: SendError, server: &str) -> Failure {
    let e = match e {
        SendError::Connect(connect) => return connect_failure(&connect),
        SendError::Http(e) => e,
    };
    // TLS 1.3: a gate refuses our certificate after we consider the handshake done, so the alert
    // arrives when we read the response.
    if let Some(tls) = farmgate_tls::explain::find_tls_error(&e) {
        let reason = match tls {
            rustls::Error::AlertReceived(a)
                if farmgate_tls::explain::client_cert_alert(*a).is_some() =>
            {
                "client_cert_refused"
            }
            _ => "tls",
        };
        return Failure::bad_gateway(format!(
            "{} (backend {server})",
            farmgate_tls::explain::upstream_failure(tls, server)
        ))
        .because(reason);
    }
    Failure::bad_gateway(format!(
        "backend {server} failed before responding: {}",
        chain(&e)
    ))
    .because("reset")
}

fn connect_failure(e: &ConnectError) -> Failure {
    match e {
        ConnectError::Tls {
            addr,
            server_name,
            source,
        } => {
            let tls = farmgate_tls::explain::find_tls_error(source);
            let reason = match tls {
                Some(rustls::Error::AlertReceived(a))
                    if farmgate_tls::explain::client_cert_alert(*a).is_some() =>
                {
                    "client_cert_refused"
                }
                Some(rustls::Error::InvalidCertificate(_)) => "server_cert",
                _ => "tls",
            };
            let why = match tls {
                Some(tls) => farmgate_tls::explain::upstream_failure(tls, server_name),
                None => format!("TLS handshake failed: {source}"),
            };
            Failure::bad_gateway(format!("{why} (backend {addr})")).because(reason)
        }
        ConnectError::Tcp { addr, source } => {
            let (why, reason) = match source.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    ("connection refused".to_owned(), "connect_refused")
                }
                _ => (source.to_string(), "connect_error"),
            };
            Failure::bad_gateway(format!("cannot connect to backend {addr}: {why}")).because(reason)
        }
        ConnectError::Timeout { .. } => Failure::bad_gateway(chain(e)).because("connect_timeout"),
        ConnectError::Resolve { .. } => Failure::bad_gateway(chain(e)).because("resolve"),
        other => Failure::bad_gateway(chain(other)).because("connect_error"),
    }
}

/// An error and its sources, joined with ": ".
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
