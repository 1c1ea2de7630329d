//! One request through the proxy: route it, rewrite its headers, send it to a backend, and
//! answer failures with the right status and a log line that says why.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use farmgate_admin::Metrics;

use farmgate_acme::HTTP01_PREFIX;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use crate::access::{self, TlsInfo};
use crate::body::{Body, Logged};
use crate::error::{Failure, Fault};
use crate::generation::Generation;
use crate::listener::ListenerRt;
use crate::upstream::Outgoing;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
const CLIENT_CERT: HeaderName = HeaderName::from_static("client-cert");
const CLIENT_CERT_CHAIN: HeaderName = HeaderName::from_static("client-cert-chain");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// The verified client of a gate connection, as headers for the application.
#[derive(Debug)]
pub(crate) struct ClientHeaders {
    /// Short name for logs.
    pub(crate) name: String,
    /// Envoy `x-forwarded-client-cert`.
    pub(crate) xfcc: HeaderValue,
    /// RFC 9440 `Client-Cert`.
    pub(crate) client_cert: HeaderValue,
}

/// What every request on one connection shares.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub(crate) generation: Arc<Generation>,
    pub(crate) listener: Arc<ListenerRt>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) peer: SocketAddr,
    pub(crate) peer_ip: HeaderValue,
    /// The verified client certificate's identity, on a gate.
    pub(crate) client: Option<ClientHeaders>,
    /// TLS parameters, for the access log.
    pub(crate) tls: Option<Arc<TlsInfo>>,
}

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
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let access = conn.generation.config().log.access;
    // Cheap clones (an enum and a reference-counted URI), kept for the log lines.
    let method = req.method().clone();
    let target = req.uri().clone();
    let mut exchange = Exchange {
        bytes_in: access.then(|| Arc::new(AtomicU64::new(0))),
        ..Exchange::default()
    };
    let result = forward(req, &conn, &mut exchange).await;
    let response = match result {
        Ok(response) => response,
        Err(failure) => {
            let upstream = exchange.upstream.as_deref().unwrap_or("-");
            let identity = conn.client.as_ref().map_or("-", |c| c.name.as_str());
            let path = target.path();
            match failure.fault {
                Fault::Downstream => tracing::debug!(
                    listener = %conn.listener.name, client = %conn.peer, %method, %path, status = failure.status.as_u16(),
                    "{}", failure.cause
                ),
                Fault::Upstream | Fault::Internal => tracing::warn!(
                    listener = %conn.listener.name, client = %conn.peer, %identity, %method, %path, %upstream, status = failure.status.as_u16(),
                    "{}", failure.cause
                ),
            }
            error_response(&failure)
        }
    };
    let status = response.status().as_u16();
    conn.listener
        .route_metrics(exchange.route, &conn.metrics, &conn.generation)
        .record(status, started.elapsed());
    if !access {
        return Ok(response);
    }
    let record = access::Record {
        listener: conn.listener.name.clone(),
        client: conn.peer,
        identity: conn.client.as_ref().map(|c| c.name.clone()),
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
    let (parts, body) = response.into_parts();
    let logged = Body::Logged(Box::new(Logged::new(body, record)));
    Ok(Response::from_parts(parts, logged))
}

async fn forward(
    mut req: Request<Incoming>,
    conn: &ConnInfo,
    exchange: &mut Exchange,
) -> Result<Response<Body>, Failure> {
    crate::strict::check(&req)
        .map_err(|why| Failure::bad_request(format!("refused request: {why}")))?;
    // ACME http-01 validations arrive on plain-HTTP listeners, before any redirect or route.
    if conn.listener.tls.is_none()
        && let Some(token) = req.uri().path().strip_prefix(HTTP01_PREFIX)
        && let Some(answer) = conn.generation.acme().http01(token).await
    {
        tracing::debug!(listener = %conn.listener.name, client = %conn.peer, "answered an http-01 validation");
        return Ok(challenge_answer(&answer));
    }
    let authority =
        authority(&req).ok_or_else(|| Failure::bad_request("request has no host".into()))?;
    // `authority` holds visible ASCII only (checked by `authority()`).
    let host = host_of(authority.to_str().unwrap_or_default());
    if exchange.bytes_in.is_some() {
        exchange.host = Some(authority.to_str().unwrap_or_default().to_owned());
    }
    if conn.listener.config.redirect_https {
        return Ok(redirect(&host, &req));
    }
    let (index, route) = conn
        .listener
        .config
        .routes
        .iter()
        .enumerate()
        .find(|(_, r)| r.matches(&host, req.uri().path()))
        .ok_or_else(|| {
            Failure::not_found(format!(
                "no route for host {host:?} path {:?}",
                req.uri().path()
            ))
        })?;
    exchange.route = Some(index);
    let upstream = conn.generation.upstream(route.upstream);
    exchange.upstream = Some(upstream.name.clone());

    rewrite_request(&mut req, conn, &authority);
    let (parts, body) = req.into_parts();
    let body = (!http_body::Body::is_end_stream(&body)).then(|| match &exchange.bytes_in {
        Some(count) => Body::Counted(body, count.clone()),
        None => Body::Stream(body),
    });
    // The client's address as text was formatted once per connection (`peer_ip`).
    let key = upstream
        .hash_key(&parts, conn.peer_ip.as_bytes())
        .map(|k| k.into_owned());
    let outgoing = Outgoing { parts, body };
    let sent = Instant::now();
    let (response, server) = upstream
        .dispatch(outgoing, key.as_deref(), &conn.metrics)
        .await?;
    exchange.upstream_time = Some(sent.elapsed());
    exchange.server = Some(server.address.clone());
    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, body))
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

fn rewrite_request(req: &mut Request<Incoming>, conn: &ConnInfo, authority: &HeaderValue) {
    let version = req.version();
    let tls = conn.listener.tls.is_some();
    let headers = req.headers_mut();
    let present = Present::scan(headers);
    present.remove_hop_by_hop(headers);

    // Only a verified peer (a gate's authenticated client, i.e. the edge) may tell us who it
    // forwarded for; anyone else's claims are replaced.
    let trusted = conn.client.is_some();
    let prior = if trusted && present.forwarded_for {
        headers.get(&X_FORWARDED_FOR)
    } else {
        None
    };
    let xff = match prior {
        Some(prior) => {
            let mut v = prior.as_bytes().to_vec();
            v.extend_from_slice(b", ");
            v.extend_from_slice(conn.peer_ip.as_bytes());
            HeaderValue::from_bytes(&v).unwrap_or_else(|_| conn.peer_ip.clone())
        }
        None => conn.peer_ip.clone(),
    };
    headers.insert(X_FORWARDED_FOR, xff);
    if !(trusted && present.forwarded_proto) {
        let proto = HeaderValue::from_static(if tls { "https" } else { "http" });
        headers.insert(X_FORWARDED_PROTO, proto);
    }
    if !(trusted && present.forwarded_host) {
        headers.insert(X_FORWARDED_HOST, authority.clone());
    }

    // Identity headers are ours alone: drop what the client sent, set the verified identity.
    if present.identity {
        headers.remove(&X_FORWARDED_CLIENT_CERT);
        headers.remove(&CLIENT_CERT);
        headers.remove(&CLIENT_CERT_CHAIN);
    }
    if let Some(client) = &conn.client {
        headers.insert(X_FORWARDED_CLIENT_CERT, client.xfcc.clone());
        headers.insert(CLIENT_CERT, client.client_cert.clone());
    }

    // HTTP/2 clients carry the host in :authority; backends get it as Host, unchanged.
    if !present.host {
        headers.insert(header::HOST, authority.clone());
    }
    if version == Version::HTTP_2 || version == Version::HTTP_10 {
        *req.version_mut() = Version::HTTP_11;
    }
}

/// Which of the headers the proxy removes or sets a message carries, learnt in one pass over
/// its names, so that hashed lookups happen only for those present: most messages carry none
/// of them, or only `Connection: keep-alive`.
#[derive(Debug, Default)]
struct Present {
    /// Hop-by-hop headers present or named by `Connection`, by index in [`HOP_BY_HOP`].
    hop_by_hop: [bool; HOP_BY_HOP.len()],
    /// Other headers `Connection` names: hop-by-hop too.
    named: Vec<HeaderName>,
    forwarded_for: bool,
    forwarded_proto: bool,
    forwarded_host: bool,
    /// Any of the client-identity headers.
    identity: bool,
    host: bool,
}

impl Present {
    fn scan(headers: &HeaderMap) -> Present {
        let mut present = Present::default();
        for (name, value) in headers.iter() {
            if let Some(i) = hop_by_hop_index(name.as_str()) {
                present.hop_by_hop[i] = true;
            }
            present.note(name.as_str(), true);
            if name != header::CONNECTION {
                continue;
            }
            let tokens = value.to_str().into_iter().flat_map(|v| v.split(','));
            for token in tokens.map(str::trim) {
                match HOP_BY_HOP
                    .iter()
                    .position(|h| h.as_str().eq_ignore_ascii_case(token))
                {
                    Some(i) => present.hop_by_hop[i] = true,
                    None => present
                        .named
                        .extend(HeaderName::from_bytes(token.as_bytes()).ok()),
                }
            }
        }
        // A header that `Connection` names is removed, so it no longer counts as present.
        for name in std::mem::take(&mut present.named) {
            present.note(name.as_str(), false);
            present.named.push(name);
        }
        present
    }

    /// Record whether `name` (lower case) is there, if it is one the proxy sets.
    fn note(&mut self, name: &str, there: bool) {
        let flag = match name {
            "x-forwarded-for" => &mut self.forwarded_for,
            "x-forwarded-proto" => &mut self.forwarded_proto,
            "x-forwarded-host" => &mut self.forwarded_host,
            "x-forwarded-client-cert" | "client-cert" | "client-cert-chain" => {
                // Removal is harmless either way: keep the flag set.
                self.identity |= there;
                return;
            }
            "host" => &mut self.host,
            _ => return,
        };
        *flag = there;
    }

    /// Remove the hop-by-hop headers found, including those `Connection` names.
    fn remove_hop_by_hop(&self, headers: &mut HeaderMap) {
        for name in &self.named {
            headers.remove(name);
        }
        let found = HOP_BY_HOP.iter().zip(self.hop_by_hop);
        for (name, _) in found.filter(|(_, found)| *found) {
            headers.remove(name);
        }
    }
}

/// Remove hop-by-hop headers, including those the Connection header names.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    Present::scan(headers).remove_hop_by_hop(headers);
}

/// The position of `name` (lower case, as header names are) in [`HOP_BY_HOP`]. A `match` on
/// the text compares lengths first, so most names are passed over in a few instructions.
fn hop_by_hop_index(name: &str) -> Option<usize> {
    match name {
        "connection" => Some(0),
        "keep-alive" => Some(1),
        "proxy-connection" => Some(2),
        "te" => Some(3),
        "trailer" => Some(4),
        "transfer-encoding" => Some(5),
        "upgrade" => Some(6),
        "proxy-authenticate" => Some(7),
        "proxy-authorization" => Some(8),
        _ => None,
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
    let reason = failure.status.canonical_reason().unwrap_or("Error");
    let mut response = Response::new(Body::text(format!(
        "{} {reason}\n",
        failure.status.as_u16()
    )));
    *response.status_mut() = failure.status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if failure.status == StatusCode::BAD_REQUEST {
        // A request we could not read safely leaves the connection in an unknown state.
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

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn connection_tokens_name_headers_in_any_case() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("Keep-Alive , X-Private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-kept"]);
    }

    #[test]
    fn a_header_connection_names_no_longer_counts_as_present() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("X-Forwarded-Proto"),
        );
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("192.0.2.1"));
        h.insert(CLIENT_CERT, HeaderValue::from_static(":eA==:"));
        let present = Present::scan(&h);
        present.remove_hop_by_hop(&mut h);
        assert!(!present.forwarded_proto);
        assert!(!h.contains_key(X_FORWARDED_PROTO));
        assert!(present.forwarded_for && present.identity);
        assert!(!present.forwarded_host && !present.host);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn hop_by_hop_index_matches_the_list() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name.as_str()), Some(i), "{name}");
        }
        assert_eq!(hop_by_hop_index("host"), None);
    }
}
