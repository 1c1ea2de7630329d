//! A reload reaches every request that starts after it, on every connection: routes,
//! upstreams and the upstream client identity apply to requests on connections opened before
//! the reload; a connection whose listener now serves another certificate is closed within one
//! request; an unchanged listener keeps its connections; old generations end.

use std::time::Duration;

use farmgate_proxy::reload::watch;
use farmgate_testkit::client::{Connection, TlsClient};
use farmgate_testkit::origin::{header_values, parse_echo};
use farmgate_testkit::pki::CertFiles;

use crate::farm::{Farm, SITE};
use crate::reload::{reloads_until, write_atomically};

/// The identity the app saw on a request sent on `conn`, as XFCC.
async fn identity_seen(conn: &mut Connection) -> String {
    let response = conn.get("/").await;
    assert_eq!(response.status, 200, "{}", response.body);
    let (_, headers) = parse_echo(&response.body);
    header_values(&headers, "x-forwarded-client-cert")[0].to_owned()
}

/// An HTTP/1.1 and an HTTP/2 connection of the farm's browser to its edge.
async fn both(farm: &Farm) -> [Connection; 2] {
    [
        farm.browser().connect(farm.edge_addr).await,
        farm.browser().http2().connect(farm.edge_addr).await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_upstream_client_certificate_reaches_connections_opened_before() {
    let farm = Farm::start(&[1]).await;
    tokio::spawn(watch(farm.edge.clone(), farm.edge_config()));
    let mut counts = farm.edge.reload_counts();
    let mut conns = both(&farm).await;
    let old = farm.edge_client.identity().fingerprint_hex();
    for conn in &mut conns {
        assert!(identity_seen(conn).await.contains(&old));
    }

    // Rotated on disk, key first: the watcher reloads.
    let renewed = farm.pki.client(crate::farm::EDGE);
    write_atomically(&farm.edge_client.key, std::fs::read(&renewed.key).unwrap());
    write_atomically(
        &farm.edge_client.cert,
        std::fs::read(&renewed.cert).unwrap(),
    );
    reloads_until(&mut counts, |c| c.succeeded >= 1).await;

    // The next request on each old connection goes out over a new upstream connection, with
    // the new identity; the client connections themselves stay (their listener is unchanged).
    let new = renewed.identity().fingerprint_hex();
    for conn in &mut conns {
        assert!(identity_seen(conn).await.contains(&new));
        assert!(!conn.is_closed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_added_by_a_reload_serves_connections_opened_before() {
    let farm = Farm::start(&[1]).await;
    let path = farm.edge_config();
    let everything = std::fs::read_to_string(&path).unwrap();
    let route = "[[listener.route]]\nupstream = \"farm\"";
    assert!(everything.contains(route));
    let only_a = everything.replace(
        route,
        "[[listener.route]]\npath_prefix = \"/a\"\nupstream = \"farm\"",
    );
    std::fs::write(&path, &only_a).unwrap();
    farm.edge.reload_from(&path).await.unwrap();

    let mut conns = both(&farm).await;
    for conn in &mut conns {
        assert_eq!(conn.get("/a").await.status, 200);
        assert_eq!(conn.get("/b").await.status, 404);
    }
    let with_b = only_a.replace(
        "[[listener.route]]\npath_prefix = \"/a\"",
        "[[listener.route]]\npath_prefix = \"/b\"\nupstream = \"farm\"\n[[listener.route]]\npath_prefix = \"/a\"",
    );
    std::fs::write(&path, with_b).unwrap();
    farm.edge.reload_from(&path).await.unwrap();
    for conn in &mut conns {
        assert_eq!(conn.get("/b").await.status, 200);
        assert!(!conn.is_closed());
    }
}

/// A second TLS listener on the edge, for `other.farm.test`, routing to the same farm.
fn other_listener(cert: &CertFiles) -> String {
    format!(
        "\n[[listener]]\nname = \"other\"\nlisten = \"127.0.0.1:0\"\n[listener.tls]\ncertificate = {:?}\nprivate_key = {:?}\n[[listener.route]]\nupstream = \"farm\"\n",
        cert.cert, cert.key
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_listener_certificate_reaches_old_connections_within_one_request() {
    const OTHER: &str = "other.farm.test";
    let farm = Farm::start(&[1]).await;
    let path = farm.edge_config();
    let text = std::fs::read_to_string(&path).unwrap() + &other_listener(&farm.pki.server(OTHER));
    std::fs::write(&path, &text).unwrap();
    farm.edge.reload_from(&path).await.unwrap();
    let other_addr = farm.edge.local_addr("other").unwrap();
    let [mut h1, mut h2] = both(&farm).await;
    let mut other = TlsClient::new(&farm.pki.ca_file(), OTHER)
        .connect(other_addr)
        .await;
    for conn in [&mut h1, &mut h2, &mut other] {
        assert_eq!(conn.get("/").await.status, 200);
    }

    // The site's certificate is renewed with a new key; the other listener's stays.
    let renewed = farm.pki.server(SITE);
    std::fs::copy(&renewed.key, &farm.site.key).unwrap();
    std::fs::copy(&renewed.cert, &farm.site.cert).unwrap();
    farm.edge.reload_from(&path).await.unwrap();

    // HTTP/1.1: the next request is answered, with `Connection: close`; the client reconnects
    // and meets the new certificate.
    let answered = h1.get("/").await;
    assert_eq!(answered.status, 200);
    assert_eq!(answered.header("connection"), "close");
    assert!(
        !h1.ready().await,
        "the connection closed after that response"
    );
    assert_eq!(
        farm.browser().served_serial(farm.edge_addr).await,
        renewed.serial
    );
    // HTTP/2: GOAWAY, and the connection ends once its streams are done.
    tokio::time::timeout(Duration::from_secs(30), h2.closed())
        .await
        .expect("the HTTP/2 connection stayed open");
    // The unchanged listener keeps its connection.
    let still = other.get("/").await;
    assert_eq!(still.status, 200);
    assert!(still.header("connection").is_empty());
    assert!(!other.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reloads_with_connections_held_open_leave_one_generation() {
    let farm = Farm::start(&[1, 1]).await;
    let path = farm.edge_config();
    let original = std::fs::read_to_string(&path).unwrap();
    let weighted = original.replacen("weight = 1 }", "weight = 2 }", 1);
    assert_ne!(weighted, original);
    // Eight client connections: half send a request now and then, half stay idle throughout.
    let mut busy = Vec::new();
    let mut idle = Vec::new();
    for _ in 0..2 {
        let [h1, h2] = both(&farm).await;
        busy.extend([h1, h2]);
        let [h1, h2] = both(&farm).await;
        idle.extend([h1, h2]);
    }
    for conn in busy.iter_mut().chain(idle.iter_mut()) {
        assert_eq!(conn.get("/").await.status, 200);
    }
    assert_eq!(farm.edge.generations_alive(), 1);

    for i in 0..100 {
        let text = if i % 2 == 0 { &weighted } else { &original };
        std::fs::write(&path, text).unwrap();
        farm.edge.reload_from(&path).await.unwrap();
        if i % 10 == 0 {
            for conn in &mut busy {
                assert_eq!(conn.get("/").await.status, 200, "after reload {i}");
            }
        }
    }

    // Nothing holds an old generation: not the idle connections, not the requests that ended.
    let mut generations = farm.edge.generations();
    let one = generations.wait_for(|n| *n == 1);
    tokio::time::timeout(Duration::from_secs(30), one)
        .await
        .expect("old generations stayed alive")
        .unwrap();
    assert_eq!(farm.edge.status().generations, 1);
    assert!(
        farm.edge
            .metrics()
            .encode()
            .contains("farmgate_generations 1\n")
    );
    for conn in busy.iter_mut().chain(idle.iter_mut()) {
        assert_eq!(conn.get("/").await.status, 200);
        assert!(!conn.is_closed());
    }
}
