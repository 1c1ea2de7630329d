//! The happy path: browser → edge → mTLS → gate → origin.

use farmgate_testkit::client::{TlsClient, empty};
use farmgate_testkit::origin::{header_values, parse_echo};

use crate::farm::{EDGE, Farm, SITE};

#[tokio::test]
async fn request_through_edge_reaches_an_origin() {
    let farm = Farm::start(&[1]).await;
    let r = farm.browser().get(farm.edge_addr, "/hello?x=1").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-origin"), "origin-0");
    let (line, headers) = parse_echo(&r.body);
    assert_eq!(line, "GET /hello?x=1 HTTP/1.1");
    assert_eq!(header_values(&headers, "host"), [SITE]);
    assert_eq!(header_values(&headers, "x-forwarded-proto"), ["https"]);
    assert_eq!(header_values(&headers, "x-forwarded-host"), [SITE]);
    // The browser's address as the edge saw it, then the edge's as the gate saw it.
    assert_eq!(
        header_values(&headers, "x-forwarded-for"),
        ["127.0.0.1, 127.0.0.1"]
    );
    let xfcc = header_values(&headers, "x-forwarded-client-cert");
    assert_eq!(xfcc.len(), 1);
    assert!(xfcc[0].contains(&format!("DNS={EDGE}")), "{}", xfcc[0]);
    assert!(xfcc[0].starts_with("Hash="), "{}", xfcc[0]);
    let client_cert = header_values(&headers, "client-cert");
    assert_eq!(client_cert.len(), 1);
    assert!(client_cert[0].starts_with(':') && client_cert[0].ends_with(':'));
}

#[tokio::test]
async fn round_robin_uses_every_backend_in_turn() {
    let farm = Farm::start(&[1, 1, 1]).await;
    let mut conn = farm.browser().connect(farm.edge_addr).await;
    let mut seen = Vec::new();
    for _ in 0..30 {
        let r = conn.get("/").await;
        assert_eq!(r.status, 200);
        seen.push(r.header("x-origin").to_owned());
    }
    assert_eq!(&seen[..3], ["origin-0", "origin-1", "origin-2"]);
    for origin in &farm.origins {
        assert_eq!(origin.requests(), 10, "{}", origin.name);
    }
}

#[tokio::test]
async fn round_robin_respects_weights() {
    let farm = Farm::start(&[1, 1, 2]).await;
    let mut conn = farm.browser().connect(farm.edge_addr).await;
    for _ in 0..40 {
        assert_eq!(conn.get("/").await.status, 200);
    }
    let counts: Vec<usize> = farm.origins.iter().map(|o| o.requests()).collect();
    assert_eq!(counts, [10, 10, 20]);
}

#[tokio::test]
async fn upstream_connections_are_pooled_and_reused() {
    let farm = Farm::start(&[1]).await;
    let mut conn = farm.browser().connect(farm.edge_addr).await;
    for _ in 0..20 {
        assert_eq!(conn.get("/").await.status, 200);
    }
    let generation = farm.edge.generation();
    assert_eq!(
        generation.upstream_connections("farm"),
        Some(1),
        "20 sequential requests need one mTLS connection"
    );
}

#[tokio::test]
async fn http2_client_is_served_and_forwarded() {
    let farm = Farm::start(&[1, 1]).await;
    let mut conn = farm.browser().http2().connect(farm.edge_addr).await;
    // Several requests in flight on the one HTTP/2 connection.
    let mut pending = Vec::new();
    for i in 0..6 {
        let mut stream = conn.try_clone().unwrap();
        pending.push(tokio::spawn(async move {
            let req = stream
                .request("GET", &format!("/h2/{i}"))
                .body(empty())
                .unwrap();
            stream.send(req).await.unwrap()
        }));
    }
    for response in pending {
        let r = response.await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), http::Version::HTTP_2);
    }
    let r = conn.get("/echo").await;
    let (line, headers) = parse_echo(&r.body);
    assert_eq!(line, "GET /echo HTTP/1.1", "backends get HTTP/1.1");
    assert_eq!(
        header_values(&headers, "host"),
        [SITE],
        "the :authority becomes Host"
    );
}

#[tokio::test]
async fn identity_headers_are_set_and_spoofed_ones_dropped() {
    let farm = Farm::start(&[1]).await;
    // Through the edge: a browser's claims never reach the app.
    let mut conn = farm.browser().connect(farm.edge_addr).await;
    let req = conn
        .request("GET", "/")
        .header("x-forwarded-client-cert", "Hash=evil;DNS=admin.farm.test")
        .header("client-cert", ":ZXZpbA==:")
        .header("x-forwarded-for", "203.0.113.9")
        .body(empty())
        .unwrap();
    let (_, headers) = parse_echo(&conn.fetch(req).await.body);
    let xfcc = header_values(&headers, "x-forwarded-client-cert");
    assert_eq!(xfcc.len(), 1);
    assert!(!xfcc[0].contains("evil") && xfcc[0].contains(&format!("DNS={EDGE}")));
    assert!(!header_values(&headers, "client-cert")[0].contains("ZXZpbA"));
    assert_eq!(
        header_values(&headers, "x-forwarded-for"),
        ["127.0.0.1, 127.0.0.1"],
        "a browser's x-forwarded-for is replaced"
    );

    // Straight to a gate with the edge's own certificate: the gate still sets its own headers.
    let (_, gate_addr) = &farm.gates[0];
    let edge_like = TlsClient::new(&farm.pki.ca_file(), crate::farm::BACKEND)
        .with_client_cert(&farm.edge_client);
    let mut conn = edge_like.connect(*gate_addr).await;
    let req = conn
        .request("GET", "/")
        .header("x-forwarded-client-cert", "Hash=evil")
        .header("client-cert", ":ZXZpbA==:")
        .body(empty())
        .unwrap();
    let (_, headers) = parse_echo(&conn.fetch(req).await.body);
    let xfcc = header_values(&headers, "x-forwarded-client-cert");
    assert_eq!(xfcc.len(), 1);
    assert!(
        xfcc[0].contains(&farm.edge_client.identity().fingerprint_hex()),
        "{}",
        xfcc[0]
    );
    assert_eq!(header_values(&headers, "client-cert").len(), 1);
    assert!(!header_values(&headers, "client-cert")[0].contains("ZXZpbA"));
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let farm = Farm::start(&[1]).await;
    let mut conn = farm.browser().connect(farm.edge_addr).await;
    let req = conn
        .request("GET", "/")
        .header("connection", "x-secret")
        .header("x-secret", "1")
        .header("keep-alive", "timeout=5")
        .header("x-kept", "yes")
        .body(empty())
        .unwrap();
    let (_, headers) = parse_echo(&conn.fetch(req).await.body);
    assert!(header_values(&headers, "x-secret").is_empty());
    assert!(header_values(&headers, "keep-alive").is_empty());
    assert_eq!(header_values(&headers, "x-kept"), ["yes"]);
}

#[tokio::test]
async fn edge_resumes_browser_sessions() {
    let farm = Farm::start(&[1]).await;
    assert!(
        farm.browser()
            .second_handshake_resumes(farm.edge_addr)
            .await
    );
    // One ticket per connection (as Go's servers send), enough for the next connection, which
    // brings its own: rustls's default of two costs an encryption and a record more.
    assert_eq!(
        farm.browser().tickets_per_connection(farm.edge_addr).await,
        1
    );
}

#[tokio::test]
async fn idle_connections_a_burst_left_are_closed_down_to_one() {
    let farm = Farm::start(&[1]).await;
    // Six requests at once, each held a moment by the origin: the edge opens a connection to
    // the gate for each one in flight.
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let browser = farm.browser();
        let addr = farm.edge_addr;
        burst.spawn(async move { browser.get(addr, "/delay/200").await.status });
    }
    while let Some(status) = burst.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let generation = farm.edge.generation();
    let opened = generation.upstream_connections("farm").unwrap() as usize;
    assert!(
        opened >= 2,
        "the burst needed {opened} connection(s): no concurrency to test"
    );
    assert_eq!(
        generation.idle_connections("farm"),
        Some(opened),
        "every connection went back to the pool"
    );
    // The server sweeps every few seconds on its own; from this sweep on, no request takes
    // a connection, so each next one closes exactly half of the surplus.
    generation.sweep_idle_connections();
    loop {
        let idle = generation.idle_connections("farm").unwrap();
        if idle == 1 {
            break;
        }
        assert_eq!(generation.sweep_idle_connections(), (idle - 1).div_ceil(2));
    }
    assert_eq!(
        generation.sweep_idle_connections(),
        0,
        "the most recently used connection stays until the idle timeout"
    );
    let r = farm.browser().get(farm.edge_addr, "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        generation.upstream_connections("farm"),
        Some(opened as u64),
        "the request after the sweeps reused the connection kept"
    );
}
