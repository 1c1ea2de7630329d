//! `farmgate demo`: the whole farm on loopback, with a throwaway CA, in one command.
//!
//! It writes ordinary configuration files into a temporary directory and loads them the way
//! `farmgate run` does, so what the demo shows is what a deployment does.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use farmgate_pki::{Authority, CaSpec, CertSpec, Issued};
use farmgate_proxy::{Generation, Server};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

/// `farmgate demo` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many backends (each a gate in front of an origin).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    backends: u16,
    /// The edge's port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8443)]
    port: u16,
}

const SITE: &str = "localhost";
const EDGE: &str = "edge.demo.farm";
const BACKEND: &str = "backend.demo.farm";

pub fn demo(args: &Args) -> anyhow::Result<ExitCode> {
    crate::logging::init(farmgate_config::LogFormat::Text);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(farm(args))
}

async fn farm(args: &Args) -> anyhow::Result<ExitCode> {
    // Listen for the signals before telling anyone to send one.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let dir = tempfile::Builder::new()
        .prefix("farmgate-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let files = Pki::mint(dir.path())?;

    let mut origins = Vec::new();
    for i in 1..=args.backends {
        origins.push(origin(format!("backend-{i}")).await?);
    }
    let gates_toml = dir.path().join("gates.toml");
    std::fs::write(&gates_toml, gates_config(&files, &origins))?;
    let gates = Arc::new(Server::start(Generation::load(&gates_toml)?).await?);
    let gate_addrs: Vec<SocketAddr> = (1..=args.backends)
        .filter_map(|i| gates.local_addr(&format!("gate-{i}")))
        .collect();

    let edge_toml = dir.path().join("edge.toml");
    std::fs::write(&edge_toml, edge_config(&files, args.port, &gate_addrs))?;
    let edge = Arc::new(
        Server::start(Generation::load(&edge_toml)?)
            .await
            .with_context(|| format!("is port {} taken? choose another with --port", args.port))?,
    );

    // Each farm's dashboard (admin endpoint) on a free loopback port, without a token:
    // loopback is the one place the configuration allows that.
    let dashboards = Dashboards {
        edge: dashboard(&edge).await?,
        gates: dashboard(&gates).await?,
    };

    let port = edge.local_addr("public").map_or(args.port, |a| a.port());
    outln!(
        "{}",
        banner(dir.path(), &files, port, &gate_addrs, &origins, &dashboards)
    );

    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    outln!("stopping the demo farm");
    edge.shutdown(Duration::from_secs(5)).await;
    gates.shutdown(Duration::from_secs(5)).await;
    Ok(ExitCode::SUCCESS)
}

/// Where the edge's and the gates' dashboards are.
struct Dashboards {
    edge: SocketAddr,
    gates: SocketAddr,
}

/// Serves `server`'s admin endpoint (dashboard, `/status`, `/metrics`) on a free loopback port.
async fn dashboard(server: &Arc<Server>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .context("cannot listen for the dashboard")?;
    let addr = listener.local_addr()?;
    crate::run::serve_admin(server, listener);
    Ok(addr)
}

/// The throwaway PKI: one CA, the site's certificate, the backends' certificate, the edge's
/// client certificate.
struct Pki {
    ca: PathBuf,
    site: (PathBuf, PathBuf),
    backend: (PathBuf, PathBuf),
    edge: (PathBuf, PathBuf),
}

impl Pki {
    fn mint(dir: &Path) -> anyhow::Result<Pki> {
        let ca = Authority::new_root(&CaSpec::new("farmgate demo CA"))?;
        let loopback = Ipv4Addr::LOCALHOST.into();
        let write = |stem: &str, issued: &Issued| -> anyhow::Result<(PathBuf, PathBuf)> {
            let cert = dir.join(format!("{stem}.pem"));
            let key = dir.join(format!("{stem}.key"));
            std::fs::write(&cert, &issued.chain_pem)
                .with_context(|| format!("cannot write {}", cert.display()))?;
            // Private keys are the owner's alone, throwaway ones too.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&key)
                .and_then(|mut file| file.write_all(issued.key_pem.as_bytes()))
                .with_context(|| format!("cannot write {}", key.display()))?;
            Ok((cert, key))
        };
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca.cert_pem())?;
        Ok(Pki {
            ca: ca_path,
            site: write("site", &ca.issue(&CertSpec::server(SITE).ip(loopback))?)?,
            backend: write(
                "backend",
                &ca.issue(&CertSpec::server(BACKEND).ip(loopback))?,
            )?,
            edge: write("edge", &ca.issue(&CertSpec::client(EDGE))?)?,
        })
    }
}

fn gates_config(pki: &Pki, origins: &[(String, SocketAddr)]) -> String {
    let mut toml = String::from("# The gates: each requires the edge's client certificate.\n");
    for (i, (_, origin)) in origins.iter().enumerate() {
        let n = i + 1;
        let _ = write!(
            toml,
            r#"
[[listener]]
name = "gate-{n}"
listen = "127.0.0.1:0"
[listener.tls]
certificate = {cert:?}
private_key = {key:?}
[listener.tls.client_auth]
trust = [{ca:?}]
allow = ["dns:{EDGE}"]
[[listener.route]]
upstream = "origin-{n}"

[upstream.origin-{n}]
servers = ["{origin}"]
"#,
            cert = pki.backend.0,
            key = pki.backend.1,
            ca = pki.ca,
        );
    }
    toml
}

fn edge_config(pki: &Pki, port: u16, gates: &[SocketAddr]) -> String {
    let servers: Vec<String> = gates.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"# The edge: TLS for browsers, mutual TLS to the gates.
[[listener]]
name = "public"
listen = "127.0.0.1:{port}"
[listener.tls]
certificate = {site_cert:?}
private_key = {site_key:?}
[[listener.route]]
upstream = "farm"

[upstream.farm]
servers = [{servers}]
[upstream.farm.tls]
server_name = "{BACKEND}"
trust = [{ca:?}]
client_certificate = {edge_cert:?}
client_key = {edge_key:?}
"#,
        site_cert = pki.site.0,
        site_key = pki.site.1,
        servers = servers.join(", "),
        ca = pki.ca,
        edge_cert = pki.edge.0,
        edge_key = pki.edge.1,
    )
}

fn banner(
    dir: &Path,
    pki: &Pki,
    port: u16,
    gates: &[SocketAddr],
    origins: &[(String, SocketAddr)],
    dashboards: &Dashboards,
) -> String {
    let ca = pki.ca.display();
    let mut out = format!(
        "\nfarmgate demo: a farm on loopback (files in {})\n",
        dir.display()
    );
    let _ = writeln!(
        out,
        "  edge      https://{SITE}:{port}  (browser TLS; mutual TLS to the gates as {EDGE})"
    );
    for (gate, (name, origin)) in gates.iter().zip(origins) {
        let _ = writeln!(
            out,
            "  gate      https://{gate}  ->  {name} at http://{origin}  (allows only dns:{EDGE})"
        );
    }
    let first = gates.first().map_or_else(String::new, ToString::to_string);
    let _ = write!(
        out,
        "\nTry the farm (repeat it: each backend answers in turn):\n  curl --cacert {ca} https://{SITE}:{port}/\n\
         \nA direct probe of a backend, without the edge's client certificate, is refused at the TLS handshake\n(curl reports \"tlsv13 alert certificate required\"):\n  curl --cacert {ca} https://{first}/\n\
         \nWith the edge's certificate, the gate lets you in:\n  curl --cacert {ca} --cert {} --key {} https://{first}/\n\
         \nWatch it in a browser: the edge's dashboard http://{}/ and the gates' http://{}/\n(traffic, health, certificates, refusals; /status and /metrics beside them)\n\
         \nPress Ctrl-C to stop.",
        pki.edge.0.display(),
        pki.edge.1.display(),
        dashboards.edge,
        dashboards.gates,
    );
    out
}

/// A tiny origin: answers with its name and the identity its gate verified.
async fn origin(name: String) -> anyhow::Result<(String, SocketAddr)> {
    let socket = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = socket.local_addr()?;
    let shown = name.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = socket.accept().await else {
                // Out of descriptors, say: let connections close rather than spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let name = name.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(req, name.clone()));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Ok((shown, addr))
}

async fn answer(req: Request<Incoming>, name: String) -> Result<Response<Full<Bytes>>, Infallible> {
    let verified = req
        .headers()
        .get("x-forwarded-client-cert")
        .and_then(|v| v.to_str().ok())
        .map(|xfcc| {
            xfcc.split(';')
                .filter(|kv| kv.starts_with("DNS=") || kv.starts_with("URI="))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "nobody (no x-forwarded-client-cert header)".to_owned());
    let via = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let body = format!(
        "hello from {name}\n  {} {}\n  my gate verified the caller as: {verified}\n  x-forwarded-for: {via}\n",
        req.method(),
        req.uri()
    );
    Ok(Response::new(Full::new(Bytes::from(body))))
}
