//! HTTP/2 connections to one backend server (`protocol = "h2"`): requests go as streams over
//! one connection per worker, another one opening only when every connection of the worker has
//! [`MAX_STREAMS`] requests in flight.
//!
//! A connection the server is closing (GOAWAY) takes no new stream; requests the server refused
//! unprocessed — stream ids beyond the GOAWAY's last one, or `REFUSED_STREAM` — are sent again
//! on a new connection when they have no body (RFC 9113 §8.7: such a request was not
//! processed, whatever its method), so a backend that drains or restarts fails no request.
//! Connections with no stream in flight for the upstream's idle timeout are closed by the sweep.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::oneshot;

use super::connect::{Connector, Target};
use super::failure::find_source;
use super::health::now_ms;
use super::send::{RequestBody, SLOTS, SendError, copy, from_head, worker};

/// Streams in flight on one connection before another one opens: the lowest
/// `SETTINGS_MAX_CONCURRENT_STREAMS` common servers announce (nginx 128, Go 250, hyper 200).
/// A server that allows fewer makes hyper queue the excess, which only costs latency.
const MAX_STREAMS: usize = 100;

/// The HTTP/2 connections to one server.
#[derive(Debug)]
pub(crate) struct Multiplex<B> {
    /// Where the connector connects.
    target: Target,
    /// The address as text, for errors and logs.
    server: Arc<str>,
    connector: Connector,
    idle_timeout: Duration,
    /// Indexed by worker ([`super::set_worker`]).
    slots: Box<[Slot<B>]>,
}

/// One worker's connections, on cache lines of their own.
#[derive(Debug)]
#[repr(align(128))]
struct Slot<B> {
    conns: Mutex<Vec<Conn<B>>>,
    /// Held while a connection opens, so that requests arriving together wait for it instead
    /// of each opening one.
    opening: tokio::sync::Mutex<()>,
}

impl<B> Default for Slot<B> {
    fn default() -> Self {
        Slot {
            conns: Mutex::default(),
            opening: tokio::sync::Mutex::new(()),
        }
    }
}

/// A connection to send on, its usage, and how it ends if the caller just opened it.
type Connection<B> = (
    http2::SendRequest<B>,
    Arc<Usage>,
    Option<oneshot::Receiver<hyper::Error>>,
);

/// One HTTP/2 connection and how it is used.
#[derive(Debug)]
struct Conn<B> {
    sender: http2::SendRequest<B>,
    usage: Arc<Usage>,
}

/// The streams in flight on a connection, and when one last started or ended.
#[derive(Debug, Default)]
struct Usage {
    streams: AtomicUsize,
    /// [`now_ms`] of the last start or end of a stream.
    last_used: AtomicU64,
}

impl Usage {
    fn idle_for(&self, now: u64) -> Option<Duration> {
        (self.streams.load(Ordering::Relaxed) == 0).then(|| {
            Duration::from_millis(now.saturating_sub(self.last_used.load(Ordering::Relaxed)))
        })
    }
}

impl<B: RequestBody> Multiplex<B> {
    pub(crate) fn new(
        target: Target,
        server: Arc<str>,
        connector: Connector,
        idle_timeout: Duration,
    ) -> Multiplex<B> {
        Multiplex {
            target,
            server,
            connector,
            idle_timeout,
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
        }
    }

    /// Send `req` as a stream of a connection of this worker, opening one if none can take it.
    /// A request a kept connection closed before sending it goes again on a new connection; one
    /// the server refused unprocessed too, if it has no body (rebuilt from `kept`, the head the
    /// caller keeps, or from a copy). Once at most: a server that refuses the streams of a new
    /// connection too gets no storm of handshakes. A new connection that closes before taking
    /// the request fails it with the reason it closed (a server that read our preface as
    /// HTTP/1.1, say).
    pub(crate) async fn send(
        &self,
        mut req: Request<B>,
        kept: Option<&http::request::Parts>,
    ) -> Result<Response<StreamBody>, SendError> {
        let replayable = http_body::Body::is_end_stream(req.body());
        let mut fresh = false;
        loop {
            let (mut sender, usage, opened) = self.connection(fresh).await?;
            let stream = Stream::start(usage);
            let copied = (replayable && kept.is_none()).then(|| copy(&req));
            match sender.try_send_request(req).await {
                Ok(response) => {
                    return Ok(response.map(|body| StreamBody {
                        body,
                        stream: Some(stream),
                    }));
                }
                Err(mut e) => {
                    if let Some(unsent) = e.take_message() {
                        if let Some(ended) = opened {
                            // Closed as soon as we opened it: why is the answer (the
                            // connection is ending; other streams on it would bound the wait).
                            let why = tokio::time::timeout(Duration::from_secs(1), ended).await;
                            return Err(SendError::Http(match why {
                                Ok(Ok(why)) => why,
                                _ => e.into_error(),
                            }));
                        }
                        if fresh {
                            return Err(SendError::Http(e.into_error()));
                        }
                        req = unsent;
                        fresh = true;
                        continue;
                    }
                    if fresh || !(replayable && refused_unprocessed(e.error())) {
                        return Err(SendError::Http(e.into_error()));
                    }
                    tracing::debug!(
                        "{} refused a request unprocessed ({}): sending it again on a new connection",
                        self.server,
                        e.error()
                    );
                    req = match (kept, copied) {
                        (Some(head), _) => from_head(head),
                        (None, Some(copied)) => copied,
                        // `copied` is made whenever the request is replayable and nothing is kept.
                        (None, None) => return Err(SendError::Http(e.into_error())),
                    };
                    fresh = true;
                }
            }
        }
    }

    /// A connection of this worker that takes another stream (a new one if `fresh`, or none
    /// does), and its usage; and, if this call opened it, how it ends.
    async fn connection(&self, fresh: bool) -> Result<Connection<B>, SendError> {
        if !fresh && let Some((sender, usage)) = self.pick() {
            return Ok((sender, usage, None));
        }
        let _opening = self.slot().opening.lock().await;
        // Another request may have opened one while this one waited.
        if !fresh && let Some((sender, usage)) = self.pick() {
            return Ok((sender, usage, None));
        }
        let (sender, usage, ended) = self.open().await?;
        Ok((sender, usage, Some(ended)))
    }

    /// A connection of this worker that takes another stream, and its usage.
    fn pick(&self) -> Option<(http2::SendRequest<B>, Arc<Usage>)> {
        let mut conns = self.lock();
        conns.retain(|c| !c.sender.is_closed());
        let conn = conns
            .iter()
            .find(|c| c.usage.streams.load(Ordering::Relaxed) < MAX_STREAMS)?;
        Some((conn.sender.clone(), conn.usage.clone()))
    }

    /// Open a connection, keep it for this worker, and hand it out, with the error it ends with
    /// (if it ends with one).
    async fn open(
        &self,
    ) -> Result<
        (
            http2::SendRequest<B>,
            Arc<Usage>,
            oneshot::Receiver<hyper::Error>,
        ),
        SendError,
    > {
        let io = self
            .connector
            .connect(&self.target, &self.server)
            .await
            .map_err(SendError::Connect)?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(SendError::Http)?;
        let (ended, ended_with) = oneshot::channel();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("upstream HTTP/2 connection ended with an error: {e}");
                let _ = ended.send(e);
            }
        });
        let usage = Arc::new(Usage::default());
        self.lock().push(Conn {
            sender: sender.clone(),
            usage: usage.clone(),
        });
        Ok((sender, usage, ended_with))
    }

    /// Close the connections of every worker that carried no stream for the idle timeout, and
    /// those the server closed; returns how many.
    pub(crate) fn sweep(&self) -> usize {
        let now = now_ms();
        self.slots
            .iter()
            .map(|slot| {
                let mut conns = slot.conns.lock();
                let before = conns.len();
                conns.retain(|c| {
                    let idle = c.usage.idle_for(now).is_some_and(|d| d > self.idle_timeout);
                    !(c.sender.is_closed() || idle)
                });
                before - conns.len()
            })
            .sum()
    }

    /// Open connections, over all workers.
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn connections(&self) -> usize {
        self.slots.iter().map(|slot| slot.conns.lock().len()).sum()
    }

    fn slot(&self) -> &Slot<B> {
        &self.slots[worker() % self.slots.len()]
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Conn<B>>> {
        self.slot().conns.lock()
    }
}

/// Whether the server refused the request without processing it: a GOAWAY whose last stream id
/// is below the request's, or `REFUSED_STREAM`.
fn refused_unprocessed(e: &hyper::Error) -> bool {
    find_source::<h2::Error>(e).is_some_and(|h2| {
        (h2.is_go_away() && h2.is_remote())
            || (h2.is_reset() && h2.is_remote() && h2.reason() == Some(h2::Reason::REFUSED_STREAM))
    })
}

/// One stream in flight, counted on its connection until dropped (by its response body, or
/// by the WebSocket tunnel it became).
#[derive(Debug)]
pub(crate) struct Stream(Arc<Usage>);

impl Stream {
    fn start(usage: Arc<Usage>) -> Stream {
        usage.streams.fetch_add(1, Ordering::Relaxed);
        usage.last_used.store(now_ms(), Ordering::Relaxed);
        Stream(usage)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.0.last_used.store(now_ms(), Ordering::Relaxed);
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body from an HTTP/2 backend; its stream counts as in flight until it ends.
#[derive(Debug)]
pub(crate) struct StreamBody {
    body: Incoming,
    /// `None` once a tunnel took it.
    stream: Option<Stream>,
}

impl StreamBody {
    /// The stream's place on its connection, for a WebSocket tunnel that outlives this body:
    /// the tunnel still occupies a stream there.
    pub(crate) fn take_stream(&mut self) -> Option<Stream> {
        self.stream.take()
    }
}

impl http_body::Body for StreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
