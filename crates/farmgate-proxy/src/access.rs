//! The access log: one line per request, written when its response body has been sent (so the
//! line knows the bytes and the total duration), at `info` on the `access` target.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::Method;

/// What is known about a request when its response header goes out.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) listener: Arc<str>,
    pub(crate) client: SocketAddr,
    pub(crate) identity: Option<String>,
    pub(crate) method: Method,
    pub(crate) host: String,
    pub(crate) target: http::Uri,
    pub(crate) status: u16,
    pub(crate) upstream: Option<Arc<str>>,
    pub(crate) server: Option<Arc<str>>,
    pub(crate) upstream_time: Option<Duration>,
    pub(crate) started: Instant,
    pub(crate) bytes_in: Arc<AtomicU64>,
    pub(crate) tls: Option<Arc<TlsInfo>>,
}

/// The TLS parameters of a connection.
#[derive(Debug)]
pub(crate) struct TlsInfo {
    pub(crate) version: &'static str,
    pub(crate) alpn: &'static str,
    pub(crate) sni: Option<Box<str>>,
}

impl Record {
    /// Write the line; `bytes_out` response body bytes were sent, `complete` says whether the
    /// body ended normally (false: the client went away or the backend broke off).
    pub(crate) fn write(&self, bytes_out: u64, complete: bool) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let tls = self.tls.as_deref();
        tracing::info!(
            target: "access",
            listener = %self.listener,
            client = %self.client,
            identity = self.identity.as_deref().unwrap_or("-"),
            method = %self.method,
            host = %self.host,
            path = self.target.path_and_query().map_or("/", |p| p.as_str()),
            status = self.status,
            upstream = self.upstream.as_deref().unwrap_or("-"),
            server = self.server.as_deref().unwrap_or("-"),
            upstream_ms = self.upstream_time.map(ms),
            total_ms = ms(self.started.elapsed()),
            bytes_in = self.bytes_in.load(Ordering::Relaxed),
            bytes_out,
            complete,
            tls = tls.map_or("-", |t| t.version),
            alpn = tls.map_or("-", |t| t.alpn),
            sni = tls.and_then(|t| t.sni.as_deref()).unwrap_or("-"),
            "request"
        );
    }
}

/// The TLS version as a log value.
pub(crate) fn version_name(v: Option<rustls::ProtocolVersion>) -> &'static str {
    match v {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        Some(_) => "other",
        None => "-",
    }
}

/// The ALPN protocol as a log value.
pub(crate) fn alpn_name(alpn: Option<&[u8]>) -> &'static str {
    match alpn {
        Some(b"h2") => "h2",
        Some(b"http/1.1") => "http/1.1",
        Some(_) => "other",
        None => "-",
    }
}
