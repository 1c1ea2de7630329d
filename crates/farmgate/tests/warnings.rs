//! `farmgate check` warnings: a valid configuration still exits 0, and what will break (or
//! already leans on a relaxation) is named after the summary, one `warning:` line each.

use std::path::{Path, PathBuf};

use farmgate_pki::CertSpec;
use farmgate_testkit::pki::{CertFiles, TestPki};
use time::{Duration, OffsetDateTime};

use crate::ca::run;

/// `farmgate check -c path`, which must pass: its `warning:` lines.
fn warnings(config: &Path) -> Vec<String> {
    let out = run(&["check", "-c", config.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(": OK"),
        "the summary comes first: {}",
        out.stdout
    );
    out.stdout
        .lines()
        .filter(|line| line.starts_with("warning: "))
        .map(str::to_owned)
        .collect()
}

/// A gate serving `backend` to clients of `pki`, with this `client_auth` body.
fn gate(pki: &TestPki, backend: &CertFiles, client_auth: &str) -> PathBuf {
    let text = format!(
        r#"
[[listener]]
name = "gate"
listen = "127.0.0.1:0"
[listener.tls]
certificate = {cert:?}
private_key = {key:?}
client_auth = {{ trust = [{ca:?}], {client_auth} }}
[[listener.route]]
upstream = "app"
[upstream.app]
servers = ["127.0.0.1:8080"]
"#,
        cert = backend.cert,
        key = backend.key,
        ca = pki.ca_file(),
    );
    let path = pki.dir().join("gate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// An edge in front of one gate, presenting `client` to it.
fn edge(pki: &TestPki, client: &CertFiles) -> PathBuf {
    pki.edge_config(&pki.server("www.farm.test"), client)
}

#[test]
fn clean_farm_configuration_gives_no_warnings() {
    let pki = TestPki::new();
    let backend = pki.server("backend.farm.test");
    let gate = gate(&pki, &backend, r#"allow = ["dns:edge.farm.test"]"#);
    assert_eq!(warnings(&gate), Vec::<String>::new());
    let edge = edge(&pki, &pki.client("edge.farm.test"));
    assert_eq!(warnings(&edge), Vec::<String>::new());
}

#[test]
fn upstream_client_certificate_without_client_auth_is_warned_about_with_the_facts() {
    let pki = TestPki::new();
    let public = TestPki::public_like();
    let reused = public.server_only_leaf("edge.example.com");
    let config = edge(&pki, &reused);
    let warnings = warnings(&config);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let warning = &warnings[0];
    for expected in [
        "edge.toml:10: upstream.farm.tls.client_certificate",
        "upstream \"farm\" client certificate",
        "(dns:edge.example.com)",
        "lacks clientAuth",
        "#1 (dns:edge.example.com) permits only serverAuth",
        "#2 (CN=public-like test intermediate) permits only serverAuth",
        "backends running OpenSSL (nginx, Envoy), Go or rustls will refuse it",
        "farmgate ca issue --client NAME",
        "[Let's Encrypt \"classic\", 2026-02-11:",
        "[Let's Encrypt \"tlsclient\", 2026-07-08:",
        "<https://letsencrypt.org/docs/profiles/>",
    ] {
        assert!(
            warning.contains(expected),
            "missing {expected:?} in {warning}"
        );
    }
}

#[test]
fn server_certificate_reused_as_client_certificate_is_warned_about() {
    let pki = TestPki::new();
    let config = edge(&pki, &pki.server("edge.farm.test"));
    let warnings = warnings(&config);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("#1 (CN=edge.farm.test) permits only serverAuth"),
        "{}",
        warnings[0]
    );
}

#[test]
fn cn_allow_rule_is_warned_about_as_legacy() {
    let pki = TestPki::new();
    let backend = pki.server("backend.farm.test");
    let config = gate(
        &pki,
        &backend,
        r#"allow = ["dns:edge.farm.test", "cn:edge.farm.test"]"#,
    );
    let warnings = warnings(&config);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    for expected in [
        "listener \"gate\" allows cn:edge.farm.test",
        "legacy",
        "newer public certificates have no CN",
        "Let's Encrypt \"tlsserver\"",
        "Let's Encrypt \"shortlived\"",
    ] {
        assert!(
            warnings[0].contains(expected),
            "missing {expected:?} in {}",
            warnings[0]
        );
    }
}

#[test]
fn compatibility_mode_is_warned_about_while_it_is_on() {
    let pki = TestPki::new();
    let backend = pki.server("backend.farm.test");
    let config = gate(
        &pki,
        &backend,
        r#"allow = ["dns:edge.example.com"], eku = "client_or_server_auth""#,
    );
    let warnings = warnings(&config);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("WebPKI compatibility mode (eku = \"client_or_server_auth\")"),
        "{}",
        warnings[0]
    );
}

#[test]
fn strict_gate_trusting_public_roots_is_warned_about() {
    let pki = TestPki::new();
    let backend = pki.server("backend.farm.test");
    let config = gate(&pki, &backend, r#"allow = ["dns:edge.farm.test"]"#);
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace("trust = [", "trust = [\"mozilla\", ");
    std::fs::write(&config, text).unwrap();
    let warnings = warnings(&config);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("trusts public roots with eku = \"client_auth\"")
            && warnings[0].contains("no current public certificate gets in"),
        "{}",
        warnings[0]
    );
}

#[test]
fn certificate_expiring_soon_is_warned_about() {
    let pki = TestPki::new();
    let now = OffsetDateTime::now_utc();
    let backend = pki.issue(
        "expiring",
        &CertSpec::server("backend.farm.test").valid(
            now - Duration::days(80),
            now + Duration::days(10) + Duration::hours(1),
        ),
    );
    let config = gate(&pki, &backend, r#"allow = ["dns:edge.farm.test"]"#);
    let warnings = warnings(&config);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    for expected in [
        "gate.toml:6: listener.tls.certificate",
        "listener \"gate\" certificate",
        "#1 (CN=backend.farm.test) expires on",
        "in 10 days",
        "90-day lifetime",
    ] {
        assert!(
            warnings[0].contains(expected),
            "missing {expected:?} in {}",
            warnings[0]
        );
    }
}

#[test]
fn short_lived_certificate_is_warned_about_only_in_the_last_third_of_its_life() {
    let pki = TestPki::new();
    let now = OffsetDateTime::now_utc();
    let spec = |from: Duration, until: Duration| {
        CertSpec::server("backend.farm.test").valid(now - from, now + until)
    };
    // Six days, two and a half left: fine. Six days, one and a half left: renew.
    let fresh = pki.issue("fresh", &spec(Duration::hours(84), Duration::hours(60)));
    let config = gate(&pki, &fresh, r#"allow = ["dns:edge.farm.test"]"#);
    assert_eq!(warnings(&config), Vec::<String>::new());
    let late = pki.issue("late", &spec(Duration::hours(108), Duration::hours(36)));
    let config = gate(&pki, &late, r#"allow = ["dns:edge.farm.test"]"#);
    let warnings = warnings(&config);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("6-day lifetime"), "{}", warnings[0]);
}

#[test]
fn expired_listener_certificate_is_warned_about() {
    let pki = TestPki::new();
    let now = OffsetDateTime::now_utc();
    let backend = pki.issue(
        "expired",
        &CertSpec::server("backend.farm.test")
            .valid(now - Duration::days(91), now - Duration::days(1)),
    );
    let config = gate(&pki, &backend, r#"allow = ["dns:edge.farm.test"]"#);
    let warnings = warnings(&config);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("expired on"), "{}", warnings[0]);
}

#[test]
fn check_names_a_trust_anchor_with_a_mild_defect() {
    let pki = TestPki::new();
    let backend = pki.server("backend.farm.test");
    let shapes = farmgate_testkit::lookalike::all();
    let openssl = shapes
        .iter()
        .find(|s| s.name == "openssl-req-x509")
        .unwrap();
    let path = gate(&pki, &backend, "allow = [\"dns:edge.farm.test\"]");
    // The same gate, trusting an `openssl req -x509` root too (no keyUsage: a warning).
    let text = std::fs::read_to_string(&path).unwrap().replace(
        &format!("trust = [{:?}]", pki.ca_file()),
        &format!("trust = [{:?}, {:?}]", pki.ca_file(), openssl.trust),
    );
    std::fs::write(&path, text).unwrap();
    let warnings = warnings(&path);
    assert!(
        warnings.iter().any(|w| w.contains(&format!(
            "trust anchor #1 in {} (\"CN=My CA\"): it is a CA without keyUsage",
            openssl.trust.display()
        ))),
        "{warnings:?}"
    );
}
