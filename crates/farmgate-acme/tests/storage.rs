//! What a listener serves before any ACME server is asked: the stored certificate if it is still
//! good, otherwise a temporary one; the same store for the same certificate across reloads.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use farmgate_acme::{Acme, AcmeCertificate, CertificateState};
use farmgate_config::Config;
use rcgen::{CertificateParams, KeyPair};
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

/// An edge whose listener takes `domains` from ACME, keeping its state in `storage`.
fn config(storage: &Path, domains: &[&str]) -> Config {
    let domains: Vec<String> = domains.iter().map(|d| format!("{d:?}")).collect();
    let text = format!(
        r#"
[acme]
directory = "https://127.0.0.1:1/dir"
storage = {storage:?}

[[listener]]
name = "public"
listen = "127.0.0.1:0"
tls = {{ acme = {{ domains = [{}] }} }}
[[listener.route]]
upstream = "app"
[upstream.app]
servers = ["127.0.0.1:8080"]
"#,
        domains.join(", ")
    );
    Config::parse(&text, &storage.join("edge.toml")).unwrap()
}

fn certificate(acme: &Acme, config: &Config) -> AcmeCertificate {
    let tls = config.listeners[0].tls.as_ref().unwrap();
    acme.certificate(config.acme.as_ref().unwrap(), tls.acme().unwrap())
        .unwrap()
}

/// The leaf the store serves now.
fn served(cert: &AcmeCertificate) -> CertificateDer<'static> {
    cert.store().current().all().next().unwrap().cert[0].clone()
}

fn subject(der: &CertificateDer<'_>) -> String {
    let (_, x509) = X509Certificate::from_der(der.as_ref()).unwrap();
    x509.subject().to_string()
}

/// A certificate for `domains` with its key, in the stored form, valid `days` from now (negative:
/// expired).
fn stored_form(domains: &[&str], days: i64) -> (String, CertificateDer<'static>) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(domains.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now + time::Duration::days(days);
    let cert = params.self_signed(&key).unwrap();
    (
        format!("{}{}", key.serialize_pem(), cert.pem()),
        cert.der().clone(),
    )
}

#[test]
fn without_a_stored_certificate_a_temporary_one_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("acme");
    let config = config(&storage, &["www.example.com"]);
    let cert = certificate(&Acme::new(), &config);
    assert!(
        subject(&served(&cert)).contains("farmgate temporary certificate"),
        "{}",
        subject(&served(&cert))
    );
    let status = cert.status();
    assert_eq!(status.state, CertificateState::Issuing);
    assert!(status.certificate.is_none());
    assert_eq!(status.counters.orders, 0);
    let mode = std::fs::metadata(&storage).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "storage holds private keys");
    assert!(status.file.starts_with(storage.join("certificates")));
}

#[test]
fn a_good_stored_certificate_is_served_at_start_without_an_order() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("acme");
    let config = config(&storage, &["www.example.com", "example.com"]);
    let file = certificate(&Acme::new(), &config).status().file;
    let (pem, der) = stored_form(&["example.com", "www.example.com"], 60);
    std::fs::write(&file, pem).unwrap();

    let restarted = certificate(&Acme::new(), &config);
    assert_eq!(served(&restarted), der);
    let status = restarted.status();
    assert_eq!(status.state, CertificateState::Valid);
    assert!(
        status
            .seconds_until_expiry(std::time::SystemTime::now())
            .unwrap()
            > 59 * 86_400
    );
    assert_eq!(status.counters.orders, 0);
}

#[test]
fn an_expired_or_foreign_stored_certificate_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("acme");
    let config = config(&storage, &["www.example.com"]);
    let file = certificate(&Acme::new(), &config).status().file;
    for (pem, what) in [
        (stored_form(&["www.example.com"], -1).0, "expired"),
        (stored_form(&["other.example.com"], 60).0, "for other names"),
    ] {
        std::fs::write(&file, pem).unwrap();
        let cert = certificate(&Acme::new(), &config);
        assert!(
            subject(&served(&cert)).contains("farmgate temporary certificate"),
            "a certificate {what} was served"
        );
    }
}

#[test]
fn a_reload_keeps_the_same_certificate_and_store() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("acme");
    let acme = Acme::new();
    let first = certificate(
        &acme,
        &config(&storage, &["www.example.com", "example.com"]),
    );
    // The same names in another order, as a reload of an edited file would read them.
    let again = certificate(
        &acme,
        &config(&storage, &["example.com", "www.example.com"]),
    );
    assert!(Arc::ptr_eq(&first.store(), &again.store()));
    let other = certificate(&acme, &config(&storage, &["static.example.com"]));
    assert!(!Arc::ptr_eq(&first.store(), &other.store()));
}

#[test]
fn unwritable_storage_is_an_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let config = config(&blocker.join("acme"), &["www.example.com"]);
    let tls = config.listeners[0].tls.as_ref().unwrap();
    let e = Acme::new()
        .certificate(config.acme.as_ref().unwrap(), tls.acme().unwrap())
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("acme.storage: cannot keep ACME state in"),
        "{text}"
    );
}

#[tokio::test]
async fn an_edge_waiting_for_the_lock_adopts_what_the_holder_stored() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("acme");
    // An unreachable ACME server: if this edge ordered, it would fail.
    let config = config(&storage, &["www.example.com"]);
    let acme = Acme::new();
    let cert = certificate(&acme, &config);
    let file = cert.status().file;

    // Another edge sharing the storage is ordering this certificate: it holds the lock.
    let other_edge = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(file.with_extension("lock"))
        .unwrap();
    other_edge.lock().unwrap();
    acme.sync([("public", &cert)]);
    let mut changes = acme.changes();
    while !cert.status().ordering {
        changes.changed().await.unwrap();
    }
    // This edge is now waiting for the lock. The other stores what the CA issued, then lets go.
    let (pem, der) = stored_form(&["www.example.com"], 60);
    std::fs::write(&file, pem).unwrap();
    drop(other_edge);

    let status = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            changes.borrow_and_update();
            let status = cert.status();
            if status.counters.adopted == 1 {
                return status;
            }
            changes.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not adopted: {:?}", cert.status()));
    assert_eq!(status.state, CertificateState::Valid);
    assert_eq!(status.counters.orders, 0, "no second order");
    assert_eq!(status.counters.issue_failures, 0);
    assert_eq!(served(&cert), der);
    acme.stop();
}
