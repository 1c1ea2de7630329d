//! A farm CA's whole life with `farmgate ca`: renewal that keeps the pin, revocation published
//! as a CRL a farmgate gate honours, IP name constraints a gate enforces, and an issuing
//! intermediate under an offline root. Gates run in-process; `farmgate probe` presents the
//! certificates, as an operator would check them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;

use farmgate_config::Config;
use farmgate_pki::CertSpec;
use farmgate_proxy::{Generation, Server};
use farmgate_testkit::origin::Origin;

use crate::ca::{Outcome, behind_the_cas_back, init, issue, run};
use crate::cli::farmgate;

const BACKEND: &str = "backend.farm.test";

/// A gate in front of an origin, with the CA directory's `backend.farm.test` certificate,
/// trusting `trust`, allowing `allow`, with `crl` if given.
struct Gate {
    addr: SocketAddr,
    _server: Server,
    _origin: Origin,
}

impl Gate {
    async fn start(dir: &Path, trust: &Path, allow: &str, crl: Option<&Path>) -> Gate {
        let origin = Origin::start("app").await;
        let crl = crl.map_or(String::new(), |c| format!("crl = [{:?}]\n", c));
        let text = format!(
            r#"
[[listener]]
name = "gate"
listen = "127.0.0.1:0"
[listener.tls]
certificate = {cert:?}
private_key = {key:?}
[listener.tls.client_auth]
trust = [{trust:?}]
allow = [{allow:?}]
{crl}
[[listener.route]]
upstream = "app"
[upstream.app]
servers = ["{origin}"]
"#,
            cert = dir.join(format!("{BACKEND}.pem")),
            key = dir.join(format!("{BACKEND}.key")),
            origin = origin.addr,
        );
        let path = dir.join("gate.toml");
        let config = Config::parse(&text, &path).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let server = Server::start(Generation::build(config).unwrap())
            .await
            .unwrap();
        let addr = server.local_addr("gate").unwrap();
        Gate {
            addr,
            _server: server,
            _origin: origin,
        }
    }

    /// `farmgate probe` presenting `DIR/STEM.pem` and `DIR/STEM.key`.
    async fn probe_issued(&self, trust: &Path, dir: &Path, stem: &str) -> Output {
        let (cert, key) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        self.probe(trust, &cert, &key).await
    }

    /// `farmgate probe` presenting `cert` and `key`, trusting `trust` for the gate's own
    /// certificate; run off the runtime's threads (the gate answers on them meanwhile).
    async fn probe(&self, trust: &Path, cert: &Path, key: &Path) -> Output {
        let args: Vec<String> = [
            "probe",
            &self.addr.to_string(),
            "--server-name",
            BACKEND,
            "--trust",
            trust.to_str().unwrap(),
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            farmgate(&args).output().unwrap()
        })
        .await
        .unwrap()
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
fn accepted(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    assert!(text(out).contains("outcome: ACCEPTED"), "{}", text(out));
}

#[track_caller]
fn refused(out: &Output, because: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    assert!(
        text(out).contains(because),
        "no {because:?} in:\n{}",
        text(out)
    );
}

fn pin_in(stdout: &str) -> String {
    stdout
        .split('"')
        .find(|s| s.starts_with("spki-sha256:"))
        .unwrap()
        .to_owned()
}

fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// `farmgate ca VERB --dir DIR args...`.
fn farmgate_ca(verb: &str, dir: &Path, args: &[&str]) -> Outcome {
    let mut all = vec!["ca", verb, "--dir", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    run(&all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_certificate_is_refused_by_a_gate_loading_the_cas_crl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("farm-ca");
    init(&dir, &["--permit-dns", "farm.test"]);
    issue(&dir, &["--server", BACKEND]);
    issue(&dir, &["--client", "edge.farm.test"]);
    issue(&dir, &["--client", "edge2.farm.test"]);
    let ca = path(&dir, "ca.pem");

    let revoked = farmgate_ca(
        "revoke",
        &dir,
        &[
            "--cert",
            path(&dir, "edge.farm.test.pem").to_str().unwrap(),
            "--reason",
            "key-compromise",
        ],
    );
    assert_eq!(revoked.code, 0, "{}", revoked.stderr);
    assert!(
        revoked.stdout.contains("revoked certificate ")
            && revoked
                .stdout
                .contains("CN=edge.farm.test [dns:edge.farm.test] (key-compromise)"),
        "{}",
        revoked.stdout
    );
    let index = std::fs::read_to_string(path(&dir, "index.json")).unwrap();
    assert!(index.contains("\"reason\": \"key-compromise\""), "{index}");

    let crl = tmp.path().join("published").join("farm-ca.crl");
    let published = farmgate_ca(
        "crl",
        &dir,
        &["--out", crl.to_str().unwrap(), "--valid", "2d"],
    );
    assert_eq!(published.code, 0, "{}", published.stderr);
    assert!(
        published
            .stdout
            .contains("wrote CRL number 1 of CN=farmgate farm CA")
            && published.stdout.contains("1 revoked certificate"),
        "{}",
        published.stdout
    );

    let gate = Gate::start(&dir, &ca, "dns:edge.farm.test", Some(&crl)).await;
    let out = gate.probe_issued(&ca, &dir, "edge.farm.test").await;
    refused(&out, "certificate revoked");
    drop(gate);
    let gate = Gate::start(&dir, &ca, "dns:edge2.farm.test", Some(&crl)).await;
    let out = gate.probe_issued(&ca, &dir, "edge2.farm.test").await;
    accepted(&out);

    // Revoking twice is refused; an unknown serial is refused and says what to do.
    let again = farmgate_ca(
        "revoke",
        &dir,
        &["--cert", path(&dir, "edge.farm.test.pem").to_str().unwrap()],
    );
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("was already revoked at"),
        "{}",
        again.stderr
    );
    let unknown = farmgate_ca("revoke", &dir, &["--serial", "0a:0b"]);
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("no certificate with serial 0a0b")
            && unknown.stderr.contains("--cert FILE"),
        "{}",
        unknown.stderr
    );
    let bad_reason = farmgate_ca("revoke", &dir, &["--serial", "0a", "--reason", "bored"]);
    assert_eq!(bad_reason.code, 2, "a usage error: {}", bad_reason.stderr);
    assert!(
        bad_reason.stderr.contains("key-compromise"),
        "{}",
        bad_reason.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_keeps_the_key_so_a_pinned_gate_still_lets_it_in() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("farm-ca");
    init(&dir, &[]);
    issue(&dir, &["--server", BACKEND]);
    let first = issue(&dir, &["--client", "edge.farm.test", "--days", "2"]);
    let pin = pin_in(&first.stdout);
    let cert = path(&dir, "edge.farm.test.pem");
    let key = path(&dir, "edge.farm.test.key");
    let before = std::fs::read_to_string(&cert).unwrap();
    let key_before = std::fs::read(&key).unwrap();

    let renewed = issue(&dir, &["--renew", cert.to_str().unwrap()]);
    assert!(
        renewed
            .stdout
            .contains("renewed a client certificate for edge.farm.test (clientAuth), valid 2 days"),
        "{}",
        renewed.stdout
    );
    assert!(
        renewed.stdout.contains("no key file written"),
        "{}",
        renewed.stdout
    );
    assert_eq!(pin_in(&renewed.stdout), pin, "the pin survives");
    assert_ne!(std::fs::read_to_string(&cert).unwrap(), before);
    assert_eq!(std::fs::read(&key).unwrap(), key_before);

    // Given the full-chain file of the pair, the renewal renews both files in place.
    let full_chain = path(&dir, "edge.farm.test.fullchain.pem");
    let (cert_before, full_before) = (
        std::fs::read_to_string(&cert).unwrap(),
        std::fs::read_to_string(&full_chain).unwrap(),
    );
    issue(&dir, &["--renew", full_chain.to_str().unwrap()]);
    let (cert_after, full_after) = (
        std::fs::read_to_string(&cert).unwrap(),
        std::fs::read_to_string(&full_chain).unwrap(),
    );
    assert_ne!(cert_after, cert_before);
    assert_ne!(full_after, full_before);
    assert!(
        full_after.starts_with(&cert_after) && full_after.len() > cert_after.len(),
        "the full chain is the certificate followed by the root"
    );
    assert!(!path(&dir, "edge.farm.test.fullchain.fullchain.pem").exists());

    let ca = path(&dir, "ca.pem");
    let gate = Gate::start(&dir, &ca, &pin, None).await;
    accepted(&gate.probe(&ca, &cert, &key).await);

    // A key generated where it lives: only its public half reaches the CA.
    let elsewhere = farmgate_pki::KeyPair::generate().unwrap();
    let public = tmp.path().join("edge3.pub.pem");
    std::fs::write(&public, elsewhere.to_pem()).unwrap();
    let certified = issue(
        &dir,
        &[
            "--client",
            "edge3.farm.test",
            "--key",
            public.to_str().unwrap(),
        ],
    );
    assert!(
        certified.stdout.contains("no key file written"),
        "{}",
        certified.stdout
    );
    assert!(!path(&dir, "edge3.farm.test.key").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_refuses_an_address_outside_the_cas_permitted_ip_range() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("farm-ca");
    init(
        &dir,
        &["--permit-dns", "farm.test", "--permit-ip", "10.0.0.0/8"],
    );
    issue(&dir, &["--server", BACKEND]);
    let inside = issue(&dir, &["--client", "10.1.2.3"]);

    let outside = farmgate_ca("issue", &dir, &["--client", "192.0.2.7"]);
    assert_eq!(outside.code, 1);
    assert!(
        outside
            .stderr
            .contains("`192.0.2.7` is outside this CA's name constraints (it may only certify names under 10.0.0.0/8)"),
        "{}",
        outside.stderr
    );

    // The same CA's key, used behind `farmgate ca`'s back: the constraint in the CA
    // certificate still keeps the certificate out.
    let spec = CertSpec::client("192.0.2.7").no_common_name();
    let (rogue_cert, rogue_key, rogue_der) = behind_the_cas_back(&dir, &spec, tmp.path());
    let rogue_pin = farmgate_identity::PeerIdentity::from_der(&rogue_der)
        .unwrap()
        .spki_pin();
    let rogue_pin = format!("spki-sha256:{rogue_pin}");

    let ca = path(&dir, "ca.pem");
    let gate = Gate::start(&dir, &ca, &rogue_pin, None).await;
    let out = gate.probe(&ca, &rogue_cert, &rogue_key).await;
    // webpki's NameConstraintViolation: the `invalid` refusal, alert certificate_unknown.
    refused(
        &out,
        "certificate unacceptable (TLS alert CertificateUnknown)",
    );
    drop(gate);

    let gate = Gate::start(&dir, &ca, &pin_in(&inside.stdout), None).await;
    let out = gate.probe_issued(&ca, &dir, "10.1.2.3").await;
    accepted(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuing_intermediate_under_an_offline_root_serves_a_gate_that_trusts_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let dir = tmp.path().join("issuing");
    init(&root, &["--name", "farm root CA"]);
    let made = farmgate_ca(
        "init",
        &dir,
        &[
            "--name",
            "farm issuing CA",
            "--intermediate",
            "--root-dir",
            root.to_str().unwrap(),
        ],
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    let root_pem = path(&dir, "root.pem");
    for expected in [
        "created an issuing intermediate CA in",
        &format!("trust = [{:?}]", root_pem.display().to_string()),
        "no extended key usage on the intermediate",
    ] {
        assert!(
            made.stdout.contains(expected),
            "no {expected:?} in {}",
            made.stdout
        );
    }
    let root_index = std::fs::read_to_string(path(&root, "index.json")).unwrap();
    assert!(
        root_index.contains("\"kind\": \"intermediate\""),
        "{root_index}"
    );

    issue(&dir, &["--server", BACKEND]);
    issue(&dir, &["--client", "edge.farm.test"]);
    let gate = Gate::start(&dir, &root_pem, "dns:edge.farm.test", None).await;
    accepted(&gate.probe_issued(&root_pem, &dir, "edge.farm.test").await);

    // Its CRL carries the intermediate, so a gate trusting only the root loads it.
    farmgate_ca(
        "revoke",
        &dir,
        &["--cert", path(&dir, "edge.farm.test.pem").to_str().unwrap()],
    );
    let crl = tmp.path().join("issuing.crl");
    let published = farmgate_ca("crl", &dir, &["--out", crl.to_str().unwrap()]);
    assert!(
        published
            .stdout
            .contains("followed by the intermediate's certificate"),
        "{}",
        published.stdout
    );
    drop(gate);
    let gate = Gate::start(&dir, &root_pem, "dns:edge.farm.test", Some(&crl)).await;
    refused(
        &gate.probe_issued(&root_pem, &dir, "edge.farm.test").await,
        "certificate revoked",
    );

    // The intermediate needs its root; a second intermediate never overwrites the first.
    let again = farmgate_ca(
        "init",
        &dir,
        &["--intermediate", "--root-dir", root.to_str().unwrap()],
    );
    assert_eq!(again.code, 1);
    let no_root = farmgate_ca("init", &tmp.path().join("x"), &["--intermediate"]);
    assert_eq!(no_root.code, 2, "{}", no_root.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_refuses_a_spiffe_id_outside_the_cas_permitted_trust_domain() {
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
    issue(&dir, &["--server", BACKEND]);
    issue(&dir, &["--spiffe", "spiffe://farm.test/edge"]);
    let outside = farmgate_ca("issue", &dir, &["--spiffe", "spiffe://evil.test/edge"]);
    assert_eq!(outside.code, 1);
    assert!(
        outside
            .stderr
            .contains("`spiffe://evil.test/edge` is outside this CA's name constraints (it may only certify names under uri host farm.test)"),
        "{}",
        outside.stderr
    );

    let ca = path(&dir, "ca.pem");
    // Inside the constraint: the gate (whose webpki refuses any URI name under a URI
    // constraint on its own) lets it in.
    let gate = Gate::start(&dir, &ca, "uri:spiffe://farm.test/edge", None).await;
    accepted(&gate.probe_issued(&ca, &dir, "farm.test_edge").await);
    drop(gate);

    // The CA's key used behind `farmgate ca`'s back: the constraint in the CA certificate
    // keeps the certificate out.
    let spec = CertSpec::spiffe("spiffe://evil.test/edge");
    let (rogue_cert, rogue_key, _) = behind_the_cas_back(&dir, &spec, tmp.path());
    let gate = Gate::start(&dir, &ca, "uri:spiffe://evil.test/edge", None).await;
    refused(
        &gate.probe(&ca, &rogue_cert, &rogue_key).await,
        "certificate unacceptable (TLS alert CertificateUnknown)",
    );
}

#[test]
fn lifetimes_past_what_a_certificate_can_say_are_errors_not_crashes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("farm-ca");
    init(&dir, &[]);
    let days = farmgate_ca(
        "issue",
        &dir,
        &["--client", "edge.farm.test", "--days", "3000000"],
    );
    assert_eq!(days.code, 1, "{}{}", days.stdout, days.stderr);
    assert!(
        days.stderr.contains("would outlive its CA"),
        "{}",
        days.stderr
    );
    let out = tmp.path().join("farm.crl");
    let valid = farmgate_ca(
        "crl",
        &dir,
        &["--out", out.to_str().unwrap(), "--valid", "3000000d"],
    );
    assert_eq!(valid.code, 1, "{}{}", valid.stdout, valid.stderr);
    assert!(
        valid.stderr.contains("a CRL cannot be valid that long"),
        "{}",
        valid.stderr
    );
    assert!(!out.exists());
}
