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
    let prefix = tmp.path().join("nginx");
    std::fs::create_dir(&prefix).unwrap();
    let nginx = Nginx::start(
        &prefix,
        "",
        &format!(
            r#"
        server_name backend.farm.test;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_verify_client on;
        ssl_client_certificate {ca};
        location / {{
            default_type text/plain;
            return 200 "hello $ssl_client_s_dn\n";
        }}"#,
            cert = dir.join("backend.farm.test.pem").display(),
            key = dir.join("backend.farm.test.key").display(),
            ca = ca.display(),
        ),
    );

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
