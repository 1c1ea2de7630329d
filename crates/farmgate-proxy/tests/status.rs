//! The `/status` document: each server's traffic over the last minute, the certificates in use
//! and what they permit, a gate's refused clients with their source, reload outcomes; and its
//! JSON form read back into the same typed document.

use std::sync::Arc;

use farmgate_proxy::{LastReload, ReloadObserver, ServerHealth, Status};
use farmgate_testkit::client::TlsClient;
use farmgate_testkit::origin::Origin;
use farmgate_testkit::pki::TestPki;
use parking_lot::Mutex;

use crate::farm::{self, BACKEND, EDGE, Farm, SITE};

/// Status → JSON → Status → JSON loses nothing (floats are compared as parsed from the same
/// text on both sides).
#[track_caller]
fn assert_round_trips(status: &Status) {
    let text = serde_json::to_string(status).unwrap();
    let back: Status = serde_json::from_str(&text).unwrap();
    let as_sent: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), as_sent);
}

#[tokio::test]
async fn status_shows_each_servers_traffic_and_the_certificates_in_use() {
    let farm = Farm::start(&[1, 1]).await;
    let browser = farm.browser();
    for _ in 0..10 {
        assert_eq!(browser.get(farm.edge_addr, "/").await.status, 200);
    }
    let status = farm.edge.status();
    assert_round_trips(&status);

    let farm_upstream = &status.upstreams[0];
    let servers = &farm_upstream.servers;
    assert_eq!(servers.iter().map(|s| s.requests).sum::<u64>(), 10);
    for server in servers {
        assert_eq!(server.state, ServerHealth::Up);
        assert_eq!(server.errors, 0);
        assert!(server.last_minute.requests_per_second > 0.0, "{server:?}");
        assert_eq!(server.last_minute.error_rate, 0.0);
        assert!(server.last_minute.p50_ms.is_some() && server.last_minute.p99_ms.is_some());
        assert!(!server.last_minute.history.is_empty());
        assert_eq!(server.last_failure, None);
    }

    let client = farm_upstream
        .tls
        .as_ref()
        .and_then(|t| t.client_certificate.as_ref())
        .unwrap();
    assert_eq!(client.sans, [format!("dns:{EDGE}")]);
    assert_eq!(client.purpose, "clientAuth");
    assert_eq!(client.eku.as_deref(), Some(&["clientAuth".to_owned()][..]));
    assert!(client.permits);
    assert!(client.days_left > 0);
    assert!(client.issuer.contains("CN="), "{}", client.issuer);
    assert!(client.facts.is_empty(), "a private-CA identity: no sunset");

    let listener = &status.listeners[0].certificates[0];
    assert_eq!(listener.sans[0], format!("dns:{SITE}"));
    assert_eq!(listener.purpose, "serverAuth");
    assert!(listener.permits);
}

#[tokio::test]
async fn a_dead_server_shows_its_last_failure_and_error_rate() {
    let farm = Farm::start(&[1]).await;
    // An address nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let live = farm.gates[0].1;
    let text = farm::edge_listener(&farm.site)
        + &farm::edge_upstream(
            &[(live, 1), (dead, 1)],
            &farm.pki.ca_file(),
            &farm.edge_client,
            "",
        );
    let edge = farm::start(farm.pki.dir(), "edge-with-dead", &text).await;
    let addr = edge.local_addr("public").unwrap();
    for _ in 0..4 {
        // Retried on the live server: every GET succeeds.
        assert_eq!(farm.browser().get(addr, "/").await.status, 200);
    }
    let status = edge.status();
    assert_round_trips(&status);
    let server = status.upstreams[0]
        .servers
        .iter()
        .find(|s| s.address == dead.to_string())
        .unwrap();
    let failure = server.last_failure.as_ref().unwrap();
    assert_eq!(failure.reason, "connect_refused");
    assert!(failure.message.contains(&dead.to_string()), "{failure:?}");
    assert!(server.errors >= 1 && server.errors == server.requests);
    assert_eq!(server.last_minute.error_rate, 1.0);
    assert_eq!(server.last_minute.p99_ms, None, "it never answered");
}

#[tokio::test]
async fn a_gate_remembers_refused_clients_with_their_source() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let allow = format!("dns:{EDGE}");
    let (gate, addr) = farm::gate(
        pki.dir(),
        "gate",
        &pki.server(BACKEND),
        &pki.ca_file(),
        &[&allow],
        origin.addr,
    )
    .await;
    let client = TlsClient::new(&pki.ca_file(), BACKEND);
    let intruder = pki.client("intruder.farm.test");
    let _ = client.probe(addr).await;
    let _ = client.clone().with_client_cert(&intruder).probe(addr).await;
    let _ = client
        .clone()
        .with_client_cert(&pki.client(EDGE))
        .probe(addr)
        .await;

    let status = gate.status();
    assert_round_trips(&status);
    let auth = status.listeners[0].client_auth.as_ref().unwrap();
    assert_eq!(auth.accepted, 1);
    let count = |reason: &str| {
        auth.refused
            .iter()
            .find(|r| r.reason == reason)
            .unwrap()
            .count
    };
    assert_eq!(count("no_certificate"), 1);
    assert_eq!(count("not_allowed"), 1);
    assert_eq!(count("unknown_ca"), 0);
    let [newest, oldest] = &auth.recent_refusals[..] else {
        panic!("{:?}", auth.recent_refusals);
    };
    assert_eq!(newest.reason, "not_allowed");
    assert_eq!(newest.identity.as_deref(), Some("intruder.farm.test"));
    assert_eq!(
        newest.fingerprint.as_deref(),
        Some(&*intruder.identity().fingerprint_hex())
    );
    assert_eq!(oldest.reason, "no_certificate");
    assert_eq!(oldest.identity, None);
    for refused in [newest, oldest] {
        let source = refused.source.as_deref().unwrap();
        assert!(source.starts_with("127.0.0.1:"), "{source}");
    }
}

/// What a [`ReloadObserver`] was told, in order.
#[derive(Debug, Default)]
struct Told(Mutex<Vec<String>>);

impl ReloadObserver for Told {
    fn reloading(&self) {
        self.0.lock().push("reloading".into());
    }

    fn reloaded(&self, outcome: &LastReload) {
        let line = match &outcome.error {
            None => "reloaded".to_owned(),
            Some(e) => format!("failed: {e}"),
        };
        self.0.lock().push(line);
    }
}

#[tokio::test]
async fn reload_outcomes_reach_the_status_and_the_observer() {
    let farm = Farm::start(&[1]).await;
    let told = Arc::new(Told::default());
    farm.edge.observe_reloads(told.clone());
    assert_eq!(farm.edge.status().reloads.last, None);

    let path = farm.edge_config();
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, "[[listener]]\nname = 1\n").unwrap();
    assert!(farm.edge.reload_from(&path).await.is_err());
    let last = farm.edge.status().reloads.last.unwrap();
    assert!(!last.succeeded);
    let error = last.error.unwrap();
    assert!(error.contains("edge.toml:2"), "{error}");

    std::fs::write(&path, good).unwrap();
    farm.edge.reload_from(&path).await.unwrap();
    let status = farm.edge.status();
    assert_eq!((status.reloads.succeeded, status.reloads.failed), (1, 1));
    let last = status.reloads.last.unwrap();
    assert!(last.succeeded && last.error.is_none());
    assert!(last.at > 0);

    let told = told.0.lock().clone();
    assert_eq!(told.len(), 4, "{told:?}");
    assert_eq!(told[0], "reloading");
    assert!(told[1].starts_with("failed: ") && told[1].contains("edge.toml:2"));
    assert_eq!(told[2..], ["reloading", "reloaded"]);
}

#[tokio::test]
async fn a_client_certificate_without_client_auth_shows_the_sunset_with_its_date() {
    let pki = TestPki::new();
    // A server certificate (serverAuth only) presented as a client certificate: what public
    // CAs issue since they dropped clientAuth.
    let server_only = pki.server(EDGE);
    let gate = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let text = farm::edge_listener(&pki.server(SITE))
        + &farm::edge_upstream(&[(gate, 1)], &pki.ca_file(), &server_only, "");
    let edge = farm::start(pki.dir(), "edge", &text).await;
    let status = edge.status();
    assert_round_trips(&status);
    let client = status.upstreams[0]
        .tls
        .as_ref()
        .and_then(|t| t.client_certificate.as_ref())
        .unwrap();
    assert_eq!(client.purpose, "clientAuth");
    assert!(!client.permits, "{client:?}");
    assert_eq!(client.eku.as_deref(), Some(&["serverAuth".to_owned()][..]));
    let last = client
        .facts
        .iter()
        .find(|f| f.id == "lets_encrypt_last_client_auth")
        .unwrap_or_else(|| panic!("{:?}", client.facts));
    assert_eq!(last.date, "2026-07-08");
    let warning = status
        .warnings
        .iter()
        .find(|w| w.kind == "client_certificate_lacks_client_auth")
        .unwrap_or_else(|| panic!("{:?}", status.warnings));
    assert!(warning.facts.contains(last));
}
