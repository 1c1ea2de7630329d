//! Who is on the other end of a connection, as every request on it sees it.

use std::net::SocketAddr;
use std::sync::Arc;

use farmgate_admin::Metrics;
use http::HeaderValue;

use crate::generation::{Generation, ListenerRt};

/// What every request on one connection shares.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub(crate) generation: Arc<Generation>,
    pub(crate) listener: Arc<ListenerRt>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) peer: SocketAddr,
    /// The peer's address as a header value, formatted once per connection.
    pub(crate) peer_ip: HeaderValue,
    /// The verified client certificate's identity, on a gate.
    pub(crate) client: Option<ClientHeaders>,
    /// TLS parameters, for the access log.
    pub(crate) tls: Option<Arc<TlsInfo>>,
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
