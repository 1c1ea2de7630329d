//! The admin endpoint over real loopback sockets: the bearer token, and the limits that keep
//! slow or idle clients from holding it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod limits;
mod token;

use std::net::SocketAddr;
use std::sync::Arc;

use farmgate_admin::{Admin, Limits, Metrics, Token};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// An admin endpoint serving on a free port, whose token the test sets as a reload would.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub token: Arc<Mutex<Option<Arc<Token>>>>,
    _stop: watch::Sender<bool>,
}

impl Endpoint {
    /// Serve on `bind` (e.g. `127.0.0.1:0`) with `token`, `limits`, and a `/status` of `status`.
    pub async fn start(bind: &str, token: Option<&str>, limits: Limits, status: String) -> Self {
        let listener = TcpListener::bind(bind).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cell = Arc::new(Mutex::new(token.map(|t| Arc::new(Token::new(t).unwrap()))));
        let read = cell.clone();
        let admin = Admin {
            metrics: Arc::new(Metrics::new()),
            status: Box::new(move || serde_json::Value::String(status.clone())),
            token: Box::new(move || read.lock().clone()),
            upstreams: Box::new(|| serde_json::json!({ "upstreams": [] })),
            drain: Box::new(|_| None),
            limits,
        };
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(farmgate_admin::serve(listener, Arc::new(admin), stopped));
        Endpoint {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            token: cell,
            _stop: stop,
        }
    }

    /// Serve on loopback with `token` and the default limits.
    pub async fn with_token(token: Option<&str>) -> Self {
        Endpoint::start("127.0.0.1:0", token, Limits::default(), "up".into()).await
    }

    /// Make `token` the one in force, as a reload does.
    pub fn set_token(&self, token: &str) {
        *self.token.lock() = Some(Arc::new(Token::new(token).unwrap()));
    }

    /// `GET path` with `authorization` (the whole header value), on a connection of its own.
    pub async fn get(&self, path: &str, authorization: Option<&str>) -> Answer {
        let mut tcp = TcpStream::connect(self.addr).await.unwrap();
        tcp.write_all(request(path, authorization).as_bytes())
            .await
            .unwrap();
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await.unwrap();
        Answer::parse(&raw)
    }
}

/// A `GET` request for `path` that closes its connection.
pub fn request(path: &str, authorization: Option<&str>) -> String {
    let authorization = authorization
        .map(|a| format!("authorization: {a}\r\n"))
        .unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nhost: admin\r\n{authorization}connection: close\r\n\r\n")
}

/// A response: status code, head (lower-cased), body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    /// The value of header `name` (lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            (n == name).then(|| v.trim())
        })
    }

    fn parse(raw: &[u8]) -> Answer {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        Answer {
            status,
            head: head.to_ascii_lowercase(),
            body: body.to_owned(),
        }
    }
}
