//! `farmgate ca`: a private CA whose identities gates accept, that never overwrites a file.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use farmgate_testkit::client::TlsClient;
use farmgate_testkit::origin::{Origin, header_values, parse_echo};
use serde_json::Value;

use crate::cli::{Running, farmgate};

/// What a finished `farmgate` run left: exit code, stdout, stderr.
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Run `farmgate args` to completion.
pub fn run(args: &[&str]) -> Outcome {
    let out = farmgate(args).output().unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `farmgate ca init --dir DIR extra...`, which must succeed.
pub fn init(dir: &Path, extra: &[&str]) {
    let mut args = vec!["ca", "init", "--dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

/// `farmgate ca issue --dir DIR extra...`, which must succeed.
pub fn issue(dir: &Path, extra: &[&str]) -> Outcome {
    let mut args = vec!["ca", "issue", "--dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    out
}

/// `farmgate inspect --json FILE --trust CA`, parsed.
pub fn inspect_json(file: &Path, ca: &Path) -> Value {
    let out = run(&[
        "inspect",
        "--json",
        file.to_str().unwrap(),
        "--trust",
        ca.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

/// A certificate signed with the key of the CA in `dir` behind `farmgate ca`'s back (so none of
/// its checks ran), as `out/rogue.pem` and `out/rogue.key`; and the certificate's DER.
pub fn behind_the_cas_back(
    dir: &Path,
    spec: &farmgate_pki::CertSpec,
    out: &Path,
) -> (PathBuf, PathBuf, Vec<u8>) {
    let authority = farmgate_pki::Authority::from_pem(
        &std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
        &std::fs::read_to_string(dir.join("ca.key")).unwrap(),
    )
    .unwrap();
    let rogue = authority.issue(spec).unwrap();
    let (cert, key) = (out.join("rogue.pem"), out.join("rogue.key"));
    std::fs::write(&cert, &rogue.chain_pem).unwrap();
    std::fs::write(&key, &rogue.key_pem).unwrap();
    (cert, key, rogue.cert_der)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn ca_init_refuses_to_overwrite_an_existing_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("farm-ca");
    init(&dir, &["--name", "farm CA"]);
    let before = std::fs::read(dir.join("ca.key")).unwrap();

    let again = run(&["ca", "init", "--dir", dir.to_str().unwrap()]);
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("ca.pem already exists")
            && again.stderr.contains("never overwrites a CA"),
        "{}",
        again.stderr
    );
    assert_eq!(std::fs::read(dir.join("ca.key")).unwrap(), before);
}

#[test]
fn ca_and_issued_keys_are_readable_only_by_their_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new").join("farm-ca");
    init(&dir, &[]);
    assert_eq!(mode(&dir), 0o700, "a directory ca init creates");
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    assert_eq!(mode(&dir.join("ca.pem")) & 0o600, 0o600);
    issue(&dir, &["--client", "edge.farm.test"]);
    assert_eq!(mode(&dir.join("edge.farm.test.key")), 0o600);
}

#[test]
fn ca_issue_refuses_to_overwrite_certificates_or_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("farm-ca");
    init(&dir, &[]);
    let out = tmp.path().join("edge");
    let out = out.to_str().unwrap();
    issue(&dir, &["--client", "edge.farm.test", "--out", out]);
    let key = std::fs::read(format!("{out}.key")).unwrap();

    let again = run(&[
        "ca",
        "issue",
        "--dir",
        dir.to_str().unwrap(),
        "--server",
        "other.farm.test",
        "--out",
        out,
    ]);
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains(&format!("{out}.pem already exists")),
        "{}",
        again.stderr
    );
    assert_eq!(std::fs::read(format!("{out}.key")).unwrap(), key);
}

#[test]
fn ca_issue_refuses_names_outside_the_permitted_dns_suffixes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("farm-ca");
    init(
        &dir,
        &["--permit-dns", "farm.test", "--permit-dns", "farm.internal"],
    );
    issue(&dir, &["--client", "edge.farm.test"]);
    issue(&dir, &["--server", "backend.farm.internal"]);

    let outside = run(&[
        "ca",
        "issue",
        "--dir",
        dir.to_str().unwrap(),
        "--client",
        "edge.example.com",
    ]);
    assert_eq!(outside.code, 1);
    assert!(
        outside
            .stderr
            .contains("`edge.example.com` is outside this CA's name constraints")
            && outside.stderr.contains("farm.test, farm.internal"),
        "{}",
        outside.stderr
    );
    assert!(!dir.join("edge.example.com.pem").exists());
    assert!(!dir.join("edge.example.com.key").exists());
}

#[test]
fn ca_refuses_a_name_no_gate_could_allow_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("farm-ca");
    let bad_suffix = run(&[
        "ca",
        "init",
        "--dir",
        dir.to_str().unwrap(),
        "--permit-dns",
        "farm..test",
    ]);
    assert_eq!(bad_suffix.code, 1);
    assert!(
        bad_suffix
            .stderr
            .contains("`farm..test` is not a usable DNS name or IP address")
            && bad_suffix.stderr.contains("empty label"),
        "{}",
        bad_suffix.stderr
    );
    assert!(!dir.join("ca.pem").exists());

    init(&dir, &[]);
    let out = run(&[
        "ca",
        "issue",
        "--dir",
        dir.to_str().unwrap(),
        "--client",
        "not a name",
    ]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(
            "farmgate ca issue: client not a name: `not a name` is not a usable DNS name or IP \
             address: ' ' is not allowed"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        2,
        "only the CA's files"
    );
}

#[test]
fn client_server_and_spiffe_certificates_carry_the_right_purpose_and_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("farm-ca");
    init(&dir, &[]);
    let ca = dir.join("ca.pem");

    let client = issue(&dir, &["--client", "edge.farm.test"]);
    assert!(
        client
            .stdout
            .contains("allow it on a gate: allow = [\"dns:edge.farm.test\"]"),
        "{}",
        client.stdout
    );
    assert!(
        client.stdout.contains("\"spki-sha256:"),
        "{}",
        client.stdout
    );
    let report = inspect_json(&dir.join("edge.farm.test.pem"), &ca);
    let leaf = &report["certificates"][0];
    assert_eq!(strings(&leaf["eku"]), ["clientAuth"]);
    assert_eq!(strings(&leaf["sans"]), ["dns:edge.farm.test"]);
    assert_eq!(leaf["common_name"], "edge.farm.test");
    assert_eq!(leaf["lifetime_days"], 30);
    assert_eq!(
        report["certificates"].as_array().unwrap().len(),
        1,
        "no root"
    );

    issue(&dir, &["--server", "10.0.0.11", "--days", "7"]);
    let report = inspect_json(&dir.join("10.0.0.11.pem"), &ca);
    let leaf = &report["certificates"][0];
    assert_eq!(strings(&leaf["eku"]), ["serverAuth"]);
    assert_eq!(strings(&leaf["sans"]), ["ip:10.0.0.11"]);
    assert_eq!(leaf["lifetime_days"], 7);
    assert_eq!(report["verdicts"]["server"]["usable"], true);

    issue(&dir, &["--server", "backend.farm.test"]);
    let report = inspect_json(&dir.join("backend.farm.test.pem"), &ca);
    assert_eq!(report["certificates"][0]["lifetime_days"], 90);

    let spiffe = issue(&dir, &["--spiffe", "spiffe://farm.test/edge"]);
    assert!(
        spiffe
            .stdout
            .contains("allow = [\"uri:spiffe://farm.test/edge\"]"),
        "{}",
        spiffe.stdout
    );
    let report = inspect_json(&dir.join("farm.test_edge.pem"), &ca);
    let leaf = &report["certificates"][0];
    assert_eq!(strings(&leaf["eku"]), ["clientAuth"]);
    assert_eq!(strings(&leaf["sans"]), ["uri:spiffe://farm.test/edge"]);
    assert_eq!(leaf["common_name"], Value::Null);

    let full = std::fs::read_to_string(dir.join("farm.test_edge.fullchain.pem")).unwrap();
    assert!(full.ends_with(&std::fs::read_to_string(&ca).unwrap()));
}

/// An edge and a gate in one process, every certificate from `farmgate ca issue`.
fn farm_config(dir: &Path, origin: std::net::SocketAddr, allow: &str) -> PathBuf {
    let gate_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let text = format!(
        r#"
[[listener]]
name = "public"
listen = "127.0.0.1:0"
tls = {{ certificate = {site:?}, private_key = {site_key:?} }}
[[listener.route]]
upstream = "farm"

[upstream.farm]
servers = ["127.0.0.1:{gate_port}"]
tls = {{ server_name = "backend.farm.test", trust = [{ca:?}], client_certificate = {edge:?}, client_key = {edge_key:?} }}

[[listener]]
name = "gate"
listen = "127.0.0.1:{gate_port}"
tls = {{ certificate = {backend:?}, private_key = {backend_key:?}, client_auth = {{ trust = [{ca:?}], allow = [{allow:?}] }} }}
[[listener.route]]
upstream = "app"

[upstream.app]
servers = ["{origin}"]
"#,
        site = file("www.farm.test.pem"),
        site_key = file("www.farm.test.key"),
        ca = file("ca.pem"),
        edge = file("edge.farm.test.pem"),
        edge_key = file("edge.farm.test.key"),
        backend = file("backend.farm.test.pem"),
        backend_key = file("backend.farm.test.key"),
    );
    let path = dir.join(format!("farm-{gate_port}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn farmgate_issued_client_certificate_gets_through_a_farmgate_gate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("farm-ca");
    init(&dir, &["--permit-dns", "farm.test"]);
    issue(&dir, &["--server", "www.farm.test"]);
    issue(&dir, &["--server", "backend.farm.test"]);
    let edge = issue(&dir, &["--client", "edge.farm.test"]);
    let pin = edge
        .stdout
        .split('"')
        .find(|s| s.starts_with("spki-sha256:"))
        .unwrap()
        .to_owned();
    let origin = Origin::start("app").await;
    let browser = TlsClient::new(&dir.join("ca.pem"), "www.farm.test");

    for allow in ["dns:edge.farm.test", pin.as_str()] {
        let config = farm_config(&dir, origin.addr, allow);
        let mut process = Running::spawn(&["run", "-c", config.to_str().unwrap()]);
        let edge_addr = process.listening("public");
        let response = browser.get(edge_addr, "/through-the-gate").await;
        assert_eq!(response.status, 200, "allow {allow}: {}", response.body);
        let (_, headers) = parse_echo(&response.body);
        let xfcc = header_values(&headers, "x-forwarded-client-cert");
        assert!(
            xfcc.iter().any(|v| v.contains("DNS=edge.farm.test")),
            "allow {allow}: {xfcc:?}"
        );
    }

    // The same gate refuses the edge when its identity is not on the allow-list.
    let config = farm_config(&dir, origin.addr, "dns:other.farm.test");
    let mut process = Running::spawn(&["run", "-c", config.to_str().unwrap()]);
    let edge_addr = process.listening("public");
    let refused = browser.get(edge_addr, "/").await;
    assert_eq!(refused.status, 502, "{}", refused.body);
}
