//! `max_connections_per_server` and `queue_timeout`: a backend takes no more requests at once
//! than its cap, the others wait in line and are served as slots free, or answered 503 after
//! the queue timeout; a slot frees when its request ends however it ends.
//!
//! The origin here holds each request to `/hold/...` until the test lets one go, so nothing
//! depends on timing: the tests wait for what the proxy reports (`/status`, `/metrics`) or for
//! what the origin saw.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use farmgate_proxy::{Server, ServerStatus, UpstreamStatus};
use farmgate_testkit::pki::TestPki;
use farmgate_testkit::ws::{WsOrigin, round_trip};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::farm::start;
use crate::logs;

/// An origin (HTTP/1.1, and h2c with prior knowledge) that holds every request whose path
/// starts with `/hold` until [`HeldOrigin::release`] lets it go, and answers the others at once;
/// to `/stream` it sends the head and `start` at once, and `end` when released.
pub(crate) struct HeldOrigin {
    pub(crate) addr: SocketAddr,
    /// Requests arrived so far.
    arrived: watch::Receiver<usize>,
    /// Each permit lets one held request go.
    release: Arc<Semaphore>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HeldOrigin {
    pub(crate) async fn start() -> HeldOrigin {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let (arrivals, arrived) = watch::channel(0);
        let arrivals = Arc::new(arrivals);
        let release = Arc::new(Semaphore::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (gate, accepted) = (release.clone(), connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = socket.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let (arrivals, gate) = (arrivals.clone(), gate.clone());
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (arrivals, gate) = (arrivals.clone(), gate.clone());
                    async move {
                        arrivals.send_modify(|n| *n += 1);
                        let path = req.uri().path().to_owned();
                        let (tx, rx) = mpsc::channel(2);
                        if path.starts_with("/stream") {
                            let _ = tx.send(Bytes::from_static(b"start")).await;
                            tokio::spawn(async move {
                                if let Ok(permit) = gate.acquire().await {
                                    permit.forget();
                                }
                                let _ = tx.send(Bytes::from_static(b"end")).await;
                            });
                        } else {
                            if path.starts_with("/hold")
                                && let Ok(permit) = gate.acquire().await
                            {
                                permit.forget();
                            }
                            let _ = tx.send(Bytes::from(path)).await;
                        }
                        Ok::<_, Infallible>(http::Response::new(ChannelBody(rx)))
                    }
                });
                tokio::spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        HeldOrigin {
            addr,
            arrived,
            release,
            connections,
            task,
        }
    }

    /// Wait until `n` requests have arrived.
    pub(crate) async fn arrived(&self, n: usize) {
        let mut arrived = self.arrived.clone();
        arrived.wait_for(|a| *a >= n).await.unwrap();
    }

    /// Requests arrived so far.
    pub(crate) fn requests(&self) -> usize {
        *self.arrived.borrow()
    }

    /// Let `n` held requests go.
    pub(crate) fn release(&self, n: usize) {
        self.release.add_permits(n);
    }
}

/// A response body sent chunk by chunk as the origin decides.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(http_body::Frame::data(c))))
    }
}

impl Drop for HeldOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A running proxy with one upstream, and the directory of its configuration file.
pub(crate) struct Proxy {
    pub(crate) server: Arc<Server>,
    pub(crate) addr: SocketAddr,
    /// The upstream's name.
    name: String,
    pub(crate) config: PathBuf,
    _dir: TestPki,
}

impl Proxy {
    /// The upstream, as `/status` shows it.
    fn upstream(&self) -> UpstreamStatus {
        self.server.status().upstreams.remove(0)
    }

    /// Its first server, as `/status` shows it.
    fn first_server(&self) -> ServerStatus {
        self.upstream().servers.remove(0)
    }

    /// The value of sample `name{upstream="NAME"}` on `/metrics`.
    fn metric(&self, name: &str) -> f64 {
        self.try_metric(name)
            .unwrap_or_else(|| panic!("no {name} in\n{}", self.server.metrics().encode()))
    }

    /// [`Proxy::metric`], `None` if the sample is not there (the queue's appear with its first
    /// waiting request).
    fn try_metric(&self, name: &str) -> Option<f64> {
        let text = self.server.metrics().encode();
        let prefix = format!("{name}{{upstream=\"{}\"}} ", self.name);
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
    }
}

/// A [`HeldOrigin`], and a proxy in front of it whose upstream `name` has `extra` keys.
async fn held(name: &str, extra: &str) -> (HeldOrigin, Proxy) {
    let origin = HeldOrigin::start().await;
    let proxy = proxy(name, &[origin.addr], extra).await;
    (origin, proxy)
}

/// A plain-HTTP proxy whose only route goes to upstream `name`: `servers`, with `extra` keys.
pub(crate) async fn proxy(name: &str, servers: &[SocketAddr], extra: &str) -> Proxy {
    logs::capture();
    let dir = TestPki::new();
    let text = proxy_toml(name, servers, extra);
    let server = start(dir.dir(), name, &text).await;
    let addr = server.local_addr("public").unwrap();
    let config = dir.dir().join(format!("{name}.toml"));
    Proxy {
        server: Arc::new(server),
        addr,
        name: name.to_owned(),
        config,
        _dir: dir,
    }
}

pub(crate) fn proxy_toml(name: &str, servers: &[SocketAddr], extra: &str) -> String {
    let servers = servers
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[[listener]]\nname = \"public\"\nlisten = \"127.0.0.1:0\"\n[[listener.route]]\nupstream = \"{name}\"\n[upstream.{name}]\nservers = [{servers}]\n{extra}\n"
    )
}

/// GET `path` on a new connection; the status line of the answer and how long it took.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> (String, Duration) {
    let started = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.lines().next().unwrap_or_default().to_owned();
    (status, started.elapsed())
}

/// A GET on a connection of its own, running on its own; its answer comes on `done`.
pub(crate) fn spawn_get(
    addr: SocketAddr,
    path: &str,
    done: &mpsc::UnboundedSender<(String, Duration)>,
) {
    let (path, done) = (path.to_owned(), done.clone());
    tokio::spawn(async move {
        let _ = done.send(get(addr, &path).await);
    });
}

/// Wait for `n` answers on `answers`, each a `200 OK`.
async fn served(answers: &mut mpsc::UnboundedReceiver<(String, Duration)>, n: usize) {
    for _ in 0..n {
        assert_eq!(answers.recv().await.unwrap().0, "HTTP/1.1 200 OK");
    }
}

/// Wait until `done` holds, letting the proxy run in between (no sleep: it is checked again
/// each time the runtime has polled its sockets). A minute without it fails the test rather
/// than hanging it.
pub(crate) async fn until(mut done: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        while !done() {
            tokio::task::yield_now().await;
        }
    });
    waited.await.expect("the proxy never got there");
}

#[tokio::test]
async fn capped_at_2_with_a_1s_queue_6_slow_requests_get_2_served_and_4_refused_503() {
    let extra = "max_connections_per_server = 2\nqueue_timeout = \"1s\"";
    let (origin, proxy) = held("six", extra).await;
    let addr = proxy.addr;
    let (done, mut answers) = mpsc::unbounded_channel();
    for _ in 0..6 {
        spawn_get(addr, "/hold/six", &done);
    }
    origin.arrived(2).await;
    // The origin holds the two it has: the first four answers can only be the others.
    let mut refused = Vec::new();
    for _ in 0..4 {
        refused.push(answers.recv().await.unwrap());
    }
    for (status, waited) in &refused {
        assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
        assert!(
            *waited >= Duration::from_secs(1),
            "answered after {waited:?}"
        );
    }
    assert_eq!(origin.requests(), 2, "the cap let no third request through");
    assert_eq!(proxy.first_server().slots_in_use, Some(2));
    origin.release(2);
    served(&mut answers, 2).await;
    assert_eq!(origin.requests(), 2);

    // Said, counted and shown, by upstream.
    let lines = logs::lines_with(&["path=/hold/six", "upstream=six", "status=503"]);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(
        lines[0].contains(
            "upstream six: every server busy (max_connections_per_server = 2) for queue_timeout 1s"
        ),
        "{}",
        lines[0]
    );
    // And, at most once a second, a summary for the upstream.
    assert!(!logs::lines_with(&["upstream six is saturated", "queue_timeout 1s"]).is_empty());
    assert_eq!(proxy.metric("farmgate_upstream_queue_timeouts_total"), 4.0);
    assert_eq!(proxy.metric("farmgate_upstream_queue"), 0.0);
    assert_eq!(proxy.metric("farmgate_upstream_queue_seconds_count"), 4.0);
    assert!(proxy.metric("farmgate_upstream_queue_seconds_sum") >= 4.0);
    let status = proxy.upstream();
    assert_eq!(status.max_connections_per_server, Some(2));
    assert_eq!(status.queue_timeout_ms, 1000);
    assert_eq!((status.queued, status.queue_timeouts), (0, 4));
    assert_eq!(status.servers[0].slots_in_use, Some(0));
}

#[tokio::test]
async fn a_queued_request_is_served_as_soon_as_a_slot_frees() {
    let extra = "max_connections_per_server = 1\nqueue_timeout = \"1h\"";
    let (origin, proxy) = held("line", extra).await;
    let addr = proxy.addr;
    let (done, mut answers) = mpsc::unbounded_channel();
    spawn_get(addr, "/hold/first", &done);
    origin.arrived(1).await;
    spawn_get(addr, "/second", &done);
    until(|| proxy.upstream().queued == 1).await;
    assert_eq!(proxy.metric("farmgate_upstream_queue"), 1.0);
    assert_eq!(origin.requests(), 1, "the second waits at the proxy");
    origin.release(1);
    let mut statuses = vec![
        answers.recv().await.unwrap().0,
        answers.recv().await.unwrap().0,
    ];
    statuses.dedup();
    assert_eq!(statuses, ["HTTP/1.1 200 OK"]);
    assert_eq!(origin.requests(), 2);
    assert_eq!(proxy.metric("farmgate_upstream_queue_seconds_count"), 1.0);
    assert_eq!(proxy.metric("farmgate_upstream_queue_timeouts_total"), 0.0);
    assert_eq!(proxy.upstream().queued, 0);
}

#[tokio::test]
async fn a_slot_is_held_until_the_response_body_ends() {
    let extra = "max_connections_per_server = 1\nqueue_timeout = \"1h\"";
    let (origin, proxy) = held("body", extra).await;
    let addr = proxy.addr;
    let mut streaming = TcpStream::connect(addr).await.unwrap();
    let request = "GET /stream HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n";
    streaming.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    while !String::from_utf8_lossy(&received).contains("start") {
        let mut chunk = [0u8; 4096];
        let n = streaming.read(&mut chunk).await.unwrap();
        assert_ne!(
            n,
            0,
            "closed early: {:?}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&chunk[..n]);
    }
    // The head and a first chunk went out; the body goes on, and holds the slot.
    assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200 OK"));
    assert_eq!(proxy.first_server().slots_in_use, Some(1));
    let (done, mut answers) = mpsc::unbounded_channel();
    spawn_get(addr, "/next", &done);
    until(|| proxy.upstream().queued == 1).await;
    assert_eq!(origin.requests(), 1);
    origin.release(1);
    streaming.read_to_end(&mut received).await.unwrap();
    assert!(String::from_utf8_lossy(&received).contains("end"));
    assert_eq!(answers.recv().await.unwrap().0, "HTTP/1.1 200 OK");
    assert_eq!(origin.requests(), 2);
}

/// A backend that breaks off: `/reset-head` closes without answering, `/reset-body` sends a
/// head and 10 of the 100 bytes it announces, then closes; anything else gets `200 ok`.
async fn breaking_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&seen).into_owned();
                    seen.clear();
                    if head.contains(" /reset-head ") {
                        return;
                    }
                    if head.contains(" /reset-body ") {
                        let cut = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789";
                        let _ = tcp.write_all(cut).await;
                        return;
                    }
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if tcp.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_backend_that_resets_mid_request_or_mid_response_gives_its_slot_back() {
    let backend = breaking_backend().await;
    // A slot that leaked would make the next request wait the whole second, then get 503.
    let extra = "max_connections_per_server = 1\nqueue_timeout = \"1s\"";
    let proxy = proxy("breaking", &[backend], extra).await;
    let addr = proxy.addr;
    let (status, _) = get(addr, "/reset-head").await;
    assert_eq!(status, "HTTP/1.1 502 Bad Gateway");
    assert_eq!(proxy.first_server().slots_in_use, Some(0));
    let (status, _) = get(addr, "/reset-body").await;
    assert_eq!(
        status, "HTTP/1.1 200 OK",
        "the head went out before the cut"
    );
    assert_eq!(proxy.first_server().slots_in_use, Some(0));
    for _ in 0..3 {
        assert_eq!(get(addr, "/").await.0, "HTTP/1.1 200 OK");
    }
    assert_eq!(
        proxy.try_metric("farmgate_upstream_queue_seconds_count"),
        None,
        "no request ever waited"
    );
}

#[tokio::test]
async fn a_client_that_goes_away_frees_its_slot_or_its_place_in_the_queue() {
    let extra = "max_connections_per_server = 1\nqueue_timeout = \"1h\"";
    let (origin, proxy) = held("abort", extra).await;
    let addr = proxy.addr;
    let send = |path: &str| {
        let request = format!("GET {path} HTTP/1.1\r\nhost: app\r\n\r\n");
        async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(request.as_bytes()).await.unwrap();
            tcp
        }
    };
    // One client's request holds the only slot; another's waits.
    let holding = send("/hold/abort").await;
    origin.arrived(1).await;
    let waiting = send("/abort-waiting").await;
    until(|| proxy.upstream().queued == 1).await;
    // The waiting client goes away: it leaves the line.
    drop(waiting);
    until(|| proxy.upstream().queued == 0).await;
    assert_eq!(proxy.metric("farmgate_upstream_queue"), 0.0);
    assert_eq!(proxy.first_server().slots_in_use, Some(1));
    // The holding client goes away, its request still at the origin: the slot frees anyway.
    drop(holding);
    until(|| proxy.first_server().slots_in_use == Some(0)).await;
    // The next request is served at once, without waiting.
    assert_eq!(get(addr, "/after").await.0, "HTTP/1.1 200 OK");
    assert_eq!(
        proxy.metric("farmgate_upstream_queue_seconds_count"),
        0.0,
        "only the abandoned request ever waited, and it was not served"
    );
    assert_eq!(origin.requests(), 2, "/hold/abort and /after");
    origin.release(1);
}

#[tokio::test]
async fn with_an_h2_upstream_the_cap_counts_streams() {
    let extra = "protocol = \"h2\"\nmax_connections_per_server = 2\nqueue_timeout = \"1h\"";
    let (origin, proxy) = held("streams", extra).await;
    let addr = proxy.addr;
    let (done, mut answers) = mpsc::unbounded_channel();
    for _ in 0..3 {
        spawn_get(addr, "/hold/stream", &done);
    }
    origin.arrived(2).await;
    until(|| proxy.upstream().queued == 1).await;
    assert_eq!(origin.requests(), 2);
    assert_eq!(
        origin.connections.load(Ordering::SeqCst),
        1,
        "two streams of one connection"
    );
    assert_eq!(proxy.first_server().slots_in_use, Some(2));
    origin.release(1);
    origin.arrived(3).await;
    origin.release(2);
    served(&mut answers, 3).await;
    assert_eq!(proxy.first_server().slots_in_use, Some(0));
}

#[tokio::test]
async fn a_reload_keeps_requests_in_flight_counted_and_a_larger_cap_lets_the_queue_in() {
    let capped = |n: usize| format!("max_connections_per_server = {n}\nqueue_timeout = \"1h\"");
    let (origin, proxy) = held("reloaded", &capped(2)).await;
    let (addr, path) = (proxy.addr, proxy.config.clone());
    let (done, mut answers) = mpsc::unbounded_channel();
    for _ in 0..2 {
        spawn_get(addr, "/hold/reload", &done);
    }
    origin.arrived(2).await;
    // The same configuration again: the two requests of the old generation still count.
    proxy.server.reload_from(&path).await.unwrap();
    spawn_get(addr, "/hold/reload", &done);
    until(|| proxy.upstream().queued == 1).await;
    assert_eq!(origin.requests(), 2);
    assert_eq!(proxy.first_server().slots_in_use, Some(2));
    // A larger cap lets the waiting request in at once.
    std::fs::write(&path, proxy_toml("reloaded", &[origin.addr], &capped(3))).unwrap();
    proxy.server.reload_from(&path).await.unwrap();
    origin.arrived(3).await;
    assert_eq!(proxy.first_server().slots_in_use, Some(3));
    assert_eq!(proxy.upstream().max_connections_per_server, Some(3));
    origin.release(3);
    served(&mut answers, 3).await;
    assert_eq!(proxy.first_server().slots_in_use, Some(0));
}

#[tokio::test]
async fn a_websocket_holds_its_slot_while_it_is_open() {
    let origin = WsOrigin::start().await;
    let extra = "max_connections_per_server = 1\nqueue_timeout = \"1h\"";
    let proxy = proxy("tunnel", &[origin.addr], extra).await;
    let addr = proxy.addr;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async("ws://app/ws", tcp)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    let echoed = round_trip(&mut ws, Message::Text("hello".into())).await;
    assert_eq!(echoed, Message::Text("hello".into()));
    assert_eq!(proxy.first_server().slots_in_use, Some(1));
    let (done, mut answers) = mpsc::unbounded_channel();
    spawn_get(addr, "/plain", &done);
    until(|| proxy.upstream().queued == 1).await;
    // Closing the WebSocket frees the slot: the waiting request goes through.
    ws.close(None).await.unwrap();
    drop(ws);
    assert_eq!(answers.recv().await.unwrap().0, "HTTP/1.1 200 OK");
    until(|| proxy.first_server().slots_in_use == Some(0)).await;
}

#[tokio::test]
async fn without_a_cap_nothing_is_counted_or_queued() {
    let (origin, proxy) = held("uncapped", "").await;
    let addr = proxy.addr;
    let (done, mut answers) = mpsc::unbounded_channel();
    for _ in 0..4 {
        spawn_get(addr, "/hold/uncapped", &done);
    }
    origin.arrived(4).await;
    let status = proxy.upstream();
    assert_eq!(status.max_connections_per_server, None);
    assert_eq!((status.queued, status.queue_timeouts), (0, 0));
    assert_eq!(status.servers[0].slots_in_use, None);
    origin.release(4);
    served(&mut answers, 4).await;
}
