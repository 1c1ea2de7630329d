//! Listeners whose certificate comes from ACME, without an ACME server: the stored certificate is
//! served, and a reload keeps it and its store (nothing is ordered again).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use farmgate_proxy::{Generation, Server};
use farmgate_testkit::client::TlsClient;
use farmgate_testkit::origin::Origin;
use farmgate_testkit::pki::TestPki;

const SITE: &str = "www.farm.test";

/// An edge taking its certificate for SITE from an ACME server that does not exist.
fn edge_toml(storage: &Path, origin: SocketAddr, idle: &str) -> String {
    format!(
        r#"
[acme]
directory = "https://127.0.0.1:1/directory"
storage = {storage:?}

[[listener]]
name = "public"
listen = "127.0.0.1:0"
tls = {{ acme = {{ domains = ["{SITE}"] }} }}
timeouts = {{ idle = "{idle}" }}
[[listener.route]]
upstream = "app"

[upstream.app]
servers = ["{origin}"]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_acme_certificate_and_its_store() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let storage = pki.dir().join("acme");
    let path = pki.dir().join("edge.toml");
    std::fs::write(&path, edge_toml(&storage, origin.addr, "60s")).unwrap();

    // A certificate this edge (or another sharing the storage) got earlier.
    let file = Generation::load(&path).unwrap().acme().status()[0]
        .file
        .clone();
    let site = pki.server(SITE);
    let key = std::fs::read_to_string(&site.key).unwrap();
    let chain = std::fs::read_to_string(&site.cert).unwrap();
    std::fs::write(&file, format!("{key}{chain}")).unwrap();

    let server = Server::start(Generation::load(&path).unwrap())
        .await
        .unwrap();
    let addr = server.local_addr("public").unwrap();
    let client = TlsClient::new(&pki.ca_file(), SITE);
    assert_eq!(client.served_serial(addr).await, site.serial);
    assert_eq!(client.get(addr, "/").await.status, 200);
    let store = server
        .generation()
        .listener_tls("public")
        .unwrap()
        .store()
        .clone();

    std::fs::write(&path, edge_toml(&storage, origin.addr, "30s")).unwrap();
    server.reload_from(&path).await.unwrap();
    let after = server.generation();
    assert!(Arc::ptr_eq(
        &store,
        after.listener_tls("public").unwrap().store()
    ));
    assert_eq!(client.served_serial(addr).await, site.serial);
    let status = &server.acme().status()[0];
    assert_eq!(status.counters.orders, 0);
    assert_eq!(status.listeners, ["public"]);
}
