//! Listeners whose certificate comes from ACME, without an ACME server: the stored certificate is
//! served, a reload keeps it and its store (nothing is ordered again), and validations are
//! answered whichever edge sharing the storage posted them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use farmgate_proxy::{Generation, Server};
use farmgate_testkit::acme::{ACME_TLS_1, acme_identifier, tls_alpn_validation};
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

    // What the admin endpoint shows of it.
    let document = server.status();
    let shown = &document.acme[0];
    assert_eq!(shown.domains, [SITE]);
    assert_eq!(shown.state, "valid");
    assert!(shown.days_left.unwrap() > 80);
    assert!(shown.next_renewal.is_some());
    let metrics = server.metrics().encode();
    for expected in [
        format!(r#"farmgate_acme_valid{{certificate="{SITE}"}} 1"#),
        format!(
            r#"farmgate_acme_certificates_total{{certificate="{SITE}",result="renew_failed"}} 0"#
        ),
        format!(r#"farmgate_acme_expiry_seconds{{certificate="{SITE}"}}"#),
    ] {
        assert!(
            metrics.contains(&expected),
            "missing {expected} in:\n{metrics}"
        );
    }
}

/// A plain-HTTP request for `path` to `addr`: the raw response.
async fn plain_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: {SITE}\r\nconnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validations_another_edge_posted_in_the_shared_storage_are_answered() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let storage = pki.dir().join("acme");
    let text = edge_toml(&storage, origin.addr, "60s")
        + "\n[[listener]]\nname = \"plain\"\nlisten = \"127.0.0.1:0\"\nredirect_https = true\n";
    let path = pki.dir().join("edge.toml");
    std::fs::write(&path, text).unwrap();
    let server = Server::start(Generation::load(&path).unwrap())
        .await
        .unwrap();
    let plain = server.local_addr("plain").unwrap();
    let public = server.local_addr("public").unwrap();

    // Another edge, ordering, posts its answers where every edge sharing the storage finds them.
    let token = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
    let key_authorization = format!("{token}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI");
    std::fs::write(
        storage.join("challenges/http-01").join(token),
        &key_authorization,
    )
    .unwrap();
    std::fs::write(
        storage.join("challenges/tls-alpn-01").join(SITE),
        &key_authorization,
    )
    .unwrap();

    let answer = plain_get(plain, &format!("/.well-known/acme-challenge/{token}")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(&key_authorization), "{answer}");
    // Everything else on the plain listener still redirects, unknown tokens included.
    for other in [
        "/",
        "/.well-known/acme-challenge/unknown",
        "/.well-known/acme-challenge/../x",
    ] {
        let answer = plain_get(plain, other).await;
        assert!(answer.starts_with("HTTP/1.1 301"), "{other}: {answer}");
    }

    let (shown, alpn) = tls_alpn_validation(public, SITE).await.unwrap();
    assert_eq!(alpn.as_deref(), Some(ACME_TLS_1));
    let (critical, value) = acme_identifier(shown.as_ref()).expect("an acmeIdentifier");
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key_authorization.as_bytes());
    assert!(critical);
    assert_eq!(
        &value[2..],
        digest.as_ref(),
        "the digest of the key authorization"
    );
    // A validation of a name nobody posted an answer for gets no certificate at all.
    let pending = tls_alpn_validation(public, "other.farm.test").await;
    assert!(pending.is_err(), "no answer posted for other.farm.test");
}
