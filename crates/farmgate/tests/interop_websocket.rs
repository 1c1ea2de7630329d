//! WebSocket beside what farms already run: a stock nginx edge configured for WebSocket
//! (`proxy_http_version 1.1`, `Upgrade`/`Connection` headers) in front of a farmgate gate, and a
//! farmgate edge in front of an nginx gate (`ssl_verify_client on`), both carry the same echo.
//! Behind the `interop` feature; a missing nginx fails the test.

use std::net::SocketAddr;

use farmgate_config::Config;
use farmgate_proxy::{Generation, Server};
use farmgate_testkit::client::TlsClient;
use farmgate_testkit::pki::TestPki;
use farmgate_testkit::ws::{WsOrigin, connect_http1, round_trip};
use tokio_tungstenite::tungstenite::Message;

use crate::nginx::Nginx;

const SITE: &str = "www.farm.test";
const BACKEND: &str = "backend.farm.test";
const EDGE: &str = "edge.farm.test";

/// nginx's usual WebSocket setting: `Connection: upgrade` only when the client asked.
const CONNECTION_MAP: &str = "map $http_upgrade $connection_upgrade { default upgrade; '' close; }";

async fn start(pki: &TestPki, name: &str, text: &str) -> Server {
    let path = pki.dir().join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    let config = Config::parse(text, &path).unwrap_or_else(|e| panic!("{e}\n{text}"));
    Server::start(Generation::build(config).unwrap())
        .await
        .unwrap()
}

/// Echo messages of several sizes through a WebSocket opened at `addr`.
async fn echoes(browser: &TlsClient, addr: SocketAddr) {
    let mut ws = connect_http1(browser, addr, "/ws/interop").await;
    for (i, size) in [1usize, 125, 126, 4096, 65_536]
        .into_iter()
        .cycle()
        .take(50)
        .enumerate()
    {
        let message = Message::Binary(vec![(i % 251) as u8; size].into());
        assert_eq!(round_trip(&mut ws, message.clone()).await, message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nginx_edge_carries_a_websocket_through_a_farmgate_gate() {
    let pki = TestPki::new();
    let origin = WsOrigin::start().await;
    let backend = pki.server(BACKEND);
    let gate = start(
        &pki,
        "gate",
        &format!(
            r#"
[[listener]]
name = "gate"
listen = "127.0.0.1:0"
[listener.tls]
certificate = {cert:?}
private_key = {key:?}
[listener.tls.client_auth]
trust = [{ca:?}]
allow = ["dns:{EDGE}"]
[[listener.route]]
upstream = "app"
[upstream.app]
servers = ["{origin}"]
"#,
            cert = backend.cert,
            key = backend.key,
            ca = pki.ca_file(),
            origin = origin.addr,
        ),
    )
    .await;
    let gate_addr = gate.local_addr("gate").unwrap();
    let (site, client) = (pki.server(SITE), pki.client(EDGE));
    let prefix = pki.dir().join("nginx-edge");
    std::fs::create_dir(&prefix).unwrap();
    let nginx = Nginx::start(
        &prefix,
        CONNECTION_MAP,
        &format!(
            r#"
        server_name {SITE};
        ssl_certificate {site_cert};
        ssl_certificate_key {site_key};
        location / {{
            proxy_pass https://{gate_addr};
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_ssl_certificate {client_cert};
            proxy_ssl_certificate_key {client_key};
            proxy_ssl_trusted_certificate {ca};
            proxy_ssl_verify on;
            proxy_ssl_name {BACKEND};
            proxy_ssl_server_name on;
        }}"#,
            site_cert = site.cert.display(),
            site_key = site.key.display(),
            client_cert = client.cert.display(),
            client_key = client.key.display(),
            ca = pki.ca_file().display(),
        ),
    );
    echoes(&TlsClient::new(&pki.ca_file(), SITE), nginx.addr).await;
    // The app saw the gate's verified identity on the handshake.
    let heads = origin.heads();
    let head = heads.iter().find(|h| h[0].starts_with("GET /ws")).unwrap();
    let xfcc = WsOrigin::header(head, "x-forwarded-client-cert");
    assert!(
        xfcc.first()
            .is_some_and(|x| x.contains("DNS=edge.farm.test")),
        "{head:#?}\n{}",
        nginx.error_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_farmgate_edge_carries_a_websocket_through_an_nginx_gate() {
    let pki = TestPki::new();
    let origin = WsOrigin::start().await;
    let backend = pki.server(BACKEND);
    let prefix = pki.dir().join("nginx-gate");
    std::fs::create_dir(&prefix).unwrap();
    let nginx = Nginx::start(
        &prefix,
        CONNECTION_MAP,
        &format!(
            r#"
        server_name {BACKEND};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_verify_client on;
        ssl_client_certificate {ca};
        location / {{
            proxy_pass http://{origin};
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Client-Dn $ssl_client_s_dn;
        }}"#,
            cert = backend.cert.display(),
            key = backend.key.display(),
            ca = pki.ca_file().display(),
            origin = origin.addr,
        ),
    );
    let (site, client) = (pki.server(SITE), pki.client(EDGE));
    let edge = start(
        &pki,
        "edge",
        &format!(
            r#"
[[listener]]
name = "public"
listen = "127.0.0.1:0"
[listener.tls]
certificate = {site_cert:?}
private_key = {site_key:?}
[[listener.route]]
upstream = "farm"
[upstream.farm]
servers = ["{gate}"]
[upstream.farm.tls]
server_name = "{BACKEND}"
trust = [{ca:?}]
client_certificate = {client_cert:?}
client_key = {client_key:?}
"#,
            site_cert = site.cert,
            site_key = site.key,
            gate = nginx.addr,
            ca = pki.ca_file(),
            client_cert = client.cert,
            client_key = client.key,
        ),
    )
    .await;
    echoes(
        &TlsClient::new(&pki.ca_file(), SITE),
        edge.local_addr("public").unwrap(),
    )
    .await;
    let heads = origin.heads();
    let head = heads.iter().find(|h| h[0].starts_with("GET /ws")).unwrap();
    assert_eq!(
        WsOrigin::header(head, "x-client-dn"),
        ["CN=edge.farm.test"],
        "{}",
        nginx.error_log()
    );
}
