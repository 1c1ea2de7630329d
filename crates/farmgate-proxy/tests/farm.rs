//! Building farms for tests: gates in front of origins, an edge in front of the gates.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use farmgate_config::Config;
use farmgate_proxy::{Generation, Server, Workers};
use farmgate_testkit::client::TlsClient;
use farmgate_testkit::origin::Origin;
use farmgate_testkit::pki::{CertFiles, TestPki};

/// The name the edge's client certificate carries.
pub const EDGE: &str = "edge.farm.test";
/// The name on every gate's server certificate.
pub const BACKEND: &str = "backend.farm.test";
/// The public name of the site, on the edge's server certificate.
pub const SITE: &str = "www.farm.test";

/// Start a proxy from TOML `text`, written next to the PKI's files as `name.toml`.
pub async fn start(dir: &Path, name: &str, text: &str) -> Server {
    start_on(dir, name, text, Workers::current()).await
}

/// [`start`] on `workers`.
pub async fn start_on(dir: &Path, name: &str, text: &str, workers: Workers) -> Server {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    let config = Config::parse(text, &path).unwrap_or_else(|e| panic!("{name}.toml: {e}\n{text}"));
    let generation = Generation::build(config).unwrap_or_else(|e| panic!("{name}.toml: {e}"));
    Server::start_on(generation, workers).await.unwrap()
}

/// A gate called `name` with `backend`'s certificate, trusting `trust`, allowing `allow`,
/// with `client_auth_extra` (one line, or empty) on line 11 of the text, in front of `origin`.
pub fn gate_toml(
    name: &str,
    backend: &CertFiles,
    trust: &[&Path],
    allow: &[&str],
    client_auth_extra: &str,
    origin: SocketAddr,
) -> String {
    let quoted = |items: Vec<String>| items.join(", ");
    let trust = quoted(trust.iter().map(|t| format!("{t:?}")).collect());
    let allow = quoted(allow.iter().map(|a| format!("{a:?}")).collect());
    format!(
        r#"
[[listener]]
name = "{name}"
listen = "127.0.0.1:0"
[listener.tls]
certificate = {cert:?}
private_key = {key:?}
[listener.tls.client_auth]
trust = [{trust}]
allow = [{allow}]
{client_auth_extra}
[[listener.route]]
upstream = "app"
[upstream.app]
servers = ["{origin}"]
"#,
        cert = backend.cert,
        key = backend.key,
    )
}

/// A gate in front of `origin`, trusting `ca` and allowing `allow`.
pub async fn gate(
    dir: &Path,
    name: &str,
    backend: &CertFiles,
    ca: &Path,
    allow: &[&str],
    origin: SocketAddr,
) -> (Server, SocketAddr) {
    let text = gate_toml("gate", backend, &[ca], allow, "", origin);
    let server = start(dir, name, &text).await;
    let addr = server.local_addr("gate").unwrap();
    (server, addr)
}

/// The upstream table of an edge: mTLS to `servers` (weighted `(addr, weight)`).
pub fn edge_upstream(
    servers: &[(SocketAddr, u32)],
    ca: &Path,
    client: &CertFiles,
    extra: &str,
) -> String {
    let servers = servers
        .iter()
        .map(|(a, w)| format!("{{ address = \"{a}\", weight = {w} }}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[upstream.farm]
servers = [{servers}]
{extra}
[upstream.farm.tls]
server_name = "{BACKEND}"
trust = [{ca:?}]
client_certificate = {cert:?}
client_key = {key:?}
"#,
        cert = client.cert,
        key = client.key,
    )
}

/// An edge listener for the site, routing everything to upstream `farm`.
pub fn edge_listener(site: &CertFiles) -> String {
    format!(
        r#"
[[listener]]
name = "public"
listen = "127.0.0.1:0"
[listener.tls]
certificate = {cert:?}
private_key = {key:?}
[[listener.route]]
upstream = "farm"
"#,
        cert = site.cert,
        key = site.key,
    )
}

/// A whole farm: `n` origins, each behind a gate allowing the edge's name, and an edge.
pub struct Farm {
    pub pki: TestPki,
    pub origins: Vec<Origin>,
    pub gates: Vec<(Server, SocketAddr)>,
    pub edge: Arc<Server>,
    pub edge_addr: SocketAddr,
    pub edge_client: CertFiles,
    /// The edge's server certificate for [`SITE`].
    pub site: CertFiles,
}

impl Farm {
    /// `weights.len()` backends with these weights.
    pub async fn start(weights: &[u32]) -> Farm {
        Self::start_with(weights, "").await
    }

    /// Like [`Farm::start`], with extra keys for the edge's upstream table.
    pub async fn start_with(weights: &[u32], upstream_extra: &str) -> Farm {
        crate::logs::capture();
        let pki = TestPki::new();
        let backend = pki.server(BACKEND);
        let site = pki.server(SITE);
        let edge_client = pki.client(EDGE);
        let mut origins = Vec::new();
        let mut gates = Vec::new();
        for i in 0..weights.len() {
            let origin = Origin::start(&format!("origin-{i}")).await;
            let allow = format!("dns:{EDGE}");
            gates.push(
                gate(
                    pki.dir(),
                    &format!("gate-{i}"),
                    &backend,
                    &pki.ca_file(),
                    &[&allow],
                    origin.addr,
                )
                .await,
            );
            origins.push(origin);
        }
        let servers: Vec<(SocketAddr, u32)> = gates
            .iter()
            .zip(weights)
            .map(|((_, a), w)| (*a, *w))
            .collect();
        let text = edge_listener(&site)
            + &edge_upstream(&servers, &pki.ca_file(), &edge_client, upstream_extra);
        let edge = Arc::new(start(pki.dir(), "edge", &text).await);
        let edge_addr = edge.local_addr("public").unwrap();
        Farm {
            pki,
            origins,
            gates,
            edge,
            edge_addr,
            edge_client,
            site,
        }
    }

    /// The edge's configuration file.
    pub fn edge_config(&self) -> PathBuf {
        self.pki.dir().join("edge.toml")
    }

    /// A browser: trusts the farm CA, asks for the site.
    pub fn browser(&self) -> TlsClient {
        TlsClient::new(&self.pki.ca_file(), SITE)
    }
}
