//! Opening connections to backends: TCP, then TLS with the upstream's client identity.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use farmgate_config::Address;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
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
    ) -> Connector {
        Connector {
            inner: Arc::new(Inner {
                tls,
                server_name,
                connect_timeout,
                require_h2,
                opened: AtomicU64::new(0),
                open: Arc::new(AtomicI64::new(0)),
            }),
        }
    }
}

impl Connector {
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
        let tcp = tcp.map_err(|source| ConnectError::Tcp {
            addr: addr.to_owned(),
            source,
        })?;
        // Requests and responses are written whole; waiting for more data only adds latency.
        let _ = tcp.set_nodelay(true);
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
