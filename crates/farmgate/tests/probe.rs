//! `farmgate probe` against gates started in-process: what it reports, how it explains a
//! refusal, and its exit codes (0 accepted, 1 refused or failed, 2 usage).

use std::net::SocketAddr;
use std::process::Output;

use farmgate_config::Config;
use farmgate_pki::{CertSpec, Usage};
use farmgate_proxy::{Generation, Server};
use farmgate_testkit::origin::Origin;
use farmgate_testkit::pki::{CertFiles, TestPki};

use crate::cli::farmgate;

const BACKEND: &str = "backend.farm.test";
const EDGE: &str = "edge.farm.test";

/// A gate (client certificates required, the edge allowed) or, with `client_auth` false, a
/// plain TLS listener, in front of an origin.
struct Target {
    pki: TestPki,
    addr: SocketAddr,
    _server: Server,
    _origin: Origin,
}

impl Target {
    async fn start(client_auth: bool) -> Target {
        let pki = TestPki::new();
        let origin = Origin::start("app").await;
        let backend = pki.server(BACKEND);
        let gate = if client_auth {
            format!(
                "[listener.tls.client_auth]\ntrust = [{:?}]\nallow = [\"dns:{EDGE}\"]\n",
                pki.ca_file()
            )
        } else {
            String::new()
        };
        let text = format!(
            r#"
[[listener]]
name = "target"
listen = "127.0.0.1:0"
[listener.tls]
certificate = {cert:?}
private_key = {key:?}
{gate}
[[listener.route]]
upstream = "app"
[upstream.app]
servers = ["{origin}"]
"#,
            cert = backend.cert,
            key = backend.key,
            origin = origin.addr,
        );
        let path = pki.dir().join("target.toml");
        let config = Config::parse(&text, &path).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let server = Server::start(Generation::build(config).unwrap())
            .await
            .unwrap();
        let addr = server.local_addr("target").unwrap();
        Target {
            pki,
            addr,
            _server: server,
            _origin: origin,
        }
    }

    /// `farmgate probe ADDR --server-name NAME --trust CA args...`, run off the runtime's
    /// threads (the gate answers on them meanwhile).
    async fn probe(&self, server_name: &str, args: &[&str]) -> Output {
        let ca = self.pki.ca_file();
        let mut all = vec![
            "probe".to_owned(),
            self.addr.to_string(),
            "--server-name".to_owned(),
            server_name.to_owned(),
            "--trust".to_owned(),
            ca.display().to_string(),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        run(all).await
    }

    /// The probe presenting `cert` for the right server name.
    async fn probe_with(&self, cert: &CertFiles) -> Output {
        let (cert, key) = (cert.cert.to_str().unwrap(), cert.key.to_str().unwrap());
        self.probe(BACKEND, &["--cert", cert, "--key", key]).await
    }
}

async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        farmgate(&args).output().unwrap()
    })
    .await
    .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn text(out: &Output) -> String {
    format!("{}{}", stdout(out), String::from_utf8_lossy(&out.stderr))
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", text(out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_with_allowed_client_cert_is_accepted() {
    let t = Target::start(true).await;
    let edge = t.pki.client(EDGE);
    let out = t.probe_with(&edge).await;
    assert_exit(&out, 0);
    let report = stdout(&out);
    for expected in [
        "server certificate chain, as sent:",
        "1. subject  CN=backend.farm.test",
        "names    dns:backend.farm.test, ip:127.0.0.1",
        "issuer   CN=farm test intermediate",
        "2. subject  CN=farm test intermediate",
        "days left)",
        "server certificate: trusted, valid for \"backend.farm.test\"",
        "client certificate: requested; CA names advertised: CN=farm test root CA",
        "outcome: ACCEPTED: the handshake completed and the server accepted our client certificate",
    ] {
        assert!(report.contains(expected), "no {expected:?} in:\n{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_without_client_cert_is_refused_and_says_one_is_required() {
    let t = Target::start(true).await;
    let out = t.probe(BACKEND, &[]).await;
    assert_exit(&out, 1);
    let report = stdout(&out);
    assert!(report.contains("none sent (no --cert given)"), "{report}");
    assert!(
        report.contains(
            "outcome: REFUSED: the server requires a client certificate and we sent none (TLS alert CertificateRequired)"
        ),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_with_server_auth_only_cert_is_refused_for_its_purpose() {
    let t = Target::start(true).await;
    let spec = CertSpec::client(EDGE).usages(&[Usage::ServerAuth]);
    let cert = t.pki.issue("server-auth-only", &spec);
    let out = t.probe_with(&cert).await;
    assert_exit(&out, 1);
    let report = stdout(&out);
    assert!(
        report.contains(
            "REFUSED: the server rejected the certificate's purpose: it lacks clientAuth"
        ),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_with_another_identity_is_refused_by_the_allow_list() {
    let t = Target::start(true).await;
    let intruder = t.pki.client("intruder.farm.test");
    let out = t.probe_with(&intruder).await;
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("our identity is not on its allow-list (TLS alert AccessDenied)"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_with_wrong_server_name_explains_the_mismatch() {
    let t = Target::start(true).await;
    let out = t.probe("wrong.farm.test", &[]).await;
    assert_exit(&out, 1);
    let report = stdout(&out);
    // The chain is reported even though we refused it.
    assert!(
        report.contains("1. subject  CN=backend.farm.test"),
        "{report}"
    );
    assert!(
        report.contains("FAILED: we refused the server's certificate: it is not valid for the name \"wrong.farm.test\""),
        "{report}"
    );
    assert!(
        report.contains("it is valid for dns:backend.farm.test, ip:127.0.0.1"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_trusts_the_public_roots_by_default_and_explains_an_unknown_ca() {
    let t = Target::start(true).await;
    let out = run(vec![
        "probe".into(),
        t.addr.to_string(),
        "--server-name".into(),
        BACKEND.into(),
    ])
    .await;
    assert_exit(&out, 1);
    let report = stdout(&out);
    assert!(report.contains("trusting mozilla"), "{report}");
    assert!(
        report.contains("it does not chain to a CA in trust; trusted: mozilla (a private CA needs --trust CA.pem)"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_of_a_server_without_client_auth_is_accepted() {
    let t = Target::start(false).await;
    let out = t.probe(BACKEND, &[]).await;
    assert_exit(&out, 0);
    let report = stdout(&out);
    assert!(
        report.contains("client certificate: not requested"),
        "{report}"
    );
    assert!(
        report.contains("outcome: ACCEPTED: the handshake completed"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_of_a_closed_port_fails() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(vec![
        "probe".into(),
        format!("127.0.0.1:{port}"),
        "--server-name".into(),
        BACKEND.into(),
    ])
    .await;
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("FAILED: cannot connect to 127.0.0.1:"),
        "{}",
        text(&out)
    );
}

#[test]
fn probe_usage_errors_exit_2() {
    for args in [
        &["probe", "127.0.0.1:1"][..],
        &[
            "probe",
            "127.0.0.1:1",
            "--server-name",
            "a.test",
            "--cert",
            "c.pem",
        ],
        &["probe", "127.0.0.1:1", "--server-name", "not a name!"],
    ] {
        let out = farmgate(args).output().unwrap();
        assert_exit(&out, 2);
    }
}

#[test]
fn probe_help_names_the_default_trust() {
    let out = farmgate(&["probe", "--help"]).output().unwrap();
    assert_exit(&out, 0);
    let help = stdout(&out);
    assert!(help.contains("Default: mozilla"), "{help}");
    assert!(help.contains("--server-name"), "{help}");
}
