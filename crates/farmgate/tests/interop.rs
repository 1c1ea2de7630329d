//! With real outside programs (curl, openssl): farmgate behaves as the docs say to clients we
//! did not write. Behind the `interop` feature; a missing program fails the test.

use std::process::Command;

use crate::outside::{outside, text};

use farmgate_testkit::origin::Origin;
use farmgate_testkit::pki::TestPki;

use crate::cli::Running;

#[test]
fn curl_commands_printed_by_the_demo_work_as_described() {
    let mut demo = Running::spawn(&["demo", "--port", "0", "--backends", "2"]);
    let mut commands = Vec::new();
    while commands.len() < 3 {
        commands.push(demo.wait_for("  curl --cacert").trim().to_owned());
    }
    let run = |cmd: &str| outside("sh", &["-c", cmd]);

    let farm = run(&commands[0]);
    assert!(farm.status.success(), "{}", text(&farm));
    assert!(
        text(&farm).starts_with("hello from backend-"),
        "{}",
        text(&farm)
    );

    let probe = run(&commands[1]);
    assert!(
        !probe.status.success(),
        "the direct probe must fail: {}",
        text(&probe)
    );
    assert!(
        text(&probe).contains("alert certificate required"),
        "{}",
        text(&probe)
    );

    let with_cert = run(&commands[2]);
    assert!(with_cert.status.success(), "{}", text(&with_cert));
    assert!(
        text(&with_cert).contains("verified the caller as: DNS=edge.demo.farm"),
        "{}",
        text(&with_cert)
    );
}

// Outside programs block their thread while the origin runs in this runtime: use two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_a_handwritten_edge_and_gate() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let backend = pki.server("backend.farm.test");
    let edge_client = pki.client("edge.farm.test");
    let intruder = pki.client("intruder.farm.test");
    let gate_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let site = pki.server("www.farm.test");
    let config = pki.dir().join("pair.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[listener]]
name = "public"
listen = "127.0.0.1:0"
tls = {{ certificate = {:?}, private_key = {:?} }}
[[listener.route]]
upstream = "farm"
[upstream.farm]
servers = ["127.0.0.1:{gate_port}"]
tls = {{ server_name = "backend.farm.test", trust = [{ca:?}], client_certificate = {:?}, client_key = {:?} }}

[[listener]]
name = "gate"
listen = "127.0.0.1:{gate_port}"
tls = {{ certificate = {:?}, private_key = {:?}, client_auth = {{ trust = [{ca:?}], allow = ["dns:edge.farm.test"] }} }}
[[listener.route]]
upstream = "app"
[upstream.app]
servers = ["{}"]
"#,
            site.cert,
            site.key,
            edge_client.cert,
            edge_client.key,
            backend.cert,
            backend.key,
            origin.addr,
            ca = pki.ca_file(),
        ),
    )
    .unwrap();
    let mut process = Running::spawn(&["run", "-c", config.to_str().unwrap()]);
    let line = process.wait_for("listener=public");
    let port = line
        .split("127.0.0.1:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let ca = pki.ca_file();
    let ca = ca.to_str().unwrap();
    let resolve_site = format!("www.farm.test:{port}:127.0.0.1");
    let site_url = format!("https://www.farm.test:{port}/through");
    let resolve_gate = format!("backend.farm.test:{gate_port}:127.0.0.1");
    let gate_url = format!("https://backend.farm.test:{gate_port}/direct");

    for version in ["--http1.1", "--http2"] {
        let out = outside(
            "curl",
            &[
                "-sS",
                version,
                "--cacert",
                ca,
                "--resolve",
                &resolve_site,
                &site_url,
            ],
        );
        assert!(out.status.success(), "{version}: {}", text(&out));
        assert!(
            text(&out).starts_with("GET /through HTTP/1.1"),
            "{}",
            text(&out)
        );
        assert!(
            text(&out).contains("x-forwarded-client-cert: Hash="),
            "{}",
            text(&out)
        );
    }

    let no_cert = outside(
        "curl",
        &["-sS", "--cacert", ca, "--resolve", &resolve_gate, &gate_url],
    );
    assert!(!no_cert.status.success());
    assert!(
        text(&no_cert).contains("alert certificate required"),
        "{}",
        text(&no_cert)
    );

    let (cert, key) = (
        intruder.cert.to_str().unwrap(),
        intruder.key.to_str().unwrap(),
    );
    let wrong_name = outside(
        "curl",
        &[
            "-sS",
            "--cacert",
            ca,
            "--cert",
            cert,
            "--key",
            key,
            "--resolve",
            &resolve_gate,
            &gate_url,
        ],
    );
    assert!(!wrong_name.status.success());
    assert!(
        text(&wrong_name).contains("alert access denied"),
        "{}",
        text(&wrong_name)
    );

    let (cert, key) = (
        edge_client.cert.to_str().unwrap(),
        edge_client.key.to_str().unwrap(),
    );
    let allowed = outside(
        "curl",
        &[
            "-sS",
            "--cacert",
            ca,
            "--cert",
            cert,
            "--key",
            key,
            "--resolve",
            &resolve_gate,
            &gate_url,
        ],
    );
    assert!(allowed.status.success(), "{}", text(&allowed));
    assert!(
        text(&allowed).contains("DNS=edge.farm.test"),
        "{}",
        text(&allowed)
    );

    // openssl s_client without a certificate: the handshake ends in an alert, never HTTP.
    let gate_addr = format!("127.0.0.1:{gate_port}");
    let s_client = Command::new("sh")
        .args(["-c", &format!("printf 'GET / HTTP/1.1\\r\\nhost: x\\r\\n\\r\\n' | openssl s_client -connect {gate_addr} -servername backend.farm.test -CAfile {ca} -quiet 2>&1")])
        .output()
        .expect("openssl is required for interop tests");
    let answer = text(&s_client);
    assert!(answer.contains("alert certificate required"), "{answer}");
    assert!(!answer.contains("HTTP/1.1"), "{answer}");

    // A client that puts the server's IP address in SNI (wrk, scanners) is served; rustls's
    // warning about it, one line per connection, stays out of the log.
    let by_ip = Command::new("sh")
        .args(["-c", &format!("printf 'GET / HTTP/1.1\\r\\nhost: www.farm.test\\r\\nconnection: close\\r\\n\\r\\n' | openssl s_client -connect 127.0.0.1:{port} -servername 127.0.0.1 -CAfile {ca} -quiet 2>&1")])
        .output()
        .expect("openssl is required for interop tests");
    let answer = text(&by_ip);
    assert!(answer.contains("HTTP/1.1 200 OK"), "{answer}");
    process.signal("TERM");
    process.wait_for("stopped");
    let noise: Vec<&String> = process.seen.iter().filter(|l| l.contains("SNI")).collect();
    assert!(noise.is_empty(), "{noise:?}");
}
