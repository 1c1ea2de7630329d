//! gRPC in tests, by hand on hyper (HTTP/2, length-prefixed messages, status in trailers): a
//! service speaking cleartext HTTP/2 (what gRPC apps behind a proxy speak) and a client over
//! TLS. The service answers three methods of `echo.Echo`:
//! - `Unary`: the message it got;
//! - `Stream`: as many messages (`message 0`, `message 1`, …) as the decimal number it got;
//! - `Fail`: no message, `grpc-status: 5` (NOT_FOUND) and a `grpc-message`.
//!
//! It records the request headers (the gRPC metadata) of every call.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failure here is a test failure

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

use crate::client::TlsClient;

/// A running gRPC test service.
#[derive(Debug)]
pub struct GrpcService {
    /// Where it listens: cleartext HTTP/2 with prior knowledge.
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<HeaderMap>>>,
    task: tokio::task::JoinHandle<()>,
}

impl GrpcService {
    /// Start one on a free loopback port.
    pub async fn start() -> GrpcService {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        let (addr, task) = crate::serve_each(move |tcp| {
            let seen = seen.clone();
            async move {
                let service = service_fn(move |req| answer(req, seen.clone()));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .http2_only()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            }
        })
        .await;
        GrpcService { addr, calls, task }
    }

    /// The request headers of every call so far.
    pub fn calls(&self) -> Vec<HeaderMap> {
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for GrpcService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type ReplyBody = BoxBody<Bytes, Infallible>;

async fn answer(
    req: Request<Incoming>,
    calls: Arc<Mutex<Vec<HeaderMap>>>,
) -> Result<Response<ReplyBody>, Infallible> {
    calls.lock().unwrap().push(req.headers().clone());
    let method = req.uri().path().to_owned();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let got = decode(&body).into_iter().next().unwrap_or_default();
    let (messages, status, message) = match method.as_str() {
        "/echo.Echo/Unary" => (vec![got], "0", None),
        "/echo.Echo/Stream" => {
            let n: usize = String::from_utf8_lossy(&got).parse().unwrap_or(0);
            let messages = (0..n)
                .map(|i| Bytes::from(format!("message {i}")))
                .collect();
            (messages, "0", None)
        }
        "/echo.Echo/Fail" => (Vec::new(), "5", Some("no such thing")),
        _ => (Vec::new(), "12", Some("unimplemented")),
    };
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static(status));
    if let Some(message) = message {
        trailers.insert("grpc-message", HeaderValue::from_static(message));
    }
    let frames = messages
        .into_iter()
        .map(|m| Ok(Frame::data(frame(&m))))
        .chain(std::iter::once(Ok(Frame::trailers(trailers))));
    let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
    let mut response = Response::new(body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    Ok(response)
}

/// One message in gRPC's framing: uncompressed, 4-byte big-endian length, the bytes.
fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(u32::try_from(message.len()).unwrap());
    out.put_slice(message);
    out.freeze()
}

/// Every message of a gRPC body.
fn decode(mut body: &[u8]) -> Vec<Bytes> {
    let mut messages = Vec::new();
    while body.len() >= 5 {
        let length = (&body[1..5]).get_u32() as usize;
        let end = (5 + length).min(body.len());
        messages.push(Bytes::copy_from_slice(&body[5..end]));
        body = &body[end..];
    }
    messages
}

/// What a call came back with.
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status (200 for any gRPC answer).
    pub http_status: u16,
    /// The messages.
    pub messages: Vec<Bytes>,
    /// The trailers (`grpc-status`, `grpc-message`).
    pub trailers: HeaderMap,
}

impl Reply {
    /// `grpc-status`, as the trailers say.
    pub fn status(&self) -> &str {
        self.trailers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("(none)")
    }
}

/// Call `method` (e.g. `/echo.Echo/Unary`) with `message` through `client` (HTTP/2 over TLS)
/// at `addr`.
pub async fn call(client: &TlsClient, addr: SocketAddr, method: &str, message: &[u8]) -> Reply {
    let tls = client.handshake(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::post(format!("https://{}{method}", client.host()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(frame(message)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let http_status = response.status().as_u16();
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    Reply {
        http_status,
        messages: decode(&collected.to_bytes()),
        trailers,
    }
}
