//! Listeners at run time: accepting connections, the TLS handshake, serving HTTP/1.1 and HTTP/2.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use farmgate_config::Listener;
use farmgate_identity::{PeerIdentity, client_cert_header};
use farmgate_tls::ServerTls;
use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::error::BuildError;
use crate::forward::{self, ClientHeaders, ConnInfo};
use crate::server::Shared;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a refused client may keep sending before we close its connection.
const LINGER: Duration = Duration::from_secs(2);
/// How long a client may take to send a request's header (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A listener's run-time state within one generation.
#[derive(Debug)]
pub(crate) struct ListenerRt {
    pub(crate) name: Arc<str>,
    pub(crate) config: Listener,
    pub(crate) tls: Option<ServerTls>,
}

impl ListenerRt {
    pub(crate) fn build(config: &Listener) -> Result<ListenerRt, BuildError> {
        let tls = match &config.tls {
            Some(tls) => Some(ServerTls::new(&config.name, tls)?),
            None => None,
        };
        Ok(ListenerRt {
            name: Arc::from(config.name.as_str()),
            tls,
            config: config.clone(),
        })
    }
}

/// The HTTP server settings every connection uses.
pub(crate) fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_headers(100);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// Accept connections on `socket` until shutdown; each connection is served by the generation
/// current when it was accepted.
pub(crate) async fn accept_loop(
    name: Arc<str>,
    socket: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            accepted = socket.accept() => accepted,
            _ = shutdown.changed() => return,
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
        let generation = shared.generation.load_full();
        let Some(listener) = generation.listener(&name).cloned() else {
            continue;
        };
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let alive = alive.clone();
        let span = tracing::info_span!("conn", listener = %name, peer = %peer);
        tokio::spawn(
            async move {
                serve(tcp, peer, generation, listener, shared, shutdown).await;
                drop(alive);
            }
            .instrument(span),
        );
    }
}

async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    generation: Arc<crate::Generation>,
    listener: Arc<ListenerRt>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let sources = listener.config.sources();
    if !sources.is_empty() && !sources.iter().any(|r| r.contains(peer.ip())) {
        tracing::info!("closed before TLS: source address not in sources");
        return;
    }
    let _ = tcp.set_nodelay(true);
    let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
        .unwrap_or(HeaderValue::from_static("unknown"));
    let Some(tls) = &listener.tls else {
        let info = ConnInfo {
            generation,
            listener: listener.clone(),
            peer,
            peer_ip,
            client: None,
        };
        serve_http(tcp, info, &shared, shutdown).await;
        return;
    };
    let handshake = TlsAcceptor::from(tls.config()).accept(tcp).into_fallible();
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err((e, tcp))) => {
            handshake_failed(&listener, &e);
            linger(tcp).await;
            return;
        }
        Err(_) => {
            tracing::info!("TLS handshake timed out after {HANDSHAKE_TIMEOUT:?}");
            return;
        }
    };
    let client = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| client_headers(leaf.as_ref()));
    let info = ConnInfo {
        generation,
        listener: listener.clone(),
        peer,
        peer_ip,
        client,
    };
    serve_http(stream, info, &shared, shutdown).await;
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

fn handshake_failed(listener: &ListenerRt, e: &std::io::Error) {
    let tls = farmgate_tls::explain::find_tls_error(e);
    match tls {
        // Refusals of a presented certificate were logged by the verifier, with its details.
        Some(rustls::Error::InvalidCertificate(_)) => {}
        Some(rustls::Error::NoCertificatesPresented) if listener.config.is_gate() => {
            tracing::info!(
                reason = "no_certificate",
                "client refused: it presented no client certificate"
            );
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
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = Arc::new(info);
    let service = service_fn(move |req| forward::handle(req, info.clone()));
    let conn = shared.http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("connection ended with an error: {e}");
    }
}
