//! A route's `request_headers` and `response_headers`: typed at load, managed headers refused
//! with the file, line and key.

use std::path::Path;

use farmgate_config::Config;

const FILE: &str = "/etc/farmgate/edge.toml";

/// An edge whose only route carries `rules` (lines from 6 on).
fn edge(rules: &str) -> String {
    format!(
        r#"[[listener]]
name = "public"
listen = "127.0.0.1:8443"
[[listener.route]]
upstream = "farm"
{rules}
[upstream.farm]
servers = ["127.0.0.1:8080"]
"#
    )
}

fn errors(text: &str) -> Vec<String> {
    match Config::parse(text, Path::new(FILE)) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn rules_as_design_writes_them_load_typed() {
    let text = edge(
        r#"response_headers = { set = { "Strict-Transport-Security" = "max-age=63072000" }, remove = ["Server"] }
request_headers  = { set = { "X-Farm" = "edge-1" } }"#,
    );
    let config = Config::parse(&text, Path::new(FILE)).unwrap();
    let route = &config.listeners[0].routes[0];
    let (name, value) = &route.response_headers.set[0];
    assert_eq!(name.as_str(), "strict-transport-security");
    assert_eq!(value, "max-age=63072000");
    assert_eq!(route.response_headers.remove[0].as_str(), "server");
    assert_eq!(route.request_headers.set[0].0.as_str(), "x-farm");
    assert!(route.request_headers.remove.is_empty());
}

#[test]
fn a_route_without_rules_has_empty_ones() {
    let config = Config::parse(&edge(""), Path::new(FILE)).unwrap();
    let route = &config.listeners[0].routes[0];
    assert!(route.request_headers.is_empty() && route.response_headers.is_empty());
}

#[test]
fn identity_hop_by_hop_and_framing_headers_cannot_be_set_or_removed() {
    for (rules, key, header, why) in [
        (
            r#"request_headers = { set = { "X-Forwarded-Client-Cert" = "Hash=0" } }"#,
            "listener.route.request_headers.set",
            "X-Forwarded-Client-Cert",
            "only the gate writes",
        ),
        (
            r#"request_headers = { remove = ["client-cert"] }"#,
            "listener.route.request_headers.remove",
            "client-cert",
            "only the gate writes",
        ),
        (
            r#"response_headers = { remove = ["Client-Cert-Chain"] }"#,
            "listener.route.response_headers.remove",
            "Client-Cert-Chain",
            "only the gate writes",
        ),
        (
            r#"response_headers = { set = { "Connection" = "close" } }"#,
            "listener.route.response_headers.set",
            "Connection",
            "hop-by-hop",
        ),
        (
            r#"request_headers = { remove = ["Transfer-Encoding"] }"#,
            "listener.route.request_headers.remove",
            "Transfer-Encoding",
            "hop-by-hop",
        ),
        (
            r#"request_headers = { set = { "Content-Length" = "0" } }"#,
            "listener.route.request_headers.set",
            "Content-Length",
            "desynchronise",
        ),
        (
            r#"request_headers = { set = { "Host" = "other" } }"#,
            "listener.route.request_headers.set",
            "Host",
            "desynchronise",
        ),
    ] {
        let found = errors(&edge(rules));
        assert_eq!(found.len(), 1, "{found:?}");
        let prefix = format!("{FILE}:6: {key}: header {header:?} cannot be set or removed: ");
        assert!(found[0].starts_with(&prefix), "{prefix:?} in {found:?}");
        assert!(found[0].contains(why), "{why:?} in {found:?}");
    }
}

#[test]
fn malformed_and_repeated_headers_are_refused_with_what_to_write() {
    let found = errors(&edge(
        r#"response_headers = { set = { "Bad Name" = "x", "X-Ok" = "line\nbreak" } }"#,
    ));
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found.iter().any(|e| e.starts_with(&format!(
            "{FILE}:6: listener.route.response_headers.set: \"Bad Name\" is not a header name"
        ))),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|e| e.contains("\"line\\nbreak\" is not a header value")),
        "{found:?}"
    );

    let found = errors(&edge(
        r#"response_headers = { set = { "X-Farm" = "a", "x-farm" = "b" }, remove = ["X-FARM"] }"#,
    ));
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found
            .iter()
            .all(|e| e.contains("appears twice; set or remove each header once")),
        "{found:?}"
    );

    let found = errors(&edge(r#"response_headers = { add = { "X" = "y" } }"#));
    assert!(found[0].contains("unknown field `add`"), "{found:?}");
}
