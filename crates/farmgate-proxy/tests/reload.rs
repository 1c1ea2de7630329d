//! Reload, rotation and tightened policies under load: no request is lost.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use farmgate_pki::CertSpec;
use farmgate_proxy::reload::{ReloadCounts, watch};
use farmgate_testkit::client::TlsClient;
use farmgate_testkit::origin::{Origin, header_values, parse_echo};
use farmgate_testkit::pki::TestPki;
use rustls::AlertDescription;
use tokio::sync::watch as channel;

use crate::farm::{BACKEND, EDGE, Farm, SITE, gate};
use farmgate_testkit::load::{Load, assert_no_failures};

/// Replace `path` the way deployment tools do: write a temporary file, rename it over.
pub(crate) fn write_atomically(path: &Path, contents: impl AsRef<[u8]>) {
    let tmp = path.with_extension("tmp-new");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Wait until the reload counts satisfy `done` (a safety timeout turns a hang into a failure).
pub(crate) async fn reloads_until(
    counts: &mut channel::Receiver<ReloadCounts>,
    done: impl Fn(&ReloadCounts) -> bool,
) -> ReloadCounts {
    let wait = async {
        loop {
            let now = *counts.borrow_and_update();
            if done(&now) {
                return now;
            }
            counts.changed().await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("the expected reload never happened")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_lose_no_request() {
    let farm = Farm::start(&[1, 1]).await;
    let path = farm.edge_config();
    let original = std::fs::read_to_string(&path).unwrap();
    let changed = original.replacen("weight = 1 }", "weight = 3 }", 1);
    assert_ne!(changed, original);
    let load = Load::start(&farm.browser(), farm.edge_addr, 4, "/");
    for i in 0..20 {
        let text = match i {
            7 => format!("{original}\n[bogus]\nkey = 1\n"),
            19 => changed.clone(),
            _ => original.clone(),
        };
        std::fs::write(&path, text).unwrap();
        let result = farm.edge.reload_from(&path).await;
        assert_eq!(result.is_ok(), i != 7, "reload {i}: {result:?}");
    }
    let report = load.finish().await;
    assert_no_failures(&report);
    assert_eq!(
        *farm.edge.reload_counts().borrow(),
        ReloadCounts {
            succeeded: 19,
            failed: 1
        }
    );

    // The real change took effect: weights 3:1 on a new connection.
    let before: Vec<usize> = farm.origins.iter().map(|o| o.requests()).collect();
    let mut conn = farm.browser().connect(farm.edge_addr).await;
    for _ in 0..8 {
        assert_eq!(conn.get("/").await.status, 200);
    }
    let after: Vec<usize> = farm.origins.iter().map(|o| o.requests()).collect();
    assert_eq!([after[0] - before[0], after[1] - before[1]], [6, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_rotated_on_disk_is_served_without_restart() {
    let farm = Farm::start(&[1]).await;
    tokio::spawn(watch(farm.edge.clone(), farm.edge_config()));
    let browser = farm.browser();
    assert_eq!(
        browser.served_serial(farm.edge_addr).await,
        farm.site.serial
    );
    let mut counts = farm.edge.reload_counts();
    let load = Load::start(&browser, farm.edge_addr, 3, "/");

    // A garbage write: the reload fails, the old certificate keeps being served.
    write_atomically(
        &farm.site.cert,
        "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
    );
    reloads_until(&mut counts, |c| c.failed == 1).await;
    assert_eq!(
        browser.served_serial(farm.edge_addr).await,
        farm.site.serial
    );

    // The renewal (same key) lands: new handshakes get the new serial, no restart.
    let renewed = farm.pki.issue(
        "site-renewed",
        &CertSpec::server(SITE).with_key(farm.site.key_pair()),
    );
    write_atomically(&farm.site.cert, std::fs::read(&renewed.cert).unwrap());
    reloads_until(&mut counts, |c| c.succeeded == 1).await;
    assert_eq!(browser.served_serial(farm.edge_addr).await, renewed.serial);

    // A new key and certificate, written one after the other.
    let rekeyed = farm.pki.issue("site-rekeyed", &CertSpec::server(SITE));
    write_atomically(&farm.site.key, std::fs::read(&rekeyed.key).unwrap());
    write_atomically(&farm.site.cert, std::fs::read(&rekeyed.cert).unwrap());
    let wait = async {
        loop {
            if browser.served_serial(farm.edge_addr).await == rekeyed.serial {
                return;
            }
            counts.changed().await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("the new key was never served");

    assert_no_failures(&load.finish().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_client_certificate_rotated_on_disk_is_presented_to_gates() {
    let farm = Farm::start(&[1]).await;
    tokio::spawn(watch(farm.edge.clone(), farm.edge_config()));
    let mut counts = farm.edge.reload_counts();
    let load = Load::start(&farm.browser(), farm.edge_addr, 3, "/");
    let before = farm.browser().get(farm.edge_addr, "/").await;
    let (_, headers) = parse_echo(&before.body);
    assert!(
        header_values(&headers, "x-forwarded-client-cert")[0]
            .contains(&farm.edge_client.identity().fingerprint_hex())
    );

    let renewed = farm.pki.client(EDGE);
    write_atomically(&farm.edge_client.key, std::fs::read(&renewed.key).unwrap());
    write_atomically(
        &farm.edge_client.cert,
        std::fs::read(&renewed.cert).unwrap(),
    );
    let new_hash = renewed.identity().fingerprint_hex();
    let wait = async {
        loop {
            let r = farm.browser().get(farm.edge_addr, "/").await;
            let (_, headers) = parse_echo(&r.body);
            if header_values(&headers, "x-forwarded-client-cert")[0].contains(&new_hash) {
                return;
            }
            counts.changed().await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("the renewed client certificate was never presented");
    assert_no_failures(&load.finish().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tightened_allow_list_closes_connections_after_their_current_request() {
    crate::logs::capture();
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let backend = pki.server(BACKEND);
    let (server, addr) = gate(
        pki.dir(),
        "gate",
        &backend,
        &pki.ca_file(),
        &["dns:edge.farm.test", "dns:partner.farm.test"],
        origin.addr,
    )
    .await;
    let server = Arc::new(server);
    let edge = pki.client(EDGE);
    let partner = pki.client("partner.farm.test");
    let client = |c| TlsClient::new(&pki.ca_file(), BACKEND).with_client_cert(c);
    let mut edge_conn = client(&edge).connect(addr).await;
    let mut partner_conn = client(&partner).connect(addr).await;
    assert_eq!(edge_conn.get("/").await.status, 200);
    assert_eq!(partner_conn.get("/").await.status, 200);

    let path = pki.dir().join("gate.toml");
    let tightened = std::fs::read_to_string(&path)
        .unwrap()
        .replace(", \"dns:partner.farm.test\"", "");
    std::fs::write(&path, tightened).unwrap();
    server.reload_from(&path).await.unwrap();

    // The partner's open connection is closed (after any request in progress), the edge's stays.
    tokio::time::timeout(Duration::from_secs(30), partner_conn.closed())
        .await
        .expect("the partner's connection stayed open");
    assert_eq!(edge_conn.get("/").await.status, 200);
    // And the partner cannot come back.
    match client(&partner).probe(addr).await {
        farmgate_testkit::client::Probe::Refused(rustls::Error::AlertReceived(a)) => {
            assert_eq!(a, AlertDescription::AccessDenied)
        }
        other => panic!("{other:?}"),
    }
    assert!(!crate::logs::lines_with(&["no longer allows this client", "not_allowed"]).is_empty());
}

/// How many clients gate listener `gate` of `server` refused as not allowed, as `/metrics`
/// says.
fn not_allowed(server: &farmgate_proxy::Server) -> u64 {
    let metrics = server.metrics().encode();
    let prefix = r#"farmgate_client_cert_refusals_total{listener="gate",reason="not_allowed"} "#;
    let line = metrics.lines().find(|l| l.starts_with(prefix));
    line.and_then(|l| l[prefix.len()..].parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
}

/// Regression: a gate's counters were folded into a history just before a reload swapped
/// generations, so a scrape in between counted its refusals twice. Now a gate listener's
/// counters outlive its generations: scrapes during reloads see each refusal once, and
/// refusals after a reload add to the same count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_refusals_are_counted_once_while_reloads_swap_generations() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let (server, addr) = gate(
        pki.dir(),
        "gate",
        &pki.server(BACKEND),
        &pki.ca_file(),
        &["dns:edge.farm.test"],
        origin.addr,
    )
    .await;
    let server = Arc::new(server);
    let intruder =
        TlsClient::new(&pki.ca_file(), BACKEND).with_client_cert(&pki.client("intruder.farm.test"));
    let refuse = || async {
        match intruder.probe(addr).await {
            farmgate_testkit::client::Probe::Refused(_) => {}
            other => panic!("the intruder got in: {other:?}"),
        }
    };
    for _ in 0..3 {
        refuse().await;
    }
    assert_eq!(not_allowed(&server), 3);

    // A scraper reads /metrics as often as it can while the gate reloads 30 times.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraper = tokio::spawn({
        let (server, stop) = (server.clone(), stop.clone());
        async move {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                seen.push(not_allowed(&server));
                tokio::task::yield_now().await;
            }
            seen
        }
    });
    let path = pki.dir().join("gate.toml");
    for _ in 0..30 {
        server.reload_from(&path).await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = scraper.await.unwrap();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|n| *n == 3),
        "scrapes during reloads: {seen:?}"
    );

    // The generation now serving counts into the same counter.
    refuse().await;
    assert_eq!(not_allowed(&server), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_fails_to_bind_forgets_no_server_counter() {
    let farm = Farm::start(&[1, 1]).await;
    let browser = farm.browser();
    for _ in 0..10 {
        assert_eq!(browser.get(farm.edge_addr, "/").await.status, 200);
    }
    let first = farm.gates[0].1.to_string();
    let requests = |farm: &Farm| {
        let status = farm.edge.status();
        let farm_upstream = status.upstreams.iter().find(|u| u.name == "farm").unwrap();
        farm_upstream
            .servers
            .iter()
            .find(|s| s.address == first)
            .map(|s| s.requests)
    };
    let before = requests(&farm).unwrap();
    assert!(before > 0);

    // A configuration without the first gate, whose new listener cannot bind: it is built,
    // then the reload fails and the running configuration stays.
    let path = farm.edge_config();
    let original = std::fs::read_to_string(&path).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let without_first = original.replace(&format!("{{ address = \"{first}\", weight = 1 }}, "), "");
    assert_ne!(without_first, original);
    let failing = format!(
        "{without_first}\n[[listener]]\nname = \"busy\"\nlisten = \"{}\"\n[[listener.route]]\nupstream = \"farm\"\n",
        taken.local_addr().unwrap()
    );
    std::fs::write(&path, failing).unwrap();
    assert!(farm.edge.reload_from(&path).await.is_err());
    assert_eq!(requests(&farm), Some(before));

    // The next reload keeps the first gate, and its counters with it.
    std::fs::write(&path, &original).unwrap();
    farm.edge.reload_from(&path).await.unwrap();
    assert_eq!(requests(&farm), Some(before));
}
