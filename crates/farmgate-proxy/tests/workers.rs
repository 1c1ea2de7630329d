//! Worker threads: one listening socket each on every listener address, and pooled backend
//! connections kept per worker.

use farmgate_config::Config;
use farmgate_proxy::{Generation, ProxyError, Server, Workers};
use farmgate_testkit::client::TlsClient;
use farmgate_testkit::origin::Origin;
use farmgate_testkit::pki::TestPki;

use crate::farm::{BACKEND, EDGE, SITE, edge_listener, edge_upstream, gate, start_on};

#[tokio::test]
async fn workers_share_the_port_and_each_keeps_its_own_backend_connections() {
    crate::logs::capture();
    let pki = TestPki::new();
    let origin = Origin::start("origin-0").await;
    let allow = format!("dns:{EDGE}");
    let (_gate, gate_addr) = gate(
        pki.dir(),
        "gate",
        &pki.server(BACKEND),
        &pki.ca_file(),
        &[&allow],
        origin.addr,
    )
    .await;
    let text = edge_listener(&pki.server(SITE))
        + &edge_upstream(&[(gate_addr, 1)], &pki.ca_file(), &pki.client(EDGE), "");
    let edge = start_on(pki.dir(), "edge", &text, Workers::start(2).unwrap()).await;
    let addr = edge.local_addr("public").unwrap();
    let browser = TlsClient::new(&pki.ca_file(), SITE);
    // One request per new connection, one after another: the kernel spreads the 40
    // connections over both workers' sockets (all on one: odds of 2^-39).
    for _ in 0..40 {
        let r = browser.get(addr, "/").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(origin.requests(), 40);
    assert_eq!(
        edge.generation().upstream_connections("farm"),
        Some(2),
        "each worker opens one connection to the gate and reuses it for its own requests"
    );
}

/// Regression: `/status` subtracted one accept loop per listener from its task count, where
/// there is one per listener and worker, so with two workers it reported a connection more
/// than were open.
#[tokio::test]
async fn open_connections_are_counted_once_whatever_the_number_of_workers() {
    let pki = TestPki::new();
    let origin = Origin::start("origin-0").await;
    let allow = format!("dns:{EDGE}");
    let (_gate, gate_addr) = gate(
        pki.dir(),
        "gate",
        &pki.server(BACKEND),
        &pki.ca_file(),
        &[&allow],
        origin.addr,
    )
    .await;
    let text = edge_listener(&pki.server(SITE))
        + &edge_upstream(&[(gate_addr, 1)], &pki.ca_file(), &pki.client(EDGE), "");
    let edge = start_on(pki.dir(), "edge", &text, Workers::start(2).unwrap()).await;
    let addr = edge.local_addr("public").unwrap();
    let browser = TlsClient::new(&pki.ca_file(), SITE);
    assert_eq!(edge.open_connections(), 0);
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut conn = browser.connect(addr).await;
        // Answered: the edge has accepted it and serves it.
        assert_eq!(conn.get("/").await.status, 200);
        held.push(conn);
    }
    assert_eq!(edge.open_connections(), 5);
    assert_eq!(edge.status().open_connections, 5);
}

/// A plain listener on `listen` in front of a backend that is never asked.
fn plain(listen: &str) -> Generation {
    let text = format!(
        "[[listener]]\nname = \"public\"\nlisten = \"{listen}\"\n[[listener.route]]\nupstream = \"app\"\n[upstream.app]\nservers = [\"127.0.0.1:9\"]\n"
    );
    let config = Config::parse(&text, std::path::Path::new("plain.toml")).unwrap();
    Generation::build(config).unwrap()
}

#[tokio::test]
async fn a_port_in_use_is_refused_even_where_workers_share_ports() {
    let first = Server::start_on(plain("127.0.0.1:0"), Workers::start(2).unwrap())
        .await
        .unwrap();
    let taken = first.local_addr("public").unwrap();
    // A second farmgate started by mistake must not silently take half the connections.
    for workers in [Workers::start(2).unwrap(), Workers::current()] {
        let count = workers.count();
        match Server::start_on(plain(&taken.to_string()), workers).await {
            Err(ProxyError::Bind { addr, source, .. }) => {
                assert_eq!(addr, taken);
                assert_eq!(
                    source.kind(),
                    std::io::ErrorKind::AddrInUse,
                    "{count} workers"
                );
            }
            Err(other) => panic!("{count} workers: expected a bind error, got {other}"),
            Ok(_) => panic!("{count} workers: a second server bound {taken}"),
        }
    }
    // The first one still serves.
    assert!(tokio::net::TcpStream::connect(taken).await.is_ok());
}
