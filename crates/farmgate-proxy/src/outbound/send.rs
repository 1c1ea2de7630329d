//! What the connection pools share: the request body they send, why a send failed, which
//! worker's slots a request uses, and rebuilding a request to send it again.

use std::cell::Cell;

use bytes::Bytes;
use http::{Request, Uri};

use super::connect::ConnectError;
use super::failure::find_source;

/// What a pool can send as a request body (the proxy's [`Body`](super::body::Body); the pool
/// only hands it to hyper).
pub(crate) trait RequestBody:
    http_body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
    + Default
    + Send
    + Unpin
    + 'static
{
}

impl<B> RequestBody for B where
    B: http_body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Default
        + Send
        + Unpin
        + 'static
{
}

/// How many idle-connection lists a pool keeps, one per worker; workers beyond it share lists
/// (`worker() % SLOTS`), which is correct, only less local.
pub(crate) const SLOTS: usize = 32;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Make this thread worker `index`: requests sent from it use the idle lists of that slot.
/// The runtime calls it when it starts a worker thread; other threads count as worker 0.
pub(crate) fn set_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

pub(crate) fn worker() -> usize {
    WORKER.with(Cell::get)
}

/// Why a request got no response from the server.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be opened.
    Connect(ConnectError),
    /// The connection failed while sending the request or reading the response head.
    Http(hyper::Error),
}

/// A copy of a body-less request, with its `:protocol` (an extended CONNECT's WebSocket).
pub(crate) fn copy<B: Default>(req: &Request<B>) -> Request<B> {
    let mut copy = bodyless(req.method(), req.uri(), req.version(), req.headers());
    keep_protocol(req.extensions(), &mut copy);
    copy
}

/// A body-less request with the head `head`, its `:protocol` included.
pub(crate) fn from_head<B: Default>(head: &http::request::Parts) -> Request<B> {
    let mut req = bodyless(&head.method, &head.uri, head.version, &head.headers);
    keep_protocol(&head.extensions, &mut req);
    req
}

/// An HTTP/2 extended CONNECT's `:protocol` travels as an extension: a resent WebSocket
/// handshake without it would be a plain CONNECT.
fn keep_protocol<B>(from: &http::Extensions, to: &mut Request<B>) {
    if let Some(protocol) = from.get::<hyper::ext::Protocol>() {
        to.extensions_mut().insert(protocol.clone());
    }
}

/// A body-less request with this head (extensions are not copied).
pub(crate) fn bodyless<B: Default>(
    method: &http::Method,
    uri: &Uri,
    version: http::Version,
    headers: &http::HeaderMap,
) -> Request<B> {
    let mut req = Request::new(B::default());
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri.clone();
    *req.version_mut() = version;
    *req.headers_mut() = headers.clone();
    req
}

/// Whether requests with `method` may be repeated automatically (RFC 9110 §9.2.2; PUT and
/// DELETE are idempotent too, but repeating them blindly after a reset is more than most
/// operators expect of a proxy).
pub(crate) fn is_idempotent(method: &http::Method) -> bool {
    matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    )
}

/// Whether `e` says the server closed or reset the connection without answering: the
/// signature of a pooled connection that went stale as we used it. Not a TLS alert (a gate
/// that refuses us says so), not a malformed or late answer.
pub(crate) fn closed_under_us(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        return true;
    }
    // A TLS alert arrives as InvalidData, and is not one of these.
    find_source::<std::io::Error>(e).is_some_and(|io| {
        matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use http::{Method, Request};
    use hyper::ext::Protocol;

    use super::{copy, from_head};

    #[test]
    fn a_resent_websocket_handshake_keeps_its_protocol() {
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .uri("https://gate.farm.test/ws")
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(Protocol::from_static("websocket"));
        let copied = copy(&req);
        let (head, ()) = req.into_parts();
        let rebuilt: Request<()> = from_head(&head);
        for again in [copied, rebuilt] {
            assert_eq!(again.method(), Method::CONNECT);
            assert_eq!(again.headers()["sec-websocket-version"], "13");
            assert_eq!(
                again.extensions().get::<Protocol>().map(Protocol::as_str),
                Some("websocket")
            );
        }
    }
}
