//! The access log: one line per request, written when its response body has been sent (so the
//! line knows the bytes and the total duration), at `info` on the `access` target.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body::{Frame, SizeHint};

use crate::outbound::{Body, BodyError};

use super::client::TlsInfo;

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

impl Record {
    /// Write the line; `bytes_out` response body bytes were sent, `complete` says whether the
    /// body ended normally (false: the client went away or the backend broke off).
    fn write(&self, bytes_out: u64, complete: bool) {
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

/// The body of a response to a client: as it is, or with the access log line written when it
/// ends.
#[derive(Debug)]
pub(crate) enum ResponseBody {
    /// No access log.
    Plain(Body),
    /// The line is written at the end of the body.
    Logged(Box<Logged>),
}

impl ResponseBody {
    /// `body`, with `record` written when it ends (or when it is dropped unfinished).
    pub(crate) fn logged(body: Body, record: Record) -> ResponseBody {
        ResponseBody::Logged(Box::new(Logged {
            inner: body,
            bytes: 0,
            record: Some(record),
        }))
    }
}

/// A response body on its way to the client, with the access log record written when it ends.
#[derive(Debug)]
pub(crate) struct Logged {
    inner: Body,
    bytes: u64,
    record: Option<Record>,
}

impl Logged {
    fn finish(&mut self, complete: bool) {
        if let Some(record) = self.record.take() {
            record.write(self.bytes, complete);
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        // An empty body (a redirect, a HEAD) is never polled: it is complete nonetheless.
        let complete = http_body::Body::is_end_stream(&self.inner);
        self.finish(complete);
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let logged = match self.get_mut() {
            ResponseBody::Plain(body) => return Pin::new(body).poll_frame(cx),
            ResponseBody::Logged(logged) => logged,
        };
        let polled = Pin::new(&mut logged.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                logged.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                if logged.inner.is_end_stream() {
                    logged.finish(true);
                }
            }
            Poll::Ready(None) => logged.finish(true),
            Poll::Ready(Some(Err(_))) => logged.finish(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Plain(body) => body.is_end_stream(),
            ResponseBody::Logged(logged) => logged.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Plain(body) => body.size_hint(),
            ResponseBody::Logged(logged) => logged.inner.size_hint(),
        }
    }
}
