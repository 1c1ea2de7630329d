//! The profile checks and the trust-anchor lint against real-world shapes: every look-alike
//! chain (farmgate-testkit's `lookalike`) still loads, passes an upstream handshake and, when
//! its leaf may be a client, a gate; the bundled Mozilla roots pass the lint; and what the
//! checks refuse is refused with the right reason, words and alert.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use farmgate_config::{Location, Trust};
use farmgate_testkit::lookalike;
use farmgate_testkit::pki::TestPki;
use farmgate_tls::profile::{self, Defect, Role, Severity};
use farmgate_tls::{RefusalReason, TlsErrorKind, TrustStore};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use time::{Duration, OffsetDateTime};

use crate::gate::{chain, quoted, verifier};
use crate::handshake::{Outcome, client_config, handshake, server_config};

fn at(dir: &Path) -> Location {
    Location::new(Arc::from(dir.join("farm.toml")), 1, "trust")
}

fn load(file: &Path) -> Result<TrustStore, farmgate_tls::TlsError> {
    let dir = file.parent().unwrap();
    TrustStore::load(
        &[Trust::File(farmgate_tls::load::file_ref(file, "trust"))],
        &at(dir),
    )
}

fn key(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(path).unwrap()
}

fn full_chain(path: &Path) -> Vec<CertificateDer<'static>> {
    let (leaf, mut rest) = chain(path);
    rest.insert(0, leaf);
    rest
}

/// What each shape may warn about (anchor, then chain), and nothing more: a rule that starts
/// refusing or warning on a real shape changes this table on purpose.
fn expected_warnings() -> BTreeMap<&'static str, Vec<Defect>> {
    use Defect as D;
    BTreeMap::from([
        ("lets-encrypt", vec![]),
        ("lets-encrypt-tlsserver", vec![]),
        ("zerossl", vec![]),
        ("google-trust-services", vec![]),
        ("digicert", vec![]),
        ("cert-manager", vec![D::NameConstraintsNotCritical]),
        ("step-ca", vec![]),
        ("vault", vec![D::NameConstraintsNotCritical]),
        ("openssl-req-x509", vec![D::MissingKeyUsage, D::MissingEku]),
        (
            "openssl-1.1-leaf",
            vec![D::MissingKeyUsage, D::MissingAuthorityKeyId, D::MissingEku],
        ),
        (
            "easy-rsa",
            vec![
                D::BasicConstraintsNotCritical,
                D::AuthorityKeyIdIssuerFields,
            ],
        ),
    ])
}

#[test]
fn real_world_chains_pass_the_anchor_lint_the_edge_and_the_gate() {
    let now = UnixTime::now();
    let mut warned = BTreeMap::new();
    for shape in lookalike::all() {
        let trust = load(&shape.trust).unwrap_or_else(|e| panic!("{}: {e}", shape.name));
        let mut defects: Vec<Defect> = trust.warnings().iter().map(|w| w.defect).collect();
        let chain = full_chain(&shape.chain);
        let verifier = farmgate_tls::server_verifier(&trust, &at(Path::new("/"))).unwrap();
        let found = verifier
            .check(&chain[0], &chain[1..], now)
            .unwrap_or_else(|e| panic!("{}: {e}", shape.name));
        defects.extend(found.iter().map(|f| f.defect));
        warned.insert(shape.name, defects);

        let name = ServerName::try_from(shape.dns_name.clone()).unwrap();
        if shape.server {
            let server = server_config(chain.clone(), key(&shape.key), None, now).unwrap();
            let outcome = handshake(server, client_config(verifier, None, now), name);
            assert_eq!(outcome.client, Ok(()), "{} as a backend", shape.name);
        }
        if shape.client {
            let dir = tempfile::tempdir().unwrap();
            let table = format!(
                "trust = [{}]\nallow = [\"dns:{}\"]",
                quoted(&shape.trust),
                shape.dns_name
            );
            let gate = Arc::new(verifier_at(dir.path(), &table));
            let outcome = through_gate(gate.clone(), (chain, key(&shape.key)), now);
            assert_eq!(outcome.server, Ok(()), "{} as a client", shape.name);
            assert_eq!(gate.stats().accepted(), 1, "{}", shape.name);
        }
    }
    assert_eq!(warned, expected_warnings());
}

/// A handshake from an edge presenting `identity` to a gate (a backend certificate from a fresh
/// test PKI) that verifies clients with `gate`.
fn through_gate(
    gate: Arc<farmgate_tls::ClientVerifier>,
    identity: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    now: UnixTime,
) -> Outcome {
    let pki = TestPki::new();
    let backend = pki.server("gate.farm.test");
    let server = server_config(
        full_chain(&backend.cert),
        key(&backend.key),
        Some(gate),
        now,
    )
    .unwrap();
    let dir = pki.dir();
    let edge = farmgate_tls::server_verifier(&load(&pki.ca_file()).unwrap(), &at(dir)).unwrap();
    let client = client_config(edge, Some(identity), now);
    handshake(
        server,
        client,
        ServerName::try_from("gate.farm.test").unwrap(),
    )
}

fn verifier_at(dir: &Path, table: &str) -> farmgate_tls::ClientVerifier {
    verifier(dir, table).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_bundled_mozilla_roots_pass_the_trust_anchor_lint() {
    let mut warnings = BTreeMap::<String, usize>::new();
    for root in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        let (subject, defects) = profile::inspect(root.as_ref(), Role::Anchor);
        for defect in defects {
            assert_eq!(
                defect.severity(Role::Anchor),
                Severity::Warn,
                "{subject}: {defect}"
            );
            *warnings.entry(format!("{defect:?}")).or_default() += 1;
        }
    }
    println!(
        "{} Mozilla roots linted; warnings: {warnings:?}",
        webpki_root_certs::TLS_SERVER_ROOT_CERTS.len()
    );
    // The roots the certificates stand for are the ones "mozilla" trusts: keep webpki-root-certs
    // at webpki-roots' version in Cargo.lock.
    let linted: Vec<_> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
        .map(|a| (a.subject.to_vec(), a.subject_public_key_info.to_vec()))
        .collect();
    for anchor in webpki_roots::TLS_SERVER_ROOTS {
        let key = (
            anchor.subject.to_vec(),
            anchor.subject_public_key_info.to_vec(),
        );
        assert!(
            linted.contains(&key),
            "a mozilla anchor without its certificate"
        );
    }
}

/// A self-signed certificate from `params`, PEM, with its key.
fn self_signed(params: &CertificateParams) -> (String, KeyPair) {
    let key = KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap().pem(), key)
}

fn root_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params
}

#[test]
fn a_trust_file_holding_a_non_ca_is_refused_naming_file_index_subject_and_defect() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = self_signed(&root_params("good root"));
    let mut leaf = CertificateParams::new(vec!["backend.farm.test".to_owned()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "backend.farm.test");
    let (pinned_leaf, _) = self_signed(&leaf);
    let file = dir.path().join("trust.pem");
    std::fs::write(&file, format!("{good}{pinned_leaf}")).unwrap();
    let e = load(&file).unwrap_err();
    let TlsErrorKind::TrustAnchor {
        index,
        subject,
        defect,
        ..
    } = e.kind()
    else {
        panic!("{e}");
    };
    assert_eq!(
        (*index, subject.as_str(), *defect),
        (2, "CN=backend.farm.test", Defect::NotACa)
    );
    assert!(
        e.to_string().starts_with(&format!(
            "trust: certificate #2 in {} (\"CN=backend.farm.test\") cannot be a trust anchor: it is not a CA certificate",
            file.display()
        )),
        "{e}"
    );
}

#[test]
fn mild_anchor_defects_are_warnings_for_check() {
    let dir = tempfile::tempdir().unwrap();
    let mut params = root_params("openssl-style root");
    params.key_usages = Vec::new();
    let (root, _) = self_signed(&params);
    let file = dir.path().join("ca.pem");
    std::fs::write(&file, root).unwrap();
    let trust = load(&file).unwrap();
    let warnings: Vec<String> = trust.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [format!(
            "trust: trust anchor #1 in {} (\"CN=openssl-style root\"): it is a CA without keyUsage (RFC 5280 4.2.1.3)",
            file.display()
        )]
    );
}

/// A root and a clientAuth+serverAuth leaf for `name` under it, the leaf shaped by `adjust`;
/// the root written to `dir/ca.pem`. Returns the leaf and its key.
fn leaf_under_new_root(
    dir: &Path,
    name: &str,
    root_validity: (OffsetDateTime, OffsetDateTime),
    adjust: impl FnOnce(&mut CertificateParams),
) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let mut root = root_params("profile test root");
    (root.not_before, root.not_after) = root_validity;
    let root_key = KeyPair::generate().unwrap();
    let root_cert = root.self_signed(&root_key).unwrap();
    std::fs::write(dir.join("ca.pem"), root_cert.pem()).unwrap();
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name.push(DnType::CommonName, name);
    leaf.subject_alt_names = vec![SanType::DnsName(name.try_into().unwrap())];
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
    ];
    leaf.use_authority_key_identifier_extension = true;
    adjust(&mut leaf);
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &Issuer::new(root, root_key)).unwrap();
    (
        cert.der().clone(),
        PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
}

fn now_and_then(days: i64) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (now - Duration::days(365), now + Duration::days(days))
}

#[test]
fn a_client_whose_serial_is_zero_is_refused_for_its_profile_with_bad_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (leaf, leaf_key) =
        leaf_under_new_root(dir.path(), "edge.farm.test", now_and_then(365), |p| {
            p.serial_number = Some(SerialNumber::from_slice(&[0]));
        });
    let table = "trust = [\"ca.pem\"]\nallow = [\"dns:edge.farm.test\"]";
    let gate = Arc::new(verifier_at(dir.path(), table));
    let refusal = gate.check(&leaf, &[], UnixTime::now()).unwrap_err();
    assert_eq!(refusal.reason, RefusalReason::Profile);
    assert_eq!(refusal.reason.label(), "profile");
    assert_eq!(
        refusal.detail,
        "the chain breaks the certificate profile: end-entity certificate \"CN=edge.farm.test\": its serial number is zero or negative (RFC 5280 4.1.2.2: it must be positive)"
    );

    // Over a real handshake: refused with bad_certificate, counted under `profile`.
    let outcome = through_gate(gate.clone(), (vec![leaf], leaf_key), UnixTime::now());
    assert!(outcome.server.is_err(), "{outcome:?}");
    assert!(
        outcome
            .client
            .as_ref()
            .is_err_and(|e| e.contains("BadCertificate")),
        "{outcome:?}"
    );
    assert_eq!(gate.stats().refused(RefusalReason::Profile), 1);
}

#[test]
fn a_backend_with_keycertsign_on_its_leaf_is_refused_and_explained() {
    let dir = tempfile::tempdir().unwrap();
    let (leaf, leaf_key) =
        leaf_under_new_root(dir.path(), "backend.farm.test", now_and_then(365), |p| {
            p.key_usages = vec![
                rcgen::KeyUsagePurpose::DigitalSignature,
                rcgen::KeyUsagePurpose::KeyCertSign,
            ];
        });
    let now = UnixTime::now();
    let trust = load(&dir.path().join("ca.pem")).unwrap();
    let verifier = farmgate_tls::server_verifier(&trust, &at(dir.path())).unwrap();
    let server = server_config(vec![leaf], leaf_key, None, now).unwrap();
    let outcome = handshake(
        server,
        client_config(verifier.clone(), None, now),
        ServerName::try_from("backend.farm.test").unwrap(),
    );
    assert!(outcome.client.is_err(), "{outcome:?}");
    let (leaf, _) = leaf_under_new_root(dir.path(), "backend.farm.test", now_and_then(365), |p| {
        p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    });
    let trust = load(&dir.path().join("ca.pem")).unwrap();
    let verifier = farmgate_tls::server_verifier(&trust, &at(dir.path())).unwrap();
    let rustls::Error::InvalidCertificate(error) = verifier.check(&leaf, &[], now).unwrap_err()
    else {
        panic!("not a certificate error");
    };
    assert_eq!(
        farmgate_tls::explain::server_cert_problem(&error, "backend.farm.test"),
        "its chain breaks the certificate profile: end-entity certificate \"CN=backend.farm.test\": its keyUsage has keyCertSign but it is not a CA (RFC 5280 4.2.1.3)"
    );
}

#[test]
fn a_chain_to_an_expired_trust_anchor_is_refused_as_expired() {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let expired = (now - Duration::days(3650), now - Duration::days(1));
    let (leaf, _) = leaf_under_new_root(dir.path(), "edge.farm.test", expired, |p| {
        p.not_before = now - Duration::days(2);
        p.not_after = now + Duration::days(30);
    });
    let trust = load(&dir.path().join("ca.pem")).unwrap();
    assert_eq!(
        trust
            .warnings()
            .iter()
            .map(|w| w.defect)
            .collect::<Vec<_>>(),
        [Defect::Expired]
    );
    let table = "trust = [\"ca.pem\"]\nallow = [\"dns:edge.farm.test\"]";
    let gate = verifier_at(dir.path(), table);
    let refusal = gate.check(&leaf, &[], UnixTime::now()).unwrap_err();
    assert_eq!(refusal.reason, RefusalReason::Expired);
    assert!(
        refusal.detail.starts_with("the chain leads to an expired trust anchor: trust anchor \"CN=profile test root\": it has expired"),
        "{}",
        refusal.detail
    );
}
