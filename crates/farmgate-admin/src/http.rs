//! The admin HTTP server: `/metrics`, `/status`, `/healthz` and the dashboard at `/`, and the
//! servers' rotation: `GET /upstreams`, `POST /upstreams/NAME/servers/ADDR/drain` and
//! `.../undrain`.
//!
//! Everything but `/healthz` and the dashboard page is guarded by the bearer token when one is
//! configured (see [`crate::auth`]); the page is static and holds no data, and a browser cannot
//! add a header to a navigation, so it is served to anyone and asks for the token itself when
//! `/status` answers `401`. A drain from a browser (a `POST` with `Origin`) needs the token even
//! on loopback, so that no web page can drain servers through the operator's browser.
//! HTTP/1.1 only, with a deadline for each request head, an idle timeout and a cap on
//! connections, so slow or idle clients cannot hold it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::auth::{self, Refusal, Refusals};
use crate::idle::Idle;
use crate::throttle::{Throttle, unlogged};
use crate::{Metrics, Token};

/// What the admin endpoint shows, and to whom.
pub struct Admin {
    /// The registry behind `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Builds the `/status` document on each request.
    pub status: Box<dyn Fn() -> serde_json::Value + Send + Sync>,
    /// The bearer token in force, asked on each request so that a reload can change it.
    /// `None` (no `token_file`): open on loopback, closed to everything else.
    pub token: Box<dyn Fn() -> Option<Arc<Token>> + Send + Sync>,
    /// Builds the `GET /upstreams` document on each request: each upstream's servers and
    /// whether they take requests.
    pub upstreams: Box<dyn Fn() -> serde_json::Value + Send + Sync>,
    /// Drains or undrains a server; `None` when the upstream or the server does not exist.
    /// The answer is the server's new state.
    pub drain: Box<Drain>,
    /// How long and how many clients may hold the endpoint.
    pub limits: Limits,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Drains or undrains a server (see [`Admin::drain`]).
pub type Drain = dyn Fn(&DrainRequest<'_>) -> Option<serde_json::Value> + Send + Sync;

/// A drain or an undrain the admin endpoint was asked for, its path decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainRequest<'a> {
    /// The upstream's name.
    pub upstream: &'a str,
    /// The server's address, as `/status` and `/upstreams` show it.
    pub server: &'a str,
    /// Out of rotation, or back in.
    pub action: DrainAction,
    /// Who asked: the admin client's address, for the log.
    pub by: SocketAddr,
}

/// Out of rotation, or back in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainAction {
    /// Take no new requests; those in flight finish.
    Drain,
    /// Take requests again (subject to health).
    Undrain,
}

impl DrainAction {
    /// The last segment of its path, and its metric label: `drain` or `undrain`.
    pub fn as_str(self) -> &'static str {
        match self {
            DrainAction::Drain => "drain",
            DrainAction::Undrain => "undrain",
        }
    }

    fn from_path(segment: &str) -> Option<DrainAction> {
        [DrainAction::Drain, DrainAction::Undrain]
            .into_iter()
            .find(|a| a.as_str() == segment)
    }
}

/// How long and how many clients may hold the admin endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest a client may take to send a request head, counted from the moment the server
    /// waits for it: on a kept-alive connection also the longest wait for the next request.
    pub request_header: Duration,
    /// Longest a connection may go with no byte moving either way (e.g. a client that stopped
    /// reading a response).
    pub idle: Duration,
    /// Connections served at once; beyond, new ones wait in the kernel's backlog.
    pub max_connections: usize,
}

impl Default for Limits {
    /// 10 s for a request head, 60 s idle, 64 connections.
    fn default() -> Self {
        Limits {
            request_header: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            max_connections: 64,
        }
    }
}

/// The dashboard served at `/`: one self-contained page that renders `/status` every 2 s with
/// its `farmgate.render(status)` function, and asks for the token when `/status` answers `401`.
pub const DASHBOARD: &str = include_str!("dashboard.html");

/// How long to wait after a failed accept (e.g. out of file descriptors) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serve the admin endpoint on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, mut stop: watch::Receiver<bool>) {
    // Without a token only loopback is open; an address we cannot learn counts as the world.
    let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    let served = Arc::new(Served {
        admin,
        loopback,
        refusals: Refusals::default(),
    });
    let slots = Arc::new(Semaphore::new(served.admin.limits.max_connections));
    let accept_failures = Throttle::default();
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return, // closed: never, the semaphore is ours
            },
            _ = stop.changed() => return,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    if let Some(n) = accept_failures.admit() {
                        tracing::warn!("admin endpoint: accept failed: {e}{}", unlogged(n));
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                        _ = stop.changed() => return,
                    }
                }
            },
            _ = stop.changed() => return,
        };
        let served = served.clone();
        tokio::spawn(async move {
            let limits = served.admin.limits;
            let service = service_fn(move |req| {
                let served = served.clone();
                async move { Ok::<_, Infallible>(served.answer(&req, peer)) }
            });
            let io = TokioIo::new(Idle::new(tcp, limits.idle));
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.request_header)
                .serve_connection(io, service)
                .await;
            drop(slot);
        });
    }
}

/// What every connection of one admin endpoint shares.
struct Served {
    admin: Arc<Admin>,
    /// Whether the endpoint listens on a loopback address.
    loopback: bool,
    refusals: Refusals,
}

impl Served {
    fn answer(&self, req: &Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        // The load balancer's probe, and the page that holds no data, need no token.
        if path != "/healthz" && path != "/" {
            let token = (self.admin.token)();
            let checked = auth::check(req.headers(), token.as_deref(), self.loopback)
                .and_then(|()| auth::check_browser(req, token.is_some()));
            if let Err(refusal) = checked {
                let what = format!("{} {path}", req.method());
                self.refusals
                    .note(&self.admin.metrics, refusal, &what, peer);
                return refused(refusal);
            }
        }
        route(req, &self.admin, peer)
    }
}

/// The answer to a refused request: `401` with its challenge, or `403`.
fn refused(refusal: Refusal) -> Response<Full<Bytes>> {
    let mut response = reply(
        refusal.status(),
        "text/plain; charset=utf-8",
        format!("{}\n", refusal.words()),
    );
    if let Some(challenge) = refusal.challenge() {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static(challenge),
        );
    }
    response
}

fn route(req: &Request<Incoming>, admin: &Admin, peer: SocketAddr) -> Response<Full<Bytes>> {
    if let Some(rest) = req.uri().path().strip_prefix("/upstreams/") {
        return control(req, rest, admin, peer);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return not_allowed("GET, HEAD");
    }
    match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            admin.metrics.encode(),
        ),
        "/status" => json((admin.status)()),
        "/upstreams" => json((admin.upstreams)()),
        "/healthz" => reply(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
        "/" => reply(StatusCode::OK, "text/html; charset=utf-8", DASHBOARD.into()),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /metrics, /status, /upstreams, /healthz or /\n".into(),
        ),
    }
}

/// `POST /upstreams/NAME/servers/ADDR/drain` or `.../undrain`, `rest` being the path after
/// `/upstreams/`. NAME and ADDR may be percent-encoded (`%5B%3A%3A1%5D%3A8443` for
/// `[::1]:8443`) or not.
fn control(
    req: &Request<Incoming>,
    rest: &str,
    admin: &Admin,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let not_found = |why: String| reply(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", why);
    let segments: Vec<&str> = rest.split('/').collect();
    let [upstream, "servers", server, action] = segments[..] else {
        return not_found(
            "not found: POST /upstreams/NAME/servers/ADDR/drain or /undrain; GET /upstreams \
             lists them\n"
                .into(),
        );
    };
    let Some(action) = DrainAction::from_path(action) else {
        return not_found(format!(
            "not found: {action:?} is neither drain nor undrain\n"
        ));
    };
    if req.method() != Method::POST {
        return not_allowed("POST");
    }
    let (Some(upstream), Some(server)) = (decoded(upstream), decoded(server)) else {
        return reply(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            "the upstream's name and the server's address must be UTF-8, percent-encoded or not\n"
                .into(),
        );
    };
    let asked = DrainRequest {
        upstream: &upstream,
        server: &server,
        action,
        by: peer,
    };
    match (admin.drain)(&asked) {
        Some(answer) => json(answer),
        None => not_found(format!(
            "not found: no server {server} in an upstream {upstream}; GET /upstreams lists them \
             as they must be written\n"
        )),
    }
}

/// A path segment, percent-decoded.
fn decoded(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

fn json(value: serde_json::Value) -> Response<Full<Bytes>> {
    let text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| "{}".into());
    reply(StatusCode::OK, "application/json", text + "\n")
}

/// `405`, naming the methods `allow`ed.
fn not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = reply(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain; charset=utf-8",
        format!("{allow} only\n"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    response
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}
