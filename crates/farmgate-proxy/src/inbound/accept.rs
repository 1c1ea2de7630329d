//! From a listening socket to a connection ready for HTTP: accepting, the PROXY header from a
//! `proxy_protocol` source (which names the client), the per-client limit and the `sources`
//! check on that client, the TLS handshake (where a gate's verifier refuses clients), and the
//! connection's [`ConnInfo`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use farmgate_tls::{ACME_TLS_ALPN, RefusalReason};
use rustls_pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::generation::ListenerRt;
use crate::outbound::Chain;

use super::activity::linger;
use super::client::{Addresses, ClientHeaders, ConnInfo, TlsInfo, View};
use super::clients::Open;
use super::conn::{self, Signals};
use super::proxy::{self, Header};
use super::shared::Shared;

/// Accept connections on `socket` until this listener is stopped (`stop`) or the server shuts
/// down (`stopping`, subscribed before this loop was spawned, so a shutdown that comes before
/// its first poll is seen);
/// each connection is set up (TLS, timeouts) by the generation current when it was accepted, on
/// the runtime this loop runs on; each of its requests is served by the generation current
/// when the request starts.
pub(crate) async fn accept_loop(
    name: Arc<str>,
    socket: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    mut stopping: watch::Receiver<bool>,
) {
    let socket = match TcpListener::from_std(socket) {
        Ok(socket) => socket,
        Err(e) => {
            tracing::error!(listener = %name, "cannot accept on this worker: {e}");
            return;
        }
    };
    let clients = shared.clients(&name);
    let mut backoff = Duration::from_millis(5);
    loop {
        // At max_connections, stop accepting: the kernel's backlog holds the next ones until
        // some close (docs/operations.md, "Under attack").
        let max = shared
            .generation()
            .listener(&name)
            .map_or(usize::MAX, |l| l.config.limits.max_connections as usize);
        let accepted = tokio::select! {
            accepted = async {
                clients.below(max).await;
                socket.accept().await
            } => accepted,
            _ = stop.changed() => break,
            _ = stopping.changed() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(5);
                pair
            }
            Err(e) => {
                // Out of file descriptors and the like: say so once a second at most, and
                // try again when a connection closes (freeing one) or after a backoff.
                if let Some(more) = clients.log_accept_failure() {
                    tracing::error!(
                        listener = %name,
                        open = clients.open(),
                        "accept failed: {e}; retrying as connections close (docs/troubleshooting.md){more}"
                    );
                }
                tokio::select! {
                    () = clients.closed_or(backoff) => {}
                    _ = stop.changed() => break,
                    _ = stopping.changed() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        // Watch for reloads before loading the generation, so a reload in between is seen.
        let signals = Signals {
            stopping: stopping.clone(),
            reloaded: shared.reloaded.subscribe(),
        };
        let (version, generation) = shared.versioned();
        let Some(view) = View::of(version, generation, &name) else {
            continue;
        };
        // Counted against max_connections now; against its client's share once the client
        // is known (a PROXY header may name it).
        let open = clients.open_one();
        let shared_ = shared.clone();
        shared.connections.spawn(async move {
            serve(tcp, peer, view, shared_, signals, open).await;
        });
    }
    // The socket closes before the loop's task ends: once shutdown returns, nothing listens.
}

/// A connection ready for HTTP: its stream and what its requests share.
enum Accepted {
    Plain(TcpStream, ConnInfo),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>, ConnInfo),
}

/// Serve one connection. Its log lines carry a `conn` span naming the listener and the peer
/// (and the client a PROXY header named, if any);
/// the span is entered around the TLS handshake (the verifier's refusals log inside it) and
/// around each log line after it, not on every poll of the connection, which would cost some
/// 500 instructions per request.
async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    view: View,
    shared: Arc<Shared>,
    signals: Signals,
    open: Open,
) {
    // What the connection is set up with stays with it; its requests follow reloads.
    let setup = view.listener.clone();
    let span = tracing::info_span!(
        "conn",
        listener = %setup.name,
        peer = %peer,
        client = tracing::field::Empty
    );
    let accepted = accept(tcp, peer, view, &setup, shared, open)
        .instrument(span.clone())
        .await;
    match accepted {
        Some(Accepted::Plain(tcp, info)) => {
            conn::serve_http(tcp, info, &setup, signals, &span).await;
        }
        Some(Accepted::Tls(stream, info)) => {
            conn::serve_http(stream, info, &setup, signals, &span).await;
        }
        None => {}
    }
}

/// From a new TCP connection to one ready for HTTP: the PROXY header (from a
/// `proxy_protocol` source), the per-client limit and the `sources` check on the client, and
/// the TLS handshake.
async fn accept(
    mut tcp: TcpStream,
    peer: SocketAddr,
    view: View,
    listener: &ListenerRt,
    shared: Arc<Shared>,
    open: Open,
) -> Option<Accepted> {
    let config = &listener.config;
    // From here on, `client` is the client: what a PROXY header named, or the peer.
    let (client, local) = if config.expects_proxy_header(peer.ip()) {
        match proxy::read(&mut tcp, config.timeouts.handshake).await {
            Ok(Header::Proxied {
                client,
                destination,
            }) => {
                tracing::Span::current().record("client", tracing::field::display(client));
                (client, destination)
            }
            // The balancer's own connection (a health check): it is the client.
            Ok(Header::Local) => (peer, tcp.local_addr().ok()?),
            Err(e) => {
                open.clients().refused_proxy_header(peer, &e);
                return None;
            }
        }
    } else {
        (peer, tcp.local_addr().ok()?)
    };
    // One client may not hold more than its share: refused before TLS costs anything.
    let counted = open.admit(client.ip(), config.limits.max_connections_per_client)?;
    let sources = config.sources();
    if !sources.is_empty() && !sources.iter().any(|r| r.contains(client.ip())) {
        tracing::info!("closed before TLS: source address not in sources");
        return None;
    }
    let addresses = Addresses { client, local };
    // Responses go out as soon as they are written. Linux accepted sockets inherit the
    // listening socket's TCP_NODELAY (`workers::bind` sets it); elsewhere, set it on each one.
    #[cfg(not(target_os = "linux"))]
    let _ = tcp.set_nodelay(true);
    let Some(tls) = &listener.tls else {
        let info = ConnInfo::new(shared, view, addresses, counted, None, None);
        return Some(Accepted::Plain(tcp, info));
    };
    // The gate's verifier records the address of a client it refuses.
    let handshake = farmgate_tls::handshake_from(
        client,
        TlsAcceptor::from(tls.config()).accept(tcp).into_fallible(),
    );
    let limit = listener.config.timeouts.handshake;
    let stream = match tokio::time::timeout(limit, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err((e, tcp))) => {
            handshake_failed(listener, client, &e);
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
    let identity = chain.first().map(|leaf| {
        ClientHeaders::of(leaf.as_ref()).map_err(|e| {
            tracing::error!(
                "the gate verified this client but cannot pass its identity on: {}; its requests get 502",
                Chain(&e)
            );
            Arc::new(e)
        })
    });
    let tls_info = Arc::new(TlsInfo::of(stream.get_ref().1));
    let info =
        ConnInfo::new(shared, view, addresses, counted, identity, Some(tls_info)).with_chain(chain);
    Some(Accepted::Tls(Box::new(stream), info))
}

fn handshake_failed(listener: &ListenerRt, peer: SocketAddr, e: &std::io::Error) {
    let tls = farmgate_tls::explain::find_tls_error(e);
    match tls {
        // Refusals of a presented certificate were logged by the verifier, with its details.
        Some(rustls::Error::InvalidCertificate(_)) => {}
        Some(rustls::Error::NoCertificatesPresented) if listener.config.is_gate() => {
            tracing::info!(
                reason = "no_certificate",
                "client refused: it presented no client certificate"
            );
            if let Some(verifier) = listener.tls.as_ref().and_then(|t| t.verifier()) {
                verifier
                    .stats()
                    .record_refusal(RefusalReason::NoCertificate, None, Some(peer));
            }
        }
        Some(other) => tracing::debug!("TLS handshake failed: {other}"),
        None => tracing::debug!("TLS handshake failed: {e}"),
    }
}
