//! The gate: who gets through the handshake, who is refused and how the refusal is logged.

use std::net::SocketAddr;

use farmgate_pki::{CertSpec, Usage};
use farmgate_proxy::Server;
use farmgate_testkit::client::{Probe, TlsClient};
use farmgate_testkit::origin::Origin;
use farmgate_testkit::pki::{CertFiles, TestPki};
use rustls::AlertDescription;
use time::{Duration, OffsetDateTime};

use crate::farm::{BACKEND, EDGE, gate};
use crate::logs;
use crate::probes::{assert_answered, assert_refused};

/// A gate allowing `allow` in front of an origin, and the PKI it trusts.
struct Gate {
    pki: TestPki,
    addr: SocketAddr,
    _server: Server,
    _origin: Origin,
}

impl Gate {
    async fn start(allow: &[&str]) -> Gate {
        logs::capture();
        let pki = TestPki::new();
        let origin = Origin::start("app").await;
        let backend = pki.server(BACKEND);
        let (server, addr) = gate(
            pki.dir(),
            "gate",
            &backend,
            &pki.ca_file(),
            allow,
            origin.addr,
        )
        .await;
        Gate {
            pki,
            addr,
            _server: server,
            _origin: origin,
        }
    }

    fn client(&self) -> TlsClient {
        TlsClient::new(&self.pki.ca_file(), BACKEND)
    }

    async fn probe_with(&self, cert: &CertFiles) -> Probe {
        self.client().with_client_cert(cert).probe(self.addr).await
    }
}

/// The refusal was logged exactly once, with the rule and the certificate's fingerprint.
#[track_caller]
fn assert_refusal_logged(cert: &CertFiles, reason: &str) {
    let fingerprint = cert.identity().fingerprint_hex();
    let lines = logs::lines_with(&["client certificate refused", &fingerprint]);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains(&format!("reason={reason}")),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("rule="), "{}", lines[0]);
    assert!(lines[0].contains("subject="), "{}", lines[0]);
}

#[tokio::test]
async fn allowed_edge_gets_through() {
    let g = Gate::start(&["dns:edge.farm.test"]).await;
    assert_answered(&g.probe_with(&g.pki.client(EDGE)).await);
}

#[tokio::test]
async fn direct_probe_without_client_cert_is_refused() {
    let g = Gate::start(&["dns:edge.farm.test"]).await;
    // TLS 1.3: the refusal arrives as an alert once the client reads; no HTTP byte comes back.
    assert_refused(
        &g.client().probe(g.addr).await,
        AlertDescription::CertificateRequired,
    );
    // TLS 1.2: the handshake itself fails.
    match g.client().tls12().probe(g.addr).await {
        Probe::Refused(_) => {}
        other => panic!("expected a refused handshake, got {other:?}"),
    }
}

#[tokio::test]
async fn proxy_with_other_name_from_same_ca_is_refused() {
    let g = Gate::start(&["dns:edge.farm.test"]).await;
    let intruder = g.pki.client("intruder.farm.test");
    assert_refused(
        &g.probe_with(&intruder).await,
        AlertDescription::AccessDenied,
    );
    assert_refusal_logged(&intruder, "not_allowed");
}

#[tokio::test]
async fn right_name_from_other_ca_is_refused() {
    let g = Gate::start(&["dns:edge.farm.test"]).await;
    let foreign = TestPki::other().client(EDGE);
    assert_refused(&g.probe_with(&foreign).await, AlertDescription::UnknownCA);
    assert_refusal_logged(&foreign, "unknown_ca");
}

#[tokio::test]
async fn expired_client_cert_is_refused() {
    let g = Gate::start(&["dns:edge.farm.test"]).await;
    let now = OffsetDateTime::now_utc();
    let expired = g.pki.issue(
        "expired",
        &CertSpec::client(EDGE).valid(now - Duration::days(30), now - Duration::days(1)),
    );
    assert_refused(
        &g.probe_with(&expired).await,
        AlertDescription::CertificateExpired,
    );
    assert_refusal_logged(&expired, "expired");
}

#[tokio::test]
async fn not_yet_valid_client_cert_is_refused() {
    let g = Gate::start(&["dns:edge.farm.test"]).await;
    let now = OffsetDateTime::now_utc();
    let early = g.pki.issue(
        "early",
        &CertSpec::client(EDGE).valid(now + Duration::days(1), now + Duration::days(30)),
    );
    assert_refused(
        &g.probe_with(&early).await,
        AlertDescription::CertificateExpired,
    );
    assert_refusal_logged(&early, "not_yet_valid");
}

#[tokio::test]
async fn cn_right_but_san_wrong_is_refused_under_dns_rule() {
    let g = Gate::start(&["dns:edge.farm.test"]).await;
    let spec = CertSpec::client(EDGE).no_dns().dns("elsewhere.farm.test");
    let cert = g.pki.issue("cn-right-san-wrong", &spec);
    assert_eq!(cert.identity().common_name(), Some(EDGE));
    assert_refused(&g.probe_with(&cert).await, AlertDescription::AccessDenied);
}

#[tokio::test]
async fn legacy_cn_rule_accepts_cn_only_cert() {
    let g = Gate::start(&["cn:edge.farm.test"]).await;
    let cert = g.pki.issue("cn-only", &CertSpec::client(EDGE).no_dns());
    assert!(cert.identity().dns_names().is_empty());
    assert_answered(&g.probe_with(&cert).await);
    let other = g
        .pki
        .issue("cn-other", &CertSpec::client("other.farm.test").no_dns());
    assert_refused(&g.probe_with(&other).await, AlertDescription::AccessDenied);
}

#[tokio::test]
async fn uri_rule_accepts_spiffe_identity() {
    let g = Gate::start(&["uri:spiffe://farm.test/edge"]).await;
    let edge = g
        .pki
        .issue("spiffe-edge", &CertSpec::spiffe("spiffe://farm.test/edge"));
    assert_answered(&g.probe_with(&edge).await);
    let other = g.pki.issue(
        "spiffe-other",
        &CertSpec::spiffe("spiffe://farm.test/other"),
    );
    assert_refused(&g.probe_with(&other).await, AlertDescription::AccessDenied);
}

#[tokio::test]
async fn spki_pin_accepts_renewal_with_same_key_and_refuses_new_key() {
    let pki_for_pin = TestPki::new();
    let first = pki_for_pin.client(EDGE);
    let pin = format!("spki-sha256:{}", first.identity().spki_pin());
    // The gate trusts a CA, pins the key: build it around the same PKI.
    logs::capture();
    let origin = Origin::start("app").await;
    let backend = pki_for_pin.server(BACKEND);
    let (_server, addr) = gate(
        pki_for_pin.dir(),
        "gate",
        &backend,
        &pki_for_pin.ca_file(),
        &[&pin],
        origin.addr,
    )
    .await;
    let client =
        |c: &CertFiles| TlsClient::new(&pki_for_pin.ca_file(), BACKEND).with_client_cert(c);

    assert_answered(&client(&first).probe(addr).await);
    let renewed = pki_for_pin.issue(
        "renewed",
        &CertSpec::client(EDGE).with_key(first.key_pair()),
    );
    assert_ne!(renewed.serial, first.serial);
    assert_answered(&client(&renewed).probe(addr).await);
    let rekeyed = pki_for_pin.issue("rekeyed", &CertSpec::client(EDGE));
    assert_refused(
        &client(&rekeyed).probe(addr).await,
        AlertDescription::AccessDenied,
    );
}

#[tokio::test]
async fn server_auth_only_cert_refused_by_default() {
    let g = Gate::start(&["dns:edge.farm.test"]).await;
    let cert = g.pki.issue(
        "server-only",
        &CertSpec::client(EDGE).usages(&[Usage::ServerAuth]),
    );
    assert_refused(
        &g.probe_with(&cert).await,
        AlertDescription::UnsupportedCertificate,
    );
    assert_refusal_logged(&cert, "purpose");
}

#[tokio::test]
async fn gate_never_resumes_sessions_so_every_connection_is_verified() {
    let g = Gate::start(&["dns:edge.farm.test"]).await;
    let edge = g.pki.client(EDGE);
    assert!(
        !g.client()
            .with_client_cert(&edge)
            .second_handshake_resumes(g.addr)
            .await
    );
}

/// Regression: a client certificate whose subject held a newline passed the gate, and the app
/// received no identity headers at all. Now the subject is escaped (RFC 4514, `\0A` for the
/// newline) and both headers arrive; nothing in it becomes a header of its own.
#[tokio::test]
async fn a_subject_with_a_newline_reaches_the_app_escaped_never_as_a_header() {
    let g = Gate::start(&["dns:edge.farm.test"]).await;
    let odd = g.pki.issue(
        "odd-subject",
        &CertSpec::client(EDGE).organization("a,b\nX-Evil: 1"),
    );
    let response = g.client().with_client_cert(&odd).get(g.addr, "/").await;
    assert_eq!(response.status, 200, "{}", response.body);
    let (_, headers) = farmgate_testkit::origin::parse_echo(&response.body);
    let xfcc = farmgate_testkit::origin::header_values(&headers, "x-forwarded-client-cert");
    assert_eq!(xfcc.len(), 1, "{headers:?}");
    assert!(xfcc[0].contains(r"O=a\,b\0AX-Evil: 1"), "{}", xfcc[0]);
    assert!(xfcc[0].contains(&odd.identity().fingerprint_hex()));
    assert_eq!(
        farmgate_testkit::origin::header_values(&headers, "client-cert").len(),
        1
    );
    assert!(farmgate_testkit::origin::header_values(&headers, "x-evil").is_empty());
}
