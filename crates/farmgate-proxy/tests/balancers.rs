//! An edge behind a layer-4 load balancer: the PROXY header a listed balancer sends names the
//! client everywhere (X-Forwarded-For, limits); a listed source without one is closed; an
//! unlisted source's header is never believed; `trusted_proxies` keep and extend forwarding
//! headers; `send_proxy` names the client to a backend that wants it. Each client connects
//! from its own 127.0.0.x address; 127.0.0.5 plays the balancer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use farmgate_proxy::Server;
use farmgate_testkit::client::{Probe, TlsClient, empty};
use farmgate_testkit::origin::{Origin, header_values, parse_echo};
use farmgate_testkit::pki::TestPki;
use ppp::{PartialResult, v1, v2};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::farm::{SITE, edge_listener, start};
use crate::limits::{client, edge, limited};

/// The balancer's address, listed in `proxy_protocol.from`.
const BALANCER: &str = "127.0.0.5";
const BEHIND_A_BALANCER: &str = "proxy_protocol = { from = [\"127.0.0.5/32\"] }";

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// A v2 PROXY header naming `client`, connected to `destination`.
fn v2_header(client: &str, destination: &str) -> Vec<u8> {
    v2::Builder::with_addresses(
        v2::Version::Two | v2::Command::Proxy,
        v2::Protocol::Stream,
        (addr(client), addr(destination)),
    )
    .build()
    .unwrap()
}

/// The balancer, relaying a browser's connection with `header` before it.
fn relayed(pki: &TestPki, header: &[u8]) -> TlsClient {
    client(pki, BALANCER).with_prefix(header)
}

/// The X-Forwarded-For the app saw for one `GET /` from `browser`.
async fn forwarded_for(browser: &TlsClient, edge: SocketAddr) -> String {
    let answer = browser.get(edge, "/").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let (_, headers) = parse_echo(&answer.body);
    header_values(&headers, "x-forwarded-for").join(" | ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_a_proxy_header_names_is_the_client_the_app_sees() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let edge = edge(&pki, &origin, BEHIND_A_BALANCER, "").await;
    let at = edge.local_addr("public").unwrap();
    let v1 = format!("PROXY TCP4 203.0.113.7 {} 51234 443\r\n", at.ip());
    let browser = relayed(&pki, v1.as_bytes());
    assert_eq!(forwarded_for(&browser, at).await, "203.0.113.7");
    let v2 = v2_header("[2001:db8::7]:51234", "[2001:db8::1]:443");
    let browser = relayed(&pki, &v2);
    assert_eq!(forwarded_for(&browser, at).await, "2001:db8::7");
    // HTTP/2 too: the header comes before TLS, whatever is spoken inside.
    let browser = relayed(&pki, &v2_header("198.51.100.9:1", "10.0.0.1:443")).http2();
    assert_eq!(forwarded_for(&browser, at).await, "198.51.100.9");
    // The balancer's own connections (its health checks) say LOCAL: they are from it.
    let local = v2::Builder::with_addresses(
        v2::Version::Two | v2::Command::Local,
        v2::Protocol::Unspecified,
        v2::Addresses::Unspecified,
    )
    .build()
    .unwrap();
    assert_eq!(forwarded_for(&relayed(&pki, &local), at).await, BALANCER);
    assert_eq!(
        forwarded_for(&relayed(&pki, b"PROXY UNKNOWN\r\n"), at).await,
        BALANCER
    );
    // Another source is an ordinary client, served as before.
    assert_eq!(
        forwarded_for(&client(&pki, "127.0.0.6"), at).await,
        "127.0.0.6"
    );
    assert_eq!(limited(&edge, "proxy_protocol"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balancer_connection_without_a_valid_header_is_closed_and_counted() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let edge = edge(&pki, &origin, BEHIND_A_BALANCER, "").await;
    let at = edge.local_addr("public").unwrap();
    // TLS straight away: the balancer was not told to send PROXY headers.
    let plain = client(&pki, BALANCER).probe(at).await;
    assert!(matches!(plain, Probe::Failed(_)), "{plain:?}");
    // A header that is not one.
    let garbled = relayed(&pki, b"PROXY TCP4 203.0.113.300 10.0.0.1 1 2\r\n")
        .probe(at)
        .await;
    assert!(matches!(garbled, Probe::Failed(_)), "{garbled:?}");
    // The balancer hangs up mid-header.
    let mut tcp = client(&pki, BALANCER).tcp(at).await.unwrap();
    tcp.write_all(b"PROXY TCP4 203.0.113.7 ").await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest).await;
    assert!(rest.is_empty());
    assert_eq!(limited(&edge, "proxy_protocol"), 3);
    assert_eq!(origin.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_from_an_unlisted_source_is_never_believed() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let edge = edge(&pki, &origin, BEHIND_A_BALANCER, "").await;
    let at = edge.local_addr("public").unwrap();
    // Before TLS: read as the start of a TLS handshake, which it is not (the edge answers
    // with an alert, or closes).
    let forged = client(&pki, "127.0.0.6")
        .with_prefix(&v2_header("203.0.113.7:1", "10.0.0.1:443"))
        .probe(at)
        .await;
    assert!(!matches!(forged, Probe::Answered(_)), "{forged:?}");
    let forged = client(&pki, "127.0.0.6")
        .with_prefix(b"PROXY TCP4 203.0.113.7 10.0.0.1 1 443\r\n")
        .probe(at)
        .await;
    assert!(!matches!(forged, Probe::Answered(_)), "{forged:?}");
    assert_eq!(origin.requests(), 0);
    // Not counted as a balancer's failure: it is not from a balancer.
    assert_eq!(limited(&edge, "proxy_protocol"), 0);

    // On a plain-HTTP listener the header is the start of a request that does not parse.
    let text = format!(
        "[[listener]]\nname = \"plain\"\nlisten = \"127.0.0.1:0\"\n{BEHIND_A_BALANCER}\n[[listener.route]]\nupstream = \"farm\"\n[upstream.farm]\nservers = [\"{}\"]\n",
        origin.addr
    );
    let plain = start(pki.dir(), "plain", &text).await;
    let at = plain.local_addr("plain").unwrap();
    let mut tcp = client(&pki, "127.0.0.6").tcp(at).await.unwrap();
    tcp.write_all(b"PROXY TCP4 203.0.113.7 10.0.0.1 1 80\r\nGET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    let _ = tcp.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(origin.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_client_limit_counts_the_named_client_not_the_balancer() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let edge = edge(
        &pki,
        &origin,
        BEHIND_A_BALANCER,
        "max_connections_per_client = 1",
    )
    .await;
    let at = edge.local_addr("public").unwrap();
    let first = relayed(&pki, &v2_header("203.0.113.7:1000", "10.0.0.1:443"));
    let mut held = first.connect(at).await;
    assert_eq!(held.get("/").await.status, 200);
    // Another browser through the same balancer: its own share.
    let second = relayed(&pki, &v2_header("203.0.113.8:1000", "10.0.0.1:443"));
    assert_eq!(second.get(at, "/").await.status, 200);
    // The first browser again, on a second connection: over its share, closed before TLS.
    let again = relayed(&pki, &v2_header("203.0.113.7:1001", "10.0.0.1:443"));
    assert!(matches!(again.probe(at).await, Probe::Failed(_)));
    assert_eq!(limited(&edge, "max_connections_per_client"), 1);
    assert_eq!(
        held.get("/").await.status,
        200,
        "the first one still served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_keep_and_extend_forwarding_headers_and_others_lose_them() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let keys = "trusted_proxies = [\"127.0.0.8\"]";
    let edge = edge(&pki, &origin, keys, "").await;
    let at = edge.local_addr("public").unwrap();
    let seen = |browser: TlsClient| async move {
        let mut conn = browser.connect(at).await;
        let req = conn
            .request("GET", "/")
            .header("x-forwarded-for", "198.51.100.1")
            .header("forwarded", "for=198.51.100.1;proto=https")
            .body(empty())
            .unwrap();
        let answer = conn.fetch(req).await;
        let (_, headers) = parse_echo(&answer.body);
        let values = |name| header_values(&headers, name).join(" | ");
        (values("x-forwarded-for"), values("forwarded"))
    };
    assert_eq!(
        seen(client(&pki, "127.0.0.8")).await,
        (
            "198.51.100.1, 127.0.0.8".to_owned(),
            "for=198.51.100.1;proto=https".to_owned()
        )
    );
    assert_eq!(
        seen(client(&pki, "127.0.0.9")).await,
        ("127.0.0.9".to_owned(), String::new())
    );
    // Keeping them is a relaxation, and counted: once, for the trusted client.
    assert!(
        edge.metrics()
            .encode()
            .contains(r#"farmgate_forwarded_kept_total{listener="public"} 1"#),
        "{}",
        edge.metrics().encode()
    );
}

/// A backend that wants PROXY headers (as nginx's `listen ... proxy_protocol`): it reads the
/// header each connection starts with, then answers every HTTP/1.1 request on it with the
/// client the header named. It counts its connections.
struct ProxiedBackend {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

impl ProxiedBackend {
    async fn start() -> ProxiedBackend {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = socket.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_proxied(tcp));
            }
        });
        ProxiedBackend {
            addr,
            connections,
            _task: task,
        }
    }
}

/// One connection of [`ProxiedBackend`].
async fn serve_proxied(mut tcp: TcpStream) {
    let mut buf = Vec::new();
    let (named, len) = loop {
        let parsed = if buf.starts_with(b"PROXY") {
            v1::Header::try_from(buf.as_slice())
                .map(|h| (h.addresses.to_string(), h.header.len()))
                .map_err(|e| e.is_incomplete())
        } else {
            v2::Header::try_from(buf.as_slice())
                .map(|h| (format!("{:?} {:?}", h.command, h.addresses), h.len()))
                .map_err(|e| e.is_incomplete())
        };
        match parsed {
            Ok(found) => break found,
            Err(true) => {}
            Err(false) => return,
        }
        let mut chunk = [0u8; 512];
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    buf.drain(..len);
    loop {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        buf.drain(..end);
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{named}",
            named.len()
        );
        if tcp.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// An edge whose upstream has `send_proxy = version`, in front of `backend`.
async fn sending_edge(pki: &TestPki, backend: &ProxiedBackend, version: &str) -> Server {
    let text = edge_listener(&pki.server(SITE))
        + &format!(
            "[upstream.farm]\nservers = [\"{}\"]\nsend_proxy = \"{version}\"\n",
            backend.addr
        );
    start(pki.dir(), "edge", &text).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_proxy_names_each_client_to_the_backend_on_connections_of_its_own() {
    let pki = TestPki::new();
    let backend = ProxiedBackend::start().await;
    let edge = sending_edge(&pki, &backend, "v2").await;
    let at = edge.local_addr("public").unwrap();
    let browser = client(&pki, "127.0.0.21");
    let mut conn = browser.connect(at).await;
    let first = conn.get("/").await.body;
    assert!(first.starts_with("Proxy IPv4"), "{first}");
    assert!(first.contains("source_address: 127.0.0.21"), "{first}");
    assert!(
        first.contains(&format!("destination_address: {}", at.ip())),
        "{first}"
    );
    assert!(
        first.contains(&format!("destination_port: {}", at.port())),
        "{first}"
    );
    // The same client connection reuses its backend connection.
    assert_eq!(conn.get("/").await.body, first);
    assert_eq!(backend.connections.load(Ordering::SeqCst), 1);
    // Another client gets a connection naming it, never the first one's.
    let other = client(&pki, "127.0.0.22").get(at, "/").await.body;
    assert!(other.contains("source_address: 127.0.0.22"), "{other}");
    assert_eq!(backend.connections.load(Ordering::SeqCst), 2);
    assert!(conn.get("/").await.body.contains("127.0.0.21"));
    assert_eq!(backend.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_proxy_v1_passes_on_the_client_a_balancer_named() {
    let pki = TestPki::new();
    let backend = ProxiedBackend::start().await;
    let text = edge_listener(&pki.server(SITE)).replace(
        "[listener.tls]",
        &format!("{BEHIND_A_BALANCER}\n[listener.tls]"),
    ) + &format!(
        "[upstream.farm]\nservers = [\"{}\"]\nsend_proxy = \"v1\"\n",
        backend.addr
    );
    let edge = start(pki.dir(), "edge", &text).await;
    let at = edge.local_addr("public").unwrap();
    let header = v2_header("203.0.113.7:51234", "192.0.2.1:443");
    let answer = relayed(&pki, &header).get(at, "/").await.body;
    assert_eq!(answer, "PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n");
    let ip: IpAddr = BALANCER.parse().unwrap();
    assert!(!answer.contains(&ip.to_string()));
}
