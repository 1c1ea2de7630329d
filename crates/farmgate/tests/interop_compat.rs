//! WebPKI compatibility mode as outside clients meet it: `openssl s_client` and `curl` present
//! a public-like certificate (serverAuth only, no CN) to a compat-mode gate and get through for
//! the allowed name only; a strict gate refuses it for its purpose. Behind the `interop`
//! feature; a missing program fails the test.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use farmgate_config::Config;
use farmgate_proxy::{Generation, Server};
use farmgate_testkit::origin::Origin;
use farmgate_testkit::pki::{CertFiles, TestPki};

const BACKEND: &str = "backend.farm.test";

/// A gate whose client trust is a public-like root, in front of an origin; its own server
/// certificate comes from a private farm CA.
struct PublicGate {
    public: TestPki,
    farm: TestPki,
    addr: SocketAddr,
    _server: Server,
    _origin: Origin,
}

impl PublicGate {
    async fn start(eku: &str) -> PublicGate {
        let public = TestPki::public_like();
        let farm = TestPki::new();
        let origin = Origin::start("app").await;
        let backend = farm.server(BACKEND);
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
allow = ["dns:edge.example.com"]
eku = "{eku}"
[[listener.route]]
upstream = "app"
[upstream.app]
servers = ["{origin}"]
"#,
            cert = backend.cert,
            key = backend.key,
            trust = public.ca_file(),
            origin = origin.addr,
        );
        let path = farm.dir().join("gate.toml");
        let config = Config::parse(&text, &path).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let server = Server::start(Generation::build(config).unwrap())
            .await
            .unwrap();
        let addr = server.local_addr("gate").unwrap();
        PublicGate {
            public,
            farm,
            addr,
            _server: server,
            _origin: origin,
        }
    }

    /// `curl` with `cert` as client certificate, off the runtime's threads.
    async fn curl(&self, cert: &CertFiles) -> Output {
        let resolve = format!("{BACKEND}:{}:127.0.0.1", self.addr.port());
        let url = format!("https://{BACKEND}:{}/", self.addr.port());
        let args: Vec<String> = vec![
            "-sS".into(),
            "--cacert".into(),
            path(&self.farm.ca_file()),
            "--cert".into(),
            path(&cert.cert),
            "--key".into(),
            path(&cert.key),
            "--resolve".into(),
            resolve,
            url,
        ];
        tokio::task::spawn_blocking(move || outside("curl", &args, None))
            .await
            .unwrap()
    }

    /// `openssl s_client` with `cert` (and the public-like intermediate as its chain), sending
    /// one request.
    async fn s_client(&self, cert: &CertFiles) -> Output {
        let chain = self.public.dir().join("intermediate.pem");
        std::fs::write(&chain, self.public.intermediate().cert_pem()).unwrap();
        let args: Vec<String> = vec![
            "s_client".into(),
            "-connect".into(),
            self.addr.to_string(),
            "-servername".into(),
            BACKEND.into(),
            "-CAfile".into(),
            path(&self.farm.ca_file()),
            "-cert".into(),
            path(&cert.cert),
            "-cert_chain".into(),
            path(&chain),
            "-key".into(),
            path(&cert.key),
            "-quiet".into(),
        ];
        let request = format!("GET / HTTP/1.1\r\nhost: {BACKEND}\r\nconnection: close\r\n\r\n");
        tokio::task::spawn_blocking(move || outside("openssl", &args, Some(request)))
            .await
            .unwrap()
    }
}

/// Run `program args` (feeding `input`), failing the test if the program is not installed.
fn outside(program: &str, args: &[String], input: Option<String>) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program} is required for interop tests ({e}); .ci/run installs it")
        });
    let mut stdin = child.stdin.take().unwrap();
    if let Some(input) = input {
        use std::io::Write as _;
        stdin.write_all(input.as_bytes()).unwrap();
    }
    // Closing stdin tells s_client there is nothing more to send.
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_public_cert_gets_through_compat_gate_for_allowed_name_only() {
    let g = PublicGate::start("client_or_server_auth").await;
    let allowed = g.public.server_only_leaf("edge.example.com");
    let out = g.curl(&allowed).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("DNS=edge.example.com"),
        "{}",
        text(&out)
    );

    let other = g.public.server_only_leaf("other.example.com");
    let out = g.curl(&other).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("alert access denied"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_with_public_cert_gets_through_compat_gate() {
    let g = PublicGate::start("client_or_server_auth").await;
    let allowed = g.public.server_only_leaf("edge.example.com");
    let out = g.s_client(&allowed).await;
    let answer = text(&out);
    assert!(answer.contains("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("DNS=edge.example.com"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_public_cert_is_refused_by_strict_gate_for_its_purpose() {
    let g = PublicGate::start("client_auth").await;
    let public_cert = g.public.server_only_leaf("edge.example.com");
    let out = g.curl(&public_cert).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("alert unsupported certificate"),
        "{}",
        text(&out)
    );
}
