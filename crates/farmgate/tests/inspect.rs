//! `farmgate inspect`: the verdicts for each kind of certificate in the test PKI, as an
//! operator reads them. Run with `--nocapture` to see the verdict table.

use std::path::Path;

use farmgate_pki::CertSpec;
use farmgate_testkit::pki::{CertFiles, TestPki};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use crate::ca::{inspect_json, run};

/// One row of the verdict table: (server, client, gate strict, gate compat).
struct Row {
    kind: &'static str,
    report: Value,
}

impl Row {
    fn new(kind: &'static str, cert: &CertFiles, ca: &Path) -> Row {
        Row {
            kind,
            report: inspect_json(&cert.cert, ca),
        }
    }

    fn verdict(&self, which: &str) -> &Value {
        &self.report["verdicts"][which]
    }

    fn usable(&self) -> [bool; 4] {
        ["server", "client", "gate_strict", "gate_compat"]
            .map(|which| self.verdict(which)["usable"].as_bool().unwrap())
    }

    fn reasons(&self, which: &str) -> String {
        let reasons = self.verdict(which)["reasons"].as_array().unwrap();
        let reasons: Vec<&str> = reasons.iter().map(|r| r.as_str().unwrap()).collect();
        reasons.join("; ")
    }

    /// The codes beside the reasons, one each, in the same order.
    fn codes(&self, which: &str) -> Vec<&str> {
        let codes = self.verdict(which)["reason_codes"].as_array().unwrap();
        let reasons = self.verdict(which)["reasons"].as_array().unwrap();
        assert_eq!(codes.len(), reasons.len(), "{}", self.kind);
        codes.iter().map(|c| c.as_str().unwrap()).collect()
    }

    fn allow(&self, which: &str) -> Vec<String> {
        let allow = self.verdict(which)["allow"].as_array().unwrap();
        allow
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    }

    /// `yes` or `no: reasons` / `yes (allow ...)`, for the table.
    fn cell(&self, which: &str) -> String {
        let verdict = self.verdict(which);
        if verdict["usable"].as_bool().unwrap() {
            let allow = self.allow(which);
            if allow.is_empty() {
                "yes".to_owned()
            } else {
                let allow: Vec<String> = allow
                    .iter()
                    .map(|a| {
                        if a.starts_with("spki-sha256:") {
                            "spki-sha256:…".to_owned()
                        } else {
                            a.clone()
                        }
                    })
                    .collect();
                let relaxed = verdict["notes"].as_array().unwrap().iter().any(|n| {
                    n.as_str()
                        .unwrap()
                        .starts_with("only because of compatibility mode")
                });
                let only = if relaxed {
                    ", compatibility mode only"
                } else {
                    ""
                };
                format!("yes ({}{only})", allow.join(", "))
            }
        } else {
            format!("no: {}", self.reasons(which))
        }
    }
}

#[test]
fn inspect_gives_plain_verdicts_for_every_kind_of_test_certificate() {
    let pki = TestPki::new();
    let public = TestPki::public_like();
    let now = OffsetDateTime::now_utc();
    let rows = [
        Row::new(
            "private-CA client",
            &pki.client("edge.farm.test"),
            &pki.ca_file(),
        ),
        Row::new(
            "private-CA server",
            &pki.server("backend.farm.test"),
            &pki.ca_file(),
        ),
        Row::new(
            "serverAuth-only leaf, post-2026 public-like hierarchy",
            &public.server_only_leaf("edge.example.com"),
            &public.ca_file(),
        ),
        Row::new(
            "CN-only client",
            &pki.issue("cn-only", &CertSpec::client("edge.farm.test").no_dns()),
            &pki.ca_file(),
        ),
        Row::new(
            "expired client",
            &pki.issue(
                "expired",
                &CertSpec::client("edge.farm.test").valid(
                    now - Duration::days(40),
                    now - Duration::days(10) - Duration::hours(1),
                ),
            ),
            &pki.ca_file(),
        ),
    ];

    eprintln!(
        "\n| certificate | server | client (OpenSSL/nginx, Go, rustls) | gate strict | gate compat |"
    );
    eprintln!("|---|---|---|---|---|");
    for row in &rows {
        eprintln!(
            "| {} | {} | {} | {} | {} |",
            row.kind,
            row.cell("server"),
            row.cell("client"),
            row.cell("gate_strict"),
            row.cell("gate_compat")
        );
    }

    let [client, server, public_leaf, cn_only, expired] = &rows;
    for row in &rows[..4] {
        assert_eq!(row.report["chain"]["trust"], "yes", "{}", row.kind);
        assert_eq!(row.report["chain"]["public_roots"], "no", "{}", row.kind);
    }
    // The test PKI's intermediate was made after this leaf expired: no moment when both are
    // valid, so no path can be checked; the verdicts say why regardless.
    assert_eq!(expired.report["chain"]["trust"], "unknown");

    assert_eq!(client.usable(), [false, true, true, true]);
    assert_eq!(client.codes("server"), ["lacks_server_auth"]);
    assert_eq!(client.codes("client"), Vec::<&str>::new());
    assert!(
        client
            .reasons("server")
            .contains("does not permit serverAuth")
    );
    assert_eq!(client.allow("gate_strict")[0], "dns:edge.farm.test");

    assert_eq!(server.usable(), [true, false, false, true]);
    assert_eq!(
        server.codes("client"),
        ["lacks_client_auth", "unsupported_certificate_purpose"]
    );
    assert!(
        server
            .reasons("client")
            .contains("does not permit clientAuth")
    );
    assert!(
        server
            .reasons("client")
            .contains("unsupported certificate purpose")
    );

    assert_eq!(public_leaf.usable(), [true, false, false, true]);
    assert!(
        public_leaf
            .reasons("client")
            .contains("#2 (CN=public-like test intermediate) does not permit clientAuth"),
        "{}",
        public_leaf.reasons("client")
    );
    let compat = public_leaf.allow("gate_compat");
    assert_eq!(compat.len(), 2, "{compat:?}");
    assert_eq!(compat[0], "dns:edge.example.com");
    assert!(compat[1].starts_with("spki-sha256:"));
    assert_eq!(
        public_leaf.report["certificates"][0]["common_name"],
        Value::Null
    );

    assert_eq!(cn_only.usable(), [false, true, true, true]);
    assert!(cn_only.codes("server").contains(&"no_server_name"));
    assert!(
        cn_only
            .reasons("server")
            .contains("names no DNS name or IP address"),
        "{}",
        cn_only.reasons("server")
    );
    let strict = cn_only.allow("gate_strict");
    assert!(
        strict.contains(&"cn:edge.farm.test".to_owned()),
        "{strict:?}"
    );
    assert!(!strict.iter().any(|a| a.starts_with("dns:")), "{strict:?}");

    assert_eq!(expired.usable(), [false, false, false, false]);
    assert_eq!(expired.codes("gate_strict")[0], "expired");
    for which in ["client", "gate_strict", "gate_compat"] {
        assert!(
            expired.reasons(which).contains("expired on"),
            "{which}: {}",
            expired.reasons(which)
        );
    }
    // Ten days and an hour ago: the eleventh day after it expired.
    assert_eq!(expired.report["certificates"][0]["days_left"], -11);
    assert!(
        expired.reasons("client").contains("(10 days ago)"),
        "{}",
        expired.reasons("client")
    );
}

#[test]
fn inspect_text_names_every_certificate_and_explains_every_no() {
    let public = TestPki::public_like();
    let leaf = public.server_only_leaf("edge.example.com");
    let out = run(&[
        "inspect",
        leaf.cert.to_str().unwrap(),
        "--trust",
        public.ca_file().to_str().unwrap(),
    ]);
    assert_eq!(
        out.code, 0,
        "a report exits 0 whatever it says: {}",
        out.stderr
    );
    let text = out.stdout;
    eprintln!("{text}");
    for expected in [
        "2 certificates",
        "certificate #1\n",
        "certificate #2 (CA)",
        "EKU          serverAuth",
        "SANs         dns:edge.example.com",
        "chain: does not lead to the bundled public roots (mozilla); leads to --trust",
        "server certificate: yes",
        "client certificate (OpenSSL/nginx, Go, rustls): no",
        "does not permit clientAuth",
        "farmgate gate, eku = \"client_auth\": no",
        "farmgate gate, eku = \"client_or_server_auth\": yes",
        "allow any of: dns:edge.example.com, spki-sha256:",
        "only because of compatibility mode",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn inspect_without_trust_judges_against_the_public_roots_and_says_how_to_add_a_ca() {
    let pki = TestPki::new();
    let edge = pki.client("edge.farm.test");
    let out = run(&["inspect", edge.cert.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("does not lead to the bundled public roots (mozilla) (for a private CA, give --trust CA.pem)"),
        "{}",
        out.stdout
    );
}

#[test]
fn inspect_of_a_missing_or_garbage_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let out = run(&["inspect", missing.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("cannot read"), "{}", out.stderr);

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN NOTHING-----\n-----END NOTHING-----\n").unwrap();
    let out = run(&["inspect", garbage.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("holds no certificate"),
        "{}",
        out.stderr
    );
}
