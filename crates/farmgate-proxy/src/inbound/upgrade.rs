//! WebSocket through a hop: what a client asks (an HTTP/1.1 `Upgrade: websocket`, RFC 6455, or
//! an HTTP/2 extended CONNECT with `:protocol = websocket`, RFC 8441), how the opening handshake
//! goes to the server (the same two forms, by the upstream's `protocol`), when a tunnel opens —
//! only on the server's real acceptance: `101` with the matching `Upgrade` and
//! `Sec-WebSocket-Accept` over HTTP/1.1, `2xx` over HTTP/2, never on a `200`, `426` or error
//! to an HTTP/1.1 handshake (the classic WebSocket smuggling) — and the tunnel itself.
//!
//! No other upgrade passes: `Upgrade: h2c` is dropped with the other hop-by-hop headers (the
//! request is served as an ordinary one), other tokens and `CONNECT` are refused.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use farmgate_admin::{Gauge, Raised};
use farmgate_config::Protocol;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::outbound::Body;

use super::activity::{Activity, Meter};
use super::client::{ConnInfo, View};

const SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
const SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");
const SEC_WEBSOCKET_VERSION: HeaderName = HeaderName::from_static("sec-websocket-version");
const SEC_WEBSOCKET_PROTOCOL: HeaderName = HeaderName::from_static("sec-websocket-protocol");
const SEC_WEBSOCKET_EXTENSIONS: HeaderName = HeaderName::from_static("sec-websocket-extensions");
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");
const WEBSOCKET: HeaderValue = HeaderValue::from_static("websocket");
const UPGRADE: HeaderValue = HeaderValue::from_static("upgrade");

/// RFC 6455 §1.3: what the server appends to the client's key before hashing it.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What a request asks beyond an ordinary exchange.
#[derive(Debug)]
pub(crate) enum Asked {
    /// Nothing: an ordinary request (an `Upgrade: h2c` included, which is dropped).
    Nothing,
    /// A WebSocket.
    WebSocket(Opening),
    /// Something farmgate does not pass: answered 400.
    Refused(&'static str),
}

/// A WebSocket opening handshake from a client, on its way.
#[derive(Debug)]
pub(crate) struct Opening {
    client: Client,
    /// Resolves to the client's side of the tunnel once our acceptance is sent.
    on_client: OnUpgrade,
}

/// How the client opened it.
#[derive(Debug)]
enum Client {
    /// HTTP/1.1 `Upgrade: websocket`, with the client's `Sec-WebSocket-Key`.
    Http1 { key: HeaderValue },
    /// HTTP/2 extended CONNECT (no key: RFC 8441 §5).
    H2,
}

/// What went to the server, to check its answer against.
#[derive(Debug)]
pub(crate) struct Sent {
    /// The key an HTTP/1.1 handshake carried.
    key: Option<HeaderValue>,
    upstream: Protocol,
}

/// What `req` asks for, its WebSocket side taken from it when it asks for one.
pub(crate) fn asked<B>(req: &mut Request<B>) -> Asked {
    if req.version() == Version::HTTP_2 {
        if req.method() != Method::CONNECT {
            return Asked::Nothing;
        }
        let websocket = req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
        if !websocket {
            return Asked::Refused("CONNECT other than a WebSocket (farmgate is no forward proxy)");
        }
        let on_client = hyper::upgrade::on(req);
        return Asked::WebSocket(Opening {
            client: Client::H2,
            on_client,
        });
    }
    if req.method() == Method::CONNECT {
        return Asked::Refused("CONNECT (farmgate is no forward proxy)");
    }
    let headers = req.headers();
    if !headers.contains_key(header::UPGRADE) {
        // Nearly every request: one lookup, instead of reading `Connection`'s tokens (which
        // many clients send as `keep-alive`) first. Without `Upgrade`, nothing is asked.
        return Asked::Nothing;
    }
    if !tokens(headers, &header::CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade")) {
        // An `Upgrade` that `Connection` does not name is to be ignored (RFC 9110 §7.8); it
        // goes with the hop-by-hop headers.
        return Asked::Nothing;
    }
    let offered: Vec<&str> = tokens(headers, &header::UPGRADE).collect();
    let (h2c, websocket) = match offered.as_slice() {
        [] => return Asked::Nothing,
        [only] => (
            only.eq_ignore_ascii_case("h2c"),
            only.eq_ignore_ascii_case("websocket"),
        ),
        _ => (false, false),
    };
    if h2c {
        // Never forwarded: served as an ordinary request, `Upgrade` and `HTTP2-Settings`
        // dropped.
        req.headers_mut().remove(HTTP2_SETTINGS);
        return Asked::Nothing;
    }
    if !websocket {
        return Asked::Refused("an upgrade to a protocol other than WebSocket");
    }
    if req.method() != Method::GET || req.version() != Version::HTTP_11 {
        return Asked::Refused("a WebSocket upgrade that is not an HTTP/1.1 GET");
    }
    let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY).cloned() else {
        return Asked::Refused("a WebSocket upgrade without Sec-WebSocket-Key");
    };
    let on_client = hyper::upgrade::on(req);
    Asked::WebSocket(Opening {
        client: Client::Http1 { key },
        on_client,
    })
}

impl Opening {
    /// Turn `parts` (already rewritten for the hop) into the handshake the upstream speaks:
    /// an HTTP/1.1 `GET` with `Upgrade: websocket` and a key, or an HTTP/2 extended CONNECT.
    pub(crate) fn outgoing(&self, parts: &mut Parts, upstream: Protocol) -> Sent {
        let headers = &mut parts.headers;
        match upstream {
            Protocol::Http1 => {
                let key = match &self.client {
                    Client::Http1 { key } => key.clone(),
                    Client::H2 => new_key(),
                };
                parts.method = Method::GET;
                headers.insert(header::CONNECTION, UPGRADE);
                headers.insert(header::UPGRADE, WEBSOCKET);
                headers.insert(SEC_WEBSOCKET_KEY, key.clone());
                headers
                    .entry(SEC_WEBSOCKET_VERSION)
                    .or_insert(HeaderValue::from_static("13"));
                Sent {
                    key: Some(key),
                    upstream,
                }
            }
            Protocol::H2 => {
                parts.method = Method::CONNECT;
                parts
                    .extensions
                    .insert(hyper::ext::Protocol::from_static("websocket"));
                headers.remove(SEC_WEBSOCKET_KEY);
                headers
                    .entry(SEC_WEBSOCKET_VERSION)
                    .or_insert(HeaderValue::from_static("13"));
                Sent {
                    key: None,
                    upstream,
                }
            }
        }
    }

    /// Our acceptance for the client, carrying what the server chose (subprotocol,
    /// extensions), and the tunnel's two ends: the client's, once this goes out, and the
    /// server's, taken from its response.
    pub(crate) fn accept(
        self,
        mut upstream: Response<Body>,
    ) -> (Response<Body>, OnUpgrade, OnUpgrade) {
        let on_server = hyper::upgrade::on(&mut upstream);
        // The connection became the tunnel: it is not the pool's any more.
        upstream.body_mut().forget_connection();
        let chosen = upstream.headers();
        let mut response = Response::new(Body::Empty);
        let mut headers = HeaderMap::new();
        for name in [SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_EXTENSIONS] {
            if let Some(value) = chosen.get(&name) {
                headers.insert(name, value.clone());
            }
        }
        match &self.client {
            Client::Http1 { key } => {
                *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                headers.insert(header::CONNECTION, UPGRADE);
                headers.insert(header::UPGRADE, WEBSOCKET);
                headers.insert(SEC_WEBSOCKET_ACCEPT, accept(key));
            }
            Client::H2 => *response.status_mut() = StatusCode::OK,
        }
        *response.headers_mut() = headers;
        (response, self.on_client, on_server)
    }
}

impl Sent {
    /// Whether the server accepted the WebSocket: `101` with `Upgrade: websocket` and the
    /// right `Sec-WebSocket-Accept` over HTTP/1.1, `2xx` over HTTP/2. Anything else is an
    /// ordinary response, and no tunnel opens.
    pub(crate) fn accepted(&self, response: &Response<Body>) -> bool {
        let headers = response.headers();
        match self.upstream {
            Protocol::Http1 => {
                response.status() == StatusCode::SWITCHING_PROTOCOLS
                    && headers
                        .get(header::UPGRADE)
                        .is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket"))
                    && self
                        .key
                        .as_ref()
                        .is_some_and(|key| headers.get(SEC_WEBSOCKET_ACCEPT) == Some(&accept(key)))
            }
            Protocol::H2 => response.status().is_success(),
        }
    }
}

/// The comma-separated tokens of every `name` header.
fn tokens<'h>(headers: &'h HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'h str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 §4.2.2).
fn accept(key: &HeaderValue) -> HeaderValue {
    let mut input = key.as_bytes().to_vec();
    input.extend_from_slice(ACCEPT_GUID);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    let encoded = STANDARD.encode(digest.as_ref());
    // Base64 is visible ASCII.
    HeaderValue::from_str(&encoded).unwrap_or(HeaderValue::from_static(""))
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64 (RFC 6455 §4.1).
fn new_key() -> HeaderValue {
    let mut bytes = [0u8; 16];
    // The system's random source failing leaves zeros: still a valid key, only a predictable
    // one, and the key protects against caches, not attackers (RFC 6455 §10.3).
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    HeaderValue::from_str(&STANDARD.encode(bytes)).unwrap_or(HeaderValue::from_static(""))
}

/// What a tunnel needs besides its two ends.
#[derive(Debug)]
pub(crate) struct Tunnel {
    /// Holds its generation while it lasts (docs/architecture.md: tunnels are what may keep an
    /// old generation alive, and they are counted).
    pub(crate) view: Arc<View>,
    /// `timeouts.tunnel_idle` of its upstream.
    pub(crate) idle: Duration,
    /// `farmgate_tunnels_open{upstream}`.
    pub(crate) open: Gauge,
    /// Turns true when the server begins to shut down.
    pub(crate) stopping: watch::Receiver<bool>,
    /// Changes with every reload: a client a gate no longer allows loses its tunnels too.
    pub(crate) reloaded: watch::Receiver<u64>,
    /// The client connection it came from, still counted against the listener's limits.
    pub(crate) conn: Arc<ConnInfo>,
}

impl Tunnel {
    /// Carry bytes both ways between the client and the server until either closes, nothing
    /// moves for the idle timeout, a reload no longer allows its client (as it would close
    /// the client's connection: [`ConnInfo::refused_after_reload`]), or the shutdown grace after a
    /// SIGTERM runs out.
    pub(crate) async fn run(mut self, client: OnUpgrade, server: OnUpgrade) {
        let (client, server) = match tokio::try_join!(client, server) {
            Ok(ends) => ends,
            Err(e) => {
                tracing::debug!("WebSocket not opened: {e}");
                return;
            }
        };
        let open = Raised::new(self.open.clone());
        let meter = Arc::new(Meter::default());
        let mut client = Activity::new(TokioIo::new(client), meter.clone());
        let mut server = TokioIo::new(server);
        let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
        tokio::pin!(copy);
        let tick = (self.idle / 4).max(Duration::from_millis(1));
        let mut idle = tokio::time::interval(tick);
        idle.reset();
        let (mut last, mut quiet) = (0, Duration::ZERO);
        let grace = self.view.generation.config().server.shutdown_grace;
        let stopped = async {
            let _ = self.stopping.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(grace).await;
        };
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                ended = &mut copy => {
                    if let Err(e) = ended {
                        tracing::debug!("WebSocket ended: {e}");
                    }
                    break;
                }
                _ = idle.tick() => {
                    let now = meter.moved();
                    quiet = if now == last { quiet + tick } else { Duration::ZERO };
                    last = now;
                    if quiet >= self.idle {
                        tracing::debug!("WebSocket closed: no byte either way for {:?} (timeouts.tunnel_idle)", self.idle);
                        break;
                    }
                }
                () = &mut stopped => {
                    tracing::debug!("WebSocket closed: the shutdown grace ran out");
                    break;
                }
                Ok(()) = self.reloaded.changed() => {
                    if let Some(why) = self.conn.refused_after_reload(&self.view.listener.name) {
                        tracing::info!("WebSocket closed: {why}");
                        break;
                    }
                }
            }
        }
        drop(open);
        // The client's connection stops counting against the listener's limits only now.
        drop(self.conn);
    }
}
