//! The migration docs/migration.md walks an operator through, under load: a farm whose edge
//! presents its serverAuth-only public certificate to gates in compatibility mode moves to
//! private-CA identities, each step a file rewrite the reload watchers pick up, with no signal
//! and no failed request; at the end every gate refuses the public certificate.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use farmgate_proxy::Server;
use farmgate_proxy::reload::watch;
use farmgate_testkit::client::{Probe, TlsClient};
use farmgate_testkit::load::{Load, assert_no_failures};
use farmgate_testkit::origin::{Origin, header_values, parse_echo};
use farmgate_testkit::pki::{CertFiles, TestPki};

use crate::farm::{BACKEND, SITE, edge_listener, edge_upstream, gate_toml, start};
use crate::reload::{reloads_until, write_atomically};

/// The name on the edge's public certificate, and on the private identity that replaces it.
const EDGE_NAME: &str = "edge.example.com";
/// Gates in compatibility mode (steps 0 and 2).
const COMPAT: &str = "eku = \"client_or_server_auth\"";

/// A gate of the farm: its server, address, configuration file and origin.
struct Gate {
    server: Arc<Server>,
    addr: SocketAddr,
    name: String,
    origin: Origin,
}

/// A running process of the farm, followed by its reload watcher.
async fn watched(dir: &Path, name: &str, text: &str) -> Arc<Server> {
    let server = Arc::new(start(dir, name, text).await);
    tokio::spawn(watch(server.clone(), dir.join(format!("{name}.toml"))));
    server
}

/// Rewrite every gate's configuration with `trust` and `extra` (the `eku` line), as a
/// deployment tool does (a new file renamed over the old), and wait until each reloaded.
async fn rewrite_gates(
    farm: &TestPki,
    backend: &CertFiles,
    gates: &[Gate],
    trust: &[&Path],
    extra: &str,
) {
    for gate in gates {
        let mut counts = gate.server.reload_counts();
        let before = counts.borrow().succeeded;
        let text = gate_toml(
            &gate.name,
            backend,
            trust,
            &[&format!("dns:{EDGE_NAME}")],
            extra,
            gate.origin.addr,
        );
        write_atomically(&farm.dir().join(format!("{}.toml", gate.name)), text);
        reloads_until(&mut counts, |c| c.succeeded > before).await;
    }
}

/// Wait until every origin has served `more` requests beyond what it had: traffic flows.
async fn flows(gates: &[Gate], more: usize) {
    for gate in gates {
        let enough = gate.origin.wait_for_requests(gate.origin.requests() + more);
        tokio::time::timeout(std::time::Duration::from_secs(60), enough)
            .await
            .expect("traffic stopped");
    }
}

/// The fingerprint of the identity the apps see on a fresh request through the edge.
async fn presented(browser: &TlsClient, edge: SocketAddr) -> String {
    let response = browser.get(edge, "/").await;
    let (_, headers) = parse_echo(&response.body);
    header_values(&headers, "x-forwarded-client-cert")[0].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_migration_runs_under_load_without_a_failed_request() {
    crate::logs::capture();
    let public = TestPki::public_like();
    let farm = TestPki::new();
    let public_edge: CertFiles = public.server_only_leaf(EDGE_NAME);
    let private_edge: CertFiles = farm.client(EDGE_NAME);
    let (public_ca, farm_ca) = (public.ca_file(), farm.ca_file());
    let (backend, site) = (farm.server(BACKEND), farm.server(SITE));

    // Day 0: three gates trust the public roots in compatibility mode; the edge presents its
    // public certificate.
    let mut gates = Vec::new();
    for i in 0..3 {
        let name = format!("gate-{i}");
        let origin = Origin::start(&format!("origin-{i}")).await;
        let text = gate_toml(
            &name,
            &backend,
            &[&public_ca],
            &[&format!("dns:{EDGE_NAME}")],
            COMPAT,
            origin.addr,
        );
        let server = watched(farm.dir(), &name, &text).await;
        let addr = server.local_addr(&name).unwrap();
        gates.push(Gate {
            server,
            addr,
            name,
            origin,
        });
    }
    let servers: Vec<(SocketAddr, u32)> = gates.iter().map(|g| (g.addr, 1)).collect();
    let edge_text =
        |client: &CertFiles| edge_listener(&site) + &edge_upstream(&servers, &farm_ca, client, "");
    let edge = watched(farm.dir(), "edge", &edge_text(&public_edge)).await;
    let edge_addr = edge.local_addr("public").unwrap();
    let browser = TlsClient::new(&farm_ca, SITE);
    assert!(
        presented(&browser, edge_addr)
            .await
            .contains(&public_edge.identity().fingerprint_hex())
    );

    // Four keep-alive HTTP/1.1 clients and four HTTP/2 clients, plus one of each connecting
    // per request, all through the migration.
    let h1 = Load::start(&browser, edge_addr, 4, "/");
    let h2 = Load::start(&browser.clone().http2(), edge_addr, 4, "/");
    flows(&gates, 20).await;

    // Step 2a: dual trust on every gate.
    rewrite_gates(&farm, &backend, &gates, &[&public_ca, &farm_ca], COMPAT).await;
    flows(&gates, 20).await;

    // Step 2b: the edge presents its private identity.
    let mut counts = edge.reload_counts();
    write_atomically(&farm.dir().join("edge.toml"), edge_text(&private_edge));
    reloads_until(&mut counts, |c| c.succeeded == 1).await;
    flows(&gates, 20).await;
    assert!(
        presented(&browser, edge_addr)
            .await
            .contains(&private_edge.identity().fingerprint_hex())
    );

    // Step 3: private CA only, strict.
    rewrite_gates(&farm, &backend, &gates, &[&farm_ca], "").await;
    flows(&gates, 20).await;

    let (h1, h2) = (h1.finish().await, h2.finish().await);
    assert_no_failures(&h1);
    assert_no_failures(&h2);
    assert!(h1.ok > 0 && h2.ok > 0);

    // Afterwards every gate refuses the public certificate at the handshake.
    for gate in &gates {
        let probe = TlsClient::new(&farm_ca, BACKEND)
            .with_client_cert(&public_edge)
            .probe(gate.addr)
            .await;
        assert!(
            matches!(probe, Probe::Refused(rustls::Error::AlertReceived(_))),
            "{}: {probe:?}",
            gate.name
        );
    }
}
