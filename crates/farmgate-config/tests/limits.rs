//! `[listener.limits]`, the new listener timeouts, an upstream's queue and the admin token:
//! documented defaults, sizes as operators write them, and every mistake named.

use std::path::Path;
use std::time::Duration;

use farmgate_config::{Config, ListenerLimits, RateLimit};

pub(crate) const FILE: &str = "/etc/farmgate/edge.toml";

/// An edge with `listener` spliced into its listener table, `upstream` into its upstream table
/// and `head` before both.
fn edge(head: &str, listener: &str, upstream: &str) -> String {
    format!(
        r#"{head}
[[listener]]
name = "public"
listen = "127.0.0.1:8443"
{listener}
[[listener.route]]
upstream = "farm"

[upstream.farm]
servers = ["127.0.0.1:8080"]
{upstream}
"#
    )
}

pub(crate) fn parse(text: &str) -> Config {
    Config::parse(text, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[track_caller]
pub(crate) fn error(text: &str) -> String {
    match Config::parse(text, Path::new(FILE)) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(errors) => errors.to_string(),
    }
}

#[track_caller]
pub(crate) fn assert_at(message: &str, line: usize, key: &str, words: &str) {
    let prefix = format!("{FILE}:{line}: {key}:");
    assert!(
        message.contains(&prefix),
        "expected {prefix:?} in:\n{message}"
    );
    assert!(message.contains(words), "expected {words:?} in:\n{message}");
}

#[test]
fn without_limits_a_listener_gets_the_documented_defaults() {
    let config = parse(&edge("", "", ""));
    let listener = &config.listeners[0];
    let limits = listener.limits;
    assert_eq!(limits.max_connections, 10_000);
    assert_eq!(limits.max_connections_per_client, 256);
    assert_eq!(limits.requests_per_client, None);
    assert_eq!(limits.max_request_body, None);
    assert_eq!(limits.max_request_header, 64 * 1024);
    assert_eq!(limits, ListenerLimits::default());
    assert_eq!(listener.timeouts.request_body, Duration::from_secs(60));
    assert_eq!(listener.timeouts.send, Duration::from_secs(60));
    let upstream = &config.upstreams[0];
    assert_eq!(upstream.max_connections_per_server, None);
    assert_eq!(upstream.queue_timeout, Duration::from_secs(5));
    assert!(config.admin.is_none());
}

#[test]
fn the_issue_example_parses_into_typed_values() {
    let listener = r#"timeouts = { handshake = "10s", request_header = "30s", request_body = "45s", send = "20s", idle = "60s" }
[listener.limits]
max_connections = 5000
max_connections_per_client = 64
requests_per_client = { rate = 100, per = "1s", burst = 200 }
max_request_body = "10MiB"
max_request_header = "32KiB""#;
    let upstream = "max_connections_per_server = 2\nqueue_timeout = \"1s\"";
    let head = "[admin]\nlisten = \"10.0.0.5:9901\"\ntoken_file = \"admin.token\"";
    let config = parse(&edge(head, listener, upstream));
    let l = &config.listeners[0];
    assert_eq!(
        l.limits,
        ListenerLimits {
            max_connections: 5000,
            max_connections_per_client: 64,
            requests_per_client: Some(RateLimit {
                rate: 100,
                per: Duration::from_secs(1),
                burst: 200
            }),
            max_request_body: Some(10 * 1024 * 1024),
            max_request_header: 32 * 1024,
        }
    );
    assert_eq!(l.timeouts.request_body, Duration::from_secs(45));
    assert_eq!(l.timeouts.send, Duration::from_secs(20));
    let u = &config.upstreams[0];
    assert_eq!(u.max_connections_per_server, Some(2));
    assert_eq!(u.queue_timeout, Duration::from_secs(1));
    let admin = config.admin.as_ref().expect("admin");
    let token = admin.token_file.as_ref().expect("token_file");
    assert_eq!(token.path, Path::new("/etc/farmgate/admin.token"));
}

#[test]
fn zero_means_unlimited_where_documented() {
    let config = parse(&edge(
        "",
        "[listener.limits]\nmax_request_body = \"0\"",
        "max_connections_per_server = 0",
    ));
    assert_eq!(config.listeners[0].limits.max_request_body, None);
    assert_eq!(config.upstreams[0].max_connections_per_server, None);
}

#[test]
fn burst_defaults_to_the_rate() {
    let config = parse(&edge(
        "",
        "[listener.limits]\nrequests_per_client = { rate = 20, per = \"1s\" }",
        "",
    ));
    let rate = config.listeners[0]
        .limits
        .requests_per_client
        .expect("rate");
    assert_eq!((rate.rate, rate.burst), (20, 20));
}

#[test]
fn a_bad_size_is_an_error_that_shows_how_to_write_one() {
    let e = error(&edge(
        "",
        "[listener.limits]\nmax_request_body = \"10MB\"",
        "",
    ));
    assert_at(&e, 6, "listener.limits.max_request_body", "\"10MiB\"");
}

#[test]
fn a_request_header_limit_out_of_range_is_an_error() {
    for size in ["1KiB", "2MiB"] {
        let e = error(&edge(
            "",
            &format!("[listener.limits]\nmax_request_header = \"{size}\""),
            "",
        ));
        assert_at(&e, 6, "listener.limits.max_request_header", "8KiB");
    }
}

#[test]
fn a_connection_limit_of_zero_is_an_error() {
    let e = error(&edge("", "[listener.limits]\nmax_connections = 0", ""));
    assert_at(&e, 6, "listener.limits.max_connections", "from 1");
}

#[test]
fn a_rate_without_its_period_is_an_error() {
    let e = error(&edge(
        "",
        "[listener.limits]\nrequests_per_client = { rate = 100 }",
        "",
    ));
    assert_at(
        &e,
        6,
        "listener.limits.requests_per_client",
        "needs rate and per",
    );
}

#[test]
fn an_unknown_limit_is_an_error() {
    let e = error(&edge("", "[listener.limits]\nmax_body = \"1MiB\"", ""));
    assert!(e.contains("max_body"), "{e}");
}

#[test]
fn an_admin_endpoint_beyond_loopback_needs_a_token() {
    let e = error(&edge("[admin]\nlisten = \"0.0.0.0:9901\"", "", ""));
    assert_at(&e, 2, "admin.listen", "token_file");
    for loopback in ["127.0.0.1:9901", "[::1]:9901"] {
        let config = parse(&edge(&format!("[admin]\nlisten = \"{loopback}\""), "", ""));
        assert!(config.admin.expect("admin").token_file.is_none());
    }
}
