//! Many edges behind a layer-4 balancer: `proxy_protocol`, `trusted_proxies`, `ticket_keys`
//! and `send_proxy` as operators write them, their defaults, and every mistake named.

use std::net::IpAddr;
use std::path::Path;

use farmgate_config::{Protocol, ProxyVersion};

use crate::limits::{assert_at, error, parse};

/// An edge with `listener` at line 4 of its listener table, `tls` at line 8 in its
/// `[listener.tls]` and `upstream` at line 14 in its upstream table.
fn edge(listener: &str, tls: &str, upstream: &str) -> String {
    format!(
        r#"[[listener]]
name = "public"
listen = "127.0.0.1:8443"
{listener}
[listener.tls]
certificate = "site.pem"
private_key = "site.key"
{tls}
[[listener.route]]
upstream = "farm"

[upstream.farm]
servers = ["127.0.0.1:8080"]
{upstream}
"#
    )
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn without_the_keys_nothing_is_proxied_trusted_shared_or_sent() {
    let config = parse(&edge("", "", ""));
    let listener = &config.listeners[0];
    assert!(listener.proxy_protocol.is_none());
    assert!(!listener.expects_proxy_header(ip("10.0.0.1")));
    assert!(listener.trusted_proxies.is_empty());
    assert!(!listener.trusts_forwarding(ip("10.1.0.1")));
    assert!(listener.tls.as_ref().unwrap().ticket_keys.is_none());
    assert_eq!(config.upstreams[0].send_proxy, None);
}

#[test]
fn the_issue_example_parses_into_typed_values() {
    let config = parse(&edge(
        "proxy_protocol = { from = [\"10.0.0.0/8\", \"192.0.2.7\"] }\ntrusted_proxies = [\"10.1.0.0/16\"]",
        "ticket_keys = \"tickets.key\"",
        "send_proxy = \"v2\"",
    ));
    let listener = &config.listeners[0];
    assert!(listener.expects_proxy_header(ip("10.200.0.1")));
    assert!(listener.expects_proxy_header(ip("192.0.2.7")));
    assert!(listener.expects_proxy_header(ip("::ffff:10.0.0.1")));
    assert!(!listener.expects_proxy_header(ip("192.0.2.8")));
    assert!(listener.trusts_forwarding(ip("10.1.2.3")));
    assert!(!listener.trusts_forwarding(ip("10.2.0.1")));
    let keys = listener.tls.as_ref().unwrap().ticket_keys.as_ref().unwrap();
    assert_eq!(keys.path, Path::new("/etc/farmgate/tickets.key"));
    assert_eq!(config.upstreams[0].send_proxy, Some(ProxyVersion::V2));
    let v1 = parse(&edge("", "", "send_proxy = \"v1\""));
    assert_eq!(v1.upstreams[0].send_proxy, Some(ProxyVersion::V1));
}

#[test]
fn the_ticket_key_file_is_watched_like_the_certificates() {
    let config = parse(&edge("", "ticket_keys = \"tickets.key\"", ""));
    let files: Vec<&Path> = config.files().iter().map(|f| f.path.as_path()).collect();
    assert!(
        files.contains(&Path::new("/etc/farmgate/tickets.key")),
        "{files:?}"
    );
}

#[test]
fn an_empty_or_malformed_range_list_is_an_error() {
    let e = error(&edge("proxy_protocol = { from = [] }", "", ""));
    assert_at(&e, 4, "listener.proxy_protocol.from", "from is empty");
    let e = error(&edge(
        "proxy_protocol = { from = [\"10.0.0.0/33\"] }",
        "",
        "",
    ));
    assert_at(&e, 4, "listener.proxy_protocol.from", "an address range");
    let e = error(&edge("trusted_proxies = []", "", ""));
    assert_at(&e, 4, "listener.trusted_proxies", "trust nobody");
    let e = error(&edge("trusted_proxies = [\"proxy.internal\"]", "", ""));
    assert_at(&e, 4, "listener.trusted_proxies", "an address range");
}

#[test]
fn proxy_protocol_needs_from_and_nothing_else() {
    let e = error(&edge("proxy_protocol = {}", "", ""));
    assert!(e.contains("missing field `from`"), "{e}");
    let e = error(&edge(
        "proxy_protocol = { from = [\"10.0.0.0/8\"], version = 2 }",
        "",
        "",
    ));
    assert!(e.contains("unknown field `version`"), "{e}");
}

#[test]
fn a_gate_takes_no_ticket_keys() {
    let tls = "ticket_keys = \"tickets.key\"\n[listener.tls.client_auth]\ntrust = [\"ca.pem\"]\nallow = [\"dns:edge.example.com\"]";
    let e = error(&edge("", tls, ""));
    assert_at(&e, 8, "listener.tls.ticket_keys", "a gate never resumes");
}

#[test]
fn send_proxy_takes_v1_or_v2_and_http1_only() {
    let e = error(&edge("", "", "send_proxy = \"2\""));
    assert_at(&e, 14, "upstream.farm.send_proxy", "\"v1\" or \"v2\"");
    let e = error(&edge("", "", "protocol = \"h2\"\nsend_proxy = \"v2\""));
    assert_at(
        &e,
        15,
        "upstream.farm.send_proxy",
        "use protocol = \"http1\"",
    );
    assert_eq!(
        parse(&edge("", "", "protocol = \"http1\"\nsend_proxy = \"v1\"")).upstreams[0].protocol,
        Protocol::Http1
    );
}
