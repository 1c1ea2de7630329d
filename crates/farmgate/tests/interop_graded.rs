//! An edge's TLS as outside graders see it: Debian's `testssl.sh` finds nothing of severity
//! MEDIUM or higher, and `sslyze --mozilla_config=intermediate` finds the listener compliant.
//! The site certificate comes from `farmgate ca` with a CRL distribution point (graders look
//! for revocation information) and the route sets the security headers graders look for.
//! Behind the `interop` feature; a missing program fails the test. Each grader run is bounded
//! by `timeout` (testssl.sh takes about a minute and a half on two cores, sslyze seconds).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;

use farmgate_config::Config;
use farmgate_proxy::{Generation, Server};
use farmgate_testkit::origin::Origin;
use serde_json::Value;

use crate::ca::{init, issue};
use crate::outside::{outside, text};

const SITE: &str = "www.farm.test";

/// The headers testssl.sh's "security headers" check looks for, set by the route.
const HEADERS: &str = r#"response_headers = { set = { "Strict-Transport-Security" = "max-age=63072000", "X-Content-Type-Options" = "nosniff", "X-Frame-Options" = "DENY", "Content-Security-Policy" = "default-src 'self'", "Referrer-Policy" = "no-referrer" } }"#;

/// Longest a grader may run, in seconds, before the test fails (a bound, not a delay).
const GRADER_SECONDS: &str = "600";

/// An edge serving `SITE` from a `farmgate ca` certificate in front of an origin; the CA file.
struct Edge {
    addr: SocketAddr,
    ca: std::path::PathBuf,
    _server: Server,
    _origin: Origin,
    dir: tempfile::TempDir,
}

impl Edge {
    async fn start() -> Edge {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("farm-ca");
        init(&ca_dir, &["--permit-dns", "farm.test"]);
        issue(
            &ca_dir,
            &[
                "--server",
                SITE,
                "--crl-url",
                "http://pki.farm.test/farm-ca.crl",
            ],
        );
        let origin = Origin::start("app").await;
        let text = format!(
            r#"
[[listener]]
name = "public"
listen = "127.0.0.1:0"
tls = {{ certificate = {cert:?}, private_key = {key:?} }}
[[listener.route]]
upstream = "app"
{HEADERS}
[upstream.app]
servers = ["{origin}"]
"#,
            cert = ca_dir.join(format!("{SITE}.pem")),
            key = ca_dir.join(format!("{SITE}.key")),
            origin = origin.addr,
        );
        let path = dir.path().join("edge.toml");
        let config = Config::parse(&text, &path).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let server = Server::start(Generation::build(config).unwrap())
            .await
            .unwrap();
        Edge {
            addr: server.local_addr("public").unwrap(),
            ca: ca_dir.join("ca.pem"),
            _server: server,
            _origin: origin,
            dir,
        }
    }
}

/// `timeout GRADER_SECONDS program args...`, off the runtime's threads (the edge answers on
/// them meanwhile).
async fn grade(program: &'static str, args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        // `timeout` runs the grader; a missing grader is exit 127 with its name in stderr.
        let mut all = vec![GRADER_SECONDS.to_owned(), program.to_owned()];
        all.extend(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = outside("timeout", &all);
        assert_ne!(
            out.status.code(),
            Some(127),
            "{program} is required for interop tests; .ci/run installs it: {}",
            text(&out)
        );
        assert_ne!(
            out.status.code(),
            Some(124),
            "{program} ran longer than {GRADER_SECONDS}s: {}",
            text(&out)
        );
        out
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testssl_finds_nothing_of_medium_severity_or_higher_on_an_edge() {
    let edge = Edge::start().await;
    let json = edge.dir.path().join("testssl.json");
    let out = grade(
        "testssl",
        vec![
            "--quiet".into(),
            "--color".into(),
            "0".into(),
            "--warnings".into(),
            "off".into(),
            "--add-ca".into(),
            edge.ca.display().to_string(),
            "--ip".into(),
            "127.0.0.1".into(),
            "--jsonfile".into(),
            json.display().to_string(),
            format!("https://{SITE}:{}/", edge.addr.port()),
        ],
    )
    .await;
    let findings = findings(&json, &out);
    let serious: Vec<String> = findings
        .iter()
        .filter(|f| {
            matches!(
                f["severity"].as_str(),
                Some("MEDIUM" | "HIGH" | "CRITICAL" | "FATAL")
            )
        })
        .map(|f| format!("{} {}: {}", f["severity"], f["id"], f["finding"]))
        .collect();
    assert!(
        serious.is_empty(),
        "testssl.sh found:\n{}",
        serious.join("\n")
    );
    // It did grade the edge: the chain, the CRL distribution point and HSTS were seen.
    let finding = |id: &str| {
        findings
            .iter()
            .find(|f| f["id"] == id)
            .map(|f| f["finding"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_else(|| panic!("no {id} in testssl.sh's findings: {}", text(&out)))
    };
    assert!(
        finding("cert_chain_of_trust").contains("passed"),
        "{}",
        text(&out)
    );
    assert_eq!(
        finding("cert_crlDistributionPoints"),
        "http://pki.farm.test/farm-ca.crl"
    );
    assert!(finding("HSTS_time").contains("63072000"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslyze_finds_an_edge_compliant_with_mozillas_intermediate_configuration() {
    let edge = Edge::start().await;
    let out = grade(
        "sslyze",
        vec![
            "--mozilla_config=intermediate".into(),
            "--certinfo_ca_file".into(),
            edge.ca.display().to_string(),
            format!("{SITE}:{}{{127.0.0.1}}", edge.addr.port()),
        ],
    )
    .await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("{SITE}:{}: OK - Compliant.", edge.addr.port())),
        "{said}"
    );
}

/// testssl.sh's JSON findings (all severities).
fn findings(json: &Path, out: &Output) -> Vec<Value> {
    let body = std::fs::read_to_string(json).unwrap_or_else(|e| {
        panic!(
            "testssl.sh wrote no {} ({e}): {}",
            json.display(),
            text(out)
        )
    });
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}
