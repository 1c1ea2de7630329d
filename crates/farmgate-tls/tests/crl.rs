//! Revocation lists on a gate: which CRLs load, what a bad one is reported as, and what the
//! verifier does with a revoked certificate or an expired CRL.

use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use farmgate_pki::Crl;
use farmgate_testkit::pki::{CertFiles, TestPki};
use farmgate_tls::{ClientVerifier, RefusalReason, TlsError, TlsErrorKind};
use rustls_pki_types::UnixTime;
use time::{Duration, OffsetDateTime};

use crate::gate::{chain, quoted, verifier};

const EDGE: &str = "edge.farm.test";

/// A gate trusting `pki`'s root, allowing the edge, with `crl` files.
fn gate_with_crls(pki: &TestPki, crls: &[&Path]) -> Result<ClientVerifier, TlsError> {
    let crls: Vec<String> = crls.iter().map(|p| quoted(p)).collect();
    verifier(
        pki.dir(),
        &format!(
            "trust = [{}]\nallow = [\"dns:{EDGE}\"]\ncrl = [{}]",
            quoted(&pki.ca_file()),
            crls.join(", ")
        ),
    )
}

/// A CRL from the intermediate revoking `revoked`, valid for a week, followed in the same file
/// by the intermediate's certificate: how a gate trusting only the root takes it.
fn intermediate_crl_with_its_ca(pki: &TestPki, revoked: &[&CertFiles]) -> PathBuf {
    let crl = pki.crl(revoked);
    let path = crl.with_extension("bundle.pem");
    let text = std::fs::read_to_string(&crl).unwrap() + pki.intermediate().cert_pem();
    std::fs::write(&path, text).unwrap();
    path
}

fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[track_caller]
fn refused(verifier: &ClientVerifier, cert: &CertFiles, at: UnixTime) -> (RefusalReason, String) {
    let (leaf, intermediates) = chain(&cert.cert);
    match verifier.check(&leaf, &intermediates, at) {
        Ok(accepted) => panic!("expected a refusal, accepted {:?}", accepted.identity),
        Err(refusal) => (refusal.reason, refusal.detail),
    }
}

#[track_caller]
fn accepted(verifier: &ClientVerifier, cert: &CertFiles) {
    let (leaf, intermediates) = chain(&cert.cert);
    if let Err(refusal) = verifier.check(&leaf, &intermediates, UnixTime::now()) {
        panic!(
            "expected acceptance: {}: {}",
            refusal.reason, refusal.detail
        );
    }
}

#[track_caller]
fn load_error(result: Result<ClientVerifier, TlsError>) -> (TlsError, String) {
    match result {
        Ok(_) => panic!("expected the CRL to be refused at load"),
        Err(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            (e, text)
        }
    }
}

#[test]
fn crl_from_the_intermediate_loads_with_its_certificate_appended_and_revokes() {
    let pki = TestPki::new();
    let revoked = pki.client(EDGE);
    let kept = pki.client(EDGE);
    let crl = intermediate_crl_with_its_ca(&pki, &[&revoked]);
    let gate = gate_with_crls(&pki, &[&crl]).unwrap();
    assert_eq!(gate.revocation_lists().len(), 1);
    assert_eq!(
        gate.revocation_lists()[0].issuer(),
        "CN=farm test intermediate"
    );
    let (reason, detail) = refused(&gate, &revoked, UnixTime::now());
    assert_eq!(reason, RefusalReason::Revoked);
    assert!(detail.contains(&crl.display().to_string()), "{detail}");
    accepted(&gate, &kept);
}

#[test]
fn crl_from_the_intermediate_alone_says_to_append_its_certificate() {
    let pki = TestPki::new();
    let crl = pki.crl(&[]);
    let (e, text) = load_error(gate_with_crls(&pki, &[&crl]));
    assert!(matches!(e.kind(), TlsErrorKind::CrlIssuer { .. }), "{text}");
    assert!(text.contains("gate.toml:"), "{text}");
    assert!(text.contains("listener.tls.client_auth.crl"), "{text}");
    assert!(text.contains("\"CN=farm test intermediate\""), "{text}");
    assert!(text.contains("appended to the CRL file"), "{text}");
}

#[test]
fn crl_from_the_trusted_root_loads_and_revokes_an_intermediate() {
    let pki = TestPki::new();
    let edge = pki.client(EDGE);
    let serial = intermediate_serial(&pki);
    let crl = root_crl(&pki, &[&serial], -Duration::minutes(1), Duration::days(1));
    let path = write(pki.dir(), "root.crl.pem", crl.pem());
    let gate = gate_with_crls(&pki, &[&path]).unwrap();
    let (reason, _) = refused(&gate, &edge, UnixTime::now());
    assert_eq!(reason, RefusalReason::Revoked);
}

#[test]
fn der_crl_from_the_root_loads() {
    let pki = TestPki::new();
    let crl = root_crl(&pki, &[], -Duration::minutes(1), Duration::days(1));
    let path = write(pki.dir(), "root.crl", crl.der());
    let gate = gate_with_crls(&pki, &[&path]).unwrap();
    accepted(&gate, &pki.client(EDGE));
}

#[test]
fn crl_from_another_ca_is_an_issuer_error() {
    let pki = TestPki::new();
    let other = TestPki::other();
    let crl = intermediate_crl_with_its_ca(&other, &[]);
    let (e, text) = load_error(gate_with_crls(&pki, &[&crl]));
    assert!(
        matches!(e.kind(), TlsErrorKind::CrlCertificateUntrusted { .. }),
        "{text}"
    );
    assert!(text.contains("other test intermediate"), "{text}");
    let crl_alone = other.crl(&[]);
    let (e, text) = load_error(gate_with_crls(&pki, &[&crl_alone]));
    assert!(matches!(e.kind(), TlsErrorKind::CrlIssuer { .. }), "{text}");
}

#[test]
fn impostor_crl_with_the_issuer_name_but_another_key_fails_its_signature() {
    let pki = TestPki::new();
    // Same CA names, other keys: its root-signed CRL claims our root's name.
    let impostor = TestPki::new();
    let crl = root_crl(&impostor, &[], -Duration::minutes(1), Duration::days(1));
    let path = write(pki.dir(), "impostor.crl.pem", crl.pem());
    let (e, text) = load_error(gate_with_crls(&pki, &[&path]));
    assert!(
        matches!(e.kind(), TlsErrorKind::CrlSignature { .. }),
        "{text}"
    );
    assert!(text.contains("does not verify"), "{text}");
}

#[test]
fn crl_with_a_damaged_signature_is_refused() {
    let pki = TestPki::new();
    let crl = root_crl(&pki, &[], -Duration::minutes(1), Duration::days(1));
    let mut der = crl.der().to_vec();
    // The signature's last byte: an ECDSA signature ends with the last byte of s.
    if let Some(last) = der.last_mut() {
        *last ^= 0x01;
    }
    let path = write(pki.dir(), "damaged.crl", &der);
    let (e, text) = load_error(gate_with_crls(&pki, &[&path]));
    assert!(
        matches!(e.kind(), TlsErrorKind::CrlSignature { .. }),
        "{text}"
    );
}

#[test]
fn expired_crl_is_a_config_error_naming_its_next_update() {
    let pki = TestPki::new();
    let crl = root_crl(&pki, &[], -Duration::days(8), -Duration::days(1));
    let path = write(pki.dir(), "stale.crl.pem", crl.pem());
    let (e, text) = load_error(gate_with_crls(&pki, &[&path]));
    assert!(
        matches!(e.kind(), TlsErrorKind::CrlExpired { .. }),
        "{text}"
    );
    assert!(text.contains("expired at"), "{text}");
    assert!(text.contains("install a current CRL"), "{text}");
}

#[test]
fn crl_that_expires_while_running_refuses_its_chains_as_revocation_unknown() {
    let pki = TestPki::new();
    let edge = pki.client(EDGE);
    let crl = intermediate_crl_with_its_ca(&pki, &[]);
    let gate = gate_with_crls(&pki, &[&crl]).unwrap();
    accepted(&gate, &edge);
    // The test PKI's CRLs are valid for a week; look at the gate eight days on.
    let later = UnixTime::since_unix_epoch(StdDuration::from_secs(
        UnixTime::now().as_secs() + 8 * 86_400,
    ));
    let (reason, detail) = refused(&gate, &edge, later);
    assert_eq!(reason, RefusalReason::RevocationUnknown);
    assert!(detail.contains("has expired"), "{detail}");
    assert!(detail.contains(&crl.display().to_string()), "{detail}");
}

#[test]
fn appended_certificate_that_is_not_a_ca_is_refused() {
    let pki = TestPki::new();
    let edge = pki.client(EDGE);
    let crl = pki.crl(&[]);
    let text =
        std::fs::read_to_string(&crl).unwrap() + &std::fs::read_to_string(&edge.cert).unwrap();
    let path = write(pki.dir(), "with-leaf.crl.pem", text);
    let (e, text) = load_error(gate_with_crls(&pki, &[&path]));
    assert!(
        matches!(e.kind(), TlsErrorKind::CrlCertificateNotCa { .. }),
        "{text}"
    );
}

#[test]
fn private_key_in_a_crl_file_is_refused() {
    let pki = TestPki::new();
    let edge = pki.client(EDGE);
    let crl = pki.crl(&[]);
    let text =
        std::fs::read_to_string(&crl).unwrap() + &std::fs::read_to_string(&edge.key).unwrap();
    let path = write(pki.dir(), "with-key.crl.pem", text);
    let (e, text) = load_error(gate_with_crls(&pki, &[&path]));
    assert!(
        matches!(e.kind(), TlsErrorKind::CrlFileContents { .. }),
        "{text}"
    );
    assert!(text.contains("a private key"), "{text}");
}

/// A CRL signed by `pki`'s root, revoking `serials`, valid from `now + from` until `now + until`.
fn root_crl(pki: &TestPki, serials: &[&[u8]], from: Duration, until: Duration) -> Crl {
    let now = OffsetDateTime::now_utc();
    pki.root().crl(serials, now + from, now + until).unwrap()
}

/// The intermediate's serial number, as its certificate carries it.
fn intermediate_serial(pki: &TestPki) -> Vec<u8> {
    let der = rustls_pki_types::CertificateDer::from(pki.intermediate().cert_der());
    let cert = webpki::EndEntityCert::try_from(&der).unwrap();
    cert.serial().to_vec()
}
