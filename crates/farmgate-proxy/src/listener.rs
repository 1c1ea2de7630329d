//! Listeners at run time: accepting connections, the TLS handshake, serving HTTP/1.1 and HTTP/2.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use farmgate_acme::{Acme, AcmeCertificate};
use farmgate_admin::{Gauge, Metrics, RouteMetrics};
use farmgate_config::Listener;
use farmgate_identity::{PeerIdentity, client_cert_header};
use farmgate_tls::{ACME_TLS_ALPN, ServerTls};
use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::access::{self, TlsInfo};
use crate::error::BuildError;
use crate::forward::{self, ClientHeaders, ConnInfo};
use crate::generation::Generation;
use crate::on_wake::OnWake;
use crate::server::{Shared, TaskGuard};

/// What a connection listens for besides its client.
struct Signals {
    /// The server is shutting down.
    stopping: watch::Receiver<bool>,
    /// A reload happened.
    reloaded: watch::Receiver<u64>,
}

/// How long a refused client may keep sending before we close its connection.
const LINGER: Duration = Duration::from_secs(2);

/// A listener's run-time state within one generation.
#[derive(Debug)]
pub(crate) struct ListenerRt {
    pub(crate) name: Arc<str>,
    pub(crate) config: Listener,
    pub(crate) tls: Option<ServerTls>,
    http: auto::Builder<TokioExecutor>,
    /// Metric handles, resolved on first use (the registry belongs to the server, and a
    /// generation is built before it knows which server will run it).
    route_metrics: Vec<OnceLock<RouteMetrics>>,
    unrouted_metrics: OnceLock<RouteMetrics>,
    open_gauge: OnceLock<Gauge>,
}

impl ListenerRt {
    /// Build the listener `config`; an ACME listener gets its certificate from `acme` (with the
    /// configuration's `acme_settings`), and returns it too.
    pub(crate) fn build(
        config: &Listener,
        acme_settings: Option<&farmgate_config::Acme>,
        acme: &Acme,
    ) -> Result<(ListenerRt, Option<AcmeCertificate>), BuildError> {
        let (tls, certificate) = match &config.tls {
            Some(tls) => match (tls.acme(), acme_settings) {
                (Some(cert), Some(settings)) => {
                    let certificate = acme.certificate(settings, cert)?;
                    let server = ServerTls::with_store(&config.name, tls, certificate.store())?;
                    (Some(server), Some(certificate))
                }
                _ => (Some(ServerTls::new(&config.name, tls)?), None),
            },
            None => (None, None),
        };
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.timeouts.request_header)
            .max_headers(100);
        http.http2().timer(TokioTimer::new());
        let listener = ListenerRt {
            name: Arc::from(config.name.as_str()),
            tls,
            http,
            route_metrics: config.routes.iter().map(|_| OnceLock::new()).collect(),
            unrouted_metrics: OnceLock::new(),
            open_gauge: OnceLock::new(),
            config: config.clone(),
        };
        Ok((listener, certificate))
    }

    /// The request counters of route `route` (`None`: requests answered before routing).
    pub(crate) fn route_metrics(
        &self,
        route: Option<usize>,
        metrics: &Metrics,
        generation: &Generation,
    ) -> &RouteMetrics {
        match route.and_then(|i| Some((i, self.route_metrics.get(i)?, self.config.routes.get(i)?)))
        {
            Some((_, slot, route)) => slot.get_or_init(|| {
                let upstream = &generation.config().upstream(route.upstream).name;
                metrics.route(&self.name, &crate::metrics::route_label(route), upstream)
            }),
            None => self
                .unrouted_metrics
                .get_or_init(|| metrics.route(&self.name, "-", "-")),
        }
    }

    /// The open-connections gauge of this listener.
    pub(crate) fn open_gauge(&self, metrics: &Metrics) -> Gauge {
        self.open_gauge
            .get_or_init(|| metrics.open_connections(&self.name))
            .clone()
    }
}

/// Accept connections on `socket` until this listener is stopped or the server shuts down;
/// each connection is served by the generation current when it was accepted, on the runtime
/// this loop runs on.
pub(crate) async fn accept_loop(
    name: Arc<str>,
    socket: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    mut stopping: watch::Receiver<bool>,
    running: TaskGuard,
) {
    let socket = match TcpListener::from_std(socket) {
        Ok(socket) => socket,
        Err(e) => {
            tracing::error!(listener = %name, "cannot accept on this worker: {e}");
            return;
        }
    };
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            accepted = socket.accept() => accepted,
            _ = stop.changed() => break,
            _ = stopping.changed() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(5);
                pair
            }
            Err(e) => {
                // Out of file descriptors and the like: say so, back off, keep the listener.
                tracing::error!(listener = %name, "accept failed: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        // Watch for reloads before loading the generation, so a reload in between is seen.
        let signals = Signals {
            stopping: stopping.clone(),
            reloaded: shared.reloaded.subscribe(),
        };
        let generation = shared.generation.load_full();
        let Some(listener) = generation.listener(&name).cloned() else {
            continue;
        };
        let running = shared.enter();
        let shared = shared.clone();
        tokio::spawn(async move {
            serve(tcp, peer, generation, listener, &shared, signals).await;
            drop(running);
        });
    }
    // Close the socket before the task counts as finished: once shutdown returns, nothing
    // listens any more.
    drop(socket);
    drop(running);
}

/// A connection ready for HTTP: its stream and what its requests share.
enum Accepted {
    Plain(TcpStream, ConnInfo),
    Tls(
        Box<tokio_rustls::server::TlsStream<TcpStream>>,
        ConnInfo,
        Vec<CertificateDer<'static>>,
    ),
}

/// Serve one connection. Its log lines carry a `conn` span naming the listener and the peer;
/// the span is entered around the TLS handshake (the verifier's refusals log inside it) and
/// around each log line after it, not on every poll of the connection, which would cost some
/// 500 instructions per request.
async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    generation: Arc<Generation>,
    listener: Arc<ListenerRt>,
    shared: &Arc<Shared>,
    signals: Signals,
) {
    let span = tracing::info_span!("conn", listener = %listener.name, peer = %peer);
    let accepted = accept(tcp, peer, generation, listener, shared)
        .instrument(span.clone())
        .await;
    match accepted {
        Some(Accepted::Plain(tcp, info)) => {
            serve_http(tcp, info, shared, Vec::new(), signals, &span).await;
        }
        Some(Accepted::Tls(stream, info, chain)) => {
            serve_http(stream, info, shared, chain, signals, &span).await;
        }
        None => {}
    }
}

/// From a new TCP connection to one ready for HTTP: the `sources` check and the TLS handshake.
async fn accept(
    tcp: TcpStream,
    peer: SocketAddr,
    generation: Arc<Generation>,
    listener: Arc<ListenerRt>,
    shared: &Arc<Shared>,
) -> Option<Accepted> {
    let sources = listener.config.sources();
    if !sources.is_empty() && !sources.iter().any(|r| r.contains(peer.ip())) {
        tracing::info!("closed before TLS: source address not in sources");
        return None;
    }
    // Responses go out as soon as they are written. Linux accepted sockets inherit the
    // listening socket's TCP_NODELAY (`workers::bind` sets it); elsewhere, set it on each one.
    #[cfg(not(target_os = "linux"))]
    let _ = tcp.set_nodelay(true);
    let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
        .unwrap_or(HeaderValue::from_static("unknown"));
    let Some(tls) = &listener.tls else {
        let info = ConnInfo {
            generation,
            listener: listener.clone(),
            metrics: shared.metrics.clone(),
            peer,
            peer_ip,
            client: None,
            tls: None,
        };
        return Some(Accepted::Plain(tcp, info));
    };
    let handshake = TlsAcceptor::from(tls.config()).accept(tcp).into_fallible();
    let limit = listener.config.timeouts.handshake;
    let stream = match tokio::time::timeout(limit, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err((e, tcp))) => {
            handshake_failed(&listener, &e, shared);
            linger(tcp).await;
            return None;
        }
        Err(_) => {
            tracing::info!(
                "closed: TLS handshake not completed within {limit:?} (listener timeouts.handshake)"
            );
            return None;
        }
    };
    if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
        // An ACME server validating tls-alpn-01: it has seen the challenge certificate, and
        // sends nothing more (RFC 8737 §3).
        tracing::debug!("answered a tls-alpn-01 validation");
        let mut stream = stream;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
        return None;
    }
    let chain: Vec<CertificateDer<'static>> = stream
        .get_ref()
        .1
        .peer_certificates()
        .map(<[_]>::to_vec)
        .unwrap_or_default();
    let client = chain.first().and_then(|leaf| client_headers(leaf.as_ref()));
    let session = stream.get_ref().1;
    let tls_info = Arc::new(TlsInfo {
        version: access::version_name(session.protocol_version()),
        alpn: access::alpn_name(session.alpn_protocol()),
        sni: session.server_name().map(Box::from),
    });
    let info = ConnInfo {
        generation,
        listener: listener.clone(),
        metrics: shared.metrics.clone(),
        peer,
        peer_ip,
        client,
        tls: Some(tls_info),
    };
    Some(Accepted::Tls(Box::new(stream), info, chain))
}

/// A gate's verified client as the headers the application receives. Computed once per
/// connection, not per request.
fn client_headers(leaf: &[u8]) -> Option<ClientHeaders> {
    let identity = PeerIdentity::from_der(leaf).ok()?;
    Some(ClientHeaders {
        name: identity.name(),
        xfcc: HeaderValue::from_str(&identity.xfcc()).ok()?,
        client_cert: HeaderValue::from_str(&client_cert_header(leaf)).ok()?,
    })
}

fn handshake_failed(listener: &ListenerRt, e: &std::io::Error, shared: &Shared) {
    let tls = farmgate_tls::explain::find_tls_error(e);
    match tls {
        // Refusals of a presented certificate were logged by the verifier, with its details.
        Some(rustls::Error::InvalidCertificate(_)) => {}
        Some(rustls::Error::NoCertificatesPresented) if listener.config.is_gate() => {
            tracing::info!(
                reason = "no_certificate",
                "client refused: it presented no client certificate"
            );
            crate::metrics::count_no_certificate(shared, &listener.name);
        }
        Some(other) => tracing::debug!("TLS handshake failed: {other}"),
        None => tracing::debug!("TLS handshake failed: {e}"),
    }
}

/// After a refused handshake, close our side but keep reading for a moment, so the client
/// reads our alert instead of a connection reset (a TLS 1.3 client is already sending its
/// request when a gate refuses its certificate; closing with unread data would reset).
async fn linger(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

async fn serve_http<S>(
    stream: S,
    info: ConnInfo,
    shared: &Shared,
    chain: Vec<CertificateDer<'static>>,
    signals: Signals,
    span: &tracing::Span,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let name = info.listener.name.clone();
    let open = info.listener.open_gauge(&shared.metrics);
    open.inc();
    let idle_limit = info.listener.config.timeouts.idle;
    let header_limit = info.listener.config.timeouts.request_header;
    let listener = info.listener.clone();
    let info = Arc::new(info);
    let activity = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Activity {
        inner: stream,
        moved: activity.clone(),
    });
    let watcher = Watcher {
        shared,
        name: &name,
        chain: &chain,
        span,
        activity: &activity,
        idle_limit,
    };
    // An HTTP/2 stream's future is moved several times while hyper spawns its task, and ours
    // holds the whole upstream exchange (some 4 KiB): boxed, each move is a pointer's. An
    // HTTP/1 request's future is moved once, into its connection's slot, where a box would
    // cost more than it saves.
    let h2 = info.tls.as_ref().is_some_and(|t| t.alpn == "h2");
    let result = if h2 {
        let service = service_fn(move |req| Box::pin(forward::handle(req, info.clone())));
        let conn = listener.http.serve_connection(io, service);
        watcher.run(conn, |c| c.graceful_shutdown(), signals).await
    } else {
        let service = service_fn(move |req| forward::handle(req, info.clone()));
        let conn = listener.http.serve_connection(io, service);
        watcher.run(conn, |c| c.graceful_shutdown(), signals).await
    };
    open.dec();
    if let Err(e) = result {
        let timed_out = e
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout);
        let _in = span.enter();
        if timed_out {
            // Debug, not info: every idle HTTP/1.1 keep-alive connection ends this way.
            tracing::debug!(
                "closed: no complete request header within {:?} (listener timeouts.request_header)",
                header_limit
            );
        } else {
            tracing::debug!("connection ended with an error: {e}");
        }
    }
}

/// What a connection's task watches besides its client, and what it needs to act on it.
struct Watcher<'a> {
    shared: &'a Shared,
    name: &'a str,
    chain: &'a [CertificateDer<'static>],
    span: &'a tracing::Span,
    activity: &'a AtomicU64,
    idle_limit: Duration,
}

impl Watcher<'_> {
    /// Serve `conn` to its end, shutting it down gracefully (`graceful`) when the server
    /// stops, when a reload no longer allows its client, or when it has been idle too long.
    async fn run<C, E>(
        &self,
        conn: C,
        graceful: impl Fn(Pin<&mut C>),
        signals: Signals,
    ) -> Result<(), E>
    where
        C: Future<Output = Result<(), E>>,
    {
        let Watcher {
            shared,
            name,
            chain,
            span,
            activity,
            idle_limit,
        } = *self;
        tokio::pin!(conn);
        let Signals {
            mut stopping,
            reloaded,
        } = signals;
        let mut idle = tokio::time::interval(idle_limit);
        idle.reset();
        let mut last_seen = 0;
        // `None` once closing: then only the connection is left to finish.
        let mut events = if *stopping.borrow_and_update() {
            graceful(conn.as_mut());
            None
        } else {
            let events = Events {
                stopping,
                reloaded,
                idle,
            };
            Some(OnWake::new(events.next()))
        };
        loop {
            let Some(pending) = events.as_mut() else {
                break conn.as_mut().await;
            };
            tokio::select! {
                biased;
                result = conn.as_mut() => break result,
                (event, rest) = pending => {
                    let close = match event {
                        Event::Stopping => true,
                        Event::Reloaded => match no_longer_allowed(shared, name, chain) {
                            Some(why) => {
                                span.in_scope(|| tracing::info!("closing after the current request: {why}"));
                                true
                            }
                            None => false,
                        },
                        Event::IdleTick => {
                            let now = activity.load(Ordering::Relaxed);
                            let idle = now == last_seen;
                            last_seen = now;
                            if idle {
                                span.in_scope(|| {
                                    tracing::debug!("closing: idle for {idle_limit:?} (listener timeouts.idle)");
                                });
                            }
                            idle
                        }
                    };
                    events = if close {
                        graceful(conn.as_mut());
                        None
                    } else {
                        Some(OnWake::new(rest.next()))
                    };
                }
            }
        }
    }
}

/// What a connection watches besides its client: all rare, so polled only when they fire
/// ([`OnWake`]), not on every wake-up of the connection's task.
struct Events {
    stopping: watch::Receiver<bool>,
    reloaded: watch::Receiver<u64>,
    idle: tokio::time::Interval,
}

enum Event {
    /// The server began to shut down.
    Stopping,
    /// A reload happened.
    Reloaded,
    /// Time to check whether the connection moved any bytes since the last tick.
    IdleTick,
}

impl Events {
    /// The next event, with the watchers handed back for the one after.
    async fn next(mut self) -> (Event, Events) {
        let event = tokio::select! {
            _ = self.stopping.changed() => Event::Stopping,
            _ = self.reloaded.changed() => Event::Reloaded,
            _ = self.idle.tick() => Event::IdleTick,
        };
        (event, self)
    }
}

/// Why the current generation would refuse this connection, if it would: its listener is
/// gone, or (on a gate) the client's certificate no longer passes trust and allow-list.
fn no_longer_allowed(
    shared: &Shared,
    name: &str,
    chain: &[CertificateDer<'static>],
) -> Option<String> {
    let generation = shared.generation.load();
    let Some(listener) = generation.listener(name) else {
        return Some("the listener was removed by a reload".to_owned());
    };
    let verifier = listener.tls.as_ref()?.verifier()?;
    let (leaf, intermediates) = chain.split_first()?;
    match verifier.check(leaf, intermediates, UnixTime::now()) {
        Ok(_) => None,
        Err(refusal) => Some(format!(
            "after a reload the gate no longer allows this client ({}: {})",
            refusal.reason, refusal.detail
        )),
    }
}

/// A connection's stream, counting the reads and writes that moved bytes (for the idle timer;
/// a counter instead of a clock keeps the hot path free of time calls).
struct Activity<S> {
    inner: S,
    moved: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Activity<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Activity<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.moved.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.moved.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
