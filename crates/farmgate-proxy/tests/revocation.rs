//! Revocation on a gate (`crl = [...]`): a revoked certificate is refused at the handshake; a
//! CRL from the wrong issuer, with a bad signature or past its nextUpdate is a configuration
//! error, reported with file, line and key, and a reload with one keeps the running
//! configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use farmgate_config::Config;
use farmgate_proxy::{Generation, Server};
use farmgate_testkit::client::TlsClient;
use farmgate_testkit::origin::Origin;
use farmgate_testkit::pki::{CertFiles, TestPki};
use rustls::AlertDescription;
use time::{Duration, OffsetDateTime};

use crate::farm::{BACKEND, EDGE, gate_toml, start};
use crate::logs;
use crate::probes::{assert_answered, assert_refused};

/// The line of `crl = [...]` in [`gate_config`]'s text.
const CRL_LINE: usize = 11;

/// A gate called `name` trusting `pki`'s root, allowing the edge, checking `crl`.
fn gate_config(pki: &TestPki, name: &str, origin: SocketAddr, crl: &str) -> String {
    let allow = format!("dns:{EDGE}");
    gate_toml(
        name,
        &pki.server(BACKEND),
        &[&pki.ca_file()],
        &[&allow],
        &format!("crl = [{crl}]"),
        origin,
    )
}

/// The CRL the intermediate signs, revoking `revoked`, with the intermediate's certificate
/// appended (the gate trusts only the root): written to `path`.
fn crl_file(pki: &TestPki, revoked: &[&CertFiles], path: &Path) -> String {
    let crl = pki.crl(revoked);
    let text = std::fs::read_to_string(crl).unwrap() + pki.intermediate().cert_pem();
    std::fs::write(path, text).unwrap();
    format!("{path:?}")
}

/// Build the configuration `text` (written as `dir/name.toml`) as `farmgate check` would, and
/// return its error with every cause.
fn build_error(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    match Generation::load(&path) {
        Ok(_) => panic!("expected {name}.toml to be refused"),
        Err(e) => chain(&e),
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[track_caller]
fn assert_at_crl_key(dir: &Path, name: &str, error: &str) {
    let at = format!(
        "{}:{CRL_LINE}: listener.tls.client_auth.crl",
        dir.join(format!("{name}.toml")).display()
    );
    assert!(error.contains(&at), "expected {at:?} in: {error}");
}

fn client(pki: &TestPki, cert: &CertFiles) -> TlsClient {
    TlsClient::new(&pki.ca_file(), BACKEND).with_client_cert(cert)
}

async fn started(pki: &TestPki, name: &str, text: &str) -> (Server, SocketAddr) {
    let server = start(pki.dir(), name, text).await;
    let addr = server.local_addr(name).unwrap();
    (server, addr)
}

#[tokio::test]
async fn revoked_client_cert_refused() {
    logs::capture();
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let revoked = pki.client(EDGE);
    let kept = pki.client(EDGE);
    let crl = crl_file(&pki, &[&revoked], &pki.dir().join("farm.crl.pem"));
    let text = gate_config(&pki, "revoking", origin.addr, &crl);
    let (_server, addr) = started(&pki, "revoking", &text).await;

    assert_refused(
        &client(&pki, &revoked).probe(addr).await,
        AlertDescription::CertificateRevoked,
    );
    assert_answered(&client(&pki, &kept).probe(addr).await);
    let fingerprint = revoked.identity().fingerprint_hex();
    let lines = logs::lines_with(&["client certificate refused", "reason=revoked", &fingerprint]);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("farm.crl.pem"), "{}", lines[0]);
}

#[test]
fn crl_from_wrong_issuer_is_a_config_error() {
    let pki = TestPki::new();
    let other = TestPki::other();
    let origin: SocketAddr = "127.0.0.1:1".parse().unwrap();
    // The other CA's CRL alone: its issuer is nowhere in this gate's trust.
    let text = gate_config(
        &pki,
        "wrong-issuer",
        origin,
        &format!("{:?}", other.crl(&[])),
    );
    let error = build_error(pki.dir(), "wrong-issuer", &text);
    assert_at_crl_key(pki.dir(), "wrong-issuer", &error);
    assert!(error.contains("\"CN=other test intermediate\""), "{error}");
    assert!(error.contains("not a CA of this gate's trust"), "{error}");
    // With the other intermediate appended, that certificate does not chain to this trust.
    let bundled = crl_file(&other, &[], &pki.dir().join("other.crl.pem"));
    let text = gate_config(&pki, "wrong-issuer-bundled", origin, &bundled);
    let error = build_error(pki.dir(), "wrong-issuer-bundled", &text);
    assert_at_crl_key(pki.dir(), "wrong-issuer-bundled", &error);
    assert!(
        error.contains("does not chain to this gate's trust"),
        "{error}"
    );
}

#[test]
fn crl_with_bad_signature_is_a_config_error() {
    let pki = TestPki::new();
    let origin: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let now = OffsetDateTime::now_utc();
    let crl = pki
        .root()
        .crl(
            Vec::<Vec<u8>>::new(),
            now - Duration::minutes(1),
            now + Duration::days(1),
        )
        .unwrap();
    let mut der = crl.der().to_vec();
    // Flip a bit of the signature, the last field of the CRL.
    if let Some(last) = der.last_mut() {
        *last ^= 0x01;
    }
    let path = pki.dir().join("tampered.crl");
    std::fs::write(&path, der).unwrap();
    let text = gate_config(&pki, "bad-signature", origin, &format!("{path:?}"));
    let error = build_error(pki.dir(), "bad-signature", &text);
    assert_at_crl_key(pki.dir(), "bad-signature", &error);
    assert!(error.contains("does not verify"), "{error}");
}

#[test]
fn expired_crl_is_a_config_error() {
    let pki = TestPki::new();
    let origin: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let path = pki.dir().join("stale.crl.pem");
    write_expired_crl(&pki, &path);
    let text = gate_config(&pki, "stale-crl", origin, &format!("{path:?}"));
    let error = build_error(pki.dir(), "stale-crl", &text);
    assert_at_crl_key(pki.dir(), "stale-crl", &error);
    assert!(error.contains("expired at"), "{error}");
    assert!(error.contains("install a current CRL"), "{error}");
}

#[tokio::test]
async fn reload_with_an_expired_crl_keeps_the_running_gate_and_a_fresh_one_takes_effect() {
    logs::capture();
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let edge = pki.client(EDGE);
    let crl_path = pki.dir().join("rotating.crl.pem");
    let crl = crl_file(&pki, &[], &crl_path);
    let text = gate_config(&pki, "rotating", origin.addr, &crl);
    let (server, addr) = started(&pki, "rotating", &text).await;
    let config = pki.dir().join("rotating.toml");
    assert_answered(&client(&pki, &edge).probe(addr).await);

    write_expired_crl(&pki, &crl_path);
    let failure = server.reload_from(&config).await.unwrap_err();
    assert!(
        chain(&failure).contains("expired at"),
        "{}",
        chain(&failure)
    );
    assert_answered(&client(&pki, &edge).probe(addr).await);

    crl_file(&pki, &[&edge], &crl_path);
    server.reload_from(&config).await.unwrap();
    assert_refused(
        &client(&pki, &edge).probe(addr).await,
        AlertDescription::CertificateRevoked,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_revoked_by_a_reloaded_crl_loses_its_open_connection() {
    logs::capture();
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let edge = pki.client(EDGE);
    let other_edge = pki.client(EDGE);
    let crl_path = pki.dir().join("open.crl.pem");
    let crl = crl_file(&pki, &[], &crl_path);
    let text = gate_config(&pki, "open-connections", origin.addr, &crl);
    let (server, addr) = started(&pki, "open-connections", &text).await;
    let mut revoked_conn = client(&pki, &edge).connect(addr).await;
    let mut kept_conn = client(&pki, &other_edge).connect(addr).await;
    assert_eq!(revoked_conn.get("/").await.status, 200);
    assert_eq!(kept_conn.get("/").await.status, 200);

    crl_file(&pki, &[&edge], &crl_path);
    let config = pki.dir().join("open-connections.toml");
    server.reload_from(&config).await.unwrap();
    // A bound on a broken gate, not a pause: closing ends the wait at once.
    tokio::time::timeout(std::time::Duration::from_secs(30), revoked_conn.closed())
        .await
        .expect("the revoked client's connection stayed open");
    assert_eq!(kept_conn.get("/").await.status, 200);
}

#[test]
fn empty_crl_list_is_a_config_error() {
    let pki = TestPki::new();
    let origin: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let text = gate_config(&pki, "empty-crl", origin, "");
    let path = pki.dir().join("empty-crl.toml");
    let error = chain(&Config::parse(&text, &path).unwrap_err());
    assert_at_crl_key(pki.dir(), "empty-crl", &error);
    assert!(error.contains("crl is empty"), "{error}");
}

/// A CRL from the root that expired yesterday, written to `path`.
fn write_expired_crl(pki: &TestPki, path: &PathBuf) {
    let now = OffsetDateTime::now_utc();
    let crl = pki
        .root()
        .crl(
            Vec::<Vec<u8>>::new(),
            now - Duration::days(8),
            now - Duration::days(1),
        )
        .unwrap();
    std::fs::write(path, crl.pem()).unwrap();
}
