//! In-process origins: the "true web servers" behind gates, on free loopback ports.
//!
//! An origin answers every request with what it saw, so tests can assert on forwarded headers:
//! the response carries `x-origin: NAME`, and the body lists the request line and every request
//! header, one `name: value` per line. Two paths do more:
//! - `/bytes/N` streams N bytes (generated chunk by chunk, never held whole);
//! - `POST /count` reads the request body as a stream and answers with its length in bytes;
//! - `POST /digest` answers with the body's length and SHA-256 (`LENGTH HEX`);
//! - `/pattern/N` streams N bytes of [`pattern`] (byte `i` is `i % 251`);
//! - `/delay/MS` answers after MS milliseconds (the origin is slow on purpose);
//! - `/status/NNN` answers with status NNN;
//! - `/keep-alive/N` answers with `Keep-Alive: timeout=N` (and never closes an idle
//!   connection itself).
//!
//! It counts the connections it accepted, and the request bodies it received whole (to the
//! end, without error) on `/count` and `/digest`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failure here is a test failure

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

/// A running origin.
#[derive(Debug)]
pub struct Origin {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its name, returned in `x-origin`.
    pub name: String,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    complete_bodies: Arc<AtomicUsize>,
    arrived: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Origin {
    /// Start an origin called `name` on a free loopback port.
    pub async fn start(name: &str) -> Origin {
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        let arrived = Arc::new(tokio::sync::Notify::new());
        let counter = requests.clone();
        let complete_bodies = Arc::new(AtomicUsize::new(0));
        let complete = complete_bodies.clone();
        let notify = arrived.clone();
        let origin_name: Arc<str> = Arc::from(name);
        let (addr, task) = crate::serve_each(move |tcp| {
            accepted.fetch_add(1, Ordering::SeqCst);
            let name = origin_name.clone();
            let counter = counter.clone();
            let notify = notify.clone();
            let complete = complete.clone();
            async move {
                let service = service_fn(move |req| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    notify.notify_waiters();
                    answer(req, name.clone(), complete.clone())
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            }
        })
        .await;
        Origin {
            addr,
            name: name.to_owned(),
            requests,
            connections,
            complete_bodies,
            arrived,
            task,
        }
    }

    /// How many connections it has accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// How many requests it has answered.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// How many request bodies it read to their end (`/count`, `/digest`).
    pub fn complete_bodies(&self) -> usize {
        self.complete_bodies.load(Ordering::SeqCst)
    }

    /// Wait until at least `n` requests have arrived.
    pub async fn wait_for_requests(&self, n: usize) {
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if self.requests() >= n {
                return;
            }
            arrived.await;
        }
    }

    /// Stop listening and close its connections' accept loop (the port refuses from now on).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type OriginBody = BoxBody<Bytes, Infallible>;

async fn answer(
    req: Request<Incoming>,
    name: Arc<str>,
    complete: Arc<AtomicUsize>,
) -> Result<Response<OriginBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let body: OriginBody = if let Some(n) = path.strip_prefix("/bytes/") {
        let total: usize = n.parse().unwrap_or(0);
        stream_bytes(total)
    } else if path == "/digest" {
        let mut body = req.into_body();
        let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut count: u64 = 0;
        let mut whole = true;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Some(data) = frame.data_ref() {
                        count += data.len() as u64;
                        digest.update(data);
                    }
                }
                Err(_) => {
                    whole = false;
                    break;
                }
            }
        }
        if whole {
            complete.fetch_add(1, Ordering::SeqCst);
        }
        full(format!("{count} {}\n", hex(digest.finish().as_ref())))
    } else if let Some(n) = path.strip_prefix("/pattern/") {
        let total: usize = n.parse().unwrap_or(0);
        let frames = PatternStream { sent: 0, total };
        StreamBody::new(frames).boxed()
    } else if path == "/count" {
        let mut body = req.into_body();
        let mut count: u64 = 0;
        let mut whole = true;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => count += frame.data_ref().map_or(0, |d| d.len() as u64),
                Err(_) => {
                    whole = false;
                    break;
                }
            }
        }
        if whole {
            complete.fetch_add(1, Ordering::SeqCst);
        }
        full(format!("{count}\n"))
    } else {
        if let Some(ms) = path.strip_prefix("/delay/") {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        }
        let mut text = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
        for (k, v) in req.headers() {
            text.push_str(&format!(
                "{}: {}\n",
                k,
                String::from_utf8_lossy(v.as_bytes())
            ));
        }
        full(text)
    };
    let mut response = Response::new(body);
    if let Some(code) = path
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| http::StatusCode::from_u16(c).ok())
    {
        *response.status_mut() = code;
    }
    response.headers_mut().insert(
        "x-origin",
        name.parse().expect("origin name is a header value"),
    );
    if let Some(seconds) = path.strip_prefix("/keep-alive/") {
        let value = format!("timeout={seconds}");
        response.headers_mut().insert(
            "keep-alive",
            value.parse().expect("a timeout is a header value"),
        );
    }
    Ok(response)
}

/// Byte `i` of a `/pattern/N` body.
pub fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// `/pattern/N`: N bytes of [`pattern`] in 64 KiB chunks, made as the client reads them.
struct PatternStream {
    sent: usize,
    total: usize,
}

impl futures_core::Stream for PatternStream {
    type Item = Result<Frame<Bytes>, Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let n = (self.total - self.sent).min(64 * 1024);
        if n == 0 {
            return std::task::Poll::Ready(None);
        }
        let chunk: Vec<u8> = (self.sent..self.sent + n).map(pattern).collect();
        self.sent += n;
        std::task::Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn full(text: String) -> OriginBody {
    Full::new(Bytes::from(text)).map_err(|e| match e {}).boxed()
}

/// `total` bytes in 64 KiB chunks, produced as the client reads them.
fn stream_bytes(total: usize) -> OriginBody {
    const CHUNK: usize = 64 * 1024;
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let frames = futures_stream(total, CHUNK, chunk);
    StreamBody::new(frames).boxed()
}

fn futures_stream(
    total: usize,
    size: usize,
    chunk: Bytes,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync {
    ChunkStream {
        left: total,
        size,
        chunk,
    }
}

struct ChunkStream {
    left: usize,
    size: usize,
    chunk: Bytes,
}

impl futures_core::Stream for ChunkStream {
    type Item = Result<Frame<Bytes>, Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(self.size);
        self.left -= n;
        let data = self.chunk.slice(..n);
        std::task::Poll::Ready(Some(Ok(Frame::data(data))))
    }
}

/// Parse an origin's echo body into `(request line, headers)`; header names are lower-case.
pub fn parse_echo(body: &str) -> (String, Vec<(String, String)>) {
    let mut lines = body.lines();
    let first = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    (first, headers)
}

/// The values of header `name` in a parsed echo.
pub fn header_values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}
