//! x509-limbo conformance (tests/data/x509-limbo.json, see tests/data/README.md): every case
//! through farmgate's own verification paths, at the case's validation time, compared with the
//! expected result.
//!
//! - SERVER cases go through the edge's verification of a backend: the rustls WebPKI server
//!   verifier as [`farmgate_tls::server_verifier`] builds it for upstreams, trust loaded from a
//!   PEM file by [`TrustStore::load`]. Cases without an expected peer name run the same webpki
//!   path validation without the name check.
//! - SERVER cases with CRLs go through a gate, since only gates check revocation: compatibility
//!   mode (the chains are server certificates), allowing the expected DNS name (or the peer's key
//!   when the name is an IP address), the CRLs loaded and checked by `crl = [...]`. A CRL the
//!   gate refuses at load counts as a FAILURE: that gate would never start.
//! - CLIENT cases go through a strict gate. farmgate identifies clients by DNS/URI names, CN or
//!   key, not by e-mail address, so the gate allows exactly the peer's key (`spki-sha256:`): the
//!   verdict is the chain's.
//!
//! The test fails on any disagreement not in [`DEVIATIONS`], and on any entry of [`DEVIATIONS`]
//! that agrees after all (so the list stays true).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use farmgate_config::{Location, Trust};
use farmgate_identity::PeerIdentity;
use farmgate_tls::TrustStore;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Deserialize;

use crate::gate::{quoted, verifier};

/// Cases where farmgate's answer differs from x509-limbo's, each with the reason. Nearly all are
/// rustls-webpki's profile choices: farmgate validates paths with webpki rather than by itself
/// (DESIGN.md), so it inherits them. Where webpki is stricter than the suite (a CA certificate as
/// leaf, self-issued exemptions, e-mail and directory-name constraints) it fails closed, which a
/// gate wants.
const DEVIATIONS: &[(&str, &str)] = &[
    // Stricter than x509-limbo: refused, expected to pass.
    ("rfc5280::ca-as-leaf", CA_AS_LEAF),
    ("pathlen::validation-ignores-pathlen-in-leaf", CA_AS_LEAF),
    ("pathlen::self-issued-certs-pathlen", SELF_ISSUED),
    ("rfc5280::nc::permitted-self-issued", SELF_ISSUED),
    ("rfc5280::nc::permitted-dn-match", NC_DIRECTORY_NAME),
    ("rfc5280::nc::nc-permits-email-exact", NC_EMAIL),
    ("rfc5280::nc::nc-permits-email-domain", NC_EMAIL),
    (
        "rfc5280::nc::nc-permits-email-literal-asterisk-exact-match",
        NC_EMAIL,
    ),
    (
        "rfc5280::nc::nc-permits-email-literal-double-asterisk",
        NC_EMAIL,
    ),
    (
        "rfc5280::nc::nc-permits-email-literal-mid-asterisk",
        NC_EMAIL,
    ),
    (
        "rfc5280::unknown-critical-extension-unrelated-root",
        TRUST_FILE,
    ),
    // More lenient than x509-limbo: accepted, expected to fail.
    ("pathlen::max-chain-depth-0-exhausted", CHAIN_DEPTH),
    ("pathlen::max-chain-depth-1-exhausted", CHAIN_DEPTH),
    ("rfc5280::aki::leaf-missing-aki", KEY_IDENTIFIERS),
    ("rfc5280::aki::intermediate-missing-aki", KEY_IDENTIFIERS),
    (
        "rfc5280::aki::cross-signed-root-missing-aki",
        KEY_IDENTIFIERS,
    ),
    ("rfc5280::ski::root-missing-ski", KEY_IDENTIFIERS),
    ("rfc5280::ski::intermediate-missing-ski", KEY_IDENTIFIERS),
    (
        "webpki::aki::root-with-aki-missing-keyidentifier",
        KEY_IDENTIFIERS,
    ),
    (
        "webpki::aki::root-with-aki-authoritycertissuer",
        KEY_IDENTIFIERS,
    ),
    (
        "webpki::aki::root-with-aki-authoritycertserialnumber",
        KEY_IDENTIFIERS,
    ),
    ("webpki::aki::root-with-aki-all-fields", KEY_IDENTIFIERS),
    ("webpki::aki::root-with-aki-ski-mismatch", KEY_IDENTIFIERS),
    ("rfc5280::nc::permitted-dns-match-noncritical", NC_ENCODING),
    ("rfc5280::nc::invalid-dnsname-leading-period", NC_ENCODING),
    ("rfc5280::nc::not-allowed-in-ee-noncritical", NC_ENCODING),
    ("rfc5280::nc::not-allowed-in-ee-critical", NC_ENCODING),
    (
        "webpki::nc::intermediate-permitted-excluded-subtrees-both-null",
        NC_ENCODING,
    ),
    (
        "webpki::nc::intermediate-permitted-excluded-subtrees-both-empty-sequences",
        NC_ENCODING,
    ),
    ("rfc5280::pc::ica-noncritical-pc", EXTENSION_PROFILE),
    (
        "rfc5280::san::noncritical-with-empty-subject",
        EXTENSION_PROFILE,
    ),
    (
        "webpki::san::san-critical-with-nonempty-subject",
        EXTENSION_PROFILE,
    ),
    ("rfc5280::ca-empty-subject", EXTENSION_PROFILE),
    ("rfc5280::leaf-ku-keycertsign", EXTENSION_PROFILE),
    ("webpki::malformed-aia", EXTENSION_PROFILE),
    ("rfc5280::serial::too-long", SERIAL_NUMBER),
    ("rfc5280::serial::zero", SERIAL_NUMBER),
    ("rfc5280::validity::expired-root", TRUST_ANCHOR),
    ("rfc5280::root-missing-basic-constraints", TRUST_ANCHOR),
    ("rfc5280::root-non-critical-basic-constraints", TRUST_ANCHOR),
    ("rfc5280::root-inconsistent-ca-extensions", TRUST_ANCHOR),
    ("webpki::eku::root-has-eku", TRUST_ANCHOR),
    ("webpki::cn::ipv4-hex-mismatch", COMMON_NAME),
    ("webpki::cn::ipv4-leading-zeros-mismatch", COMMON_NAME),
    ("webpki::cn::ipv6-uppercase-mismatch", COMMON_NAME),
    ("webpki::cn::ipv6-uncompressed-mismatch", COMMON_NAME),
    ("webpki::cn::ipv6-non-rfc5952-mismatch", COMMON_NAME),
    ("webpki::cn::punycode-not-in-san", COMMON_NAME),
    ("webpki::cn::utf8-vs-punycode-mismatch", COMMON_NAME),
    ("webpki::cn::not-in-san", COMMON_NAME),
    ("webpki::cn::case-mismatch", COMMON_NAME),
    ("webpki::eku::ee-anyeku", EKU_PROFILE),
    ("webpki::eku::ee-critical-eku", EKU_PROFILE),
    ("webpki::eku::ee-without-eku", EKU_PROFILE),
    (
        "webpki::san::public-suffix-multi-label-wildcard-san",
        PUBLIC_SUFFIX,
    ),
    (
        "webpki::san::public-suffix-private-namespace-wildcard-san",
        PUBLIC_SUFFIX,
    ),
    ("rfc5280::san::underscore-dns", DNS_SYNTAX),
    ("webpki::forbidden-p192-leaf", KEY_STRENGTH),
    ("webpki::forbidden-dsa-leaf", KEY_STRENGTH),
    ("webpki::forbidden-weak-rsa-in-leaf", KEY_STRENGTH),
    (
        "webpki::forbidden-rsa-key-not-divisible-by-8-in-leaf",
        KEY_STRENGTH,
    ),
    (
        "webpki::forbidden-rsa-not-divisible-by-8-in-root",
        KEY_STRENGTH,
    ),
];

const CA_AS_LEAF: &str = "webpki refuses a CA certificate (basicConstraints cA) as the end entity";
const SELF_ISSUED: &str = "webpki does not implement RFC 5280's exemptions for self-issued intermediates (path length, name constraints) and refuses the chain";
const NC_DIRECTORY_NAME: &str =
    "webpki does not evaluate directoryName constraints and refuses chains that depend on them";
const NC_EMAIL: &str = "webpki does not evaluate rfc822Name constraints and refuses chains that depend on them; farmgate never identifies clients by e-mail address";
const TRUST_FILE: &str = "farmgate refuses a trust file holding a certificate webpki cannot parse (a configuration error) rather than skipping that certificate";
const CHAIN_DEPTH: &str = "webpki has no caller-chosen maximum chain depth (a fixed limit and a signature budget instead), and farmgate sets none";
const KEY_IDENTIFIERS: &str = "webpki builds paths by subject name and signature; it neither requires nor checks authority/subject key identifiers";
const NC_ENCODING: &str = "webpki enforces name constraints but not their encoding rules (criticality, empty subtrees, leading period, presence in end entities)";
const EXTENSION_PROFILE: &str =
    "webpki does not check this RFC 5280/CABF extension or subject encoding rule";
const SERIAL_NUMBER: &str = "webpki does not check serial-number encoding rules";
const TRUST_ANCHOR: &str = "webpki uses only a trust anchor's subject and key: its validity, extensions and basic constraints are not checked";
const COMMON_NAME: &str = "webpki ignores the subject CN (names come from the SAN only), so a CN that disagrees with the SAN goes unnoticed";
const EKU_PROFILE: &str = "webpki only asks that the chain permit serverAuth: anyExtendedKeyUsage, a critical EKU or a leaf without EKU pass";
const PUBLIC_SUFFIX: &str =
    "webpki has no public suffix list, so a wildcard over a public suffix is not refused";
const DNS_SYNTAX: &str = "webpki accepts underscores in DNS names, as much real-world DNS does";
const KEY_STRENGTH: &str = "webpki checks the signatures CAs made, not the key in the leaf (a TLS handshake signature exercises that key later); aws-lc-rs accepts RSA keys of odd sizes";

#[derive(Debug, Deserialize)]
struct Limbo {
    testcases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    id: String,
    validation_kind: String,
    trusted_certs: Vec<String>,
    untrusted_intermediates: Vec<String>,
    peer_certificate: String,
    validation_time: Option<String>,
    expected_result: String,
    expected_peer_name: Option<PeerName>,
    crls: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct PeerName {
    kind: String,
    value: String,
}

/// Which of farmgate's verification paths judged a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Judge {
    Upstream,
    GateWithCrls,
    StrictGate,
}

struct Verdict {
    path: Judge,
    accepted: bool,
    why: String,
}

#[test]
fn x509_limbo_cases_agree_with_farmgate_except_the_listed_deviations() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/x509-limbo.json"),
    )
    .unwrap();
    let limbo: Limbo = serde_json::from_str(&text).unwrap();
    let deviations: BTreeMap<&str, &str> = DEVIATIONS.iter().copied().collect();
    let mut unexpected = Vec::new();
    let mut agreed_deviation = Vec::new();
    let mut counts: BTreeMap<(Judge, &str), usize> = BTreeMap::new();
    let mut seen = HashSet::new();
    for case in &limbo.testcases {
        assert!(seen.insert(case.id.as_str()), "duplicate case {}", case.id);
        let verdict = run(case);
        let expected = case.expected_result == "SUCCESS";
        let agrees = verdict.accepted == expected;
        let tally = match (agrees, deviations.contains_key(case.id.as_str())) {
            (true, false) => "agree",
            (false, true) => "deviation",
            (false, false) => {
                unexpected.push(format!(
                    "{} ({:?}): expected {}, farmgate {}: {}",
                    case.id,
                    verdict.path,
                    case.expected_result,
                    if verdict.accepted {
                        "accepts"
                    } else {
                        "refuses"
                    },
                    verdict.why
                ));
                "unexpected"
            }
            (true, true) => {
                agreed_deviation.push(case.id.clone());
                "agree"
            }
        };
        *counts.entry((verdict.path, tally)).or_default() += 1;
    }
    println!("x509-limbo: {} cases", limbo.testcases.len());
    for ((path, tally), n) in &counts {
        println!("  {path:?} {tally}: {n}");
    }
    for (id, why) in DEVIATIONS {
        println!("  deliberate deviation {id}: {why}");
    }
    assert!(
        unexpected.is_empty(),
        "{} unexpected disagreements:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert!(
        agreed_deviation.is_empty(),
        "listed as deviations but farmgate agrees (remove them from DEVIATIONS): {agreed_deviation:?}"
    );
}

fn run(case: &Case) -> Verdict {
    let dir = tempfile::tempdir().unwrap();
    let time = case
        .validation_time
        .as_deref()
        .map_or_else(UnixTime::now, parse_time);
    match (case.validation_kind.as_str(), case.crls.is_empty()) {
        ("SERVER", true) => upstream(case, dir.path(), time),
        ("SERVER", false) => gate(case, dir.path(), time, Judge::GateWithCrls),
        ("CLIENT", _) => gate(case, dir.path(), time, Judge::StrictGate),
        (other, _) => panic!("{}: unknown validation kind {other}", case.id),
    }
}

/// The edge's verification of a backend certificate.
fn upstream(case: &Case, dir: &Path, time: UnixTime) -> Verdict {
    let refuse = |why: String| Verdict {
        path: Judge::Upstream,
        accepted: false,
        why,
    };
    let trust_file = dir.join("trust.pem");
    std::fs::write(&trust_file, case.trusted_certs.concat()).unwrap();
    let at = Location::new(
        Arc::from(dir.join("edge.toml")),
        1,
        "upstream.farm.tls.trust",
    );
    let trust = match TrustStore::load(
        &[Trust::File(farmgate_tls::load::file_ref(
            &trust_file,
            "trust",
        ))],
        &at,
    ) {
        Ok(trust) => trust,
        Err(e) => return refuse(format!("trust refused at load: {e}")),
    };
    let (Some(leaf), Some(intermediates)) = (
        pem_one(&case.peer_certificate),
        pem_all(&case.untrusted_intermediates),
    ) else {
        return refuse("a certificate is not PEM".into());
    };
    let result = match &case.expected_peer_name {
        Some(name) => {
            let Ok(server_name) = ServerName::try_from(name.value.clone()) else {
                return refuse(format!("{:?} is not a server name", name.value));
            };
            let verifier = match farmgate_tls::server_verifier(&trust, &at) {
                Ok(v) => v,
                Err(e) => return refuse(format!("verifier: {e}")),
            };
            verifier
                .verify_server_cert(&leaf, &intermediates, &server_name, &[], time)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        // No name to check: the same path validation the verifier runs.
        None => webpki::EndEntityCert::try_from(&leaf)
            .and_then(|cert| {
                cert.verify_for_usage(
                    farmgate_tls::provider()
                        .signature_verification_algorithms
                        .all,
                    trust.anchors(),
                    &intermediates,
                    time,
                    webpki::KeyUsage::server_auth(),
                    None,
                    None,
                )
                .map(|_| ())
            })
            .map_err(|e| e.to_string()),
    };
    Verdict {
        path: Judge::Upstream,
        accepted: result.is_ok(),
        why: result.err().unwrap_or_default(),
    }
}

/// A gate: compatibility mode with CRLs for SERVER cases, strict for CLIENT cases.
fn gate(case: &Case, dir: &Path, time: UnixTime, path: Judge) -> Verdict {
    let refuse = |why: String| Verdict {
        path,
        accepted: false,
        why,
    };
    let (Some(leaf), Some(intermediates)) = (
        pem_one(&case.peer_certificate),
        pem_all(&case.untrusted_intermediates),
    ) else {
        return refuse("a certificate is not PEM".into());
    };
    let trust_file = dir.join("trust.pem");
    std::fs::write(&trust_file, case.trusted_certs.concat()).unwrap();
    let pin = match PeerIdentity::from_der(leaf.as_ref()) {
        Ok(identity) => format!("spki-sha256:{}", identity.spki_pin()),
        Err(e) => return refuse(format!("the certificate's identity cannot be read: {e}")),
    };
    let allow = match (&case.expected_peer_name, path) {
        (Some(name), Judge::GateWithCrls) if name.kind == "DNS" => format!("dns:{}", name.value),
        _ => pin,
    };
    let eku = match path {
        Judge::GateWithCrls => "client_or_server_auth",
        _ => "client_auth",
    };
    let mut crls = Vec::new();
    for (i, crl) in case.crls.iter().enumerate() {
        let file = dir.join(format!("crl-{i}.pem"));
        std::fs::write(&file, crl).unwrap();
        crls.push(quoted(&file));
    }
    let crl_line = if crls.is_empty() {
        String::new()
    } else {
        format!("crl = [{}]", crls.join(", "))
    };
    let table = format!(
        "trust = [{}]\nallow = [{allow:?}]\neku = {eku:?}\n{crl_line}",
        quoted(&trust_file)
    );
    let gate = match verifier(dir, &table) {
        Ok(gate) => gate,
        Err(e) => return refuse(format!("refused at load: {e}")),
    };
    match gate.check(&leaf, &intermediates, time) {
        Ok(_) => Verdict {
            path,
            accepted: true,
            why: String::new(),
        },
        Err(refusal) => refuse(format!("{}: {}", refusal.reason, refusal.detail)),
    }
}

fn pem_one(pem: &str) -> Option<CertificateDer<'static>> {
    CertificateDer::from_pem_slice(pem.as_bytes()).ok()
}

fn pem_all(pems: &[String]) -> Option<Vec<CertificateDer<'static>>> {
    pems.iter().map(|p| pem_one(p)).collect()
}

/// `2024-01-01T00:00:00+00:00`, perhaps with fractional seconds (dropped: webpki compares whole
/// seconds); the suite writes every time in UTC.
fn parse_time(text: &str) -> UnixTime {
    let number = |range: std::ops::Range<usize>| -> i64 {
        text.get(range)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected validation time {text:?}"))
    };
    assert!(text.ends_with("+00:00") && text.len() >= 25, "{text}");
    let month = time::Month::try_from(u8::try_from(number(5..7)).unwrap()).unwrap();
    let date = time::Date::from_calendar_date(
        i32::try_from(number(0..4)).unwrap(),
        month,
        u8::try_from(number(8..10)).unwrap(),
    )
    .unwrap();
    let seconds = date.midnight().assume_utc().unix_timestamp()
        + number(11..13) * 3600
        + number(14..16) * 60
        + number(17..19);
    UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(seconds).unwrap()))
}
