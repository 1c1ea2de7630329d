//! A route's `request_headers` and `response_headers`: set and removed on what the route
//! forwards and returns (farmgate's own error answers included), never on the identity a gate
//! sets.

use farmgate_testkit::client::{TlsClient, empty};
use farmgate_testkit::origin::{Origin, header_values, parse_echo};
use farmgate_testkit::pki::TestPki;

use crate::farm::{self, SITE};

const RULES: &str = r#"response_headers = { set = { "Strict-Transport-Security" = "max-age=63072000" }, remove = ["X-Origin"] }
request_headers = { set = { "X-Farm" = "edge-1" }, remove = ["Cookie"] }"#;

/// An edge serving `SITE` whose one route, with [`RULES`], goes to `servers`.
fn edge_toml(pki: &TestPki, servers: &str) -> String {
    let listener = farm::edge_listener(&pki.server(SITE));
    format!("{listener}{RULES}\n[upstream.farm]\nservers = [{servers}]\n")
}

#[tokio::test]
async fn a_route_sets_and_removes_headers_on_requests_and_responses() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let text = edge_toml(&pki, &format!("\"{}\"", origin.addr));
    let edge = farm::start(pki.dir(), "edge", &text).await;
    let addr = edge.local_addr("public").unwrap();
    let mut conn = TlsClient::new(&pki.ca_file(), SITE).connect(addr).await;

    let req = conn
        .request("GET", "/ruled")
        .header("x-farm", "forged-by-the-client")
        .header("cookie", "session=1")
        .body(empty())
        .unwrap();
    let response = conn.fetch(req).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.header("strict-transport-security"),
        "max-age=63072000"
    );
    assert!(response.headers.get("x-origin").is_none());
    let (_, seen) = parse_echo(&response.body);
    assert_eq!(header_values(&seen, "x-farm"), ["edge-1"]);
    assert!(header_values(&seen, "cookie").is_empty());
    // The headers the hop manages are still there.
    assert_eq!(header_values(&seen, "x-forwarded-proto"), ["https"]);
}

#[tokio::test]
async fn a_routes_response_headers_reach_farmgates_own_error_answers() {
    let pki = TestPki::new();
    // Nothing listens there: the edge answers 502 itself.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let text = edge_toml(&pki, &format!("\"{dead}\""));
    let edge = farm::start(pki.dir(), "edge", &text).await;
    let addr = edge.local_addr("public").unwrap();
    let response = TlsClient::new(&pki.ca_file(), SITE).get(addr, "/").await;
    assert_eq!(response.status, 502, "{}", response.body);
    assert_eq!(
        response.header("strict-transport-security"),
        "max-age=63072000"
    );
}

#[tokio::test]
async fn a_gate_route_cannot_touch_the_identity_it_sets() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let backend = pki.server(farm::BACKEND);
    let mut text = farm::gate_toml(
        "gate",
        &backend,
        &[&pki.ca_file()],
        &["dns:edge.farm.test"],
        "",
        origin.addr,
    );
    text = text.replace(
        "upstream = \"app\"\n",
        "upstream = \"app\"\nrequest_headers = { set = { \"X-Farm\" = \"gate-1\" } }\n",
    );
    let gate = farm::start(pki.dir(), "gate", &text).await;
    let addr = gate.local_addr("gate").unwrap();
    let edge = pki.client(farm::EDGE);
    let response = TlsClient::new(&pki.ca_file(), farm::BACKEND)
        .with_client_cert(&edge)
        .get(addr, "/")
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let (_, seen) = parse_echo(&response.body);
    assert_eq!(header_values(&seen, "x-farm"), ["gate-1"]);
    assert!(
        header_values(&seen, "x-forwarded-client-cert")
            .iter()
            .any(|v| v.contains("DNS=edge.farm.test")),
        "{seen:?}"
    );

    // And a rule that tries is refused when the configuration loads.
    let refused = text.replace(
        "\"X-Farm\" = \"gate-1\"",
        "\"X-Forwarded-Client-Cert\" = \"x\"",
    );
    let path = pki.dir().join("refused.toml");
    let errors = farmgate_config::Config::parse(&refused, &path).unwrap_err();
    assert!(
        errors
            .to_string()
            .contains("listener.route.request_headers.set: header \"X-Forwarded-Client-Cert\" cannot be set or removed"),
        "{errors}"
    );
}
