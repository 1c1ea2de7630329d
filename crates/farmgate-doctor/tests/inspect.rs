//! `Inspector`: the verdicts, their reasons and codes, for chains from a private CA.

use farmgate_config::Trust;
use farmgate_doctor::InspectError;
use farmgate_doctor::inspect::{Inspector, Reach, Reason, Report};
use farmgate_identity::KeyPurpose;
use farmgate_pki::{Authority, CaSpec, CertSpec, Usage};
use farmgate_tls::TrustStore;
use time::{Duration, OffsetDateTime};

fn store(root: &Authority) -> TrustStore {
    // A PEM file is how trust arrives from configuration; write one.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, root.cert_pem()).unwrap();
    let file = farmgate_tls::load::file_ref(&path, "trust");
    let at = file.at.clone();
    TrustStore::load(&[Trust::File(file)], &at).unwrap()
}

fn report(root: &Authority, chain_pem: &str) -> Report {
    let inspector = Inspector::new(Some((store(root), "ca.pem".into())));
    inspector
        .inspect("leaf.pem", chain_pem.as_bytes(), OffsetDateTime::now_utc())
        .unwrap()
}

fn codes(reasons: &[Reason]) -> Vec<&'static str> {
    reasons.iter().map(Reason::code).collect()
}

#[test]
fn private_client_is_a_client_everywhere_and_no_server() {
    let root = Authority::new_root(&CaSpec::new("root")).unwrap();
    let leaf = root.issue(&CertSpec::client("edge.farm.test")).unwrap();
    let r = report(&root, &leaf.chain_pem);
    assert_eq!(r.chain.trust, Some(Reach::Yes));
    assert_eq!(r.chain.public_roots, Reach::No);
    assert!(r.verdicts.client.usable);
    assert!(r.verdicts.gate_strict.usable);
    assert!(
        r.verdicts
            .gate_strict
            .allow
            .contains(&"dns:edge.farm.test".to_owned())
    );
    assert!(!r.verdicts.server.usable);
    assert_eq!(codes(&r.verdicts.server.reasons), ["lacks_server_auth"]);
    assert!(
        r.verdicts.server.reasons[0]
            .to_string()
            .contains("does not permit serverAuth"),
        "{:?}",
        r.verdicts.server.reasons
    );
    let leaf = &r.certificates[0].summary;
    assert_eq!(leaf.key, "ECDSA P-256");
    assert_eq!(leaf.eku.as_deref(), Some(&[KeyPurpose::ClientAuth][..]));
}

#[test]
fn server_auth_only_chain_passes_only_the_compatibility_gate() {
    let root = Authority::new_root(&CaSpec::new("root")).unwrap();
    let public_like = root
        .intermediate(&CaSpec::new("issuing").usages(&[Usage::ServerAuth]))
        .unwrap();
    let leaf = public_like
        .issue(&CertSpec::server("www.example.com").no_common_name())
        .unwrap();
    let r = report(&root, &leaf.chain_pem);
    assert!(r.verdicts.server.usable);
    assert!(!r.verdicts.client.usable);
    assert_eq!(
        codes(&r.verdicts.client.reasons),
        [
            "lacks_client_auth",
            "lacks_client_auth",
            "unsupported_certificate_purpose"
        ]
    );
    assert!(!r.verdicts.gate_strict.usable);
    assert_eq!(
        codes(&r.verdicts.gate_strict.reasons),
        ["lacks_client_auth", "lacks_client_auth"]
    );
    assert!(r.verdicts.gate_compat.usable);
    let allow = &r.verdicts.gate_compat.allow;
    assert_eq!(allow[0], "dns:www.example.com");
    assert!(allow[1].starts_with("spki-sha256:"));
    assert_eq!(allow.len(), 2);
}

#[test]
fn a_client_certificate_under_a_server_auth_only_intermediate_is_explained() {
    let root = Authority::new_root(&CaSpec::new("root")).unwrap();
    let narrow = root
        .intermediate(&CaSpec::new("server-only issuing CA").usages(&[Usage::ServerAuth]))
        .unwrap();
    // The leaf asks for clientAuth; the intermediate above it does not permit it.
    let leaf = narrow.issue(&CertSpec::client("edge.farm.test")).unwrap();
    let r = report(&root, &leaf.chain_pem);
    assert!(!r.verdicts.client.usable);
    for verdict in [&r.verdicts.client, &r.verdicts.gate_strict] {
        let note = verdict
            .notes
            .iter()
            .find(|n| n.contains("CA certificate #2 (CN=server-only issuing CA)"))
            .unwrap_or_else(|| panic!("no note on the intermediate: {:?}", verdict.notes));
        assert!(
            note.contains("x509: certificate specifies an incompatible key usage")
                && note.contains("error 26")
                && note.contains("farmgate ca init --intermediate"),
            "{note}"
        );
    }

    // An intermediate without EKU, as `farmgate ca init --intermediate` makes: no note.
    let open = root.intermediate(&CaSpec::new("issuing CA")).unwrap();
    let leaf = open.issue(&CertSpec::client("edge.farm.test")).unwrap();
    let r = report(&root, &leaf.chain_pem);
    assert!(r.verdicts.client.usable);
    assert!(
        r.verdicts
            .client
            .notes
            .iter()
            .all(|n| !n.contains("CA certificate #")),
        "{:?}",
        r.verdicts.client.notes
    );
}

#[test]
fn expired_certificate_says_when() {
    let root = Authority::new_root(&CaSpec::new("root")).unwrap();
    let now = OffsetDateTime::now_utc();
    let expired = now - Duration::days(10) - Duration::hours(1);
    let spec = CertSpec::client("old").valid(now - Duration::days(40), expired);
    let leaf = root.issue(&spec).unwrap();
    let r = report(&root, &leaf.chain_pem);
    assert_eq!(r.chain.trust, Some(Reach::Yes), "it still leads to the CA");
    assert!(!r.verdicts.client.usable);
    assert_eq!(r.verdicts.client.reasons[0].code(), "expired");
    assert_eq!(
        r.verdicts.client.reasons[0].to_string(),
        format!(
            "certificate #1 (CN=old) expired on {} (10 days ago)",
            expired.date()
        ),
    );
    // Ten days and an hour ago: the eleventh day after it expired.
    assert_eq!(r.certificates[0].days_left, -11);
    assert_eq!(r.certificates[0].lifetime_days, 29);
}

#[test]
fn unknown_ca_leads_nowhere() {
    let root = Authority::new_root(&CaSpec::new("root")).unwrap();
    let other = Authority::new_root(&CaSpec::new("root")).unwrap();
    let leaf = other.issue(&CertSpec::client("edge")).unwrap();
    let r = report(&root, &leaf.chain_pem);
    assert_eq!(r.chain.trust, Some(Reach::No));
    assert!(!r.verdicts.gate_strict.usable);
    assert_eq!(codes(&r.verdicts.gate_strict.reasons), ["unknown_ca"]);
    assert!(
        r.verdicts.gate_strict.reasons[0]
            .to_string()
            .contains("does not lead to --trust ca.pem"),
        "{:?}",
        r.verdicts.gate_strict
    );
}

#[test]
fn a_ca_certificate_is_neither_server_nor_client() {
    let root = Authority::new_root(&CaSpec::new("root")).unwrap();
    let r = report(&root, root.cert_pem());
    for verdict in [
        &r.verdicts.server,
        &r.verdicts.client,
        &r.verdicts.gate_strict,
    ] {
        assert!(!verdict.usable);
        assert_eq!(verdict.reasons[0].code(), "leaf_is_ca", "{verdict:?}");
    }
    assert!(r.certificates[0].summary.self_signed);
}

#[test]
fn a_client_certificate_without_names_is_no_server_certificate() {
    let root = Authority::new_root(&CaSpec::new("root")).unwrap();
    let leaf = root.issue(&CertSpec::server("cn-only").no_dns()).unwrap();
    let r = report(&root, &leaf.chain_pem);
    assert!(!r.verdicts.server.usable);
    assert_eq!(codes(&r.verdicts.server.reasons), ["no_server_name"]);
}

#[test]
fn json_keeps_the_sentences_and_adds_their_codes_in_the_same_order() {
    let root = Authority::new_root(&CaSpec::new("root")).unwrap();
    let leaf = root.issue(&CertSpec::server("backend.farm.test")).unwrap();
    let r = report(&root, &leaf.chain_pem);
    let json = serde_json::to_value(&r).unwrap();
    let client = &json["verdicts"]["client"];
    assert_eq!(client["usable"], false);
    let reasons = client["reasons"].as_array().unwrap();
    let codes = client["reason_codes"].as_array().unwrap();
    assert_eq!(reasons.len(), codes.len());
    assert_eq!(codes[0], "lacks_client_auth");
    assert!(
        reasons[0]
            .as_str()
            .unwrap()
            .contains("does not permit clientAuth")
    );
    for field in ["allow", "notes", "facts"] {
        assert!(client[field].is_array(), "{field}");
    }
    let cert = &json["certificates"][0];
    for field in [
        "index",
        "subject",
        "common_name",
        "sans",
        "issuer",
        "serial",
        "not_before",
        "not_after",
        "days_left",
        "lifetime_days",
        "key",
        "ca",
        "self_signed",
        "eku",
        "spki_sha256",
        "sha256",
    ] {
        assert!(!cert[field].is_null(), "{field} in {cert}");
    }
    assert_eq!(cert["sans"][0], "dns:backend.farm.test");
    assert!(cert["not_after_unix"].is_i64());
}

#[test]
fn garbage_is_an_error() {
    let inspector = Inspector::new(None);
    let now = OffsetDateTime::now_utc();
    assert!(matches!(
        inspector.inspect("x", b"", now),
        Err(InspectError::NoCertificate)
    ));
    assert!(matches!(
        inspector.inspect("x", b"not der", now),
        Err(InspectError::Der { index: 1, .. })
    ));
    assert!(matches!(
        inspector.inspect(
            "x",
            b"-----BEGIN NOTHING-----\n-----END NOTHING-----\n",
            now
        ),
        Err(InspectError::NoCertificate)
    ));
}
