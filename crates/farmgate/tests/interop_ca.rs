//! `farmgate ca` certificates as outside programs judge them: `openssl verify` for each purpose,
//! and a stock nginx backend with `ssl_verify_client on` behind which curl presents them.
//! Behind the `interop` feature; a missing program fails the test.

use std::path::Path;
use std::process::Output;

use crate::outside::{outside, text};

use crate::ca::{init, issue};
use crate::nginx::Nginx;

/// `openssl verify -purpose PURPOSE -CAfile CA CERT`.
fn openssl_verify(purpose: &str, ca: &Path, cert: &Path) -> Output {
    outside(
        "openssl",
        &[
            "verify",
            "-purpose",
            purpose,
            "-CAfile",
            ca.to_str().unwrap(),
            cert.to_str().unwrap(),
        ],
    )
}

#[test]
fn openssl_accepts_farmgate_certificates_for_their_purpose_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("farm-ca");
    init(&dir, &["--permit-dns", "farm.test"]);
    issue(&dir, &["--client", "edge.farm.test"]);
    issue(&dir, &["--server", "backend.farm.test"]);
    issue(&dir, &["--spiffe", "spiffe://farm.test/edge"]);
    // An address under a DNS-constrained CA: OpenSSL would check an address-like CN against
    // the DNS constraints, so the certificate must not have one.
    issue(&dir, &["--client", "10.0.0.5"]);
    let ca = dir.join("ca.pem");
    let file = |name: &str| dir.join(format!("{name}.pem"));

    for (cert, purpose, accepted) in [
        ("edge.farm.test", "sslclient", true),
        ("edge.farm.test", "sslserver", false),
        ("backend.farm.test", "sslserver", true),
        ("backend.farm.test", "sslclient", false),
        ("farm.test_edge", "sslclient", true),
        ("10.0.0.5", "sslclient", true),
    ] {
        let out = openssl_verify(purpose, &ca, &file(cert));
        assert_eq!(
            out.status.success(),
            accepted,
            "openssl verify -purpose {purpose} {cert}: {}",
            text(&out)
        );
        if accepted {
            assert!(text(&out).contains(": OK"), "{}", text(&out));
        } else {
            // X509_V_ERR_INVALID_PURPOSE: "unsuitable certificate purpose".
            assert!(text(&out).contains("error 26 "), "{}", text(&out));
        }
    }
}

#[test]
fn stock_nginx_with_ssl_verify_client_accepts_a_farmgate_client_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("farm-ca");
    init(&dir, &["--permit-dns", "farm.test"]);
    issue(&dir, &["--server", "backend.farm.test"]);
    issue(&dir, &["--client", "edge.farm.test"]);
    issue(&dir, &["--server", "impostor.farm.test"]);
    let ca = dir.join("ca.pem");
    let file = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let nginx = nginx_gate(tmp.path(), &dir, "");

    let (cert, key) = (file("edge.farm.test.pem"), file("edge.farm.test.key"));
    let (status, body) = nginx.curl(&ca, &["--cert", &cert, "--key", &key]);
    assert_eq!(status, "200", "{body}\n{}", nginx.error_log());
    assert_eq!(body.trim(), "hello CN=edge.farm.test");

    let (status, body) = nginx.curl(&ca, &[]);
    assert_eq!(status, "400", "{body}");
    assert!(
        body.contains("No required SSL certificate was sent"),
        "{body}"
    );

    // A server certificate from the same CA is no client certificate to OpenSSL.
    let (cert, key) = (
        file("impostor.farm.test.pem"),
        file("impostor.farm.test.key"),
    );
    let (status, body) = nginx.curl(&ca, &["--cert", &cert, "--key", &key]);
    assert_eq!(status, "400", "{body}");
    assert!(body.contains("The SSL certificate error"), "{body}");
    assert!(
        nginx.error_log().contains("unsuitable certificate purpose"),
        "{}",
        nginx.error_log()
    );
}

/// `farmgate ca VERB --dir DIR args...`, which must succeed.
fn farmgate_ca(verb: &str, dir: &Path, args: &[&str]) {
    let mut all = vec!["ca", verb, "--dir", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = crate::ca::run(&all);
    assert_eq!(
        out.code, 0,
        "farmgate {all:?}: {}{}",
        out.stdout, out.stderr
    );
}

#[test]
fn openssl_verifies_the_signature_of_every_crl_farmgate_ca_signs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let issuing = tmp.path().join("issuing");
    init(&root, &["--name", "farm root CA"]);
    farmgate_ca(
        "init",
        &issuing,
        &["--intermediate", "--root-dir", root.to_str().unwrap()],
    );
    issue(&issuing, &["--client", "edge.farm.test"]);
    farmgate_ca(
        "revoke",
        &issuing,
        &[
            "--cert",
            issuing.join("edge.farm.test.pem").to_str().unwrap(),
            "--reason",
            "superseded",
        ],
    );
    for (dir, ca_file) in [
        (&root, root.join("ca.pem")),
        (&issuing, issuing.join("ca.pem")),
    ] {
        let crl = tmp.path().join(format!(
            "{}.crl",
            dir.file_name().unwrap().to_str().unwrap()
        ));
        farmgate_ca(
            "crl",
            dir,
            &["--out", crl.to_str().unwrap(), "--valid", "7d"],
        );
        let out = outside(
            "openssl",
            &[
                "crl",
                "-in",
                crl.to_str().unwrap(),
                "-CAfile",
                ca_file.to_str().unwrap(),
                "-noout",
                "-text",
            ],
        );
        let said = text(&out);
        assert!(out.status.success(), "{said}");
        for expected in [
            "verify OK",
            "Version 2 (0x1)",
            "X509v3 CRL Number",
            "X509v3 Authority Key Identifier",
            "Next Update",
        ] {
            assert!(said.contains(expected), "no {expected:?} in:\n{said}");
        }
        if dir == &issuing {
            assert!(said.contains("Superseded"), "{said}");
        }
    }

    // OpenSSL builds the client chain through the intermediate (which has no EKU) to the root.
    let out = outside(
        "openssl",
        &[
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            issuing.join("root.pem").to_str().unwrap(),
            "-untrusted",
            issuing.join("edge.farm.test.pem").to_str().unwrap(),
            issuing.join("edge.farm.test.pem").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn stock_nginx_with_ssl_crl_refuses_a_certificate_farmgate_ca_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("farm-ca");
    init(&dir, &["--permit-dns", "farm.test"]);
    issue(&dir, &["--server", "backend.farm.test"]);
    issue(&dir, &["--client", "edge.farm.test"]);
    issue(&dir, &["--client", "kept.farm.test"]);
    farmgate_ca(
        "revoke",
        &dir,
        &["--cert", dir.join("edge.farm.test.pem").to_str().unwrap()],
    );
    let crl = tmp.path().join("farm-ca.crl");
    farmgate_ca("crl", &dir, &["--out", crl.to_str().unwrap()]);
    let ca = dir.join("ca.pem");
    let nginx = nginx_gate(tmp.path(), &dir, &format!("ssl_crl {};", crl.display()));
    let file = |name: &str| dir.join(name).to_str().unwrap().to_owned();

    let (cert, key) = (file("kept.farm.test.pem"), file("kept.farm.test.key"));
    let (status, body) = nginx.curl(&ca, &["--cert", &cert, "--key", &key]);
    assert_eq!(status, "200", "{body}\n{}", nginx.error_log());
    assert_eq!(body.trim(), "hello CN=kept.farm.test");

    let (cert, key) = (file("edge.farm.test.pem"), file("edge.farm.test.key"));
    let (status, body) = nginx.curl(&ca, &["--cert", &cert, "--key", &key]);
    assert_eq!(status, "400", "{body}");
    assert!(body.contains("The SSL certificate error"), "{body}");
    assert!(
        nginx.error_log().contains("certificate revoked"),
        "{}",
        nginx.error_log()
    );
}

/// A stock nginx gate in `tmp/nginx`: the CA directory's backend.farm.test certificate,
/// `ssl_verify_client on` against its `ca.pem`, `extra` directives, answering with the client's
/// subject.
fn nginx_gate(tmp: &Path, dir: &Path, extra: &str) -> Nginx {
    let prefix = tmp.join("nginx");
    std::fs::create_dir(&prefix).unwrap();
    Nginx::start(
        &prefix,
        "",
        &format!(
            r#"
        server_name backend.farm.test;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_verify_client on;
        ssl_client_certificate {ca};
        {extra}
        location / {{
            default_type text/plain;
            return 200 "hello $ssl_client_s_dn\n";
        }}"#,
            cert = dir.join("backend.farm.test.pem").display(),
            key = dir.join("backend.farm.test.key").display(),
            ca = dir.join("ca.pem").display(),
        ),
    )
}

#[test]
fn stock_nginx_configured_as_docs_say_closes_on_refused_clients_without_an_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("farm-ca");
    init(&dir, &["--permit-dns", "farm.test"]);
    issue(&dir, &["--server", "backend.farm.test"]);
    issue(&dir, &["--client", "edge.farm.test"]);
    issue(&dir, &["--client", "other.farm.test"]);
    // docs/migration.md, "it refuses after the handshake": the closest nginx gets to a gate.
    let nginx = nginx_gate(
        tmp.path(),
        &dir,
        r#"error_page 495 496 = @refuse;
        location @refuse { return 444; }
        if ($ssl_client_s_dn != "CN=edge.farm.test") { return 444; }"#,
    );
    let ca = dir.join("ca.pem");
    let file = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let (cert, key) = (file("edge.farm.test.pem"), file("edge.farm.test.key"));
    let (status, body) = nginx.curl(&ca, &["--cert", &cert, "--key", &key]);
    assert_eq!(status, "200", "{body}\n{}", nginx.error_log());

    let resolve = format!("backend.farm.test:{}:127.0.0.1", nginx.addr.port());
    let url = format!("https://backend.farm.test:{}/", nginx.addr.port());
    let (other, other_key) = (file("other.farm.test.pem"), file("other.farm.test.key"));
    for extra in [vec![], vec!["--cert", &other, "--key", &other_key]] {
        let mut args = vec![
            "-sS",
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &resolve,
        ];
        args.extend(extra);
        args.push(&url);
        let out = outside("curl", &args);
        // curl exit 52: the handshake completed, and nginx closed without a response.
        assert_eq!(out.status.code(), Some(52), "{}", text(&out));
        assert!(
            text(&out).contains("Empty reply from server"),
            "{}",
            text(&out)
        );
    }
}

#[test]
fn openssl_reads_and_enforces_the_uri_name_constraint_farmgate_ca_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("farm-ca");
    init(
        &dir,
        &[
            "--permit-dns",
            "farm.test",
            "--permit-uri",
            "spiffe://farm.test",
        ],
    );
    issue(&dir, &["--spiffe", "spiffe://farm.test/edge"]);
    let ca = dir.join("ca.pem");
    let out = openssl_verify("sslclient", &ca, &dir.join("farm.test_edge.pem"));
    assert!(out.status.success(), "{}", text(&out));

    let spec = farmgate_pki::CertSpec::spiffe("spiffe://evil.test/edge");
    let (rogue, _, _) = crate::ca::behind_the_cas_back(&dir, &spec, tmp.path());
    let out = openssl_verify("sslclient", &ca, &rogue);
    assert!(!out.status.success(), "{}", text(&out));
    // X509_V_ERR_PERMITTED_VIOLATION.
    assert!(
        text(&out).contains("permitted subtree violation"),
        "{}",
        text(&out)
    );
}
