//! `[listener.limits]` and the slow-client timeouts hold against one abusive client while
//! another, from its own address, is served throughout. Each hostile client connects from its
//! own 127.0.0.x address.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use farmgate_proxy::Server;
use farmgate_testkit::client::{ClientBody, TlsClient, empty};
use farmgate_testkit::origin::Origin;
use farmgate_testkit::pki::TestPki;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::farm::{SITE, edge_listener, start};
use crate::streaming::generated;

/// An edge in front of `origin`, with `keys` among its listener's keys (e.g. `timeouts`) and
/// `limits` as its `[listener.limits]` table.
pub(crate) async fn edge(pki: &TestPki, origin: &Origin, keys: &str, limits: &str) -> Server {
    let text = edge_listener(&pki.server(SITE)).replace(
        "[listener.tls]",
        &format!("{keys}\n[listener.limits]\n{limits}\n[listener.tls]"),
    ) + &format!("[upstream.farm]\nservers = [\"{}\"]\n", origin.addr);
    start(pki.dir(), "edge", &text).await
}

/// A browser connecting from `ip`.
pub(crate) fn client(pki: &TestPki, ip: &str) -> TlsClient {
    TlsClient::new(&pki.ca_file(), SITE).from(ip.parse::<IpAddr>().unwrap())
}

/// The value of `farmgate_limited_total` for `limit` on listener `public`.
pub(crate) fn limited(server: &Server, limit: &str) -> u64 {
    let wanted = format!("farmgate_limited_total{{listener=\"public\",limit=\"{limit}\"}} ");
    server
        .metrics()
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&wanted)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Wait until `done` holds (checked every 20 ms; a test that waits a minute has failed).
pub(crate) async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A body of `n` bytes sent with Content-Length.
fn sized(n: usize) -> ClientBody {
    Full::new(Bytes::from(vec![b'x'; n]))
        .map_err(|e| match e {})
        .boxed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_max_request_body_gets_413_and_the_app_never_sees_it_whole() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let edge = edge(&pki, &origin, "", "max_request_body = \"64KiB\"").await;
    let addr = edge.local_addr("public").unwrap();
    let hostile = client(&pki, "127.0.0.11");

    // Content-Length over the limit: refused before anything is forwarded.
    let mut conn = hostile.connect(addr).await;
    let req = conn
        .request("POST", "/count")
        .body(sized(100 * 1024))
        .unwrap();
    let answered = conn.fetch(req).await;
    assert_eq!(answered.status, 413);
    assert_eq!(answered.header("connection"), "close");
    assert_eq!(origin.requests(), 0, "never forwarded");

    // Chunked, and over HTTP/2 without Content-Length: cut off the moment it passes the
    // limit, so the app never gets a complete request.
    for browser in [hostile.clone(), hostile.clone().http2()] {
        let mut conn = browser.connect(addr).await;
        let req = conn
            .request("POST", "/count")
            .body(generated(1024 * 1024))
            .unwrap();
        let answered = conn.fetch(req).await;
        assert_eq!(answered.status, 413, "{}", answered.body);
    }
    assert_eq!(
        origin.complete_bodies(),
        0,
        "no oversized body arrived whole"
    );

    // Within the limit, from another client: served, whole.
    let mut conn = client(&pki, "127.0.0.12").connect(addr).await;
    let req = conn
        .request("POST", "/count")
        .body(generated(64 * 1024))
        .unwrap();
    let answered = conn.fetch(req).await;
    assert_eq!(answered.status, 200);
    assert_eq!(answered.body.trim(), (64 * 1024).to_string());
    assert_eq!(origin.complete_bodies(), 1);
    assert_eq!(limited(&edge, "max_request_body"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_over_max_request_header_gets_431() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let edge = edge(&pki, &origin, "", "max_request_header = \"8KiB\"").await;
    let addr = edge.local_addr("public").unwrap();
    let big = "y".repeat(12 * 1024);
    let mut conn = client(&pki, "127.0.0.13").connect(addr).await;
    let req = conn
        .request("GET", "/")
        .header("x-big", &big)
        .body(empty())
        .unwrap();
    assert_eq!(conn.fetch(req).await.status, 431);
    assert_eq!(origin.requests(), 0);
    // Counted when the connection ends, just after the answer.
    eventually("the 431 counted", || {
        limited(&edge, "max_request_header") == 1
    })
    .await;
    // HTTP/2: the header list is bounded by the same limit (SETTINGS_MAX_HEADER_LIST_SIZE).
    let mut conn = client(&pki, "127.0.0.13").http2().connect(addr).await;
    let req = conn
        .request("GET", "/")
        .header("x-big", &big)
        .body(empty())
        .unwrap();
    // h2 answers 431 itself (RFC 6585 §5) for a header list over the limit.
    assert_eq!(conn.fetch(req).await.status, 431);
    assert_eq!(origin.requests(), 0);
    // A normal request is served.
    let mut conn = client(&pki, "127.0.0.14").connect(addr).await;
    assert_eq!(conn.get("/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_holds_at_most_its_share_of_connections() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let edge = edge(&pki, &origin, "", "max_connections_per_client = 20").await;
    let addr = edge.local_addr("public").unwrap();
    let hostile = client(&pki, "127.0.0.21");
    let attempts = (0..40).map(|_| {
        let hostile = hostile.clone();
        async move {
            let mut conn = hostile.try_connect(addr).await.ok()?;
            let answered = conn.try_get("/").await.ok()?;
            (answered.status == 200).then_some(conn)
        }
    });
    let held: Vec<_> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(held.len(), 20, "served on exactly its 20 connections");
    assert_eq!(limited(&edge, "max_connections_per_client"), 20);
    // Another client is served while those are held.
    let mut other = client(&pki, "127.0.0.22").connect(addr).await;
    assert_eq!(other.get("/").await.status, 200);
    // Once the hostile client lets go, it gets connections again.
    drop(held);
    eventually("the edge saw the 20 connections close", || {
        edge.open_connections() <= 1
    })
    .await;
    assert_eq!(hostile.get(addr, "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_max_connections_the_listener_pauses_and_resumes_as_connections_close() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let edge = edge(&pki, &origin, "", "max_connections = 5").await;
    let addr = edge.local_addr("public").unwrap();
    let mut held = Vec::new();
    for i in 0..5 {
        let mut conn = client(&pki, &format!("127.0.0.{}", 30 + i))
            .connect(addr)
            .await;
        assert_eq!(conn.get("/").await.status, 200);
        held.push(conn);
    }
    eventually("accepting paused", || {
        limited(&edge, "max_connections") == 1
    })
    .await;
    // The sixth waits in the kernel's backlog: no handshake until one of the five closes.
    let sixth = tokio::spawn({
        let browser = client(&pki, "127.0.0.36");
        async move { browser.get(addr, "/").await.status }
    });
    drop(held.pop());
    assert_eq!(sixth.await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_rate_get_429_with_retry_after_and_others_are_unaffected() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let edge = edge(
        &pki,
        &origin,
        "",
        "requests_per_client = { rate = 20, per = \"1s\", burst = 20 }",
    )
    .await;
    let addr = edge.local_addr("public").unwrap();
    let mut conn = client(&pki, "127.0.0.41").connect(addr).await;
    let (mut served, mut limited_) = (0, 0);
    for _ in 0..100 {
        let answered = conn.get("/").await;
        match answered.status.as_u16() {
            200 => served += 1,
            429 => {
                limited_ += 1;
                let wait: u64 = answered.header("retry-after").parse().unwrap();
                assert!((1..=2).contains(&wait), "Retry-After {wait}");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(served >= 20, "the burst passes: {served}");
    assert!(limited_ > 0, "the rest is limited");
    assert_eq!(served + limited_, 100);
    assert_eq!(limited(&edge, "requests_per_client"), limited_);
    // Another client is not affected.
    let mut other = client(&pki, "127.0.0.42").connect(addr).await;
    for _ in 0..20 {
        assert_eq!(other.get("/").await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_count_as_requests() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    // One request an hour after a burst of 10: the count is exact.
    let edge = edge(
        &pki,
        &origin,
        "",
        "requests_per_client = { rate = 1, per = \"1h\", burst = 10 }",
    )
    .await;
    let addr = edge.local_addr("public").unwrap();
    let conn = client(&pki, "127.0.0.43").http2().connect(addr).await;
    let streams = (0..15).map(|_| {
        let mut stream = conn.try_clone().unwrap();
        async move { stream.get("/").await.status.as_u16() }
    });
    let statuses = futures_util::future::join_all(streams).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 10);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_after_request_header_however_it_trickles() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let edge = edge(&pki, &origin, "timeouts = { request_header = \"1s\" }", "").await;
    let addr = edge.local_addr("public").unwrap();
    let hostile = client(&pki, "127.0.0.51");
    let started = Instant::now();
    let dribblers = (0..15).map(|_| {
        let hostile = hostile.clone();
        async move {
            let mut tls = hostile.handshake(addr).await.unwrap();
            tls.write_all(format!("GET / HTTP/1.1\r\nhost: {SITE}\r\n").as_bytes())
                .await
                .unwrap();
            // A header line every 200 ms, never the blank line that ends the head: the
            // edge must close the connection, or this never ends.
            for i in 0.. {
                if tls
                    .write_all(format!("x-drip-{i}: y\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
                let mut byte = [0u8; 1];
                match tokio::time::timeout(Duration::from_millis(200), tls.read(&mut byte)).await {
                    Ok(_) => break, // closed (or an answer, then closed)
                    Err(_) => continue,
                }
            }
            started.elapsed()
        }
    });
    let normal = async {
        let browser = client(&pki, "127.0.0.52");
        for _ in 0..10 {
            assert_eq!(browser.get(addr, "/").await.status, 200);
        }
    };
    let (cut, ()) = tokio::join!(futures_util::future::join_all(dribblers), normal);
    for after in cut {
        assert!(after >= Duration::from_secs(1), "cut after {after:?}");
    }
    assert_eq!(origin.requests(), 10, "only the normal client's requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_at_one_byte_a_second_is_ended_by_request_body() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let edge = edge(&pki, &origin, "timeouts = { request_body = \"1s\" }", "").await;
    let addr = edge.local_addr("public").unwrap();
    let mut tls = client(&pki, "127.0.0.53").handshake(addr).await.unwrap();
    let started = Instant::now();
    tls.write_all(
        format!("POST /count HTTP/1.1\r\nhost: {SITE}\r\ncontent-length: 100\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let (mut reader, mut writer) = tokio::io::split(tls);
    let dribble = tokio::spawn(async move {
        for _ in 0..100 {
            if writer.write_all(b"z").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let mut answer = Vec::new();
    let _ = reader.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    dribble.abort();
    assert_eq!(origin.complete_bodies(), 0);
    assert_eq!(limited(&edge, "request_body_timeout"), 1);
    // Another client's upload is served.
    let mut conn = client(&pki, "127.0.0.54").connect(addr).await;
    let req = conn.request("POST", "/count").body(sized(1000)).unwrap();
    assert_eq!(conn.fetch(req).await.body.trim(), "1000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_ended_by_send() {
    never_reads("timeouts = { send = \"1s\" }").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_ended_by_send_after_the_idle_close_began() {
    // `idle` first begins a graceful close, which waits for the response to be written: the
    // send timeout still ends it.
    never_reads("timeouts = { idle = \"1s\", send = \"2s\" }").await;
}

/// A client takes a response's first bytes and then reads nothing, from an edge with
/// listener `timeouts`: `send` ends the connection, and other clients are served.
async fn never_reads(timeouts: &str) {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let edge = edge(&pki, &origin, timeouts, "").await;
    let addr = edge.local_addr("public").unwrap();
    const SIZE: usize = 512 * 1024 * 1024;
    let mut tls = client(&pki, "127.0.0.55").handshake(addr).await.unwrap();
    tls.write_all(format!("GET /bytes/{SIZE} HTTP/1.1\r\nhost: {SITE}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut first = [0u8; 12];
    tls.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // Now read nothing: the edge's writes stall, and after `send` it drops the connection.
    eventually("the edge dropped the connection", || {
        limited(&edge, "send_timeout") == 1
    })
    .await;
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest).await;
    assert!(rest.len() < SIZE, "the response was cut off");
    // Others are served.
    let browser = client(&pki, "127.0.0.56");
    assert_eq!(browser.get(addr, "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_follow_a_reload() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let edge = edge(&pki, &origin, "", "max_request_body = \"1KiB\"").await;
    let addr: SocketAddr = edge.local_addr("public").unwrap();
    let mut conn = client(&pki, "127.0.0.57").connect(addr).await;
    let req = conn.request("POST", "/count").body(sized(2048)).unwrap();
    assert_eq!(conn.fetch(req).await.status, 413);
    let path = pki.dir().join("edge.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("max_request_body = \"1KiB\"", "max_request_body = \"4KiB\"");
    std::fs::write(&path, text).unwrap();
    edge.reload_from(&path).await.unwrap();
    let mut conn = client(&pki, "127.0.0.57").connect(addr).await;
    let req = conn.request("POST", "/count").body(sized(2048)).unwrap();
    assert_eq!(conn.fetch(req).await.status, 200);
}
