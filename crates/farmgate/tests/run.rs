//! `farmgate run`: a real process serving edge and gate, streaming, stopping on SIGTERM.

use std::net::SocketAddr;

use bytes::Bytes;
use farmgate_testkit::client::{ClientBody, TlsClient, empty};
use farmgate_testkit::origin::Origin;
use farmgate_testkit::pki::TestPki;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use crate::cli::Running;

const SIZE: usize = 100 * 1024 * 1024;

/// An edge and a gate in one process (like examples/farm.toml), in front of `origin`.
fn farm_config(pki: &TestPki, origin: SocketAddr) -> std::path::PathBuf {
    let site = pki.server("www.farm.test");
    let backend = pki.server("backend.farm.test");
    let edge = pki.client("edge.farm.test");
    // Edge and gate share one configuration, so the edge must know the gate's port before
    // the process starts: ask the OS for a free one.
    let gate_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!(
        r#"
[[listener]]
name = "public"
listen = "127.0.0.1:0"
tls = {{ certificate = {site_cert:?}, private_key = {site_key:?} }}
[[listener.route]]
upstream = "farm"

[upstream.farm]
servers = ["127.0.0.1:{gate_port}"]
[upstream.farm.tls]
server_name = "backend.farm.test"
trust = [{ca:?}]
client_certificate = {edge_cert:?}
client_key = {edge_key:?}

[[listener]]
name = "gate"
listen = "127.0.0.1:{gate_port}"
[listener.tls]
certificate = {backend_cert:?}
private_key = {backend_key:?}
client_auth = {{ trust = [{ca:?}], allow = ["dns:edge.farm.test"] }}
[[listener.route]]
upstream = "app"

[upstream.app]
servers = ["{origin}"]
"#,
        site_cert = site.cert,
        site_key = site.key,
        ca = pki.ca_file(),
        edge_cert = edge.cert,
        edge_key = edge.key,
        backend_cert = backend.cert,
        backend_key = backend.key,
    );
    let path = pki.dir().join("farm.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The address a listener reported in its "listening on" line.
fn listening(process: &mut Running, listener: &str) -> SocketAddr {
    let line = process.wait_for(&format!("listener={listener}"));
    let addr = line
        .split("listening on ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    addr.parse().unwrap()
}

fn generated(total: usize) -> ClientBody {
    struct Gen(usize, Bytes);
    impl futures_core::Stream for Gen {
        type Item = Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            let n = self.0.min(self.1.len());
            self.0 -= n;
            std::task::Poll::Ready((n > 0).then(|| Ok(Frame::data(self.1.slice(..n)))))
        }
    }
    StreamBody::new(Gen(total, Bytes::from(vec![b'z'; 64 * 1024]))).boxed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_each_way_stream_through_with_bounded_memory() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let config = farm_config(&pki, origin.addr);
    let mut process = Running::spawn(&["run", "-c", config.to_str().unwrap()]);
    let edge = listening(&mut process, "public");
    let browser = TlsClient::new(&pki.ca_file(), "www.farm.test");
    let mut conn = browser.connect(edge).await;

    let upload = conn
        .request("POST", "/count")
        .body(generated(SIZE))
        .unwrap();
    let r = conn.fetch(upload).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.trim(), SIZE.to_string());

    let download = conn
        .request("GET", &format!("/bytes/{SIZE}"))
        .body(empty())
        .unwrap();
    let response = conn.send(download).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut total = 0;
    while let Some(frame) = body.frame().await {
        total += frame.unwrap().data_ref().map_or(0, |d| d.len());
    }
    assert_eq!(total, SIZE);

    // 200 MB went through both hops; the process never held a body whole.
    let peak = process.peak_rss_kib();
    eprintln!("peak RSS after 200 MB through edge and gate: {peak} KiB");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}

#[tokio::test]
async fn sigterm_stops_accepting_and_exits_zero() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let config = farm_config(&pki, origin.addr);
    let mut process = Running::spawn(&["run", "-c", config.to_str().unwrap()]);
    let edge = listening(&mut process, "public");
    let browser = TlsClient::new(&pki.ca_file(), "www.farm.test");
    assert_eq!(browser.get(edge, "/").await.status, 200);
    process.signal("TERM");
    process.wait_for("stopped");
    let status = process.wait();
    assert_eq!(status.code(), Some(0));
    assert!(
        tokio::net::TcpStream::connect(edge).await.is_err(),
        "no longer accepting"
    );
}
