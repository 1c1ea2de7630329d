//! No request lost to the idle race: a listener says how long it keeps an idle connection
//! (`Keep-Alive: timeout=N`), a pool never reuses a connection past what its server said, the
//! defaults keep an edge's pool below a gate's keep-alive, and an HTTP/2 upstream that drains
//! its connections (GOAWAY) fails no request.

use std::sync::Arc;
use std::time::Duration;

use farmgate_proxy::reload::watch;
use farmgate_testkit::client::{TlsClient, empty};
use farmgate_testkit::load::{Load, assert_no_failures};
use farmgate_testkit::origin::Origin;
use farmgate_testkit::pki::TestPki;

use crate::farm::{BACKEND, EDGE, SITE, edge_listener, edge_upstream, gate_toml, start};
use crate::reload::{reloads_until, write_atomically};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_advertises_its_keep_alive_on_http1_responses() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let text = edge_listener(&pki.server(SITE)).replace(
        "[listener.tls]",
        "timeouts = { request_header = \"7s\" }\n[listener.tls]",
    ) + &format!("[upstream.farm]\nservers = [\"{}\"]\n", origin.addr);
    let edge = start(pki.dir(), "edge", &text).await;
    let browser = TlsClient::new(&pki.ca_file(), SITE);
    let answered = browser.get(edge.local_addr("public").unwrap(), "/").await;
    assert_eq!(answered.status, 200);
    assert_eq!(answered.header("keep-alive"), "timeout=7");
    // HTTP/2 has no such header.
    let answered = browser
        .clone()
        .http2()
        .get(edge.local_addr("public").unwrap(), "/")
        .await;
    assert_eq!(answered.header("keep-alive"), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_never_reuses_a_connection_past_the_servers_keep_alive() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let text = edge_listener(&pki.server(SITE))
        + &format!("[upstream.farm]\nservers = [\"{}\"]\n", origin.addr);
    let edge = start(pki.dir(), "edge", &text).await;
    let mut browser = TlsClient::new(&pki.ca_file(), SITE)
        .connect(edge.local_addr("public").unwrap())
        .await;
    // The server says `Keep-Alive: timeout=1` (and would in fact keep the connection forever):
    // the pool reuses it for half a second, never longer.
    assert_eq!(browser.get("/keep-alive/1").await.status, 200);
    assert_eq!(origin.connections(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(browser.get("/keep-alive/1").await.status, 200);
    assert_eq!(origin.connections(), 1, "idle 0.3 s: reused");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(browser.get("/keep-alive/1").await.status, 200);
    assert_eq!(origin.connections(), 2, "idle 1.6 s: a new connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_posts_at_a_gates_keep_alive_lose_nothing_with_default_settings() {
    crate::logs::capture();
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let allow = format!("dns:{EDGE}");
    // A gate that closes idle connections after 2 s; an edge with default settings.
    let text = gate_toml(
        "gate",
        &pki.server(BACKEND),
        &[&pki.ca_file()],
        &[&allow],
        "",
        origin.addr,
    )
    .replace(
        "[listener.tls]",
        "timeouts = { request_header = \"2s\" }\n[listener.tls]",
    );
    let gate = start(pki.dir(), "gate", &text).await;
    let gate_addr = gate.local_addr("gate").unwrap();
    let text = edge_listener(&pki.server(SITE))
        + &edge_upstream(&[(gate_addr, 1)], &pki.ca_file(), &pki.client(EDGE), "");
    let edge = Arc::new(start(pki.dir(), "edge", &text).await);
    let edge_addr = edge.local_addr("public").unwrap();
    let browser = TlsClient::new(&pki.ca_file(), SITE);
    let mut failed = Vec::new();
    for burst in 0..30 {
        let mut posts = Vec::new();
        for _ in 0..32 {
            let browser = browser.clone();
            posts.push(tokio::spawn(async move {
                let mut conn = browser.connect(edge_addr).await;
                let req = conn.request("POST", "/count").body(empty()).unwrap();
                conn.try_fetch(req).await.map(|r| r.status.as_u16())
            }));
        }
        for post in posts {
            match post.await.unwrap() {
                Ok(200) => {}
                other => failed.push(format!("burst {burst}: {other:?}")),
            }
        }
        // Exactly the gate's keep-alive apart: the pool's connections are that old.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_draining_its_http2_connections_fails_no_request() {
    crate::logs::capture();
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let allow = format!("dns:{EDGE}");
    let backend = pki.server(BACKEND);
    let gate_text = |cert: &farmgate_testkit::pki::CertFiles| {
        gate_toml("gate", cert, &[&pki.ca_file()], &[&allow], "", origin.addr)
    };
    let gate = Arc::new(start(pki.dir(), "gate", &gate_text(&backend)).await);
    tokio::spawn(watch(gate.clone(), pki.dir().join("gate.toml")));
    let gate_addr = gate.local_addr("gate").unwrap();
    let text = edge_listener(&pki.server(SITE))
        + &edge_upstream(
            &[(gate_addr, 1)],
            &pki.ca_file(),
            &pki.client(EDGE),
            "protocol = \"h2\"",
        );
    let edge = start(pki.dir(), "edge", &text).await;
    let load = Load::start(
        &TlsClient::new(&pki.ca_file(), SITE),
        edge.local_addr("public").unwrap(),
        4,
        "/",
    );
    // Each renewal of the gate's certificate ends its connections: GOAWAY to the edge, whose
    // requests the gate did not take go again on a new connection.
    let mut counts = gate.reload_counts();
    let flows = || async {
        let more = origin.wait_for_requests(origin.requests() + 50);
        tokio::time::timeout(Duration::from_secs(60), more)
            .await
            .expect("traffic stopped");
    };
    for round in 1..=5 {
        flows().await;
        let renewed = pki.server(BACKEND);
        write_atomically(&pki.dir().join("gate.toml"), gate_text(&renewed));
        reloads_until(&mut counts, |c| c.succeeded == round).await;
    }
    flows().await;
    assert_no_failures(&load.finish().await);
    assert!(
        edge.generation().upstream_connections("farm").unwrap() > 1,
        "the gate's connections were renewed"
    );
}
