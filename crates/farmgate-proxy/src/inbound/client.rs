//! Who is on the other end of a connection, as every request on it sees it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use farmgate_identity::{FieldValue, PeerIdentity, client_cert_header};
use http::HeaderValue;
use parking_lot::{Mutex, MutexGuard};
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::sync::Notify;

use crate::generation::{Generation, ListenerRt};
use crate::outbound::ConnectionId;

use super::activity::Meter;
use super::clients::Counted;
use super::shared::Shared;

/// The configuration a request is served with: the generation current when it started, and
/// this connection's listener in it (its routes, its upstreams and their pools, its header
/// rules). Requests hold it to their response head; a connection keeps the last one only
/// between reloads.
#[derive(Debug)]
pub(crate) struct View {
    version: u64,
    pub(crate) generation: Arc<Generation>,
    pub(crate) listener: Arc<ListenerRt>,
}

impl View {
    /// Listener `name` in generation `generation` of version `version`, if it has it.
    pub(crate) fn of(version: u64, generation: Arc<Generation>, name: &str) -> Option<View> {
        let listener = generation.listener(name)?.clone();
        Some(View {
            version,
            generation,
            listener,
        })
    }
}

/// Who a connection is between, as its requests see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Addresses {
    /// The client: the address a PROXY header named, or else the peer.
    pub(crate) client: SocketAddr,
    /// The address the client connected to: the PROXY header's destination, or else ours.
    pub(crate) local: SocketAddr,
}

/// What every request on one connection shares.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub(crate) shared: Arc<Shared>,
    /// The configuration the next request is served with, unless a reload came since.
    view: Mutex<Arc<View>>,
    /// Set by a reload: the next response ends this connection (HTTP/1.1 `Connection: close`;
    /// HTTP/2 `finish`).
    closing: AtomicBool,
    /// Some request arrived on this connection: it is past its protocol's handshake.
    served: AtomicBool,
    /// Woken when a closing HTTP/2 connection has answered a request: its watcher sends GOAWAY.
    pub(crate) finish: Arc<Notify>,
    /// The client (see [`Addresses`]): the `X-Forwarded-For`, access-log, `client_ip` hash,
    /// `sources` and limits address.
    pub(crate) peer: SocketAddr,
    /// The address the client connected to (see [`Addresses`]), for `send_proxy`.
    pub(crate) local: SocketAddr,
    /// This connection, for `send_proxy`: the backend connections opened for it are its own.
    pub(crate) id: ConnectionId,
    /// The connection, counted against the listener's limits until the last holder of this
    /// (the connection, or the WebSocket tunnel it became) ends.
    pub(crate) counted: Counted,
    /// What moves on the connection (its timers read it).
    pub(crate) meter: Arc<Meter>,
    /// The peer's address as a header value, formatted once per connection.
    pub(crate) peer_ip: HeaderValue,
    /// On a gate, the verified client certificate's identity as headers, or why they could
    /// not be built (then every request is answered 502: the identity reaches the app, or the
    /// request does not).
    pub(crate) client: Option<Result<ClientHeaders, Arc<HeadersError>>>,
    /// TLS parameters, for the access log.
    pub(crate) tls: Option<Arc<TlsInfo>>,
    /// The client's certificate chain, as it presented it (on a gate; empty elsewhere): what a
    /// reload checks again.
    pub(crate) chain: Vec<CertificateDer<'static>>,
}

impl ConnInfo {
    pub(crate) fn new(
        shared: Arc<Shared>,
        view: View,
        addresses: Addresses,
        counted: Counted,
        client: Option<Result<ClientHeaders, Arc<HeadersError>>>,
        tls: Option<Arc<TlsInfo>>,
    ) -> ConnInfo {
        let Addresses {
            client: peer,
            local,
        } = addresses;
        // Formatted once per connection, not per request.
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or(HeaderValue::from_static("unknown"));
        ConnInfo {
            shared,
            view: Mutex::new(Arc::new(view)),
            closing: AtomicBool::new(false),
            served: AtomicBool::new(false),
            finish: Arc::new(Notify::new()),
            peer,
            local,
            id: ConnectionId::next(),
            counted,
            meter: Arc::default(),
            peer_ip,
            client,
            tls,
            chain: Vec::new(),
        }
    }

    /// Why the client of a connection accepted by listener `name` may no longer be served, in the
    /// current generation: the listener is gone, the client's address is no longer in `sources`,
    /// or (on a gate) its certificate no longer passes trust, CRLs and allow-list. For its HTTP
    /// connection and the WebSocket tunnels it opened alike.
    pub(crate) fn refused_after_reload(&self, name: &str) -> Option<String> {
        let generation = self.shared.generation();
        let Some(listener) = generation.listener(name) else {
            return Some("the listener was removed by a reload".to_owned());
        };
        let sources = listener.config.sources();
        if !sources.is_empty() && !sources.iter().any(|r| r.contains(self.peer.ip())) {
            return Some("after a reload the source address is not in sources".to_owned());
        }
        let verifier = listener.tls.as_ref().and_then(|t| t.verifier())?;
        let Some((leaf, intermediates)) = self.chain.split_first() else {
            return Some("after a reload the listener requires a client certificate".to_owned());
        };
        let refusal = verifier.check(leaf, intermediates, UnixTime::now()).err()?;
        Some(format!(
            "after a reload the gate no longer allows this client ({}: {})",
            refusal.reason, refusal.detail
        ))
    }

    /// With the client certificate chain the TLS handshake verified.
    pub(crate) fn with_chain(mut self, chain: Vec<CertificateDer<'static>>) -> ConnInfo {
        self.chain = chain;
        self
    }

    /// The configuration a request starting now is served with: the current generation (one
    /// atomic load tells whether the one at hand still is).
    pub(crate) fn view(&self) -> Arc<View> {
        let version = self.shared.version();
        let mut view = self.lock();
        if view.version != version {
            Self::renew(&mut view, &self.shared);
        }
        view.clone()
    }

    /// After a reload: serve the next request with the new generation, and let go of the old
    /// one now, so that it ends with its last request rather than with this connection.
    pub(crate) fn refresh(&self) {
        Self::renew(&mut self.lock(), &self.shared);
    }

    /// The verified client, on a gate whose identity headers could be built.
    pub(crate) fn verified(&self) -> Option<&ClientHeaders> {
        self.client.as_ref().and_then(|c| c.as_ref().ok())
    }

    /// Close this connection with the next response it sends.
    pub(crate) fn close_after_next_response(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    /// Whether the response being made must close the connection.
    pub(crate) fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// A request arrived.
    pub(crate) fn served(&self) {
        if !self.served.load(Ordering::Relaxed) {
            self.served.store(true, Ordering::Relaxed);
        }
    }

    /// Whether any request arrived on this connection.
    pub(crate) fn has_served(&self) -> bool {
        self.served.load(Ordering::Relaxed)
    }

    fn renew(view: &mut Arc<View>, shared: &Shared) {
        let (version, generation) = shared.versioned();
        // A listener a reload removed keeps its last view: the connection is closing.
        if let Some(current) = View::of(version, generation, &view.listener.name) {
            *view = Arc::new(current);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Arc<View>> {
        self.view.lock()
    }
}

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

impl ClientHeaders {
    /// The headers of the client whose verified leaf certificate is `leaf`. Computed once per
    /// connection, not per request.
    pub(crate) fn of(leaf: &[u8]) -> Result<ClientHeaders, HeadersError> {
        let identity = PeerIdentity::from_der(leaf).map_err(HeadersError::Parse)?;
        let header = |name: &'static str, value: FieldValue| {
            HeaderValue::from_str(&value).map_err(|source| HeadersError::Value { name, source })
        };
        Ok(ClientHeaders {
            name: identity.name(),
            xfcc: header("x-forwarded-client-cert", identity.xfcc())?,
            client_cert: header("client-cert", client_cert_header(leaf))?,
        })
    }
}

/// Why a verified client's identity headers could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeadersError {
    /// The certificate the verifier accepted does not parse here.
    #[error("the client certificate cannot be read for its identity")]
    Parse(#[source] farmgate_identity::IdentityError),
    /// A header value came out invalid.
    #[error("the {name} header of the client's identity is not a valid header value")]
    Value {
        name: &'static str,
        #[source]
        source: http::header::InvalidHeaderValue,
    },
}

/// The TLS parameters of a connection.
#[derive(Debug)]
pub(crate) struct TlsInfo {
    pub(crate) version: &'static str,
    pub(crate) alpn: &'static str,
    pub(crate) sni: Option<Box<str>>,
}

impl TlsInfo {
    /// The parameters of an established TLS session.
    pub(crate) fn of(session: &rustls::ServerConnection) -> TlsInfo {
        TlsInfo {
            version: version_name(session.protocol_version()),
            alpn: alpn_name(session.alpn_protocol()),
            sni: session.server_name().map(Box::from),
        }
    }
}

/// The TLS version as a log value.
fn version_name(v: Option<rustls::ProtocolVersion>) -> &'static str {
    match v {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        Some(_) => "other",
        None => "-",
    }
}

/// The ALPN protocol as a log value.
fn alpn_name(alpn: Option<&[u8]>) -> &'static str {
    match alpn {
        Some(b"h2") => "h2",
        Some(b"http/1.1") => "http/1.1",
        Some(_) => "other",
        None => "-",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_that_does_not_parse_gives_no_headers_but_a_reason() {
        match ClientHeaders::of(b"not a certificate") {
            Err(HeadersError::Parse(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}
