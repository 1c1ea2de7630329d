//! When forwarding fails: the right status, fast, and a log line that says why.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use farmgate_testkit::client::TlsClient;
use farmgate_testkit::origin::Origin;
use farmgate_testkit::pki::TestPki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::farm::{BACKEND, EDGE, SITE, edge_listener, edge_upstream, gate, start};
use crate::logs;

/// An edge for `SITE` whose upstream `farm` is `servers`, with extra upstream keys.
async fn edge(
    pki: &TestPki,
    servers: &[SocketAddr],
    extra: &str,
    client_pki: &TestPki,
) -> (farmgate_proxy::Server, TlsClient, SocketAddr) {
    logs::capture();
    let site = pki.server(SITE);
    let client = client_pki.client(EDGE);
    let servers: Vec<_> = servers.iter().map(|a| (*a, 1)).collect();
    let text = edge_listener(&site) + &edge_upstream(&servers, &pki.ca_file(), &client, extra);
    let server = start(pki.dir(), "edge", &text).await;
    let addr = server.local_addr("public").unwrap();
    (server, TlsClient::new(&pki.ca_file(), SITE), addr)
}

/// An origin called `name` behind a gate whose certificate names `backend` and which allows
/// the edge: (origin, gate, gate address).
async fn gated_origin(
    pki: &TestPki,
    name: &str,
    backend: &str,
) -> (Origin, farmgate_proxy::Server, SocketAddr) {
    let origin = Origin::start(name).await;
    let backend = pki.server(backend);
    let (server, addr) = gate(
        pki.dir(),
        "gate",
        &backend,
        &pki.ca_file(),
        &["dns:edge.farm.test"],
        origin.addr,
    )
    .await;
    (origin, server, addr)
}

/// An address nothing listens on.
/// A port on loopback address `ip` nothing listens on: distinct IPs give distinct addresses
/// even when the kernel hands out the same free port twice.
async fn closed_port_on(ip: &str) -> SocketAddr {
    let socket = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    socket.local_addr().unwrap()
}

#[tokio::test]
async fn no_route_gives_404() {
    logs::capture();
    let pki = TestPki::new();
    let site = pki.server(SITE);
    let origin = Origin::start("app").await;
    let text = format!(
        r#"
[[listener]]
name = "public"
listen = "127.0.0.1:0"
tls = {{ certificate = {cert:?}, private_key = {key:?} }}
[[listener.route]]
host = "api.farm.test"
upstream = "app"
[[listener.route]]
path_prefix = "/static"
upstream = "app"
[upstream.app]
servers = ["{origin}"]
"#,
        cert = site.cert,
        key = site.key,
        origin = origin.addr,
    );
    let server = start(pki.dir(), "edge", &text).await;
    let addr = server.local_addr("public").unwrap();
    let client = TlsClient::new(&pki.ca_file(), SITE);
    assert_eq!(client.get(addr, "/").await.status, 404);
    assert_eq!(client.get(addr, "/static/app.css").await.status, 200);
    assert_eq!(client.get(addr, "/staticx").await.status, 404);
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn backend_with_wrong_server_name_gives_502_with_reason_logged() {
    let pki = TestPki::new();
    let (origin, _gate, gate_addr) = gated_origin(&pki, "app", "wrong-name.farm.test").await;
    let (_edge, client, addr) = edge(&pki, &[gate_addr], "", &pki).await;
    let r = client.get(addr, "/wrong-name").await;
    assert_eq!(r.status, 502);
    let lines = logs::lines_with(&["path=/wrong-name", "status=502"]);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains(&format!("not valid for the name \"{BACKEND}\"")),
        "{}",
        lines[0]
    );
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn edge_certificate_refused_by_gate_gives_502_with_reason_logged() {
    let pki = TestPki::new();
    let (origin, _gate, gate_addr) = gated_origin(&pki, "app", BACKEND).await;
    // The edge presents a certificate from a CA the gate does not trust.
    let (_edge, client, addr) = edge(&pki, &[gate_addr], "", &TestPki::other()).await;
    let r = client.get(addr, "/refused-cert").await;
    assert_eq!(r.status, 502);
    let lines = logs::lines_with(&["path=/refused-cert", "status=502"]);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("backend refused our client certificate: unknown CA"),
        "{}",
        lines[0]
    );
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn all_backends_down_gives_502_without_waiting() {
    let pki = TestPki::new();
    let down = [
        closed_port_on("127.0.0.2").await,
        closed_port_on("127.0.0.3").await,
    ];
    // A connect timeout longer than any test: a refused connection must not wait for it.
    let (_edge, client, addr) = edge(&pki, &down, "timeouts = { connect = \"1h\" }", &pki).await;
    for _ in 0..2 {
        let r = client.get(addr, "/down").await;
        assert_eq!(r.status, 502);
    }
    assert!(!logs::lines_with(&["path=/down", "status=502", "connection refused"]).is_empty());
}

#[tokio::test]
async fn backend_that_never_completes_the_handshake_gives_502_after_connect_timeout() {
    let pki = TestPki::new();
    // Accepts TCP, then says nothing: the TLS handshake cannot finish.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    let (_edge, client, addr) = edge(
        &pki,
        &[silent_addr],
        "timeouts = { connect = \"300ms\" }",
        &pki,
    )
    .await;
    let r = client.get(addr, "/silent").await;
    assert_eq!(r.status, 502);
    let lines = logs::lines_with(&["path=/silent", "status=502"]);
    assert!(lines[0].contains("timed out after 300ms"), "{}", lines[0]);
    hold.abort();
}

#[tokio::test]
async fn slow_backend_gives_504() {
    let pki = TestPki::new();
    let (_origin, _gate, gate_addr) = gated_origin(&pki, "slow", BACKEND).await;
    let (_edge, client, addr) = edge(
        &pki,
        &[gate_addr],
        "timeouts = { response_header = \"300ms\" }",
        &pki,
    )
    .await;
    let r = client.get(addr, "/delay/5000").await;
    assert_eq!(r.status, 504);
    let lines = logs::lines_with(&["path=/delay/5000", "status=504"]);
    assert!(
        lines[0].contains("no response header within 300ms"),
        "{}",
        lines[0]
    );
}

#[tokio::test]
async fn ambiguous_request_is_refused_with_400_and_never_forwarded() {
    let pki = TestPki::new();
    let (origin, _gate, gate_addr) = gated_origin(&pki, "app", BACKEND).await;
    let (_edge, client, addr) = edge(&pki, &[gate_addr], "", &pki).await;
    let shapes = [
        "POST / HTTP/1.1\r\nhost: www.farm.test\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
        "POST / HTTP/1.1\r\nhost: www.farm.test\r\ntransfer-encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nhost: www.farm.test\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nhost: www.farm.test\r\ncontent-length: +5\r\n\r\nhello",
        "GET / HTTP/1.1\r\nhost: www.farm.test\r\nhost: evil.example\r\n\r\n",
        "GET http://evil.example/ HTTP/1.1\r\nhost: www.farm.test\r\n\r\n",
        "GET / HTTP/1.1\r\nhost: www.farm.test\r\nx-folded: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nhost: www.farm.test\r\nx-nul: a\0b\r\n\r\n",
        "GET / HTTP/1.1\r\nhost: www.farm.test\r\nx-ctl: a\x01b\r\n\r\n",
        "GET / HTTP/1.1\r\nhost: www.farm.test\r\nx-del: a\x7fb\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.2\r\nhost: www.farm.test\r\n\r\n",
    ];
    for shape in shapes {
        let mut stream = client.handshake(addr).await.unwrap();
        stream.write_all(shape.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{shape:?} got {answer:?}"
        );
    }
    assert_eq!(origin.requests(), 0);

    // Content-Length with Transfer-Encoding: hyper, our parser, drops the Content-Length (RFC 9112
    // §6.3: chunked wins) and closes the connection after answering. What reaches the backend is
    // re-framed as chunked, so it cannot be read two ways.
    let mut stream = client.handshake(addr).await.unwrap();
    let both = "POST /count HTTP/1.1\r\nhost: www.farm.test\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    stream.write_all(both.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(
        answer.ends_with("\r\n\r\n5\n"),
        "the backend read exactly the chunked body: {answer:?}"
    );
}

/// A backend that answers the first request on each connection and then, like a server whose
/// keep-alive timeout fires just as the proxy reuses the connection, reads the next request
/// and closes without answering. It counts connections and requests.
struct ClosingBackend {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl ClosingBackend {
    async fn start() -> ClosingBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (c, r) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    for answer in [true, false] {
                        // Read one request head (the tests send no bodies that matter here).
                        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            match tcp.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        }
                        seen.clear();
                        r.fetch_add(1, Ordering::SeqCst);
                        if answer {
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if tcp.write_all(ok).await.is_err() {
                                return;
                            }
                        }
                    }
                    // Dropped: closed with the second request unanswered.
                });
            }
        });
        ClosingBackend {
            addr,
            connections,
            requests,
        }
    }

    fn counts(&self) -> (usize, usize) {
        (
            self.connections.load(Ordering::SeqCst),
            self.requests.load(Ordering::SeqCst),
        )
    }
}

/// A plain-HTTP proxy in front of `backends` (round robin).
async fn plain_proxy(
    pki: &TestPki,
    backends: &[SocketAddr],
) -> (farmgate_proxy::Server, SocketAddr) {
    logs::capture();
    let servers = backends
        .iter()
        .map(|b| format!("\"{b}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "[[listener]]\nname = \"public\"\nlisten = \"127.0.0.1:0\"\n[[listener.route]]\nupstream = \"app\"\n[upstream.app]\nservers = [{servers}]\n"
    );
    let server = start(pki.dir(), "plain", &text).await;
    let addr = server.local_addr("public").unwrap();
    (server, addr)
}

/// Send `request` on a new connection and return the status line of the answer.
async fn status_of(addr: SocketAddr, request: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn get_on_a_pooled_connection_the_backend_closes_is_sent_again_on_a_new_one() {
    let pki = TestPki::new();
    let backend = ClosingBackend::start().await;
    let (_proxy, addr) = plain_proxy(&pki, &[backend.addr]).await;
    let get = "GET / HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n";
    assert_eq!(status_of(addr, get).await, "HTTP/1.1 200 OK");
    assert_eq!(backend.counts(), (1, 1));
    // The pooled connection is reused, and the backend closes it on this request: the client
    // never sees that.
    assert_eq!(status_of(addr, get).await, "HTTP/1.1 200 OK");
    assert_eq!(
        backend.counts(),
        (2, 3),
        "one more connection, the request sent twice"
    );
}

#[tokio::test]
async fn post_on_a_pooled_connection_the_backend_closes_is_not_repeated() {
    let pki = TestPki::new();
    let backend = ClosingBackend::start().await;
    let (_proxy, addr) = plain_proxy(&pki, &[backend.addr]).await;
    let get = "GET / HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n";
    assert_eq!(status_of(addr, get).await, "HTTP/1.1 200 OK");
    let post =
        "POST /order HTTP/1.1\r\nhost: app\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    assert_eq!(status_of(addr, post).await, "HTTP/1.1 502 Bad Gateway");
    assert_eq!(
        backend.counts(),
        (1, 2),
        "the POST reached the backend once, never again"
    );
    let lines = logs::lines_with(&["path=/order", "status=502"]);
    assert!(
        lines[0].contains("failed before responding"),
        "{}",
        lines[0]
    );
}

#[tokio::test]
async fn get_resent_after_a_stale_connection_to_one_of_several_servers() {
    let pki = TestPki::new();
    let (a, b) = (ClosingBackend::start().await, ClosingBackend::start().await);
    let (_proxy, addr) = plain_proxy(&pki, &[a.addr, b.addr]).await;
    let get = "GET / HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n";
    for _ in 0..4 {
        assert_eq!(status_of(addr, get).await, "HTTP/1.1 200 OK");
    }
    // Round robin: a, b, then a and b again on their pooled connections, which they close;
    // each request goes again to the same server on a new connection, not to the other one.
    assert_eq!(a.counts(), (2, 3));
    assert_eq!(b.counts(), (2, 3));
}
