//! `advice::warnings` on configurations written at test time: the expiry windows and the
//! warnings that name files farmgate cannot read.

use farmgate_config::Config;
use farmgate_doctor::advice::{Warning, WarningKind, warnings};
use farmgate_pki::CertSpec;
use farmgate_testkit::pki::{CertFiles, TestPki};
use time::{Duration, OffsetDateTime};

/// An edge serving `site` in front of one mTLS upstream presenting `client`.
fn edge(pki: &TestPki, site: &CertFiles, client: &CertFiles) -> Config {
    let path = pki.edge_config(site, client);
    let text = std::fs::read_to_string(&path).unwrap();
    Config::parse(&text, &path).unwrap()
}

fn kinds(warnings: &[Warning]) -> Vec<WarningKind> {
    warnings.iter().map(|w| w.kind).collect()
}

#[test]
fn a_thirty_day_certificate_warns_in_its_last_third_only() {
    let pki = TestPki::new();
    let now = OffsetDateTime::now_utc();
    let issued = |left: Duration| {
        let spec =
            CertSpec::client("edge.farm.test").valid(now + left - Duration::days(30), now + left);
        pki.issue("edge", &spec)
    };
    let fresh = issued(Duration::days(20));
    let config = edge(&pki, &fresh, &fresh);
    assert_eq!(kinds(&warnings(&config, now)), []);

    let late = issued(Duration::days(5));
    let config = edge(&pki, &late, &late);
    let found = warnings(&config, now);
    // The same file serves as the listener's and the upstream's certificate.
    assert_eq!(
        kinds(&found),
        [WarningKind::ExpiresSoon, WarningKind::ExpiresSoon]
    );
    assert!(
        found[1].message.contains("in 4 days") || found[1].message.contains("in 5 days"),
        "{}",
        found[1]
    );
    assert!(found[1].at.contains("edge.toml:10"), "{}", found[1].at);
}

#[test]
fn an_expired_certificate_is_named_with_its_day() {
    let pki = TestPki::new();
    let now = OffsetDateTime::now_utc();
    let gone = now - Duration::days(2);
    let old = pki.issue(
        "old",
        &CertSpec::client("edge.farm.test").valid(gone - Duration::days(30), gone),
    );
    let config = edge(&pki, &pki.server("www.farm.test"), &old);
    let found = warnings(&config, now);
    assert!(kinds(&found).contains(&WarningKind::Expired), "{found:#?}");
    let expired = found
        .iter()
        .find(|w| w.kind == WarningKind::Expired)
        .unwrap();
    assert!(
        expired
            .message
            .contains(&format!("expired on {}", gone.date())),
        "{expired}"
    );
}

#[test]
fn a_certificate_gone_since_the_configuration_was_built_is_unreadable_with_its_cause() {
    let pki = TestPki::new();
    let client = pki.client("edge.farm.test");
    let site = pki.server("www.farm.test");
    let config = edge(&pki, &site, &client);
    std::fs::remove_file(&client.cert).unwrap();
    let found = warnings(&config, OffsetDateTime::now_utc());
    assert_eq!(kinds(&found), [WarningKind::Unreadable], "{found:#?}");
    assert!(
        found[0].message.contains("could not be checked"),
        "{}",
        found[0]
    );
    // The cause is kept, not only the outermost message.
    assert!(
        found[0].message.to_lowercase().contains("no such file"),
        "{}",
        found[0]
    );
}

/// Both roles in one file: an edge whose upstream is the gate listener beside it.
fn farm_toml(upstream_idle: &str, gate_request_header: &str) -> Config {
    let text = format!(
        r#"
[[listener]]
name = "public"
listen = "127.0.0.1:8080"
[[listener.route]]
upstream = "farm"

[upstream.farm]
servers = ["127.0.0.1:9443"]
timeouts = {{ idle = "{upstream_idle}" }}

[[listener]]
name = "gate"
listen = "0.0.0.0:9443"
timeouts = {{ request_header = "{gate_request_header}" }}
[[listener.route]]
upstream = "app"

[upstream.app]
servers = ["127.0.0.1:8081"]
"#
    );
    Config::parse(&text, "farm.toml".as_ref()).unwrap()
}

#[test]
fn an_upstream_idle_as_long_as_the_gate_beside_it_keeps_connections_is_a_race() {
    let now = OffsetDateTime::now_utc();
    let found = warnings(&farm_toml("30s", "30s"), now);
    assert_eq!(kinds(&found), [WarningKind::IdleRace]);
    assert_eq!(found[0].at, "farm.toml:8: upstream.farm");
    assert!(
        found[0].message.contains("listener \"gate\"") && found[0].message.contains("below 30s"),
        "{}",
        found[0]
    );
    assert_eq!(kinds(&warnings(&farm_toml("20s", "30s"), now)), []);
}

#[test]
fn a_crl_warns_in_the_last_third_of_its_validity_only() {
    let pki = TestPki::new();
    let now = OffsetDateTime::now_utc();
    let backend = pki.server("backend.farm.test");
    let gate_with_crl = |left: Duration| {
        let crl = pki
            .intermediate()
            .crl::<&[u8]>([], now + left - Duration::days(7), now + left)
            .unwrap();
        let crl_path = pki.dir().join(format!("crl-{}.pem", left.whole_hours()));
        std::fs::write(&crl_path, crl.pem()).unwrap();
        let text = format!(
            r#"
[[listener]]
name = "gate"
listen = "127.0.0.1:0"
[listener.tls]
certificate = {cert:?}
private_key = {key:?}
[listener.tls.client_auth]
trust = [{ca:?}]
allow = ["dns:edge.farm.test"]
crl = [{crl_path:?}]
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
        Config::parse(&text, &path).unwrap()
    };
    let crl_warnings = |config: &Config| -> Vec<Warning> {
        warnings(config, now)
            .into_iter()
            .filter(|w| w.kind == WarningKind::CrlExpiresSoon)
            .collect()
    };
    // Five days of seven left: fine.
    assert!(crl_warnings(&gate_with_crl(Duration::days(5))).is_empty());
    // Two days of seven left: under a third.
    let found = crl_warnings(&gate_with_crl(Duration::days(2)));
    assert_eq!(found.len(), 1, "{found:?}");
    let message = &found[0].message;
    assert!(
        message.contains("listener \"gate\" CRL")
            && message.contains("CN=farm test intermediate")
            && message.contains("in 1d 23h")
            && message.contains("farmgate ca crl"),
        "{message}"
    );
    assert!(found[0].at.contains("gate.toml:11"), "{}", found[0].at);
}
