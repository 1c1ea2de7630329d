//! One connection serving HTTP/1.1 or HTTP/2 to its end, and what it watches beside its
//! client: shutdown, reloads (a gate re-checks its client), the idle timer.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use super::client::ConnInfo;
use super::forward;
use super::on_wake::OnWake;
use super::shared::Shared;

/// What a connection listens for besides its client.
pub(crate) struct Signals {
    /// The server is shutting down.
    pub(crate) stopping: watch::Receiver<bool>,
    /// A reload happened.
    pub(crate) reloaded: watch::Receiver<u64>,
}

pub(crate) async fn serve_http<S>(
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
