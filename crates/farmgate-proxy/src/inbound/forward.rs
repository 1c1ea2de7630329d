//! One request through the proxy: route it, rewrite its headers, send it to a backend, and
//! answer failures with the right status and a log line that says why.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use farmgate_acme::HTTP01_PREFIX;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use crate::outbound::{
    Body, Chain, ClientBody, ClientBodyError, Outgoing, Relayed, holding, relaying,
};

use super::access::{Record, ResponseBody};
use super::client::{ConnInfo, View};
use super::clients::Limit;
use super::failure::{Failure, Fault};
use super::headers;
use super::strict;
use super::upgrade::{self, Asked, Tunnel};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// What forwarding one request learned along the way, for logs and metrics.
#[derive(Debug, Default)]
struct Exchange {
    /// Index of the route taken.
    route: Option<usize>,
    host: Option<String>,
    upstream: Option<Arc<str>>,
    server: Option<Arc<str>>,
    upstream_time: Option<Duration>,
    /// Request body bytes, counted when the access log is on.
    bytes_in: Option<Arc<AtomicU64>>,
}

/// hyper's service function: never fails, failures become responses.
pub(crate) async fn handle(
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
) -> Result<Response<ResponseBody>, Infallible> {
    let started = Instant::now();
    // The configuration current now serves this request to its response head, whatever
    // reloads come meanwhile (docs/architecture.md, "A request's path").
    let view = conn.view();
    conn.served();
    let access = view.generation.config().log.access;
    let version = req.version();
    // Cheap clones (an enum and a reference-counted URI), kept for the log lines.
    let method = req.method().clone();
    let target = req.uri().clone();
    let mut exchange = Exchange {
        bytes_in: access.then(|| Arc::new(AtomicU64::new(0))),
        ..Exchange::default()
    };
    let result = forward(req, &conn, &view, started, &mut exchange).await;
    let response = match result {
        Ok(response) => response,
        Err(failure) => {
            let upstream = exchange.upstream.as_deref().unwrap_or("-");
            let identity = conn.verified().map_or("-", |c| c.name.as_str());
            let path = target.path();
            let status = failure.status().as_u16();
            match failure.fault() {
                Fault::Downstream | Fault::Saturated => tracing::debug!(
                    listener = %view.listener.name, client = %conn.peer, %method, %path, %upstream, status,
                    "{}", Chain(&failure)
                ),
                Fault::Upstream | Fault::Internal => tracing::warn!(
                    listener = %view.listener.name, client = %conn.peer, %identity, %method, %path, %upstream, status,
                    "{}", Chain(&failure)
                ),
            }
            if failure.closes_connection() {
                // The client may still be sending what we will not read.
                conn.meter.linger_on_close();
            }
            error_response(&failure)
        }
    };
    let mut response = response;
    view.listener
        .rules
        .response(exchange.route, response.headers_mut());
    if sends_keep_alive(version, response.status()) {
        // How long this connection stays open between requests, so that a pool in front of
        // us never sends on a connection we are closing (docs/operations.md, "The idle race").
        response
            .headers_mut()
            .insert(KEEP_ALIVE, view.listener.keep_alive.clone());
    }
    if conn.closing() {
        // A reload asked this connection to end after this response: HTTP/1.1 says so in
        // the response (hyper then closes it); HTTP/2 with GOAWAY, from the watcher.
        if version == Version::HTTP_2 {
            conn.finish.notify_one();
        } else {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    let status = response.status().as_u16();
    view.listener
        .route_metrics(exchange.route, &conn.shared.metrics)
        .record(status, started.elapsed());
    if !access {
        return Ok(response.map(ResponseBody::Plain));
    }
    let record = Record {
        listener: view.listener.name.clone(),
        client: conn.peer,
        identity: conn.verified().map(|c| c.name.clone()),
        method,
        host: exchange.host.unwrap_or_default(),
        target,
        status,
        upstream: exchange.upstream,
        server: exchange.server,
        upstream_time: exchange.upstream_time,
        started,
        bytes_in: exchange.bytes_in.unwrap_or_default(),
        tls: conn.tls.clone(),
    };
    Ok(response.map(|body| ResponseBody::logged(body, record)))
}

async fn forward(
    mut req: Request<Incoming>,
    conn: &Arc<ConnInfo>,
    view: &Arc<View>,
    started: Instant,
    exchange: &mut Exchange,
) -> Result<Response<Body>, Failure> {
    let limits = &view.listener.config.limits;
    if let Some(rate) = limits.requests_per_client {
        let counted = &conn.counted;
        counted
            .clients()
            .check_rate(counted.key(), rate)
            .map_err(Failure::TooManyRequests)?;
    }
    strict::check(&req).map_err(Failure::Strict)?;
    if let Some(max) = limits.max_request_body
        && http_body::Body::size_hint(req.body()).lower() > max
    {
        // Content-Length says it all: refused before a byte of it is read or forwarded.
        conn.counted.clients().refused(Limit::RequestBody);
        return Err(Failure::BodyTooLarge { limit: max });
    }
    let version = req.version();
    let opening = match upgrade::asked(&mut req) {
        Asked::Nothing => None,
        Asked::WebSocket(opening) => Some(opening),
        Asked::Refused(what) => return Err(Failure::Upgrade(what)),
    };
    if let Some(Err(unusable)) = &conn.client {
        return Err(Failure::Identity(unusable.clone()));
    }
    // ACME http-01 validations arrive on plain-HTTP listeners, before any redirect or route.
    if view.listener.tls.is_none()
        && let Some(token) = req.uri().path().strip_prefix(HTTP01_PREFIX)
        && let Some(answer) = view.generation.acme().http01(token).await
    {
        tracing::debug!(listener = %view.listener.name, client = %conn.peer, "answered an http-01 validation");
        return Ok(challenge_answer(&answer));
    }
    let authority = authority(&req).ok_or(Failure::NoHost)?;
    // `authority` holds visible ASCII only (checked by `authority()`).
    let host = host_of(authority.to_str().unwrap_or_default());
    if exchange.bytes_in.is_some() {
        exchange.host = Some(authority.to_str().unwrap_or_default().to_owned());
    }
    if view.listener.config.redirect_https {
        return Ok(redirect(&host, &req));
    }
    let (index, route) = view
        .listener
        .route(&host, req.uri().path())
        .ok_or_else(|| Failure::NoRoute {
            host: host.to_string(),
            path: req.uri().path().to_owned(),
        })?;
    exchange.route = Some(index);
    let upstream = view.generation.upstream(route.upstream);
    exchange.upstream = Some(upstream.name.clone());

    let trusted = headers::trusts(conn, &view.listener.config);
    let tls = view.listener.tls.is_some();
    let kept = headers::rewrite_request(&mut req, conn, tls, &authority, trusted);
    // A gate's edges are trusted by their certificate; anyone else by trusted_proxies.
    if kept && conn.verified().is_none() {
        view.listener.count_forwarded_kept(&conn.shared.metrics);
    }
    view.listener.rules.request(index, req.headers_mut());
    let (mut parts, body) = req.into_parts();
    // A WebSocket's bytes go through the tunnel, never as a body.
    let sent = opening
        .as_ref()
        .map(|o| o.outgoing(&mut parts, upstream.config.protocol));
    let body = (opening.is_none() && !http_body::Body::is_end_stream(&body)).then(|| {
        let within = view.listener.config.timeouts.request_body;
        let count = exchange.bytes_in.clone();
        Body::Client(ClientBody::new(
            body,
            limits.max_request_body,
            started,
            within,
            count,
        ))
    });
    // The client's address as text was formatted once per connection (`peer_ip`).
    let key = upstream
        .hash_key(&parts, conn.peer_ip.as_bytes())
        .map(|k| k.into_owned());
    let outgoing = Outgoing { parts, body };
    let started = Instant::now();
    let metrics = &conn.shared.metrics;
    // Each arm makes its own dispatch future: one made before the `match` would be kept in
    // this future beside the one awaited, and copied into it, on every request.
    let dispatched = match upstream.config.send_proxy {
        None => upstream.dispatch(outgoing, key.as_deref(), metrics).await,
        // The connections it opens name this client in their PROXY header.
        Some(_) => {
            let relayed = Relayed {
                client: conn.peer,
                destination: conn.local,
                connection: conn.id,
            };
            relaying(
                relayed,
                upstream.dispatch(outgoing, key.as_deref(), metrics),
            )
            .await
        }
    };
    let (mut response, server) = dispatched.map_err(|failure| {
        let limit = match failure.client_body() {
            Some(ClientBodyError::TooLarge { .. }) => Some(Limit::RequestBody),
            Some(ClientBodyError::TooSlow { .. }) => Some(Limit::RequestBodyTime),
            _ => None,
        };
        if let Some(limit) = limit {
            conn.counted.clients().refused(limit);
        }
        Failure::from(failure)
    })?;
    exchange.upstream_time = Some(started.elapsed());
    exchange.server = Some(server.address.clone());
    if let (Some(opening), Some(sent)) = (opening, sent)
        && sent.accepted(&response)
    {
        // The tunnel holds the server's slot (max_connections_per_server) while it is open.
        let slot = response.body_mut().take_slot();
        let (ours, on_client, on_server) = opening.accept(response);
        let tunnel = Tunnel {
            view: view.clone(),
            idle: upstream.config.timeouts.tunnel_idle,
            open: conn.shared.metrics.tunnels_open(&upstream.name),
            stopping: conn.shared.stopping.subscribe(),
            reloaded: conn.shared.reloaded.subscribe(),
            conn: conn.clone(),
        };
        conn.shared
            .connections
            .spawn(holding(slot, tunnel.run(on_client, on_server)));
        return Ok(ours);
    }
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        // Passed on, it would switch the client's connection to something nobody checked.
        return Err(Failure::UnexpectedSwitch {
            server: server.address.clone(),
        });
    }
    let (mut parts, body) = response.into_parts();
    let onward = headers::Onward {
        http1: version != Version::HTTP_2,
        own_keep_alive: sends_keep_alive(version, parts.status),
    };
    headers::rewrite_response(&mut parts.headers, onward);
    Ok(Response::from_parts(parts, body))
}

/// Whether a response with `status` to a request of `version` carries the listener's
/// `Keep-Alive` (HTTP/1.x, and not a `101`, after which the connection is a tunnel).
fn sends_keep_alive(version: Version, status: StatusCode) -> bool {
    version != Version::HTTP_2 && status != StatusCode::SWITCHING_PROTOCOLS
}

/// The request's authority: `:authority` (HTTP/2, absolute-form) or the Host header, as a
/// header value of visible ASCII. The Host header's value is shared, not copied.
fn authority<B>(req: &Request<B>) -> Option<HeaderValue> {
    if let Some(a) = req.uri().authority() {
        return HeaderValue::from_str(a.as_str()).ok();
    }
    req.headers()
        .get(header::HOST)
        .filter(|h| h.to_str().is_ok_and(|h| !h.is_empty()))
        .cloned()
}

/// The host part of an authority, lower-case, without port or IPv6 brackets; borrowed when
/// the authority has it that way already, as it nearly always does.
fn host_of(authority: &str) -> Cow<'_, str> {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                authority
            }
        }),
    };
    let host = host.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

fn redirect<B>(host: &str, req: &Request<B>) -> Response<Body> {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{host}{path}");
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// The key authorization an ACME server expects for an http-01 token (RFC 8555 §8.3).
fn challenge_answer(key_authorization: &str) -> Response<Body> {
    let mut response = Response::new(Body::text(key_authorization.to_owned()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

fn error_response(failure: &Failure) -> Response<Body> {
    let status = failure.status();
    let reason = status.canonical_reason().unwrap_or("Error");
    let mut response = Response::new(Body::text(format!("{} {reason}\n", status.as_u16())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(wait) = failure.retry_after() {
        // Whole seconds, rounded up: a client that waits that long is let through.
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    if failure.closes_connection() {
        // A request we could not read safely, or whose body we did not read to its end,
        // leaves the connection in an unknown state.
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_without_port() {
        assert_eq!(host_of("WWW.Example.com:8443"), "www.example.com");
        assert_eq!(host_of("example.com"), "example.com");
        assert_eq!(host_of("[::1]:8443"), "::1");
        assert_eq!(host_of("example.com."), "example.com");
    }
}
