//! The edge gets and renews its public certificate by itself, from a real ACME server (pebble on
//! loopback, validating for real through its own DNS server). Behind the `interop` feature; a
//! missing program fails the test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use farmgate_acme::{Acme, CertificateState, CertificateStatus, RenewalBasis};
use farmgate_config::Config;
use farmgate_proxy::{Generation, Server};
use farmgate_testkit::client::TlsClient;
use farmgate_testkit::origin::Origin;

use crate::check::check;
use crate::cli::Running;
use crate::pebble::{Pebble, free_port};

/// The site's public name; pebble's DNS server resolves every name to 127.0.0.1.
const SITE: &str = "www.farm.test";

/// Longest wait for an ACME state (a bound for a failing test, not a timing requirement).
const PATIENCE: Duration = Duration::from_secs(120);

/// The edge's ports, chosen before pebble starts since pebble validates on fixed ports.
struct Ports {
    tls: u16,
    http: u16,
}

impl Ports {
    fn free() -> Ports {
        Ports {
            tls: free_port(),
            http: free_port(),
        }
    }

    fn tls_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.tls))
    }
}

/// An edge in front of `origin` whose public listener takes its certificate for [`SITE`] from
/// the ACME server at `directory` with `challenge`, and a plain-HTTP listener redirecting to
/// HTTPS (and answering http-01).
fn edge_toml(
    directory: &str,
    https_ca: &Path,
    storage: &Path,
    ports: &Ports,
    challenge: &str,
    origin: SocketAddr,
) -> String {
    format!(
        r#"
[acme]
directory = "{directory}"
contact   = ["mailto:ops@example.com"]
storage   = {storage:?}
trust     = [{https_ca:?}]

[[listener]]
name   = "public"
listen = "127.0.0.1:{tls}"
tls    = {{ acme = {{ domains = ["{SITE}"], challenge = "{challenge}" }} }}
[[listener.route]]
upstream = "app"

[[listener]]
name           = "plain"
listen         = "127.0.0.1:{http}"
redirect_https = true

[upstream.app]
servers = ["{origin}"]
"#,
        tls = ports.tls,
        http = ports.http,
    )
}

fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Pebble validating on the ports of an edge in front of an origin, and the edge's configuration
/// (written, not started) answering `challenge`, with its storage beside it.
struct Setup {
    ports: Ports,
    pebble: Pebble,
    origin: Origin,
    config: PathBuf,
}

impl Setup {
    async fn new(challenge: &str) -> Setup {
        let ports = Ports::free();
        let pebble = Pebble::start(ports.http, ports.tls);
        Setup::around(ports, pebble, challenge, "").await
    }

    /// The edge for `pebble`, with `acme_extra` (lines, or nothing) in its `[acme]` table.
    async fn around(ports: Ports, pebble: Pebble, challenge: &str, acme_extra: &str) -> Setup {
        let origin = Origin::start("app").await;
        let text = edge_toml(
            &pebble.directory,
            &pebble.https_ca,
            &pebble.dir().join("acme"),
            &ports,
            challenge,
            origin.addr,
        )
        .replacen("[acme]\n", &format!("[acme]\n{acme_extra}\n"), 1);
        let config = write_config(pebble.dir(), "edge", &text);
        Setup {
            ports,
            pebble,
            origin,
            config,
        }
    }
}

/// Start an edge in this process from the configuration at `path`.
async fn start(path: &Path) -> Server {
    let text = std::fs::read_to_string(path).unwrap();
    let config = Config::parse(&text, path).unwrap_or_else(|e| panic!("{e}"));
    let generation = Generation::build(config).unwrap_or_else(|e| panic!("{e}"));
    Server::start(generation).await.unwrap()
}

/// Start an edge from `path` and wait for its first certificate; the edge, and the status then.
async fn start_issued(path: &Path) -> (Server, CertificateStatus) {
    let edge = start(path).await;
    let status = wait_until(&edge.acme(), "first issuance", |s| s.counters.issued == 1).await;
    (edge, status)
}

/// Wait until the (only) ACME certificate's status satisfies `done`; its status then.
async fn wait_until(
    acme: &Acme,
    what: &str,
    done: impl Fn(&CertificateStatus) -> bool,
) -> CertificateStatus {
    let mut changes = acme.changes();
    let waited = tokio::time::timeout(PATIENCE, async {
        loop {
            changes.borrow_and_update();
            if let Some(status) = acme.status().into_iter().find(&done) {
                return status;
            }
            changes.changed().await.unwrap();
        }
    })
    .await;
    waited.unwrap_or_else(|_| panic!("{what}: not within {PATIENCE:?}: {:#?}", acme.status()))
}

/// GET / through the edge, trusting only pebble's root: the certificate is pebble's, for SITE.
async fn get_through_edge(pebble: &Pebble, ports: &Ports) {
    let client = TlsClient::new(&pebble.root(), SITE);
    let response = client.get(ports.tls_addr(), "/").await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("x-origin"), "app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_certificate_over_tls_alpn_01_is_validated_by_pebble_and_served() {
    let Setup {
        ports,
        pebble,
        origin: _origin,
        config,
    } = Setup::new("tls-alpn-01").await;
    let (_edge, status) = start_issued(&config).await;
    assert_eq!(status.state, CertificateState::Valid);
    assert_eq!(status.counters.orders, 1);
    assert_eq!(status.listeners, ["public"]);
    assert!(status.last_error.is_none(), "{status:?}");
    get_through_edge(&pebble, &ports).await;

    // Stored for the next start: one private file with the key and the chain.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&status.file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_certificate_over_http_01_is_validated_by_pebble_and_served() {
    let Setup {
        ports,
        pebble,
        origin: _origin,
        config,
    } = Setup::new("http-01").await;
    let (_edge, status) = start_issued(&config).await;
    assert_eq!(status.state, CertificateState::Valid);
    get_through_edge(&pebble, &ports).await;

    // The plain listener still redirects everything else, unknown challenge tokens included.
    for path in ["/", "/.well-known/acme-challenge/unknown-token"] {
        let out = Command::new("curl")
            .args([
                "--silent",
                "--output",
                "/dev/null",
                "--write-out",
                "%{http_code} %{redirect_url}",
                "--resolve",
                &format!("{SITE}:{}:127.0.0.1", ports.http),
                &format!("http://{SITE}:{}{path}", ports.http),
            ])
            .output()
            .unwrap();
        let answer = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            answer.starts_with(&format!("301 https://{SITE}")),
            "{path}: {answer}"
        );
    }
}

#[test]
fn curl_with_pebbles_root_gets_the_issued_certificate_through_the_edge() {
    // The origin runs in this runtime while curl blocks the test's thread.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Setup {
        ports,
        pebble,
        origin: _origin,
        config,
    } = runtime.block_on(Setup::new("tls-alpn-01"));
    let mut edge = Running::spawn(&["run", "-c", config.to_str().unwrap()]);
    edge.wait_for("serving a temporary self-signed certificate");
    edge.wait_for("issued, valid until");

    let out = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--cacert",
            pebble.root().to_str().unwrap(),
            "--resolve",
            &format!("{SITE}:{}:127.0.0.1", ports.tls),
            "--dump-header",
            "-",
            &format!("https://{SITE}:{}/", ports.tls),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("x-origin: app"), "{text}");
    edge.signal("TERM");
    assert!(edge.wait().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reuses_the_stored_certificate_without_a_new_order() {
    let Setup {
        ports,
        pebble,
        origin: _origin,
        config,
    } = Setup::new("tls-alpn-01").await;
    let client = TlsClient::new(&pebble.root(), SITE);

    let (first, _) = start_issued(&config).await;
    let served = client.served_serial(ports.tls_addr()).await;
    first.shutdown(Duration::from_secs(5)).await;
    drop(first);

    let again = start(&config).await;
    // Pebble offers no renewal information: the stored certificate (five years) renews by its
    // lifetime, years from now. Nothing to order meanwhile.
    let status = wait_until(&again.acme(), "renewal planned", |s| {
        s.renewal_basis == Some(RenewalBasis::Lifetime)
    })
    .await;
    assert_eq!(status.state, CertificateState::Valid);
    assert_eq!(status.counters.orders, 0, "{status:?}");
    assert_eq!(client.served_serial(ports.tls_addr()).await, served);
    assert!(
        status.next_renewal.unwrap() > std::time::SystemTime::now() + Duration::from_secs(86_400)
    );
    get_through_edge(&pebble, &ports).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_renewal_swaps_the_certificate_without_a_failed_request() {
    let Setup {
        ports,
        pebble,
        origin: _origin,
        config,
    } = Setup::new("tls-alpn-01").await;
    let (edge, _) = start_issued(&config).await;
    let acme = edge.acme();
    let client = TlsClient::new(&pebble.root(), SITE);
    let addr = ports.tls_addr();
    let old_serial = client.served_serial(addr).await;
    let mut before = client.connect(addr).await;
    assert_eq!(before.get("/").await.status, 200);

    // Load: workers sending requests on fresh connections (each a new handshake), until each
    // has sent some after the renewal, and never more than a fixed number.
    const WORKERS: usize = 4;
    const MOST: usize = 5_000;
    const AFTER: usize = 20;
    let renewed = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (client, renewed, failures, sent) = (
                client.clone(),
                renewed.clone(),
                failures.clone(),
                sent.clone(),
            );
            tokio::spawn(async move {
                let mut after = 0;
                for _ in 0..MOST {
                    if renewed.load(Ordering::SeqCst) {
                        after += 1;
                        if after > AFTER {
                            break;
                        }
                    }
                    sent.fetch_add(1, Ordering::SeqCst);
                    let ok = match client.try_connect(addr).await {
                        Ok(mut connection) => {
                            connection.try_get("/").await.is_ok_and(|r| r.status == 200)
                        }
                        Err(_) => false,
                    };
                    if !ok {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();

    assert!(acme.renew_now(SITE));
    let status = wait_until(&acme, "forced renewal", |s| s.counters.renewed == 1).await;
    renewed.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }

    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "failed requests during renewal"
    );
    assert!(sent.load(Ordering::SeqCst) > WORKERS * AFTER);
    assert_eq!(status.state, CertificateState::Valid);
    assert_eq!(status.counters.orders, 2);
    let new_serial = client.served_serial(addr).await;
    assert_ne!(
        new_serial, old_serial,
        "new handshakes get the new certificate"
    );
    assert_eq!(
        before.get("/").await.status,
        200,
        "a connection from before the renewal goes on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_server_down_at_start_up_edge_serves_temporary_certificate_and_retries() {
    let ports = Ports::free();
    let acme_port = free_port();
    let origin = Origin::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    // Pebble's HTTPS certificate comes from the test PKI of the pebble started later; the edge
    // must trust it from the start, so start with a placeholder path and fill it in then.
    let https_ca = dir.path().join("pebble-https-ca.pem");
    std::fs::write(
        &https_ca,
        farmgate_testkit::pki::TestPki::new().root().cert_pem(),
    )
    .unwrap();
    let text = edge_toml(
        &format!("https://127.0.0.1:{acme_port}/dir"),
        &https_ca,
        &dir.path().join("acme"),
        &ports,
        "tls-alpn-01",
        origin.addr,
    );
    let edge = start(&write_config(dir.path(), "edge", &text)).await;
    let acme = edge.acme();

    let status = wait_until(&acme, "a failed first attempt", |s| {
        s.consecutive_failures >= 1
    })
    .await;
    assert_eq!(status.state, CertificateState::Issuing);
    assert_eq!(status.renewal_basis, Some(RenewalBasis::Retry));
    assert!(status.last_error.is_some());
    assert!(status.counters.issue_failures >= 1);
    // The edge serves, with its temporary certificate.
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", ports.tls),
            "-servername",
            SITE,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("openssl is required for interop tests ({e})"));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("farmgate temporary certificate"), "{shown}");

    // The ACME server comes up; the retry gets the certificate.
    let pebble = Pebble::start_on(acme_port, ports.http, ports.tls);
    std::fs::copy(&pebble.https_ca, &https_ca).unwrap();
    let status = wait_until(&acme, "issuance after the server came up", |s| {
        s.counters.issued == 1
    })
    .await;
    assert_eq!(status.state, CertificateState::Valid);
    assert!(status.last_error.is_none());
    get_through_edge(&pebble, &ports).await;
}

#[test]
fn check_reads_the_acme_directory_and_refuses_a_url_that_is_not_one() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Setup { pebble, config, .. } = runtime.block_on(Setup::new("tls-alpn-01"));
    let good = std::fs::read_to_string(&config).unwrap();
    let (code, stdout, stderr) = check(&config);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("ACME directory {}: answers", pebble.directory)),
        "{stdout}"
    );
    assert!(stdout.contains("no certificate yet"), "{stdout}");

    let wrong = good.replace(
        &pebble.directory,
        &format!("https://127.0.0.1:{}/directory", pebble.port),
    );
    let (code, _, stderr) = check(&write_config(pebble.dir(), "wrong", &wrong));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("acme.directory"), "{stderr}");
    assert!(
        stderr.contains("answers, but not with an ACME directory"),
        "{stderr}"
    );
}

/// Pebble requiring External Account Binding, and an edge configuration for it with `eab`
/// (an `eab = {...}` line, or nothing) in its `[acme]` table.
async fn eab_setup(eab: impl Fn(&Path) -> String) -> Setup {
    let ports = Ports::free();
    // A 32-byte key, base64url without padding, as ZeroSSL and Google Trust Services print it.
    let hmac = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let pebble = Pebble::start_requiring_eab(ports.http, ports.tls, "farm-kid-1", hmac);
    let key = pebble.dir().join("eab.key");
    std::fs::write(&key, format!("{hmac}\n")).unwrap();
    let extra = eab(&key);
    Setup::around(ports, pebble, "tls-alpn-01", &extra).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_bound_by_eab_registers_with_a_ca_that_requires_it() {
    let Setup {
        ports,
        pebble,
        origin: _origin,
        config,
    } = eab_setup(|key| format!("eab = {{ kid = \"farm-kid-1\", hmac_key_file = {key:?} }}")).await;
    let (_edge, status) = start_issued(&config).await;
    assert_eq!(status.state, CertificateState::Valid, "{status:?}");
    get_through_edge(&pebble, &ports).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_eab_a_ca_that_requires_it_refuses_the_account_and_says_so() {
    let Setup {
        origin: _origin,
        config,
        pebble: _pebble,
        ..
    } = eab_setup(|_| String::new()).await;
    let edge = start(&config).await;
    let status = wait_until(&edge.acme(), "a refused registration", |s| {
        s.last_error.is_some()
    })
    .await;
    let error = status.last_error.unwrap_or_default();
    assert!(
        error.contains("cannot register an account with") && error.contains("xternal"),
        "{error}"
    );
}

#[test]
fn check_refuses_an_eab_key_file_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("eab.key");
    std::fs::write(&key, "not a key!\n").unwrap();
    let text = format!(
        r#"
[acme]
directory = "https://127.0.0.1:{port}/dir"
storage = {storage:?}
eab = {{ kid = "kid", hmac_key_file = {key:?} }}

[[listener]]
name = "public"
listen = "127.0.0.1:0"
tls = {{ acme = {{ domains = ["{SITE}"] }} }}
[[listener.route]]
upstream = "app"
[upstream.app]
servers = ["127.0.0.1:9"]
"#,
        port = free_port(),
        storage = dir.path().join("acme"),
    );
    let path = write_config(dir.path(), "edge", &text);
    let (code, stdout, stderr) = check(&path);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("edge.toml:5: acme.eab.hmac_key_file:")
            && stderr.contains("does not hold an External Account Binding key"),
        "{stderr}"
    );
}
