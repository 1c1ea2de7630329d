//! Client-side timeouts: a silent client, a slowloris and an idle keep-alive connection are
//! closed, each with a log line that names the timeout.

use std::net::SocketAddr;
use std::time::Duration;

use farmgate_proxy::Server;
use farmgate_testkit::client::TlsClient;
use farmgate_testkit::origin::Origin;
use farmgate_testkit::pki::TestPki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::farm::{SITE, start};
use crate::logs;

/// An edge listener with short client timeouts, straight in front of an origin.
async fn edge(pki: &TestPki, origin: &Origin) -> (Server, SocketAddr) {
    logs::capture();
    let site = pki.server(SITE);
    let text = format!(
        r#"
[[listener]]
name = "short"
listen = "127.0.0.1:0"
tls = {{ certificate = {:?}, private_key = {:?} }}
timeouts = {{ handshake = "300ms", request_header = "300ms", idle = "300ms" }}
[[listener.route]]
upstream = "app"
[upstream.app]
servers = ["{}"]
"#,
        site.cert, site.key, origin.addr
    );
    let server = start(pki.dir(), "short", &text).await;
    let addr = server.local_addr("short").unwrap();
    (server, addr)
}

/// Read until the server closes; a safety timeout turns a hang into a failure.
async fn until_closed<S: AsyncReadExt + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut seen = Vec::new();
    let read = stream.read_to_end(&mut seen);
    let _ = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the server never closed the connection");
    seen
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_closed() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let (_server, addr) = edge(&pki, &origin).await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let local = tcp.local_addr().unwrap().to_string();
    assert!(until_closed(&mut tcp).await.is_empty());
    let lines = logs::lines_with(&[&local, "TLS handshake not completed within 300ms"]);
    assert_eq!(lines.len(), 1, "{lines:#?}");
}

#[tokio::test]
async fn a_slowloris_header_is_cut_off() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let (_server, addr) = edge(&pki, &origin).await;
    let mut tls = TlsClient::new(&pki.ca_file(), SITE)
        .handshake(addr)
        .await
        .unwrap();
    let local = tls.get_ref().0.local_addr().unwrap().to_string();
    tls.write_all(b"GET / HTTP/1.1\r\nhost: www.farm.test\r\nx-slow: ")
        .await
        .unwrap();
    let answer = until_closed(&mut tls).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("200"),
        "never forwarded"
    );
    assert_eq!(origin.requests(), 0);
    let lines = logs::lines_with(&[&local, "no complete request header within 300ms"]);
    assert_eq!(lines.len(), 1, "{lines:#?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let (_server, addr) = edge(&pki, &origin).await;
    let mut conn = TlsClient::new(&pki.ca_file(), SITE).connect(addr).await;
    assert_eq!(conn.get("/").await.status, 200);
    tokio::time::timeout(Duration::from_secs(30), conn.closed())
        .await
        .expect("the idle connection stayed open");
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let (_server, addr) = edge(&pki, &origin).await;
    let mut conn = TlsClient::new(&pki.ca_file(), SITE)
        .http2()
        .connect(addr)
        .await;
    assert_eq!(conn.get("/").await.status, 200);
    tokio::time::timeout(Duration::from_secs(30), conn.closed())
        .await
        .expect("the idle HTTP/2 connection stayed open");
}
