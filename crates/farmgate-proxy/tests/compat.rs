//! WebPKI compatibility mode (`eku = "client_or_server_auth"`): a gate accepts a publicly issued
//! chain that permits serverAuth but not clientAuth, only for an exact allowed name or pinned
//! key, and logs and counts every such acceptance. The public hierarchy is mimicked by
//! `TestPki::public_like()`: root → serverAuth-only intermediate → serverAuth-only leaf without
//! CN.

use std::net::SocketAddr;
use std::sync::Arc;

use farmgate_pki::CertSpec;
use farmgate_proxy::Server;
use farmgate_testkit::client::{Probe, TlsClient};
use farmgate_testkit::origin::Origin;
use farmgate_testkit::pki::{CertFiles, TestPki};
use farmgate_tls::{GateStats, RefusalReason};
use rustls::AlertDescription;

use crate::farm::{BACKEND, gate_toml, start};
use crate::logs;
use crate::probes::{assert_answered, assert_refused};

/// The name the public certificate of the edge carries.
const PUBLIC_EDGE: &str = "edge.example.com";

/// A gate called `name` trusting the public-like root (and `extra_trust`), with `eku` (None:
/// the default) and `allow`. Its own server certificate comes from a private farm CA.
struct CompatGate {
    public: TestPki,
    farm: TestPki,
    name: String,
    addr: SocketAddr,
    server: Server,
    _origin: Origin,
}

impl CompatGate {
    async fn start(name: &str, eku: Option<&str>, allow: &[&str]) -> CompatGate {
        Self::start_trusting(name, eku, allow, false).await
    }

    async fn start_trusting(
        name: &str,
        eku: Option<&str>,
        allow: &[&str],
        also_trust_farm: bool,
    ) -> CompatGate {
        logs::capture();
        let public = TestPki::public_like();
        let farm = TestPki::new();
        let origin = Origin::start("app").await;
        let (public_ca, farm_ca) = (public.ca_file(), farm.ca_file());
        let mut trust = vec![public_ca.as_path()];
        if also_trust_farm {
            trust.push(farm_ca.as_path());
        }
        let eku = eku.map_or_else(String::new, |e| format!("eku = {e:?}"));
        let text = gate_toml(
            name,
            &farm.server(BACKEND),
            &trust,
            allow,
            &eku,
            origin.addr,
        );
        let server = start(farm.dir(), name, &text).await;
        let addr = server.local_addr(name).unwrap();
        CompatGate {
            public,
            farm,
            name: name.to_owned(),
            addr,
            server,
            _origin: origin,
        }
    }

    async fn probe_with(&self, cert: &CertFiles) -> Probe {
        TlsClient::new(&self.farm.ca_file(), BACKEND)
            .with_client_cert(cert)
            .probe(self.addr)
            .await
    }

    fn stats(&self) -> Arc<GateStats> {
        let generation = self.server.generation();
        let tls = generation.listener_tls(&self.name).unwrap();
        tls.verifier().unwrap().stats().clone()
    }

    /// Log lines of this gate containing all of `needles`.
    fn log_lines(&self, needles: &[&str]) -> Vec<String> {
        let listener = format!("listener={}", self.name);
        let mut all = vec![listener.as_str()];
        all.extend_from_slice(needles);
        logs::lines_with(&all)
    }
}

#[tokio::test]
async fn public_server_cert_refused_by_strict_gate() {
    let g = CompatGate::start("strict-public", None, &["dns:edge.example.com"]).await;
    let public_cert = g.public.server_only_leaf(PUBLIC_EDGE);
    assert_eq!(public_cert.identity().common_name(), None);
    assert_refused(
        &g.probe_with(&public_cert).await,
        AlertDescription::UnsupportedCertificate,
    );
    let stats = g.stats();
    assert_eq!(stats.refused(RefusalReason::Purpose), 1);
    assert_eq!(stats.relaxed_total(), 0);
    let lines = g.log_lines(&["client certificate refused", "reason=purpose"]);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("clientAuth"), "{}", lines[0]);
}

#[tokio::test]
async fn compat_gate_accepts_public_cert_for_allowed_name() {
    let g = CompatGate::start(
        "compat-accepts",
        Some("client_or_server_auth"),
        &["dns:edge.example.com"],
    )
    .await;
    let public_cert = g.public.server_only_leaf(PUBLIC_EDGE);
    let stats = g.stats();
    assert_eq!(stats.relaxed("dns:edge.example.com"), 0);

    let answer = assert_answered(&g.probe_with(&public_cert).await);
    // The app learns who called, as from any verified client.
    assert!(
        answer.contains("x-forwarded-client-cert: Hash=")
            && answer.contains("DNS=edge.example.com"),
        "{answer}"
    );
    assert_eq!(stats.relaxed("dns:edge.example.com"), 1);
    assert_answered(&g.probe_with(&public_cert).await);
    assert_eq!(stats.relaxed("dns:edge.example.com"), 2);
    assert_eq!(stats.accepted(), 2);

    let warnings = g.log_lines(&[
        "WARN",
        "accepted only in WebPKI compatibility mode",
        "identity=edge.example.com",
        "rule=dns:edge.example.com",
    ]);
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
}

#[tokio::test]
async fn compat_gate_counts_only_the_acceptances_that_need_it() {
    let g = CompatGate::start_trusting(
        "compat-counts",
        Some("client_or_server_auth"),
        &["dns:edge.example.com", "dns:edge.farm.test"],
        true,
    )
    .await;
    // A private-CA client certificate with clientAuth passes strictly: not a relaxation.
    let private_cert = g.farm.client("edge.farm.test");
    assert_answered(&g.probe_with(&private_cert).await);
    let stats = g.stats();
    assert_eq!(stats.accepted(), 1);
    assert_eq!(stats.relaxed_total(), 0);
    assert_answered(&g.probe_with(&g.public.server_only_leaf(PUBLIC_EDGE)).await);
    assert_eq!(stats.accepted(), 2);
    assert_eq!(stats.relaxed_total(), 1);
    assert_eq!(
        g.log_lines(&["compatibility mode", "identity=edge.farm.test"]),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn compat_gate_refuses_other_names() {
    let g = CompatGate::start(
        "compat-other-names",
        Some("client_or_server_auth"),
        &["dns:edge.example.com", "cn:legacy.example.com"],
    )
    .await;
    let other = g.public.server_only_leaf("other.example.com");
    assert_refused(&g.probe_with(&other).await, AlertDescription::AccessDenied);
    // A `cn:` entry cannot admit a relaxed chain, even when it matches.
    let legacy = g
        .public
        .issue("legacy", &CertSpec::server("legacy.example.com"));
    assert_eq!(legacy.identity().common_name(), Some("legacy.example.com"));
    assert_refused(&g.probe_with(&legacy).await, AlertDescription::AccessDenied);
    let stats = g.stats();
    assert_eq!(stats.refused(RefusalReason::NotAllowed), 2);
    assert_eq!(stats.relaxed_total(), 0);
    let lines = g.log_lines(&["client certificate refused", "reason=not_allowed"]);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("exact dns: or spki-sha256: allow entry")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn compat_gate_refuses_other_ca() {
    let g = CompatGate::start(
        "compat-other-ca",
        Some("client_or_server_auth"),
        &["dns:edge.example.com"],
    )
    .await;
    // The allowed name, from a CA the gate does not trust.
    let stranger = TestPki::other().server_only_leaf(PUBLIC_EDGE);
    assert_refused(&g.probe_with(&stranger).await, AlertDescription::UnknownCA);
    // The allowed name again, from an impostor with the public-like CAs' names but other keys.
    let impostor = TestPki::public_like().server_only_leaf(PUBLIC_EDGE);
    assert_refused(
        &g.probe_with(&impostor).await,
        AlertDescription::DecryptError,
    );
    let stats = g.stats();
    assert_eq!(stats.refused(RefusalReason::UnknownCa), 1);
    assert_eq!(stats.refused(RefusalReason::BadSignature), 1);
    assert_eq!(stats.accepted(), 0);
}

#[tokio::test]
async fn compat_gate_with_spki_pin() {
    let public = TestPki::public_like();
    let first = public.server_only_leaf(PUBLIC_EDGE);
    let pin = format!("spki-sha256:{}", first.identity().spki_pin());
    let g = CompatGate::start("compat-pin", Some("client_or_server_auth"), &[&pin]).await;
    // The gate trusts its own public-like root: issue from it.
    let first = g.public.issue(
        "pinned",
        &CertSpec::server(PUBLIC_EDGE)
            .no_common_name()
            .with_key(first.key_pair()),
    );
    assert_answered(&g.probe_with(&first).await);
    let renewed = g.public.issue(
        "renewed",
        &CertSpec::server(PUBLIC_EDGE)
            .no_common_name()
            .with_key(first.key_pair()),
    );
    assert_ne!(renewed.serial, first.serial);
    assert_answered(&g.probe_with(&renewed).await);
    let rekeyed = g.public.server_only_leaf(PUBLIC_EDGE);
    assert_refused(
        &g.probe_with(&rekeyed).await,
        AlertDescription::AccessDenied,
    );
    let stats = g.stats();
    assert_eq!(stats.relaxed(&pin), 2);
    assert_eq!(stats.refused(RefusalReason::NotAllowed), 1);
}
