//! Pooled HTTP/1.1 connections to one backend server.
//!
//! Each server keeps, for each worker thread, a stack of idle connections (most recently used
//! on top, so the warmest connection is reused and the coldest ones age out). A worker reuses
//! only the connections it opened, whose tasks run on its own runtime, so a request and the
//! backend connection it travels on never wake another thread. A request takes one, or opens a new one
//! when none is idle; its response body carries the connection and puts it back when the body
//! has been read to its end. A body dropped before its end takes the connection with it, since
//! the connection still holds unread bytes.
//!
//! A connection to a `send_proxy` upstream began with a PROXY header naming one client
//! connection: it is reused only for requests of that same client connection, so the header
//! is true of every request it carries (HAProxy likewise keys its server connections on the
//! PROXY header they were opened with). Other requests, and health checks, open their own.
//!
//! Idle connections that no request needed for a while are surplus: at every sweep (the
//! runtime runs one every few seconds), half of those that stayed idle through the whole interval are closed (as HAProxy's
//! `pool-purge-delay` does), keeping the most recently used one per worker until the upstream's
//! idle timeout. A burst's connections, and the memory they hold at both ends, go away within
//! seconds of its end instead of lingering for the idle timeout; a returning load finds half
//! of them still warm at each step.
//!
//! This replaces hyper-util's generic pooled client on the hot path: no pool-wide map keyed by
//! hashed scheme and authority, no task spawned per request to wait for the connection to
//! become idle, and the request goes out in origin form as it is.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use parking_lot::{Mutex, MutexGuard};

use super::connect::{ConnectionId, Connector, Target, relayed};
use super::send::{
    RequestBody, SLOTS, SendError, bodyless, closed_under_us, copy, is_idempotent, worker,
};

/// The most a connection reads from its server at once: the size of the largest body chunk
/// held per response in flight. hyper's default (about 400 KiB) multiplied by every connection
/// streaming a large body made most of the proxy's peak memory; 64 KiB chunks still amortise
/// the per-chunk work.
const MAX_READ_BUFFER: usize = 64 * 1024;

const KEEP_ALIVE: http::HeaderName = http::HeaderName::from_static("keep-alive");

/// The idle connections to one server.
#[derive(Debug)]
pub(crate) struct Pool<B> {
    /// Where the connector connects.
    target: Target,
    /// The address as text, for errors and logs.
    server: Arc<str>,
    connector: Connector,
    idle_timeout: Duration,
    /// Indexed by worker ([`set_worker`]).
    idle: Box<[Slot<B>]>,
}

/// One worker's idle connections, on cache lines of its own (workers lock theirs on every
/// request; sharing a line would bounce it between cores).
#[derive(Debug)]
#[repr(align(128))]
struct Slot<B>(Mutex<IdleList<Idle<B>>>);

impl<B> Default for Slot<B> {
    fn default() -> Self {
        Slot(Mutex::default())
    }
}

/// A stack of idle connections, most recently used on top.
#[derive(Debug)]
struct IdleList<T> {
    conns: Vec<T>,
    /// How many at the bottom no request took since the last sweep: requests take from the
    /// top, so the stack's lowest height since then.
    untouched: usize,
}

impl<T> Default for IdleList<T> {
    fn default() -> Self {
        IdleList {
            conns: Vec::new(),
            untouched: 0,
        }
    }
}

impl<T> IdleList<T> {
    fn pop(&mut self) -> Option<T> {
        let idle = self.conns.pop();
        self.untouched = self.untouched.min(self.conns.len());
        idle
    }

    /// The most recently used one that `fits`, taken out.
    fn take(&mut self, fits: impl Fn(&T) -> bool) -> Option<T> {
        match self.conns.last() {
            // Nearly always: the top one (every connection fits where send_proxy is off).
            Some(top) if fits(top) => self.pop(),
            _ => {
                let at = self.conns.iter().rposition(fits)?;
                self.untouched = self.untouched.min(at);
                Some(self.conns.remove(at))
            }
        }
    }

    /// Close the oldest `n`.
    fn drop_oldest(&mut self, n: usize) {
        self.conns.drain(..n);
        self.untouched = self.untouched.saturating_sub(n);
    }

    /// Close half of the connections that stayed idle since the last sweep, keeping the most
    /// recently used one; returns how many were closed.
    fn sweep(&mut self) -> usize {
        let surplus = self.untouched.min(self.conns.len().saturating_sub(1));
        let closed = surplus.div_ceil(2);
        self.drop_oldest(closed);
        self.untouched = self.conns.len();
        closed
    }
}

#[derive(Debug)]
struct Idle<B> {
    sender: http1::SendRequest<B>,
    since: Instant,
    /// How long it may stay idle: the upstream's idle timeout, or less if the server said so.
    limit: Duration,
    /// With `send_proxy`, the client connection its PROXY header names.
    owner: Option<ConnectionId>,
}

impl<B> Idle<B> {
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.since) > self.limit
    }
}

impl<B: RequestBody> Pool<B> {
    pub(crate) fn new(
        target: Target,
        server: Arc<str>,
        connector: Connector,
        idle_timeout: Duration,
    ) -> Pool<B> {
        Pool {
            target,
            server,
            connector,
            idle_timeout,
            idle: (0..SLOTS).map(|_| Slot::default()).collect(),
        }
    }

    /// Send `req` (origin form) over an idle connection, or a new one if none is idle. A request
    /// that an idle connection closed under it before sending is sent again on another one,
    /// as it never reached the server. A body-less idempotent request whose reused connection
    /// the server closed or reset before answering (it timed out the idle connection, or it is
    /// shutting down, just as we sent) is sent once more on a new connection, as nginx does
    /// with its cached connections: RFC 9110 §9.2.2 allows repeating such a request, and the
    /// server did nothing wrong. The request is built again from `kept` where the caller keeps
    /// its head anyway (for retries on other servers), else from a copy made before sending.
    pub(crate) async fn send(
        self: &Arc<Self>,
        mut req: Request<B>,
        kept: Option<&http::request::Parts>,
    ) -> Result<Response<PooledBody<B>>, SendError> {
        let replayable = http_body::Body::is_end_stream(req.body()) && is_idempotent(req.method());
        // Without send_proxy, which is nearly always, every connection is anyone's: not even
        // the task-local is read.
        let owner = if self.connector.sends_proxy() {
            relayed().map(|r| r.connection)
        } else {
            None
        };
        let mut fresh = false;
        loop {
            let idle = if fresh {
                None
            } else {
                self.take_idle(owner).await
            };
            let (mut sender, reused) = match idle {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            let resend = reused && replayable;
            let copied = (resend && kept.is_none()).then(|| copy(&req));
            match sender.try_send_request(req).await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    let limit = keep_alive_limit(&parts.headers)
                        .map_or(self.idle_timeout, |l| l.min(self.idle_timeout));
                    let checkin = Checkin::new(self, sender, limit, owner);
                    let body = PooledBody::new(body, checkin);
                    return Ok(Response::from_parts(parts, body));
                }
                Err(mut e) => {
                    if let Some(unsent) = e.take_message().filter(|_| reused) {
                        req = unsent;
                        continue;
                    }
                    if !(resend && closed_under_us(e.error())) {
                        return Err(SendError::Http(e.into_error()));
                    }
                    tracing::debug!(
                        "pooled connection to {} closed as we sent ({}): sending again on a new one",
                        self.server,
                        e.error()
                    );
                    req = match (kept, copied) {
                        (Some(head), _) => {
                            bodyless(&head.method, &head.uri, head.version, &head.headers)
                        }
                        (None, Some(copied)) => copied,
                        // `copied` is made whenever `resend` holds and nothing is kept.
                        (None, None) => return Err(SendError::Http(e.into_error())),
                    };
                    fresh = true;
                }
            }
        }
    }

    /// The most recently used idle connection of `owner` that is still open and ready.
    async fn take_idle(&self, owner: Option<ConnectionId>) -> Option<http1::SendRequest<B>> {
        loop {
            let idle = self.lock().take(|i| i.owner == owner)?;
            if idle.sender.is_closed() || idle.expired(Instant::now()) {
                continue;
            }
            let mut sender = idle.sender;
            // A connection goes back to the pool when its last response body has been read; its
            // task may not have noticed yet, which takes one turn of the runtime at most.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    async fn connect(&self) -> Result<http1::SendRequest<B>, SendError> {
        let io = self
            .connector
            .connect(&self.target, &self.server)
            .await
            .map_err(SendError::Connect)?;
        let (sender, connection) = http1::Builder::new()
            .max_buf_size(MAX_READ_BUFFER)
            .handshake(io)
            .await
            .map_err(SendError::Http)?;
        tokio::spawn(async move {
            // With upgrades: a WebSocket answered 101 takes the connection over (see `Body`).
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!("upstream connection ended with an error: {e}");
            }
        });
        Ok(sender)
    }

    fn checkin(&self, sender: http1::SendRequest<B>, limit: Duration, owner: Option<ConnectionId>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.lock();
        // The oldest connections sit at the bottom: drop the ones idle for too long.
        let expired = idle.conns.iter().take_while(|i| i.expired(now)).count();
        idle.drop_oldest(expired);
        idle.conns.push(Idle {
            sender,
            since: now,
            limit,
            owner,
        });
    }

    /// Close surplus idle connections (see the module's documentation), in every worker's
    /// stack; returns how many were closed.
    pub(crate) fn sweep(&self) -> usize {
        self.idle.iter().map(|slot| lock(slot).sweep()).sum()
    }

    /// Idle connections, over all workers.
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn idle(&self) -> usize {
        self.idle.iter().map(|slot| lock(slot).conns.len()).sum()
    }

    /// This worker's idle connections.
    fn lock(&self) -> MutexGuard<'_, IdleList<Idle<B>>> {
        lock(&self.idle[worker() % self.idle.len()])
    }
}

fn lock<B>(slot: &Slot<B>) -> MutexGuard<'_, IdleList<Idle<B>>> {
    slot.0.lock()
}

/// A connection on loan to one response, returned to its pool by [`Checkin::finish`].
#[derive(Debug)]
struct Checkin<B: RequestBody> {
    pool: Arc<Pool<B>>,
    sender: http1::SendRequest<B>,
    /// How long it may then stay idle.
    limit: Duration,
    /// Whose connection it is, with `send_proxy`.
    owner: Option<ConnectionId>,
}

impl<B: RequestBody> Checkin<B> {
    fn new(
        pool: &Arc<Pool<B>>,
        sender: http1::SendRequest<B>,
        limit: Duration,
        owner: Option<ConnectionId>,
    ) -> Checkin<B> {
        Checkin {
            pool: pool.clone(),
            sender,
            limit,
            owner,
        }
    }

    fn finish(self) {
        self.pool.checkin(self.sender, self.limit, self.owner);
    }
}

/// A response body from a backend; when it has been read to its end, the connection it came on
/// goes back to the pool.
#[derive(Debug)]
pub(crate) struct PooledBody<B: RequestBody> {
    body: Incoming,
    /// `None` once the connection has gone back.
    checkin: Option<Checkin<B>>,
}

impl<B: RequestBody> PooledBody<B> {
    fn new(body: Incoming, checkin: Checkin<B>) -> PooledBody<B> {
        let mut pooled = PooledBody {
            body,
            checkin: Some(checkin),
        };
        pooled.release_if_done();
        pooled
    }

    /// The connection this response came on is no longer the pool's: a `101 Switching
    /// Protocols` turned it into a tunnel.
    pub(crate) fn forget_connection(&mut self) {
        self.checkin = None;
    }

    fn release_if_done(&mut self) {
        if http_body::Body::is_end_stream(&self.body)
            && let Some(checkin) = self.checkin.take()
        {
            checkin.finish();
        }
    }
}

impl<B: RequestBody> http_body::Body for PooledBody<B> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some(checkin) = this.checkin.take() {
                    checkin.finish();
                }
            }
            // A failed body leaves the connection unusable: dropping the sender closes it.
            Poll::Ready(Some(Err(_))) => this.checkin = None,
            Poll::Ready(Some(Ok(_))) => this.release_if_done(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// How long a server said it keeps an idle connection (`Keep-Alive: timeout=N`, RFC 2068
/// §19.7.1, as Apache, Node.js and farmgate send it), less a margin for the time a request
/// takes to reach it: one second, or half of `N` when `N` is two seconds or less. A pooled
/// connection idle for longer is closed, never reused, so no request meets a connection the
/// server is closing.
///
/// Every response from a farmgate gate carries the header, so this runs per request: a
/// constant name (no parsing of `"keep-alive"` per lookup) and byte splits (no `char`
/// searchers). `to_str` lets through visible ASCII, spaces and tabs only, so trimming ASCII
/// whitespace is `str::trim`.
fn keep_alive_limit(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(KEEP_ALIVE)?.to_str().ok()?;
    let seconds: u64 = value.as_bytes().split(|&b| b == b',').find_map(|param| {
        let equals = param.iter().position(|&b| b == b'=')?;
        let (name, n) = (&param[..equals], &param[equals + 1..]);
        if !name.trim_ascii().eq_ignore_ascii_case(b"timeout") {
            return None;
        }
        std::str::from_utf8(n.trim_ascii()).ok()?.parse().ok()
    })?;
    let told = Duration::from_secs(seconds);
    let margin = if told > Duration::from_secs(2) {
        Duration::from_secs(1)
    } else {
        told / 2
    };
    Some(told - margin)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use std::time::Duration;

    use super::{IdleList, keep_alive_limit};

    fn limit(value: &str) -> Option<Duration> {
        let mut headers = http::HeaderMap::new();
        headers.insert("keep-alive", http::HeaderValue::from_str(value).unwrap());
        keep_alive_limit(&headers)
    }

    #[test]
    fn a_keep_alive_timeout_leaves_a_margin() {
        assert_eq!(limit("timeout=30"), Some(Duration::from_secs(29)));
        assert_eq!(limit("timeout=5, max=100"), Some(Duration::from_secs(4)));
        assert_eq!(limit("max=100, Timeout = 2"), Some(Duration::from_secs(1)));
        assert_eq!(limit("timeout=1"), Some(Duration::from_millis(500)));
        assert_eq!(limit("timeout=0"), Some(Duration::ZERO));
        assert_eq!(limit("max=100"), None);
        assert_eq!(limit("timeout=soon"), None);
        assert_eq!(
            limit("max=5, timeout=x, timeout=\t7 "),
            Some(Duration::from_secs(6))
        );
        assert_eq!(limit("timeout"), None);
        assert_eq!(keep_alive_limit(&http::HeaderMap::new()), None);
    }

    fn list(n: usize) -> IdleList<usize> {
        IdleList {
            conns: (0..n).collect(),
            untouched: 0,
        }
    }

    #[test]
    fn a_sweep_closes_half_of_what_stayed_idle_since_the_last_one_and_keeps_the_newest() {
        let mut idle = list(8);
        assert_eq!(
            idle.sweep(),
            0,
            "nothing has been idle for a whole interval yet"
        );
        let closed: Vec<usize> = std::iter::repeat_with(|| idle.sweep()).take(5).collect();
        assert_eq!(closed, [4, 2, 1, 0, 0]);
        assert_eq!(idle.conns, [7], "the most recently used stays");
    }

    #[test]
    fn connections_a_request_took_are_not_surplus() {
        let mut idle = list(8);
        idle.sweep();
        // A request takes three and gives them back: the stack never went below five.
        let taken: Vec<usize> = std::iter::repeat_with(|| idle.pop().unwrap_or_default())
            .take(3)
            .collect();
        idle.conns.extend(taken.into_iter().rev());
        assert_eq!(idle.sweep(), 3, "half of the five left alone, rounded up");
        assert_eq!(idle.conns, [3, 4, 5, 6, 7]);
    }

    #[test]
    fn a_connection_is_taken_only_by_what_it_fits() {
        let mut idle = list(6);
        idle.sweep();
        assert_eq!(idle.take(|&c| c % 2 == 0), Some(4), "the newest that fits");
        assert_eq!(idle.conns, [0, 1, 2, 3, 5]);
        assert_eq!(idle.take(|&c| c == 5), Some(5), "the top, as pop takes it");
        assert_eq!(idle.take(|&c| c > 9), None);
        assert_eq!(idle.sweep(), 2, "half of the three left alone, rounded up");
    }

    #[test]
    fn expired_connections_leave_the_untouched_count_too() {
        let mut idle = list(6);
        idle.sweep();
        idle.drop_oldest(4);
        assert_eq!(idle.sweep(), 1, "two left, one kept");
        assert_eq!(idle.conns, [5]);
    }
}
