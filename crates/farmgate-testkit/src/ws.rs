//! WebSocket in tests: an origin that speaks RFC 6455 on raw sockets — it reads the opening
//! handshake and answers it by hand, then echoes every message — and clients that open a
//! WebSocket through a proxy over an HTTP/1.1 Upgrade or an HTTP/2 extended CONNECT (RFC 8441).
//!
//! The origin answers by path: `/ws...` accepts the WebSocket (101) and echoes; `/ok` answers
//! an upgrade request with a plain `200`, `/upgrade-required` with `426`, without switching;
//! any other request without an upgrade gets `200 plain`. It records every request head it
//! receives.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failure here is a test failure

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::{SinkExt as _, StreamExt as _};
use http::Request;
use http_body_util::{BodyExt as _, Empty};
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::client::TlsClient;

/// A request head as the origin received it: the request line, then each header.
pub type Head = Vec<String>;

/// A running WebSocket origin.
#[derive(Debug)]
pub struct WsOrigin {
    /// Where it listens (plain TCP on loopback).
    pub addr: SocketAddr,
    heads: Arc<Mutex<Vec<Head>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WsOrigin {
    /// Start one on a free loopback port.
    pub async fn start() -> WsOrigin {
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        let (addr, task) = crate::serve_each(move |tcp| serve(tcp, seen.clone())).await;
        WsOrigin { addr, heads, task }
    }

    /// Every request head received so far, in order.
    pub fn heads(&self) -> Vec<Head> {
        self.heads.lock().unwrap().clone()
    }

    /// The values of header `name` (any case) in `head`.
    pub fn header<'h>(head: &'h Head, name: &str) -> Vec<&'h str> {
        head.iter()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect()
    }
}

impl Drop for WsOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection: requests answered one after another until a WebSocket takes it over.
async fn serve(mut tcp: TcpStream, heads: Arc<Mutex<Vec<Head>>>) {
    let mut buffer = Vec::new();
    loop {
        let Some(end) = read_head(&mut tcp, &mut buffer).await else {
            return;
        };
        let head: Head = String::from_utf8_lossy(&buffer[..end])
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        buffer.drain(..end + 4);
        heads.lock().unwrap().push(head.clone());
        let path = head[0].split(' ').nth(1).unwrap_or("/").to_owned();
        let key = WsOrigin::header(&head, "sec-websocket-key")
            .first()
            .map(|k| (*k).to_owned());
        let wants_websocket = WsOrigin::header(&head, "upgrade")
            .iter()
            .any(|u| u.eq_ignore_ascii_case("websocket"));
        match (wants_websocket, key, path.as_str()) {
            (true, Some(key), p) if p.starts_with("/ws") => {
                let answer = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                    accept(&key)
                );
                tcp.write_all(answer.as_bytes()).await.unwrap();
                let ws =
                    WebSocketStream::from_partially_read(tcp, buffer, Role::Server, None).await;
                echo(ws).await;
                return;
            }
            (_, _, "/upgrade-required") => {
                respond(&mut tcp, "426 Upgrade Required", "upgrade elsewhere").await;
            }
            _ => respond(&mut tcp, "200 OK", "plain").await,
        }
    }
}

/// Read until the end of a request head; its length in `buffer`, or `None` at end of stream.
async fn read_head(tcp: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(end);
        }
        let mut chunk = [0u8; 4096];
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

async fn respond(tcp: &mut TcpStream, status: &str, body: &str) {
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(answer.as_bytes()).await.unwrap();
}

async fn echo<S>(mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(message)) = ws.next().await {
        let echoed = match message {
            Message::Text(_) | Message::Binary(_) => ws.send(message).await.is_ok(),
            Message::Close(_) => false,
            _ => true,
        };
        if !echoed {
            return;
        }
    }
}

/// `Sec-WebSocket-Accept` for `key`, computed here independently of the proxy's code.
fn accept(key: &str) -> String {
    use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
    let mut input = key.as_bytes().to_vec();
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    STANDARD.encode(digest(&SHA1_FOR_LEGACY_USE_ONLY, &input).as_ref())
}

/// A WebSocket opened over an HTTP/1.1 Upgrade through `client`'s TLS to `addr`, at `path`.
pub async fn connect_http1(
    client: &TlsClient,
    addr: SocketAddr,
    path: &str,
) -> WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>> {
    let tls = client.handshake(addr).await.unwrap();
    let host = client.host();
    let (ws, response) = tokio_tungstenite::client_async(format!("ws://{host}{path}"), tls)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    ws
}

/// A WebSocket opened over an HTTP/2 extended CONNECT (RFC 8441) through `client`'s TLS (ALPN
/// h2) to `addr`, at `path`.
pub async fn connect_h2(
    client: &TlsClient,
    addr: SocketAddr,
    path: &str,
) -> WebSocketStream<TokioIo<Upgraded>> {
    let tls = client.handshake(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    let host = client.host();
    // An ordinary request first: its answer comes after the server's SETTINGS, which must
    // have enabled extended CONNECT before one is sent.
    let first = Request::get(format!("https://{host}/"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let answered = sender.send_request(first).await.unwrap();
    let _ = answered.into_body().collect().await;
    let mut request = Request::builder()
        .method("CONNECT")
        .uri(format!("https://{host}{path}"))
        .header("sec-websocket-version", "13")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    request
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let mut response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200, "{response:?}");
    let upgraded = hyper::upgrade::on(&mut response).await.unwrap();
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await
}

/// Send `message` and read the next message back.
pub async fn round_trip<S>(ws: &mut WebSocketStream<S>, message: Message) -> Message
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(message).await.unwrap();
    loop {
        match ws.next().await.expect("the WebSocket closed").unwrap() {
            Message::Ping(_) | Message::Pong(_) => continue,
            other => return other,
        }
    }
}
