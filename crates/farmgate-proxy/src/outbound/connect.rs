//! Opening connections to backends: TCP, the PROXY header of `send_proxy`, then TLS with the
//! upstream's client identity.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use farmgate_config::{Address, ProxyVersion};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;
use ppp::{v1, v2};
use rustls_pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Why a connection to a backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The backend's host name did not resolve.
    #[error("cannot resolve {host}")]
    Resolve {
        /// The name.
        host: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// TCP connect failed.
    #[error("cannot connect to {addr}")]
    Tcp {
        /// The backend.
        addr: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Connect plus handshake took longer than the upstream's connect timeout.
    #[error("connecting to {addr} timed out after {after:?}")]
    Timeout {
        /// The backend.
        addr: String,
        /// The timeout.
        after: Duration,
    },
    /// The server did not choose HTTP/2 (ALPN `h2`) in the TLS handshake, which
    /// `protocol = "h2"` requires: it chose nothing, or refused `h2`.
    #[error("{addr} did not select ALPN h2")]
    NoH2 {
        /// The backend.
        addr: String,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {addr} failed")]
    Tls {
        /// The backend.
        addr: String,
        /// The name the backend's certificate was checked against.
        server_name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The client a request to a `send_proxy` upstream is relayed for: what the PROXY header of
/// a connection opened for it names, and which pooled connections it may reuse (those opened
/// for this same client connection: see `pool`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Relayed {
    /// The client's address and port (as a PROXY header in front of us named it, if one did).
    pub(crate) client: SocketAddr,
    /// The address it connected to.
    pub(crate) destination: SocketAddr,
    /// The client connection.
    pub(crate) connection: ConnectionId,
}

/// One client connection, among all this process accepts: what a pooled `send_proxy`
/// connection is kept for. Eight bytes, where the addresses its PROXY header names take 64:
/// the pool carries it with every response of every upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionId(NonZeroU64);

impl ConnectionId {
    /// A connection's id, never given out before.
    pub(crate) fn next() -> ConnectionId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        // Starts at 1; a u64 counted up once per connection does not wrap.
        ConnectionId(NonZeroU64::new(id).unwrap_or(NonZeroU64::MIN))
    }
}

tokio::task_local! {
    /// Set by [`relaying`] around a request's dispatch to a `send_proxy` upstream.
    static RELAYED: Relayed;
}

/// Run `dispatch` (a request's way to a `send_proxy` upstream) on behalf of `relayed`: the
/// connections it opens name that client, and it reuses only connections that do. Boxed, so
/// that the future of a request that may take this way is no larger for it: requests to
/// other upstreams, nearly all of them, would pay for the room on every copy of theirs.
pub(crate) fn relaying<F: Future>(
    relayed: Relayed,
    dispatch: F,
) -> Pin<Box<impl Future<Output = F::Output>>> {
    Box::pin(RELAYED.scope(relayed, dispatch))
}

/// The client the request being sent is relayed for (see [`relaying`]); `None` outside a
/// `send_proxy` dispatch, e.g. for a health check.
pub(crate) fn relayed() -> Option<Relayed> {
    RELAYED.try_with(|r| *r).ok()
}

/// How connections to one upstream's servers are made.
#[derive(Clone, Debug)]
pub(crate) struct Connector {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The name checked on every backend's certificate; `None` uses each backend's host.
    server_name: Option<ServerName<'static>>,
    connect_timeout: Duration,
    /// TLS connections must select HTTP/2 (ALPN `h2`).
    require_h2: bool,
    /// `send_proxy`: each connection starts with a PROXY header of this version.
    send_proxy: Option<ProxyVersion>,
    /// Connections opened so far (each is a TCP connect and, with TLS, a full handshake).
    opened: AtomicU64,
    /// Connections open now.
    open: Arc<AtomicI64>,
}

impl Connector {
    pub(crate) fn new(
        tls: Option<Arc<rustls::ClientConfig>>,
        server_name: Option<ServerName<'static>>,
        connect_timeout: Duration,
        require_h2: bool,
        send_proxy: Option<ProxyVersion>,
    ) -> Connector {
        Connector {
            inner: Arc::new(Inner {
                tls,
                server_name,
                connect_timeout,
                require_h2,
                send_proxy,
                opened: AtomicU64::new(0),
                open: Arc::new(AtomicI64::new(0)),
            }),
        }
    }
}

impl Connector {
    /// Whether each connection starts with a PROXY header (`send_proxy`), and so belongs to
    /// the client connection it names.
    pub(crate) fn sends_proxy(&self) -> bool {
        self.inner.send_proxy.is_some()
    }

    /// How many connections this connector has opened.
    pub(crate) fn opened(&self) -> u64 {
        self.inner.opened.load(Ordering::Relaxed)
    }

    /// How many of them are open now.
    pub(crate) fn open(&self) -> i64 {
        self.inner.open.load(Ordering::Relaxed)
    }
}

impl Connector {
    /// Open a connection to `target` (shown as `server` in errors): TCP, then TLS with this
    /// upstream's client identity, within the connect timeout.
    pub(crate) async fn connect(
        &self,
        target: &Target,
        server: &str,
    ) -> Result<Conn, ConnectError> {
        let inner = &self.inner;
        let timeout = inner.connect_timeout;
        match tokio::time::timeout(timeout, inner.connect(target, server)).await {
            Ok(result) => {
                let io = result?;
                inner.opened.fetch_add(1, Ordering::Relaxed);
                inner.open.fetch_add(1, Ordering::Relaxed);
                Ok(Conn {
                    io,
                    _open: OpenGuard(inner.open.clone()),
                })
            }
            Err(_) => Err(ConnectError::Timeout {
                addr: server.to_owned(),
                after: timeout,
            }),
        }
    }
}

/// Where a server is and the name its certificate is checked against when the upstream names
/// none (`tls.server_name`).
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) address: Address,
    /// A discovered server's name (the name looked up, or its SRV target); `None`: the
    /// address's own host (the IP address, or the name written in `servers`).
    pub(crate) name: Option<ServerName<'static>>,
}

impl Inner {
    async fn connect(&self, target: &Target, addr: &str) -> Result<Io, ConnectError> {
        let address = &target.address;
        let (tcp, host) = match address {
            Address::Socket(socket) => (TcpStream::connect(socket).await, None),
            Address::Name { host, port } => {
                let mut addrs = tokio::net::lookup_host((host.as_str(), *port))
                    .await
                    .map_err(|source| ConnectError::Resolve {
                        host: host.clone(),
                        source,
                    })?;
                let first = addrs.next().ok_or_else(|| ConnectError::Resolve {
                    host: host.clone(),
                    source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
                })?;
                (TcpStream::connect(first).await, Some(host.as_str()))
            }
        };
        let mut tcp = tcp.map_err(|source| ConnectError::Tcp {
            addr: addr.to_owned(),
            source,
        })?;
        // Requests and responses are written whole; waiting for more data only adds latency.
        let _ = tcp.set_nodelay(true);
        if let Some(version) = self.send_proxy {
            // Before any TLS byte: the server reads it first (nginx `listen ... proxy_protocol`).
            let header = proxy_header(version, relayed());
            tcp.write_all(&header)
                .await
                .map_err(|source| ConnectError::Tcp {
                    addr: addr.to_owned(),
                    source,
                })?;
        }
        let Some(tls) = &self.tls else {
            return Ok(Io::Plain(TokioIo::new(tcp)));
        };
        let server_name = match (self.server_name.as_ref().or(target.name.as_ref()), address) {
            (Some(name), _) => name.clone(),
            (None, Address::Socket(socket)) => ServerName::IpAddress(socket.ip().into()),
            (None, Address::Name { .. }) => {
                let host = host.unwrap_or_default().to_owned();
                ServerName::try_from(host.clone()).map_err(|e| ConnectError::Tls {
                    addr: addr.to_owned(),
                    server_name: host,
                    source: io::Error::new(io::ErrorKind::InvalidInput, e),
                })?
            }
        };
        let shown = server_name.to_str().into_owned();
        let stream = TlsConnector::from(tls.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|source| {
                let refused_h2 = self.require_h2
                    && matches!(
                        farmgate_tls::explain::find_tls_error(&source),
                        Some(rustls::Error::AlertReceived(
                            rustls::AlertDescription::NoApplicationProtocol
                        ))
                    );
                if refused_h2 {
                    return ConnectError::NoH2 {
                        addr: addr.to_owned(),
                    };
                }
                ConnectError::Tls {
                    addr: addr.to_owned(),
                    server_name: shown,
                    source,
                }
            })?;
        if self.require_h2 && stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(ConnectError::NoH2 {
                addr: addr.to_owned(),
            });
        }
        Ok(Io::Tls(Box::new(TokioIo::new(stream))))
    }
}

/// The PROXY header of `version` naming `relayed`; without it (a connection the proxy opens
/// for itself, such as a health check's) a v2 `LOCAL` header or v1 `PROXY UNKNOWN`, which
/// tell the server to take the connection's own addresses.
fn proxy_header(version: ProxyVersion, relayed: Option<Relayed>) -> Vec<u8> {
    let addresses = relayed.map(|r| same_family(r.client, r.destination));
    match version {
        ProxyVersion::V1 => {
            let addresses = addresses.map_or(v1::Addresses::Unknown, v1::Addresses::from);
            addresses.to_string().into_bytes()
        }
        ProxyVersion::V2 => {
            let (command, protocol, addresses) = match addresses {
                Some(pair) => (
                    v2::Command::Proxy,
                    v2::Protocol::Stream,
                    v2::Addresses::from(pair),
                ),
                None => (
                    v2::Command::Local,
                    v2::Protocol::Unspecified,
                    v2::Addresses::Unspecified,
                ),
            };
            let header =
                v2::Builder::with_addresses(v2::Version::Two | command, protocol, addresses);
            // Only a payload over 64 KiB fails; addresses alone are 36 bytes at most.
            header.build().unwrap_or_default()
        }
    }
}

/// `client` and `destination` in one address family, as a PROXY header carries them: IPv4
/// when both are IPv4 (or IPv4-mapped), else both IPv6.
fn same_family(client: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v4 = |a: SocketAddr| match a {
        SocketAddr::V4(_) => Some(a),
        SocketAddr::V6(v6) => v6
            .ip()
            .to_ipv4_mapped()
            .map(|ip| SocketAddr::from((ip, v6.port()))),
    };
    let v6 = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => SocketAddr::from((v4.ip().to_ipv6_mapped(), v4.port())),
        SocketAddr::V6(_) => a,
    };
    match (v4(client), v4(destination)) {
        (Some(c), Some(d)) => (c, d),
        _ => (v6(client), v6(destination)),
    }
}

/// A connection to a backend, counted as open until dropped.
#[derive(Debug)]
pub(crate) struct Conn {
    io: Io,
    /// Held for its `Drop`: counts the connection as open while it lives.
    _open: OpenGuard,
}

/// Decrements the open-connection count when the connection goes.
#[derive(Debug)]
struct OpenGuard(Arc<AtomicI64>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The stream of a connection to a backend, plain or TLS.
#[derive(Debug)]
pub(crate) enum Io {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(io) => Pin::new(io).poll_flush(cx),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(io) => io.is_write_vectored(),
            Io::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    fn relayed(client: &str, destination: &str) -> Option<Relayed> {
        Some(Relayed {
            client: client.parse().unwrap(),
            destination: destination.parse().unwrap(),
            connection: ConnectionId::next(),
        })
    }

    #[test]
    fn v1_names_the_client_or_says_unknown() {
        let header = proxy_header(ProxyVersion::V1, relayed("192.0.2.7:51234", "10.0.0.1:443"));
        assert_eq!(header, b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\r\n");
        assert_eq!(proxy_header(ProxyVersion::V1, None), b"PROXY UNKNOWN\r\n");
    }

    #[test]
    fn v2_names_the_client_or_says_local() {
        let header = proxy_header(ProxyVersion::V2, relayed("192.0.2.7:51234", "10.0.0.1:443"));
        let parsed = v2::Header::try_from(header.as_slice()).unwrap();
        assert_eq!(parsed.command, v2::Command::Proxy);
        assert_eq!(
            parsed.addresses,
            v2::Addresses::from((
                "192.0.2.7:51234".parse::<SocketAddr>().unwrap(),
                "10.0.0.1:443".parse::<SocketAddr>().unwrap()
            ))
        );
        let local = proxy_header(ProxyVersion::V2, None);
        let parsed = v2::Header::try_from(local.as_slice()).unwrap();
        assert_eq!(parsed.command, v2::Command::Local);
        assert_eq!(parsed.len(), local.len());
    }

    #[test]
    fn mixed_families_become_one() {
        let (c, d) = same_family(
            "[::ffff:192.0.2.7]:1".parse().unwrap(),
            "10.0.0.1:2".parse().unwrap(),
        );
        assert_eq!(
            (c.to_string(), d.to_string()),
            ("192.0.2.7:1".into(), "10.0.0.1:2".into())
        );
        let (c, d) = same_family(
            "192.0.2.7:1".parse().unwrap(),
            "[2001:db8::1]:2".parse().unwrap(),
        );
        assert_eq!(
            (c.to_string(), d.to_string()),
            ("[::ffff:192.0.2.7]:1".into(), "[2001:db8::1]:2".into())
        );
    }
}
