//! One connection serving HTTP/1.1 or HTTP/2 to its end, and what it watches beside its
//! client: shutdown, reloads (a gate re-checks its client), the idle timer.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use farmgate_admin::Raised;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::generation::ListenerRt;

use super::activity::{Activity, Meter};
use super::client::ConnInfo;
use super::clients::Limit;
use super::forward;
use super::on_wake::OnWake;

/// What a connection listens for besides its client.
pub(crate) struct Signals {
    /// The server is shutting down.
    pub(crate) stopping: watch::Receiver<bool>,
    /// A reload happened.
    pub(crate) reloaded: watch::Receiver<u64>,
}

/// Serve HTTP on a connection `setup` accepted (its HTTP settings and timeouts stay with the
/// connection), each request with the configuration current when it starts (`info`), until
/// the client closes, the server stops, or a reload closes it (see [`reason_to_close`]).
pub(crate) async fn serve_http<S>(
    stream: S,
    info: ConnInfo,
    setup: &ListenerRt,
    signals: Signals,
    span: &tracing::Span,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let open = Raised::new(setup.open_gauge(&info.shared.metrics));
    let timeouts = setup.config.timeouts;
    let info = Arc::new(info);
    let meter = info.meter.clone();
    let io = TokioIo::new(Activity::new(stream, meter.clone()));
    let h2 = info.tls.as_ref().is_some_and(|t| t.alpn == "h2");
    let watcher = Watcher {
        info: &info,
        setup,
        h2,
        span,
        meter: &meter,
        idle_limit: timeouts.idle,
        send_limit: timeouts.send,
    };
    // An HTTP/2 stream's future is moved several times while hyper spawns its task, and ours
    // holds the whole upstream exchange (some 4 KiB): boxed, each move is a pointer's. An
    // HTTP/1 request's future is moved once, into its connection's slot, where a box would
    // cost more than it saves.
    let served = info.clone();
    let result = if h2 {
        let service = service_fn(move |req| Box::pin(forward::handle(req, served.clone())));
        let conn = setup.http.serve_connection_with_upgrades(io, service);
        watcher.run(conn, |c| c.graceful_shutdown(), signals).await
    } else {
        let service = service_fn(move |req| forward::handle(req, served.clone()));
        let conn = setup.http.serve_connection_with_upgrades(io, service);
        watcher.run(conn, |c| c.graceful_shutdown(), signals).await
    };
    drop(open);
    let Err(e) = result else { return };
    let hyper_error = e.downcast_ref::<hyper::Error>();
    let _in = span.enter();
    if hyper_error.is_some_and(hyper::Error::is_timeout) {
        // Debug, not info: every idle HTTP/1.1 keep-alive connection ends this way.
        tracing::debug!(
            "closed: no complete request header within {:?} (listener timeouts.request_header)",
            timeouts.request_header
        );
    } else if hyper_error.is_some_and(hyper::Error::is_parse_too_large) {
        // hyper answered 431 before closing.
        info.counted.clients().refused(Limit::RequestHeader);
        tracing::debug!("closed: request header over max_request_header (431)");
    } else {
        tracing::debug!("connection ended with an error: {e}");
    }
}

/// What a connection's task watches besides its client, and what it needs to act on it.
struct Watcher<'a> {
    info: &'a ConnInfo,
    setup: &'a ListenerRt,
    /// The connection speaks HTTP/2.
    h2: bool,
    span: &'a tracing::Span,
    meter: &'a Meter,
    idle_limit: Duration,
    send_limit: Duration,
}

impl Watcher<'_> {
    /// Serve `conn` to its end, shutting it down gracefully (`graceful`) when the server
    /// stops, when a reload changed what it was set up with or no longer allows its client,
    /// or when it has been idle too long; dropping it when its client has taken no response
    /// byte for `send_limit`.
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
            info,
            setup,
            h2,
            span,
            meter,
            idle_limit,
            send_limit,
        } = *self;
        tokio::pin!(conn);
        let Signals {
            mut stopping,
            reloaded,
        } = signals;
        // One timer for both limits, ticking at half the shorter: each fires between its
        // limit and one and a half times it.
        let period = (idle_limit.min(send_limit) / 2).max(Duration::from_millis(50));
        let mut tick = tokio::time::interval(period);
        tick.reset();
        let mut clock = Clock::new(meter);
        // Once closing gracefully, only the send timeout is left to watch: a client that
        // reads nothing would hold a closing connection (and its share of the limits) forever.
        let mut closing = *stopping.borrow_and_update();
        if closing {
            graceful(conn.as_mut());
        }
        let events = Events {
            stopping,
            reloaded,
            tick,
            finish: info.finish.clone(),
        };
        let mut events = OnWake::new(events.next());
        loop {
            tokio::select! {
                biased;
                result = conn.as_mut() => break result,
                (event, rest) = &mut events => {
                    let close = match event {
                        Event::Stopping | Event::Reloaded | Event::Finish if closing => false,
                        Event::Stopping => true,
                        Event::Reloaded => {
                            // The next request takes the new configuration; the old
                            // generation need not wait for this connection to end.
                            info.refresh();
                            match reason_to_close(info, setup) {
                                None => false,
                                Some(Closing::Now(why)) => {
                                    span.in_scope(|| tracing::info!("closing after the current request: {why}"));
                                    true
                                }
                                // HTTP/2 says so with GOAWAY, and requests the client sends
                                // after it are refused unprocessed (once the connection is
                                // past its preface; before, closing would drop what the
                                // client sent). An HTTP/1.1 connection closed while idle
                                // would race the client's next request, so that request is
                                // answered first, with `Connection: close`.
                                Some(Closing::AfterNextResponse(why)) if h2 && info.has_served() => {
                                    span.in_scope(|| tracing::debug!("closing after the current requests: {why}"));
                                    true
                                }
                                Some(Closing::AfterNextResponse(why)) => {
                                    span.in_scope(|| tracing::debug!("closing after the next response: {why}"));
                                    info.close_after_next_response();
                                    false
                                }
                            }
                        }
                        Event::Finish => true,
                        Event::Tick => match clock.tick(meter, Instant::now(), idle_limit, send_limit) {
                            Stalled::No => false,
                            Stalled::Idle if closing => false,
                            Stalled::Idle => {
                                span.in_scope(|| {
                                    tracing::debug!("closing: idle for {idle_limit:?} (listener timeouts.idle)");
                                });
                                true
                            }
                            Stalled::NotReading => {
                                // A client that reads nothing would not read a graceful close
                                // either: the connection goes at once.
                                info.counted.clients().refused(Limit::Send);
                                span.in_scope(|| {
                                    tracing::debug!("closed: the client took no response byte for {send_limit:?} (listener timeouts.send)");
                                });
                                break Ok(());
                            }
                        },
                    };
                    if close {
                        graceful(conn.as_mut());
                        closing = true;
                    }
                    events = OnWake::new(rest.next());
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
    tick: tokio::time::Interval,
    finish: Arc<Notify>,
}

enum Event {
    /// The server began to shut down.
    Stopping,
    /// A reload happened.
    Reloaded,
    /// Time to check whether the connection moved any bytes since the last tick.
    Tick,
    /// A closing HTTP/2 connection answered a request: time for GOAWAY.
    Finish,
}

impl Events {
    /// The next event, with the watchers handed back for the one after.
    async fn next(mut self) -> (Event, Events) {
        let event = tokio::select! {
            _ = self.stopping.changed() => Event::Stopping,
            _ = self.reloaded.changed() => Event::Reloaded,
            _ = self.tick.tick() => Event::Tick,
            _ = self.finish.notified() => Event::Finish,
        };
        (event, self)
    }
}

/// When a connection last moved bytes, and last wrote some, as its timer saw them.
struct Clock {
    moved: u64,
    moved_at: Instant,
    wrote: u64,
    wrote_at: Instant,
}

/// Whether a connection is stuck.
#[derive(Debug, PartialEq, Eq)]
enum Stalled {
    No,
    /// Nothing moved either way for `timeouts.idle`.
    Idle,
    /// A response is waiting to be written, and the client took none of it for
    /// `timeouts.send`.
    NotReading,
}

impl Clock {
    fn new(meter: &Meter) -> Clock {
        let now = Instant::now();
        Clock {
            moved: meter.moved(),
            moved_at: now,
            wrote: meter.writes().0,
            wrote_at: now,
        }
    }

    /// What the counters say at `now`.
    fn tick(&mut self, meter: &Meter, now: Instant, idle: Duration, send: Duration) -> Stalled {
        let moved = meter.moved();
        if moved != self.moved {
            self.moved = moved;
            self.moved_at = now;
        }
        let (wrote, blocked) = meter.writes();
        if wrote != self.wrote || !blocked {
            self.wrote = wrote;
            self.wrote_at = now;
        }
        if now.duration_since(self.wrote_at) >= send {
            Stalled::NotReading
        } else if now.duration_since(self.moved_at) >= idle {
            Stalled::Idle
        } else {
            Stalled::No
        }
    }
}

/// How a reload ends a connection.
enum Closing {
    /// Its client may no longer be served: in-flight requests finish, nothing more is read.
    Now(String),
    /// Its client must reconnect to get what the listener serves now; it loses nothing.
    AfterNextResponse(String),
}

/// Why, after a reload, this connection must close, if it must: its client may no longer be
/// served ([`ConnInfo::refused_after_reload`]) — then at once; or the listener now sets connections up
/// differently (other certificates, TLS or not, gate or not, other timeouts: see
/// [`ListenerRt::sets_up_like`]) — then after the next response.
fn reason_to_close(info: &ConnInfo, setup: &ListenerRt) -> Option<Closing> {
    if let Some(why) = info.refused_after_reload(&setup.name) {
        return Some(Closing::Now(why));
    }
    let generation = info.shared.generation();
    let listener = generation.listener(&setup.name)?;
    (!listener.sets_up_like(setup)).then(|| {
        Closing::AfterNextResponse(
            "a reload changed the listener's certificates, TLS settings, timeouts or header limit"
                .to_owned(),
        )
    })
}
