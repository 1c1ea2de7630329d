//! WebSocket through edge and gate: HTTP/1.1 Upgrade and HTTP/2 extended CONNECT clients, the
//! verified identity on the handshake, no tunnel without a real 101, `Upgrade: h2c` never
//! forwarded, idle tunnels closed, tunnels ended by the shutdown grace, and by a gate's reload
//! that no longer allows their client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use farmgate_proxy::Server;
use farmgate_testkit::client::TlsClient;
use farmgate_testkit::pki::TestPki;
use farmgate_testkit::ws::{WsOrigin, connect_h2, connect_http1, round_trip};
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;

use crate::farm::{BACKEND, EDGE, SITE, edge_upstream, gate, start};

/// Edge → gate → WebSocket origin, the edge routing only `/ws`, `/ok` and `/upgrade-required`.
struct WsFarm {
    pki: TestPki,
    origin: WsOrigin,
    gate: Server,
    edge: Server,
    edge_addr: SocketAddr,
}

impl WsFarm {
    async fn start(upstream_extra: &str, edge_extra: &str) -> WsFarm {
        crate::logs::capture();
        let pki = TestPki::new();
        let origin = WsOrigin::start().await;
        let allow = format!("dns:{EDGE}");
        let (gate, gate_addr) = gate(
            pki.dir(),
            "gate",
            &pki.server(BACKEND),
            &pki.ca_file(),
            &[&allow],
            origin.addr,
        )
        .await;
        let site = pki.server(SITE);
        let routes: String = ["/ws", "/ok", "/upgrade-required", "/plain"]
            .iter()
            .map(|p| format!("[[listener.route]]\npath_prefix = \"{p}\"\nupstream = \"farm\"\n"))
            .collect();
        let text = format!(
            "{edge_extra}\n[[listener]]\nname = \"public\"\nlisten = \"127.0.0.1:0\"\n[listener.tls]\ncertificate = {:?}\nprivate_key = {:?}\n{routes}",
            site.cert, site.key
        ) + &edge_upstream(
            &[(gate_addr, 1)],
            &pki.ca_file(),
            &pki.client(EDGE),
            upstream_extra,
        );
        let edge = start(pki.dir(), "edge", &text).await;
        let edge_addr = edge.local_addr("public").unwrap();
        WsFarm {
            pki,
            origin,
            gate,
            edge,
            edge_addr,
        }
    }

    fn browser(&self) -> TlsClient {
        TlsClient::new(&self.pki.ca_file(), SITE)
    }

    /// The identity the app saw on the last WebSocket handshake (XFCC).
    fn identity_seen(&self) -> String {
        let heads = self.origin.heads();
        let head = heads
            .iter()
            .rev()
            .find(|h| h[0].starts_with("GET /ws"))
            .expect("a WebSocket handshake reached the app");
        let xfcc = WsOrigin::header(head, "x-forwarded-client-cert");
        assert_eq!(xfcc.len(), 1, "{head:#?}");
        xfcc[0].to_owned()
    }
}

/// Messages of 1 B to 64 KiB, text and binary.
fn messages() -> impl Iterator<Item = Message> {
    [1usize, 7, 125, 126, 1000, 16 * 1024, 65_535, 64 * 1024]
        .into_iter()
        .cycle()
        .take(200)
        .enumerate()
        .map(|(i, size)| {
            if i % 2 == 0 {
                Message::Binary(vec![(i % 251) as u8; size].into())
            } else {
                Message::Text("é".repeat(size / 2).into())
            }
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_passes_edge_and_gate_over_http1_with_the_identity() {
    let farm = WsFarm::start("", "").await;
    let mut ws = connect_http1(&farm.browser(), farm.edge_addr, "/ws/chat").await;
    for message in messages() {
        let back = round_trip(&mut ws, message.clone()).await;
        assert_eq!(back, message);
    }
    assert!(farm.identity_seen().contains("DNS=edge.farm.test"));
    assert!(
        farm.edge
            .metrics()
            .encode()
            .contains(r#"farmgate_tunnels_open{upstream="farm"} 1"#)
    );
    let status = farm.edge.status();
    let farm_status = status.upstreams.iter().find(|u| u.name == "farm").unwrap();
    assert_eq!(farm_status.tunnels_open, 1, "/status counts it too");
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_passes_over_an_http2_extended_connect() {
    let farm = WsFarm::start("", "").await;
    let mut ws = connect_h2(&farm.browser().http2(), farm.edge_addr, "/ws/h2").await;
    for message in messages() {
        let back = round_trip(&mut ws, message.clone()).await;
        assert_eq!(back, message);
    }
    // The app got an HTTP/1.1 handshake with a key of the edge's making, and the identity.
    let heads = farm.origin.heads();
    let head = heads
        .iter()
        .rev()
        .find(|h| h[0].starts_with("GET /ws/h2"))
        .unwrap();
    assert_eq!(head[0], "GET /ws/h2 HTTP/1.1");
    assert_eq!(WsOrigin::header(head, "sec-websocket-key").len(), 1);
    assert!(farm.identity_seen().contains("DNS=edge.farm.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_passes_an_edge_that_speaks_http2_to_its_gate() {
    // The edge opens the tunnel to the gate with an extended CONNECT (RFC 8441), whichever
    // way the browser came; the gate hands the app an HTTP/1.1 handshake.
    let farm = WsFarm::start("protocol = \"h2\"", "").await;
    let mut ws = connect_http1(&farm.browser(), farm.edge_addr, "/ws/h2up-1").await;
    for message in messages().take(20) {
        assert_eq!(round_trip(&mut ws, message.clone()).await, message);
    }
    let mut ws = connect_h2(&farm.browser().http2(), farm.edge_addr, "/ws/h2up-2").await;
    for message in messages().take(20) {
        assert_eq!(round_trip(&mut ws, message.clone()).await, message);
    }
    let heads = farm.origin.heads();
    for path in ["/ws/h2up-1", "/ws/h2up-2"] {
        let head = heads.iter().find(|h| h[0].contains(path)).unwrap();
        assert_eq!(head[0], format!("GET {path} HTTP/1.1"));
    }
    assert!(farm.identity_seen().contains("DNS=edge.farm.test"));
}

/// Send `request` on a raw TLS connection to the edge and read one response head (and its
/// body, which these answers size with content-length).
async fn exchange(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    request: &str,
) -> String {
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tls.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "connection closed after {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nhost: {SITE}\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_answered_200_or_426_opens_no_tunnel() {
    let farm = WsFarm::start("", "").await;
    for (path, status) in [("/ok", "200"), ("/upgrade-required", "426")] {
        let mut tls = farm.browser().handshake(farm.edge_addr).await.unwrap();
        let answer = exchange(&mut tls, &upgrade_request(path)).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
        assert!(
            !answer.to_ascii_lowercase().contains("upgrade: websocket"),
            "{answer}"
        );
        // Still HTTP: the next request is the edge's to answer, and it has no route.
        let next = exchange(
            &mut tls,
            &format!("GET /unrouted HTTP/1.1\r\nhost: {SITE}\r\n\r\n"),
        )
        .await;
        assert!(next.starts_with("HTTP/1.1 404"), "{next}");
    }
    let metrics = farm.edge.metrics().encode();
    assert!(
        !metrics.contains(r#"farmgate_tunnels_open{upstream="farm"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_upgrade_never_reaches_the_app() {
    let farm = WsFarm::start("", "").await;
    let mut tls = farm.browser().handshake(farm.edge_addr).await.unwrap();
    let request = format!(
        "GET /plain HTTP/1.1\r\nhost: {SITE}\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n\r\n"
    );
    let answer = exchange(&mut tls, &request).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let heads = farm.origin.heads();
    let head = heads
        .iter()
        .find(|h| h[0].starts_with("GET /plain"))
        .unwrap();
    assert!(WsOrigin::header(head, "upgrade").is_empty(), "{head:#?}");
    assert!(
        WsOrigin::header(head, "http2-settings").is_empty(),
        "{head:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_upgrades_and_connect_are_refused() {
    let farm = WsFarm::start("", "").await;
    let mut tls = farm.browser().handshake(farm.edge_addr).await.unwrap();
    let request = format!(
        "GET /plain HTTP/1.1\r\nhost: {SITE}\r\nconnection: upgrade\r\nupgrade: TLS/1.0\r\n\r\n"
    );
    let answer = exchange(&mut tls, &request).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(farm.origin.heads().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_idle_closes_a_tunnel_that_moves_nothing() {
    let farm = WsFarm::start("timeouts = { tunnel_idle = \"1s\" }", "").await;
    let mut ws = connect_http1(&farm.browser(), farm.edge_addr, "/ws").await;
    let back = round_trip(&mut ws, Message::Text("hello".into())).await;
    assert_eq!(back, Message::Text("hello".into()));
    // Nothing moves: the edge closes it after about a second.
    let ended = tokio::time::timeout(Duration::from_secs(30), ws.next())
        .await
        .expect("the idle tunnel stayed open");
    assert!(!matches!(
        ended,
        Some(Ok(Message::Text(_) | Message::Binary(_)))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_closes_tunnels_after_the_grace() {
    let farm = WsFarm::start("", "[server]\nshutdown_grace = \"1s\"\n").await;
    let farm = Arc::new(farm);
    let mut ws = connect_http1(&farm.browser(), farm.edge_addr, "/ws").await;
    let stopping = tokio::spawn({
        let farm = farm.clone();
        async move { farm.edge.shutdown(Duration::from_secs(30)).await }
    });
    // During the grace the tunnel still carries messages.
    let mut stop = farm.edge.stopping_signal();
    stop.wait_for(|s| *s).await.unwrap();
    let back = round_trip(&mut ws, Message::Text("still here".into())).await;
    assert_eq!(back, Message::Text("still here".into()));
    // Then it is closed, and the shutdown completes.
    let ended = tokio::time::timeout(Duration::from_secs(30), ws.next())
        .await
        .expect("the tunnel outlived the grace");
    assert!(!matches!(
        ended,
        Some(Ok(Message::Text(_) | Message::Binary(_)))
    ));
    let drained = tokio::time::timeout(Duration::from_secs(30), stopping)
        .await
        .expect("the shutdown never completed")
        .unwrap();
    assert_eq!(drained, farmgate_proxy::Drained::Clean);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_reload_that_no_longer_allows_the_client_closes_its_tunnels() {
    let farm = WsFarm::start("", "").await;
    let mut ws = connect_http1(&farm.browser(), farm.edge_addr, "/ws").await;
    let path = farm.pki.dir().join("gate.toml");
    // A reload that still allows the edge leaves the tunnel alone.
    farm.gate.reload_from(&path).await.unwrap();
    let back = round_trip(&mut ws, Message::Text("still allowed".into())).await;
    assert_eq!(back, Message::Text("still allowed".into()));
    // One that no longer does closes it, as it closes the edge's connections.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&format!("\"dns:{EDGE}\""), "\"dns:someone-else.farm.test\"");
    std::fs::write(&path, text).unwrap();
    farm.gate.reload_from(&path).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(30), ws.next())
        .await
        .expect("the tunnel outlived the reload that refused its client");
    assert!(!matches!(
        ended,
        Some(Ok(Message::Text(_) | Message::Binary(_)))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_keeps_its_http2_connection_to_the_gate_busy() {
    // The tunnel is a stream of the edge's HTTP/2 connection to the gate for as long as it is
    // open: that connection is never idle, so the sweep of idle connections leaves it.
    let farm = WsFarm::start("protocol = \"h2\"\ntimeouts = { idle = \"100ms\" }", "").await;
    let mut ws = connect_http1(&farm.browser(), farm.edge_addr, "/ws").await;
    let back = round_trip(&mut ws, Message::Text("hello".into())).await;
    assert_eq!(back, Message::Text("hello".into()));
    // Longer than the upstream's idle timeout: an idle connection would be swept now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let generation = farm.edge.generation();
    assert_eq!(generation.sweep_idle_connections(), 0);
    assert_eq!(generation.idle_connections("farm"), Some(1));
    let back = round_trip(&mut ws, Message::Text("still here".into())).await;
    assert_eq!(back, Message::Text("still here".into()));
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_the_edge_did_not_ask_for_is_a_502_and_opens_no_tunnel() {
    // A server that answers every request with a 101 (and a Sec-WebSocket-Accept that
    // matches no key), as a broken or hostile app might.
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = server.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = server.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && tcp.read(&mut byte).await.unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let _ = tcp
                    .write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: bm90IHRoZSByaWdodCBvbmU=\r\n\r\n",
                    )
                    .await;
                let mut rest = Vec::new();
                let _ = tcp.read_to_end(&mut rest).await;
            });
        }
    });
    let pki = TestPki::new();
    let site = pki.server(SITE);
    let text =
        crate::farm::edge_listener(&site) + &format!("[upstream.farm]\nservers = [\"{app}\"]\n");
    let edge = start(pki.dir(), "edge", &text).await;
    let addr = edge.local_addr("public").unwrap();
    let browser = TlsClient::new(&pki.ca_file(), SITE);
    for request in [
        upgrade_request("/ws"),
        format!("GET /plain HTTP/1.1\r\nhost: {SITE}\r\n\r\n"),
    ] {
        let mut tls = browser.handshake(addr).await.unwrap();
        let answer = exchange(&mut tls, &request).await;
        assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
        assert!(
            !answer.to_ascii_lowercase().contains("upgrade: websocket"),
            "{answer}"
        );
    }
    assert!(
        !edge
            .metrics()
            .encode()
            .contains(r#"farmgate_tunnels_open{upstream="farm"} 1"#)
    );
}
