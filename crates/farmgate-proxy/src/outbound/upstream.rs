//! An upstream at run time: its servers, balancer and pooled client, and the dispatch of one
//! request with retries on other servers.

use std::borrow::Cow;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;
use farmgate_admin::{Counter, Gauge, Histogram, Metrics};
use farmgate_balance::{Policy, Ticket};
use farmgate_config::{Balance, HashKey, Protocol, Upstream};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use rustls_pki_types::ServerName;

use crate::error::BuildError;

use super::body::Body;
use super::connect::Connector;
use super::discover::Discovery;
use super::failure::{Chain, Seconds, UpstreamFailure};
use super::health::{self, Passive};
use super::queue::{Queue, Slot, Take};
use super::retry::{MAX_ATTEMPTS, RetryBudget};
use super::send::{self, SendError};
use super::set::{Conns, Found, ServerMaker, ServerRt, ServerSet, ServerSource};

/// An upstream ready to take requests.
#[derive(Debug)]
pub(crate) struct UpstreamRt {
    pub(crate) name: Arc<str>,
    servers: Servers,
    /// What makes a server (connector, protocol, the counters that outlive generations).
    maker: ServerMaker,
    hash_key: Option<HashKey>,
    pub(crate) config: Upstream,
    /// With `discover`: the answers and failures, shared by generations asking alike.
    pub(crate) discovery: Option<Arc<Discovery>>,
    retry_budget: RetryBudget,
    /// `max_connections_per_server`, if set.
    cap: Option<Cap>,
    /// Resolved on first use: the registry lives in the server, not in the generation.
    response_seconds: OnceLock<Histogram>,
    /// The queue's metrics, resolved on first use like `response_seconds`.
    queue_metrics: OnceLock<QueueMetrics>,
    /// The client certificate chain presented to the servers (leaf first), for `/status`
    /// and expiry metrics.
    pub(crate) client_chain: Vec<rustls_pki_types::CertificateDer<'static>>,
}

/// `max_connections_per_server` at work: the upstream's queue, the same for every generation
/// (see `queue`); each server's slots are in its [`ServerSet`].
#[derive(Debug)]
struct Cap {
    /// `max_connections_per_server`.
    max: u32,
    queue: Arc<Queue>,
}

/// An upstream's servers: listed ones, fixed for the generation's life, or discovered ones,
/// replaced as DNS answers (one atomic load per request; see docs/architecture.md, "DNS
/// discovery").
#[derive(Debug)]
enum Servers {
    Listed(ServerSet),
    Discovered(ArcSwap<ServerSet>),
}

/// The servers of an upstream as one request (or one look) sees them.
#[derive(Debug)]
pub(crate) enum Snapshot<'a> {
    Listed(&'a ServerSet),
    Discovered(Arc<ServerSet>),
}

impl Deref for Snapshot<'_> {
    type Target = ServerSet;

    fn deref(&self) -> &ServerSet {
        match self {
            Snapshot::Listed(set) => set,
            Snapshot::Discovered(set) => set,
        }
    }
}

impl<'a> Snapshot<'a> {
    /// Server `i` of the set, for as long as the caller needs it.
    fn served(&self, i: usize) -> Served<'a> {
        match self {
            Snapshot::Listed(set) => Served::Listed(&set.servers[i]),
            Snapshot::Discovered(set) => Served::Discovered(set.servers[i].clone()),
        }
    }
}

/// The server that answered a request: borrowed from a listed upstream, held from a
/// discovered one (whose set may change while the response streams).
#[derive(Debug)]
pub(crate) enum Served<'a> {
    Listed(&'a ServerRt),
    Discovered(Arc<ServerRt>),
}

impl Deref for Served<'_> {
    type Target = ServerRt;

    fn deref(&self) -> &ServerRt {
        match self {
            Served::Listed(server) => server,
            Served::Discovered(server) => server,
        }
    }
}

/// `farmgate_upstream_queue`, `farmgate_upstream_queue_seconds` and
/// `farmgate_upstream_queue_timeouts_total` of one upstream.
#[derive(Debug)]
struct QueueMetrics {
    waiting: Gauge,
    seconds: Histogram,
    timeouts: Counter,
}

/// A request ready to go upstream: its head, and its body unless it can be replayed.
pub(crate) struct Outgoing {
    pub(crate) parts: http::request::Parts,
    /// `None` when the request has no body, so that it can be sent again to another server.
    pub(crate) body: Option<Body>,
}

impl UpstreamRt {
    /// Build `config`'s upstream; `source` gives each server's counters by its address,
    /// `queue`, given when `max_connections_per_server` is set, the upstream's queue and its
    /// servers' slots, and `discovery`, given with `discover`, what DNS answered so far.
    pub(crate) fn build(
        config: &Upstream,
        source: Arc<dyn ServerSource>,
        queue: Option<Arc<Queue>>,
        discovery: Option<Arc<Discovery>>,
    ) -> Result<UpstreamRt, BuildError> {
        // ALPN offers only the protocol the upstream speaks: HTTP/1.1 carries the client's Host
        // header unchanged; `h2` is refused by a server that cannot speak it.
        let alpn: &[&[u8]] = match config.protocol {
            Protocol::Http1 => &[b"http/1.1"],
            Protocol::H2 => &[b"h2"],
        };
        let (tls, server_name) = match &config.tls {
            Some(tls) => {
                let client = farmgate_tls::upstream_client_config(tls, alpn)?;
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
        let h2 = config.protocol == Protocol::H2;
        let connector = Connector::new(
            tls,
            server_name,
            config.timeouts.connect,
            h2,
            config.send_proxy,
        );
        let maker = ServerMaker::new(connector, config.protocol, config.timeouts.idle, source);
        let client_chain = match config.tls.as_ref().and_then(|t| t.client_cert.as_ref()) {
            Some(pair) => farmgate_tls::load::certificates(&pair.certificate)?,
            None => Vec::new(),
        };
        let (policy, hash_key) = match &config.balance {
            Balance::RoundRobin => (Policy::RoundRobin, None),
            Balance::LeastRequests => (Policy::LeastRequests, None),
            Balance::P2cEwma => (Policy::P2cEwma, None),
            Balance::Hash(key) => (Policy::Hash, Some(key.clone())),
        };
        let cap = config
            .max_connections_per_server
            .zip(queue)
            .map(|(max, queue)| Cap { max, queue });
        let cap_ref = cap.as_ref().map(|c| (&*c.queue, c.max));
        let (servers, discovery) = match (&config.discover, discovery) {
            (Some(_), Some(discovery)) => {
                // Servers come when the generation serves (`inherit`, then each answer).
                let empty = ArcSwap::from_pointee(ServerSet::empty(policy));
                (Servers::Discovered(empty), Some(discovery))
            }
            _ => (
                Servers::Listed(ServerSet::listed(&config.servers, policy, &maker, cap_ref)),
                None,
            ),
        };
        Ok(UpstreamRt {
            name: Arc::from(config.name.as_str()),
            servers,
            maker,
            hash_key,
            config: config.clone(),
            discovery,
            retry_budget: RetryBudget::default(),
            cap,
            response_seconds: OnceLock::new(),
            queue_metrics: OnceLock::new(),
            client_chain,
        })
    }

    /// The servers now.
    pub(crate) fn servers(&self) -> Snapshot<'_> {
        match &self.servers {
            Servers::Listed(set) => Snapshot::Listed(set),
            Servers::Discovered(set) => Snapshot::Discovered(set.load_full()),
        }
    }

    /// Serve `found` from now on (a discovered upstream; a listed one keeps its servers): the
    /// servers that stay keep their state (see `set`), the others are forgotten here and in
    /// what outlives generations once their requests end. Returns the new set.
    pub(crate) fn discovered(&self, found: &[Found]) -> Option<Arc<ServerSet>> {
        let Servers::Discovered(current) = &self.servers else {
            return None;
        };
        let cap = self.cap.as_ref().map(|c| (&*c.queue, c.max));
        let rise = self.config.health.as_ref().map(|h| h.rise);
        let next = Arc::new(current.load().successor(found, &self.maker, rise, cap));
        current.store(next.clone());
        let addresses = next.addresses();
        self.maker.source.keep(&addresses);
        if let Some(cap) = &self.cap {
            cap.queue.keep_servers(&addresses);
        }
        Some(next)
    }

    /// Take over the servers DNS last gave `old` (the same upstream in the running
    /// generation), if both discover them alike: the new generation starts where the old one
    /// is, with no window without servers. Each server is made anew for this generation (its
    /// connections follow this configuration) and takes over its health, as listed servers do.
    pub(crate) fn take_servers(&self, old: Option<&UpstreamRt>) {
        let (Servers::Discovered(current), Some(discovery)) = (&self.servers, &self.discovery)
        else {
            return;
        };
        let Some(discover) = &self.config.discover else {
            return;
        };
        discovery.ask(discover);
        let same = old
            .and_then(|old| old.config.discover.as_ref())
            .is_some_and(|d| d.asks_like(discover));
        let Some(answer) = discovery.last_good().filter(|_| same) else {
            return;
        };
        let cap = self.cap.as_ref().map(|c| (&*c.queue, c.max));
        // Health is taken over with the listed servers' (`Generation::inherit`).
        let set = current
            .load()
            .successor(&answer.servers, &self.maker, None, cap);
        current.store(Arc::new(set));
    }

    /// Connections opened to this upstream's servers so far.
    pub(crate) fn connections_opened(&self) -> u64 {
        self.maker.connector.opened()
    }

    /// Connections to this upstream's servers open now (in use or idle in the pool).
    pub(crate) fn connections_open(&self) -> i64 {
        self.maker.connector.open()
    }

    /// Close surplus idle connections to every server (see `pool`); returns how many.
    pub(crate) fn sweep_idle(&self) -> usize {
        self.servers()
            .servers
            .iter()
            .map(|s| match &s.conns {
                Conns::Http1(pool) => pool.sweep(),
                Conns::H2(multiplex) => multiplex.sweep(),
            })
            .sum()
    }

    /// Idle pooled connections to this upstream's servers.
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn idle_connections(&self) -> usize {
        self.servers()
            .servers
            .iter()
            .map(|s| match &s.conns {
                Conns::Http1(pool) => pool.idle(),
                Conns::H2(multiplex) => multiplex.connections(),
            })
            .sum()
    }

    /// Put this generation's `max_connections_per_server` on the slots it shares with the
    /// generations before it, and forget the slots of servers it no longer has. Called when
    /// it is swapped in, so that a generation that is never served changes nothing.
    pub(crate) fn apply_cap(&self) {
        let Some(cap) = &self.cap else {
            return;
        };
        let set = self.servers();
        for slots in &set.slots {
            slots.resize(cap.max);
        }
        cap.queue.keep_servers(&set.addresses());
    }

    /// Requests waiting for a free slot now (`None`: no `max_connections_per_server`).
    pub(crate) fn queued(&self) -> Option<usize> {
        self.cap.as_ref().map(|c| c.queue.waiting())
    }

    /// Requests answered `503` after `queue_timeout`, since start (`None`: no cap).
    pub(crate) fn queue_timeouts(&self) -> Option<u64> {
        self.cap.as_ref().map(|c| c.queue.timeouts())
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

    /// Send a request to a server chosen by the balancer among the healthy ones not drained.
    /// A request that can be replayed (no body, idempotent method) and fails before any
    /// response byte arrived is retried on another server, within the attempt limit and the
    /// retry budget.
    pub(crate) async fn dispatch(
        &self,
        request: Outgoing,
        key: Option<&[u8]>,
        metrics: &Metrics,
    ) -> Result<(Response<Body>, Served<'_>), UpstreamFailure> {
        let set = self.servers();
        if set.is_empty()
            && let Some(discover) = &self.config.discover
        {
            return Err(UpstreamFailure::NotResolved {
                upstream: self.name.clone(),
                lookup: discover.lookup.to_string(),
            });
        }
        let replayable = request.body.is_none() && send::is_idempotent(&request.parts.method);
        self.retry_budget.deposit();
        let Outgoing {
            parts: mut head,
            mut body,
        } = request;
        match self.config.protocol {
            Protocol::Http1 => origin_form(&mut head.uri),
            Protocol::H2 => h2_form(&mut head, self.config.tls.is_some()),
        }
        let attempts = MAX_ATTEMPTS.min(set.servers.len());
        let mut tried = [usize::MAX; MAX_ATTEMPTS];
        let now = health::now_ms();
        let mut attempt = 0;
        let mut last_failure = None;
        loop {
            let picked = match &self.cap {
                None => set
                    .balancer
                    .pick(key, |i| {
                        set.servers[i].takes_requests(now) && !tried.contains(&i)
                    })
                    .map(|ticket| (ticket, None)),
                // Only the first attempt waits for a slot; a retry takes one at once or is
                // not made.
                Some(cap) => self
                    .slot(&set, cap, key, &tried, attempt == 0, metrics)
                    .await?
                    .map(|(ticket, slot)| (ticket, Some(slot))),
            };
            let Some((ticket, slot)) = picked else {
                // With nothing left to retry on, the client hears about the real failure.
                return Err(
                    last_failure.unwrap_or_else(|| UpstreamFailure::NoHealthyServer {
                        upstream: self.name.clone(),
                    }),
                );
            };
            let chosen = ticket.server();
            tried[attempt] = chosen;
            let server = &set.servers[chosen];
            attempt += 1;
            if !(replayable && attempt < attempts) {
                // The last possible attempt (the only one, for most requests) takes the head
                // instead of a copy.
                // Extensions belong to the downstream connection, not to this request; but
                // an extended CONNECT's `:protocol` (RFC 8441) is the request's own.
                let protocol = head.extensions.remove::<hyper::ext::Protocol>();
                head.extensions.clear();
                if let Some(protocol) = protocol {
                    head.extensions.insert(protocol);
                }
                let req = Request::from_parts(head, body.take().unwrap_or_default());
                let sent = self
                    .attempt(&set, server, ticket, slot, req, None, metrics)
                    .await;
                return sent.map(|response| (response, set.served(chosen)));
            }
            let sent = self
                .attempt(
                    &set,
                    server,
                    ticket,
                    slot,
                    replay(&head),
                    Some(&head),
                    metrics,
                )
                .await;
            let failure = match sent {
                Ok(response) => return Ok((response, set.served(chosen))),
                Err(failure) => failure,
            };
            if !(failure.retryable() && self.withdraw_retry()) {
                return Err(failure);
            }
            metrics.retry(&self.name);
            tracing::info!(upstream = %self.name, server = %server.address, "retrying on another server: {}", Chain(&failure));
            last_failure = Some(failure);
        }
    }

    /// A server for the next attempt, with a free slot on it, among the healthy servers not
    /// `tried` yet: at once if one has a free slot and no request waits before this one, else,
    /// if `may_wait`, after waiting in the upstream's queue (see `queue`). `None`: no server
    /// can take it (or, for a retry, none has a free slot now).
    async fn slot<'a>(
        &self,
        set: &'a ServerSet,
        cap: &Cap,
        key: Option<&[u8]>,
        tried: &[usize],
        may_wait: bool,
        metrics: &Metrics,
    ) -> Result<Option<(Ticket<'a>, Slot)>, UpstreamFailure> {
        if !may_wait || cap.queue.is_empty() {
            match self.take_slot(set, key, tried) {
                Take::Got(got) => return Ok(Some(got)),
                Take::Full if may_wait => {}
                Take::Full | Take::NoServer => return Ok(None),
            }
        }
        let queue_metrics = self.queue_metrics.get_or_init(|| {
            let (waiting, seconds, timeouts) = metrics.queue(&self.name);
            QueueMetrics {
                waiting,
                seconds,
                timeouts,
            }
        });
        let started = Instant::now();
        let timeout = self.config.queue_timeout;
        let waited = cap
            .queue
            .wait(timeout, &queue_metrics.waiting, || {
                self.take_slot(set, key, tried)
            })
            .await;
        queue_metrics.seconds.observe(started.elapsed());
        match waited {
            Ok(Take::Got(got)) => Ok(Some(got)),
            Ok(Take::Full | Take::NoServer) => Ok(None),
            Err(_timed_out) => {
                queue_metrics.timeouts.inc();
                cap.queue.log_timeout(&self.name, cap.max, timeout);
                Err(UpstreamFailure::QueueTimeout {
                    upstream: self.name.clone(),
                    cap: cap.max,
                    after: timeout,
                })
            }
        }
    }

    /// One look for a healthy server not `tried` yet with a free slot, chosen by the balancer
    /// among those that have one; the slot taken with it.
    fn take_slot<'a>(
        &self,
        set: &'a ServerSet,
        key: Option<&[u8]>,
        tried: &[usize],
    ) -> Take<(Ticket<'a>, Slot)> {
        let now = health::now_ms();
        let can_take = |i: usize| set.servers[i].takes_requests(now) && !tried.contains(&i);
        // Another request may take the last slot between the pick and the take: pick again,
        // as many times as there are servers at most.
        for _ in 0..set.servers.len() {
            let Some(ticket) = set
                .balancer
                .pick(key, |i| can_take(i) && set.slots[i].has_room())
            else {
                break;
            };
            if let Some(slot) = set.slots[ticket.server()].try_take() {
                return Take::Got((ticket, slot));
            }
        }
        if (0..set.servers.len()).any(can_take) {
            Take::Full
        } else {
            Take::NoServer
        }
    }

    /// One attempt on `server`, its outcome counted: passive health, the balancer's ticket,
    /// response time or error metrics. A response counts in flight on `server`, and keeps
    /// `slot`, until its body ends; a failed attempt gives both back.
    #[allow(clippy::too_many_arguments)] // one attempt's whole context, used once each
    async fn attempt(
        &self,
        set: &ServerSet,
        server: &ServerRt,
        ticket: Ticket<'_>,
        slot: Option<Slot>,
        req: Request<Body>,
        kept: Option<&http::request::Parts>,
        metrics: &Metrics,
    ) -> Result<Response<Body>, UpstreamFailure> {
        let in_flight = server.drain.enter();
        let started = Instant::now();
        let sent = self.send(server, req, kept).await;
        let elapsed = started.elapsed();
        if let Err(failure) = &sent
            && !failure.server_at_fault()
        {
            // The client's body failed: nothing to count against the server.
            ticket.finish(elapsed, false);
            return sent;
        }
        server
            .stats
            .record(sent.as_ref().map(Response::status), elapsed);
        match &sent {
            Ok(response) => {
                let failed = response.status().is_server_error();
                self.observe(set, server, failed);
                ticket.finish(elapsed, failed);
                self.response_seconds
                    .get_or_init(|| metrics.upstream_seconds(&self.name))
                    .observe(elapsed);
            }
            Err(failure) => {
                self.observe(set, server, true);
                ticket.finish(elapsed, true);
                metrics.upstream_error(&self.name, failure.label());
            }
        }
        sent.map(|mut response| {
            response.body_mut().count(in_flight);
            match slot {
                Some(slot) => response.map(|body| Body::held(body, slot)),
                None => response,
            }
        })
    }

    fn withdraw_retry(&self) -> bool {
        let granted = self.retry_budget.withdraw();
        if !granted {
            tracing::warn!(upstream = %self.name, "retry budget exhausted: not retrying, so a failing farm is not amplified");
        }
        granted
    }

    /// Passive health: count the outcome against the server. Drained servers count as out
    /// already, so that ejection never empties what the operator left in rotation.
    fn observe(&self, set: &ServerSet, server: &ServerRt, failed: bool) {
        if !failed {
            server.health.success();
            return;
        }
        let now = health::now_ms();
        let out = set
            .servers
            .iter()
            .filter(|s| !s.takes_requests(now))
            .count();
        let may_eject = (out + 1) * 2 <= set.servers.len();
        if let Passive::Ejected(length) = server.health.failure(now, may_eject) {
            tracing::warn!(upstream = %self.name, server = %server.address, "server ejected for {}: {} failures in a row", Seconds(length), health::EJECT_AFTER);
        }
    }

    /// Send `req` (its URI in origin form) to `server` over a pooled connection; `kept` is a
    /// head the caller keeps anyway, to build the request again from if the pool must resend it.
    pub(crate) async fn send(
        &self,
        server: &ServerRt,
        req: Request<Body>,
        kept: Option<&http::request::Parts>,
    ) -> Result<Response<Body>, UpstreamFailure> {
        let wait = self.config.timeouts.response_header;
        let sent = async {
            match &server.conns {
                Conns::Http1(pool) => pool
                    .send(req, kept)
                    .await
                    .map(|r| r.map(|b| Body::Pooled(b, None))),
                Conns::H2(multiplex) => multiplex
                    .send(req, kept)
                    .await
                    .map(|r| r.map(|b| Body::Multiplexed(b, None))),
            }
        };
        match tokio::time::timeout(wait, sent).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(SendError::Connect(e))) => Err(UpstreamFailure::connect(e, &server.address)),
            Ok(Err(SendError::Http(e))) => Err(UpstreamFailure::exchange(e, &server.address)),
            Err(_) => Err(UpstreamFailure::ResponseTimeout {
                server: server.address.clone(),
                after: wait,
            }),
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

/// HTTP/2 requests carry scheme and authority in the URI (`:scheme`, `:authority`), the
/// authority being the client's Host, which then goes: RFC 9113 §8.3.1.
fn h2_form(head: &mut http::request::Parts, tls: bool) {
    let authority = head
        .headers
        .remove(http::header::HOST)
        .and_then(|host| Authority::try_from(host.as_bytes()).ok())
        .or_else(|| head.uri.authority().cloned());
    let path = head
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(if tls { Scheme::HTTPS } else { Scheme::HTTP });
    parts.authority = authority;
    parts.path_and_query = Some(path);
    if let Ok(uri) = Uri::from_parts(parts) {
        head.uri = uri;
    }
    head.version = Version::HTTP_2;
}

/// A copy of a body-less request, for one attempt.
fn replay(parts: &http::request::Parts) -> Request<Body> {
    send::from_head(parts)
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
