//! The whole documented schema (docs/configuration.md) parses into typed values.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use farmgate_config::{
    Address, Balance, Config, EkuPolicy, HostPattern, ListenerCerts, ListenerTls, Trust,
};

const GATE: &str = r#"
[[listener]]
name   = "gate"
listen = "0.0.0.0:8443"
[listener.tls]
certificate = "certs/backend.pem"
private_key = "certs/backend.key"
[listener.tls.client_auth]
trust = ["certs/farm-ca.pem", "mozilla"]
allow = ["dns:edge.example.com", "uri:spiffe://farm/edge", "cn:legacy-edge", "spki-sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="]
eku   = "client_auth"
sources = ["10.0.0.0/24", "::1"]
[[listener.route]]
upstream = "app"
[upstream.app]
servers = ["127.0.0.1:8080"]
"#;

const EDGE: &str = r#"
[[listener]]
name   = "public"
listen = "0.0.0.0:443"
[listener.tls]
certificate = "certs/site.pem"
private_key = "/abs/site.key"
[[listener.tls.sni]]
server_name = "Static.Example.com"
certificate = "certs/static.pem"
private_key = "certs/static.key"
[[listener.route]]
host        = "www.example.com"
path_prefix = "/api"
upstream    = "farm"
[[listener.route]]
host        = "*.example.com"
upstream    = "farm"

[upstream.farm]
servers = ["10.0.0.11:8443", "backend-2.farm.internal:8443", { address = "10.0.0.13:8443", weight = 2 }]
balance = "round_robin"
timeouts = { connect = "2s", response_header = "30s", idle = "90s" }
[upstream.farm.tls]
server_name        = "backend.farm.internal"
trust              = ["certs/farm-ca.pem"]
client_certificate = "certs/edge-client.pem"
client_key         = "certs/edge-client.key"

[server]
shutdown_grace = "10s"
workers = 4
"#;

/// The files a listener's certificates come from.
fn files(tls: &ListenerTls) -> (&farmgate_config::CertKey, &[farmgate_config::SniCert]) {
    match &tls.certs {
        ListenerCerts::Files { default, sni } => (default, sni),
        other => panic!("expected certificate files, got {other:?}"),
    }
}

fn parse(text: &str) -> Config {
    Config::parse(text, Path::new("/etc/farmgate/farmgate.toml")).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn gate_example_parses_into_typed_values() {
    let c = parse(GATE);
    let l = &c.listeners[0];
    assert_eq!(l.listen, "0.0.0.0:8443".parse::<SocketAddr>().unwrap());
    assert!(l.is_gate());
    let tls = l.tls.as_ref().unwrap();
    assert_eq!(
        files(tls).0.certificate.path,
        Path::new("/etc/farmgate/certs/backend.pem")
    );
    let ca = tls.client_auth.as_ref().unwrap();
    assert_eq!(ca.trust.len(), 2);
    assert_eq!(ca.trust[1], Trust::Mozilla);
    assert_eq!(ca.allow.rules().len(), 4);
    assert_eq!(ca.eku, EkuPolicy::ClientAuth);
    assert_eq!(l.sources().len(), 2);
    assert!(l.sources()[0].contains("10.0.0.9".parse().unwrap()));
    assert_eq!(
        c.upstreams[0].tls.as_ref().map(|_| ()),
        None,
        "no tls table: plain HTTP to the app"
    );
}

#[test]
fn edge_example_parses_into_typed_values() {
    let c = parse(EDGE);
    let l = &c.listeners[0];
    let tls = l.tls.as_ref().unwrap();
    let (default, sni) = files(tls);
    assert_eq!(default.private_key.path, Path::new("/abs/site.key"));
    assert_eq!(sni[0].server_name, "static.example.com");
    assert!(!l.is_gate());
    assert_eq!(
        l.routes[0].host,
        Some(HostPattern::Exact("www.example.com".into()))
    );
    assert_eq!(l.routes[0].path_prefix, "/api");
    assert!(l.routes[1].matches("img.example.com", "/x"));
    let farm = c.upstream(l.routes[0].upstream);
    assert_eq!(farm.name, "farm");
    assert_eq!(farm.servers.len(), 3);
    assert_eq!(
        farm.servers[1].address,
        Address::Name {
            host: "backend-2.farm.internal".into(),
            port: 8443
        }
    );
    assert_eq!(farm.servers[2].weight, 2);
    assert_eq!(farm.balance, Balance::RoundRobin);
    assert_eq!(farm.timeouts.connect, Duration::from_secs(2));
    assert_eq!(farm.timeouts.idle, Duration::from_secs(90));
    let up = farm.tls.as_ref().unwrap();
    assert_eq!(up.server_name.as_deref(), Some("backend.farm.internal"));
    assert!(up.client_cert.is_some());
    assert_eq!(c.server.shutdown_grace, Duration::from_secs(10));
    assert_eq!(c.server.workers, Some(4));
}

#[test]
fn defaults_are_strict_and_documented() {
    let c = parse(
        r#"
[[listener]]
name = "gate"
listen = "127.0.0.1:0"
tls = { certificate = "c.pem", private_key = "k.pem", client_auth = { trust = ["ca.pem"], allow = ["dns:edge.farm"] } }
[[listener.route]]
upstream = "app"
[upstream.app]
servers = ["127.0.0.1:8080"]
tls = { server_name = "app.local" }
"#,
    );
    let ca = c.listeners[0]
        .tls
        .as_ref()
        .unwrap()
        .client_auth
        .as_ref()
        .unwrap();
    assert_eq!(
        ca.eku,
        EkuPolicy::ClientAuth,
        "strict purpose unless relaxed explicitly"
    );
    let up = &c.upstreams[0];
    assert_eq!(
        up.tls.as_ref().unwrap().trust,
        [Trust::Mozilla],
        "backends are always verified"
    );
    assert_eq!(up.timeouts.connect, Duration::from_secs(5));
    assert_eq!(c.server.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.server.workers, None, "one worker per CPU");
}
