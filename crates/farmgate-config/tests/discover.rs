//! `discover`: an upstream's servers found through DNS, and every way to write it wrong.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use farmgate_config::{Config, DEFAULT_MAX_TTL, DEFAULT_MIN_TTL, Lookup};

use crate::errors::{FILE, assert_at};

/// A minimal edge whose upstream `farm` has `upstream` spliced into its table (line 6 on).
fn with_upstream(upstream: &str) -> String {
    format!(
        "[[listener]]\nname = \"p\"\nlisten = \"127.0.0.1:1\"\n[[listener.route]]\nupstream = \"farm\"\n[upstream.farm]\n{upstream}\n"
    )
}

#[track_caller]
fn error(upstream: &str) -> String {
    match Config::parse(&with_upstream(upstream), Path::new(FILE)) {
        Ok(_) => panic!("expected an error for:\n{upstream}"),
        Err(errors) => errors.to_string(),
    }
}

#[test]
fn dns_discovery_parses_with_its_defaults() {
    let text = with_upstream(r#"discover = { dns = "Gates.Farm.Internal.", port = 8443 }"#);
    let config = Config::parse(&text, Path::new(FILE)).unwrap();
    let farm = &config.upstreams[0];
    assert!(farm.servers.is_empty());
    let discover = farm.discover.as_ref().unwrap();
    assert_eq!(
        discover.lookup,
        Lookup::Dns {
            name: "gates.farm.internal".into(),
            port: 8443
        }
    );
    assert_eq!(
        discover.lookup.to_string(),
        "dns gates.farm.internal port 8443"
    );
    assert_eq!(discover.resolver, None, "the system's resolver");
    assert_eq!(discover.min_ttl, DEFAULT_MIN_TTL);
    assert_eq!(discover.max_ttl, DEFAULT_MAX_TTL);
    assert_eq!(
        (DEFAULT_MIN_TTL, DEFAULT_MAX_TTL),
        (Duration::from_secs(1), Duration::from_secs(300))
    );
}

#[test]
fn srv_discovery_parses_with_a_resolver_and_ttl_bounds() {
    let text = with_upstream(
        r#"discover = { srv = "_gate._tcp.farm.internal", resolver = "10.0.0.2", min_ttl = "5s", max_ttl = "1m" }"#,
    );
    let config = Config::parse(&text, Path::new(FILE)).unwrap();
    let discover = config.upstreams[0].discover.as_ref().unwrap();
    assert_eq!(
        discover.lookup,
        Lookup::Srv {
            name: "_gate._tcp.farm.internal".into()
        }
    );
    assert_eq!(
        discover.resolver,
        Some("10.0.0.2:53".parse::<SocketAddr>().unwrap()),
        "port 53 unless written"
    );
    assert_eq!(discover.min_ttl, Duration::from_secs(5));
    assert_eq!(discover.max_ttl, Duration::from_secs(60));
    let same = discover.clone();
    assert!(discover.asks_like(&same));
}

#[test]
fn servers_and_discover_together_are_an_error() {
    let e = error(
        "servers = [\"127.0.0.1:2\"]\ndiscover = { dns = \"gates.farm.internal\", port = 8443 }",
    );
    assert_at(
        &e,
        8,
        "upstream.farm.discover",
        "servers and discover are mutually exclusive",
    );
}

#[test]
fn an_upstream_needs_servers_or_discover() {
    let e = error("balance = \"round_robin\"");
    assert_at(
        &e,
        6,
        "upstream.farm",
        "missing required key `servers` or `discover`",
    );
}

#[test]
fn each_discover_mistake_names_its_key() {
    for (written, key, words) in [
        (
            r#"discover = { port = 8443 }"#,
            "upstream.farm.discover",
            "missing required key `dns` or `srv`",
        ),
        (
            r#"discover = { dns = "a.farm", srv = "_a._tcp.farm" }"#,
            "upstream.farm.discover.srv",
            "dns and srv are mutually exclusive",
        ),
        (
            r#"discover = { dns = "gates.farm.internal" }"#,
            "upstream.farm.discover",
            "missing required key `port`",
        ),
        (
            r#"discover = { srv = "_gate._tcp.farm", port = 8443 }"#,
            "upstream.farm.discover.port",
            "SRV records carry each server's port",
        ),
        (
            r#"discover = { dns = "gates.farm.internal", port = 0 }"#,
            "upstream.farm.discover.port",
            "port must be from 1 to 65535, not 0",
        ),
        (
            r#"discover = { dns = "gates.farm.internal", port = 70000 }"#,
            "upstream.farm.discover.port",
            "not 70000",
        ),
        (
            r#"discover = { dns = "10.0.0.1", port = 8443 }"#,
            "upstream.farm.discover.dns",
            "\"10.0.0.1\" is not a DNS name",
        ),
        (
            r#"discover = { dns = "*.farm.internal", port = 8443 }"#,
            "upstream.farm.discover.dns",
            "is not a DNS name",
        ),
        (
            r#"discover = { srv = "_gate._tcp farm" }"#,
            "upstream.farm.discover.srv",
            "is not a DNS name to ask SRV records of",
        ),
        (
            r#"discover = { srv = "_gate._tcp.farm", resolver = "dns.local:53" }"#,
            "upstream.farm.discover.resolver",
            "is not a DNS server's address",
        ),
        (
            r#"discover = { srv = "_gate._tcp.farm", min_ttl = "1m", max_ttl = "10s" }"#,
            "upstream.farm.discover.min_ttl",
            "min_ttl must not be longer than max_ttl",
        ),
        (
            r#"discover = { srv = "_gate._tcp.farm", max_ttl = "0s" }"#,
            "upstream.farm.discover.max_ttl",
            "a duration must be greater than zero",
        ),
    ] {
        assert_at(&error(written), 7, key, words);
    }
}

#[test]
fn an_unknown_discover_key_is_an_error() {
    let e = error("[upstream.farm.discover]\nsrv = \"_gate._tcp.farm\"\nttl = \"5s\"");
    assert_at(&e, 9, "ttl", "unknown field `ttl`");
}
