//! `farmgate ca` certificates as outside programs judge them: `openssl verify` for each purpose,
//! and a stock nginx backend with `ssl_verify_client on` behind which curl presents them.
//! Behind the `interop` feature; a missing program fails the test.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::ca::{init, issue};

/// How long nginx may take to start listening before the test fails (not a delay: the wait
/// ends as soon as it accepts a connection).
const PATIENCE: Duration = Duration::from_secs(60);

/// Run `program args`, failing the test if the program is not installed.
fn outside(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} is required for interop tests ({e}); .ci/run installs it")
        })
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

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

/// A stock nginx on a free loopback port, from a temporary prefix; killed (by its PID, it is
/// our child) when dropped.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    prefix: PathBuf,
}

impl Nginx {
    /// nginx requiring client certificates from `client_ca`, serving `cert`/`key`, answering
    /// 200 with the verified client's subject.
    fn start(prefix: &Path, cert: &Path, key: &Path, client_ca: &Path) -> Nginx {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = prefix.display();
        let conf = format!(
            r#"
daemon off;
master_process off;
pid {p}/nginx.pid;
error_log {p}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {p}/access.log;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name backend.farm.test;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_verify_client on;
        ssl_client_certificate {client_ca};
        location / {{
            default_type text/plain;
            return 200 "hello $ssl_client_s_dn\n";
        }}
    }}
}}
"#,
            cert = cert.display(),
            key = key.display(),
            client_ca = client_ca.display(),
        );
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("nginx")
            .args([
                "-p",
                prefix.to_str().unwrap(),
                "-e",
                prefix.join("error.log").to_str().unwrap(),
                "-c",
                conf_path.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("nginx is required for interop tests ({e}); .ci/run installs it")
            });
        let mut nginx = Nginx {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            prefix: prefix.to_path_buf(),
        };
        nginx.wait_until_listening();
        nginx
    }

    /// Returns as soon as nginx accepts a connection; fails if it exits first.
    fn wait_until_listening(&mut self) {
        let started = Instant::now();
        while TcpStream::connect(self.addr).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "nginx exited ({status}) before listening:\n{}",
                    self.error_log()
                );
            }
            assert!(
                started.elapsed() < PATIENCE,
                "nginx did not listen on {}:\n{}",
                self.addr,
                self.error_log()
            );
            std::thread::yield_now();
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.join("error.log")).unwrap_or_default()
    }

    /// `curl` to this nginx as https://backend.farm.test/, trusting `ca`, with `extra` args;
    /// (HTTP status, body).
    fn curl(&self, ca: &Path, extra: &[&str]) -> (String, String) {
        let resolve = format!("backend.farm.test:{}:127.0.0.1", self.addr.port());
        let url = format!("https://backend.farm.test:{}/", self.addr.port());
        let mut args = vec![
            "-sS",
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &resolve,
            "-w",
            "\n%{http_code}",
        ];
        args.extend_from_slice(extra);
        args.push(&url);
        let out = outside("curl", &args);
        assert!(out.status.success(), "curl {args:?}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = stdout.rsplit_once('\n').unwrap();
        (status.to_owned(), body.to_owned())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // Only our own child, by its PID; with master_process off it has no workers.
        let _ = self.child.kill();
        let _ = self.child.wait();
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
        &dir.join("backend.farm.test.pem"),
        &dir.join("backend.farm.test.key"),
        &ca,
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
