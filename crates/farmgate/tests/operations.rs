//! Operating a farm of real processes: the admin endpoint, JSON access logs, a backend killed
//! under load, and a drain on SIGTERM that lets a slow request finish.

use std::net::SocketAddr;
use std::path::PathBuf;

use farmgate_testkit::client::TlsClient;
use farmgate_testkit::load::Load;
use farmgate_testkit::origin::Origin;
use farmgate_testkit::pki::{CertFiles, TestPki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::Running;

/// The address a listener reports when it starts (text or JSON log lines).
pub fn listening(process: &mut Running, listener: &str) -> SocketAddr {
    let text_form = format!("listener={listener}");
    let json_form = format!("\"listener\":\"{listener}\"");
    loop {
        let line = process.wait_for("listening on ");
        if line.contains(&text_form) || line.contains(&json_form) {
            let addr = line.split("listening on ").nth(1).unwrap();
            let addr: String = addr
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            return addr.parse().unwrap();
        }
    }
}

/// `[admin]` on a free loopback port, for [`gate_process_with`].
pub const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"";

/// A gate process in front of `origin`.
fn gate_process(
    pki: &TestPki,
    name: &str,
    backend: &CertFiles,
    origin: SocketAddr,
) -> (Running, SocketAddr) {
    gate_process_with(pki, name, backend, origin, "")
}

/// A gate process in front of `origin`, with `top` (e.g. [`ADMIN`]) at the top of its
/// configuration, allowing `dns:edge.farm.test`.
pub fn gate_process_with(
    pki: &TestPki,
    name: &str,
    backend: &CertFiles,
    origin: SocketAddr,
    top: &str,
) -> (Running, SocketAddr) {
    let path = pki.dir().join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
{top}
[[listener]]
name = "gate"
listen = "127.0.0.1:0"
tls = {{ certificate = {cert:?}, private_key = {key:?}, client_auth = {{ trust = [{ca:?}], allow = ["dns:edge.farm.test"] }} }}
[[listener.route]]
upstream = "app"
[upstream.app]
servers = ["{origin}"]
"#,
            cert = backend.cert,
            key = backend.key,
            ca = pki.ca_file(),
        ),
    )
    .unwrap();
    let mut process = Running::spawn(&["run", "-c", path.to_str().unwrap()]);
    let addr = listening(&mut process, "gate");
    (process, addr)
}

/// An edge process with an admin endpoint and JSON access logs in front of `gates`, with
/// `extra` in its `[upstream.farm]` table.
pub fn edge_process(
    pki: &TestPki,
    gates: &[SocketAddr],
    extra: &str,
) -> (Running, SocketAddr, SocketAddr, PathBuf) {
    let site = pki.server("www.farm.test");
    let client = pki.client("edge.farm.test");
    let servers: Vec<String> = gates.iter().map(|g| format!("\"{g}\"")).collect();
    let path = pki.dir().join("edge.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[admin]
listen = "127.0.0.1:0"
[log]
format = "json"
access = true
[[listener]]
name = "public"
listen = "127.0.0.1:0"
tls = {{ certificate = {site_cert:?}, private_key = {site_key:?} }}
[[listener.route]]
upstream = "farm"
[upstream.farm]
servers = [{servers}]
{extra}
[upstream.farm.tls]
server_name = "backend.farm.test"
trust = [{ca:?}]
client_certificate = {cert:?}
client_key = {key:?}
"#,
            site_cert = site.cert,
            site_key = site.key,
            servers = servers.join(", "),
            ca = pki.ca_file(),
            cert = client.cert,
            key = client.key,
        ),
    )
    .unwrap();
    let mut process = Running::spawn(&["run", "-c", path.to_str().unwrap()]);
    let public = listening(&mut process, "public");
    let admin = listening(&mut process, "admin");
    (process, public, admin, path)
}

/// A farm of processes: one gate in front of an origin, and an edge with an admin endpoint
/// and JSON access logs in front of the gate.
struct OneGate {
    pki: TestPki,
    origin: Origin,
    _gate: Running,
    gate: SocketAddr,
    edge: Running,
    public: SocketAddr,
    admin: SocketAddr,
}

impl OneGate {
    async fn start(origin: &str) -> OneGate {
        let pki = TestPki::new();
        let origin = Origin::start(origin).await;
        let backend = pki.server("backend.farm.test");
        let (gate_process, gate) = gate_process(&pki, "gate", &backend, origin.addr);
        let (edge, public, admin, _) = edge_process(&pki, &[gate], "");
        OneGate {
            pki,
            origin,
            _gate: gate_process,
            gate,
            edge,
            public,
            admin,
        }
    }
}

/// GET `path` from a plain-HTTP endpoint: (status line, body).
pub async fn plain_get(addr: SocketAddr, path: &str) -> (String, String) {
    plain_get_with(addr, path, "").await
}

/// GET `path` from a plain-HTTP endpoint with `headers` (each line ending in `\r\n`):
/// (status line, body).
pub async fn plain_get_with(addr: SocketAddr, path: &str, headers: &str) -> (String, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nhost: admin\r\n{headers}connection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// One handshake with `gate` per entry of `clients`: with that client certificate, or none.
pub async fn probe_gate(pki: &TestPki, gate: SocketAddr, clients: &[Option<&CertFiles>]) {
    let client = TlsClient::new(&pki.ca_file(), "backend.farm.test");
    for cert in clients {
        let client = match cert {
            Some(cert) => client.clone().with_client_cert(cert),
            None => client.clone(),
        };
        let _ = client.probe(gate).await;
    }
}

pub fn browser(pki: &TestPki) -> TlsClient {
    TlsClient::new(&pki.ca_file(), "www.farm.test")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoint_reports_metrics_and_status() {
    let OneGate {
        pki,
        origin: _origin,
        _gate,
        gate,
        edge: _edge,
        public,
        admin,
    } = OneGate::start("app").await;
    let browser = browser(&pki);
    for _ in 0..3 {
        assert_eq!(browser.get(public, "/").await.status, 200);
    }
    // A direct probe with no certificate, refused by the gate (counted by the gate's process).
    let (status, health) = plain_get(admin, "/healthz").await;
    assert!(status.ends_with("200 OK"), "{status}");
    assert_eq!(health, "ok\n");

    let (status, metrics) = plain_get(admin, "/metrics").await;
    assert!(status.ends_with("200 OK"), "{status}");
    for expected in [
        r#"farmgate_requests_total{listener="public",route="*/",upstream="farm",status="2xx"} 3"#,
        r#"farmgate_request_duration_seconds_count{listener="public",upstream="farm"} 3"#,
        r#"farmgate_upstream_response_seconds_count{upstream="farm"} 3"#,
        r#"farmgate_open_connections{listener="public"}"#,
        &format!(r#"farmgate_server_up{{upstream="farm",server="{gate}"}} 1"#),
        r#"farmgate_certificate_expiry_seconds{role="listener",name="public",subject="CN=www.farm.test"}"#,
        r#"farmgate_certificate_expiry_seconds{role="upstream",name="farm",subject="CN=edge.farm.test"}"#,
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in:\n{metrics}"
        );
    }

    // Three requests, each on a new connection: each worker that accepted one opened one
    // connection to the gate and reused it.
    let opened: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"farmgate_upstream_connections{upstream="farm"} "#))
        .unwrap_or_else(|| panic!("no upstream connection count in:\n{metrics}"))
        .parse()
        .unwrap();
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    assert!(
        (1..=workers.min(3) as u64).contains(&opened),
        "{opened} connections to the gate with {workers} workers"
    );

    let (_, status) = plain_get(admin, "/status").await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["listeners"][0]["name"], "public");
    assert_eq!(
        status["listeners"][0]["certificates"][0]["subject"],
        "CN=www.farm.test"
    );
    assert!(
        status["listeners"][0]["certificates"][0]["days_left"]
            .as_i64()
            .unwrap()
            > 80
    );
    assert_eq!(
        status["upstreams"][0]["servers"][0]["address"],
        gate.to_string()
    );
    assert_eq!(status["upstreams"][0]["servers"][0]["up"], true);
    assert_eq!(status["reloads"]["failed"], 0);
    assert!(status["warnings"].is_array());
    let (_, page) = plain_get(admin, "/").await;
    assert!(page.contains("<title>farmgate</title>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_metrics_count_refusals_by_reason() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let backend = pki.server("backend.farm.test");
    let (mut process, gate) = gate_process_with(&pki, "gate", &backend, origin.addr, ADMIN);
    let admin = listening(&mut process, "admin");
    let (intruder, edge) = (
        pki.client("intruder.farm.test"),
        pki.client("edge.farm.test"),
    );
    probe_gate(&pki, gate, &[None, Some(&intruder), Some(&edge)]).await;
    let (_, metrics) = plain_get(admin, "/metrics").await;
    for expected in [
        r#"farmgate_client_cert_refusals_total{listener="gate",reason="no_certificate"} 1"#,
        r#"farmgate_client_cert_refusals_total{listener="gate",reason="not_allowed"} 1"#,
        r#"farmgate_client_cert_refusals_total{listener="gate",reason="unknown_ca"} 0"#,
        r#"farmgate_client_cert_accepted_total{listener="gate"} 1"#,
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_writes_one_json_line_per_request() {
    let OneGate {
        pki,
        origin: _origin,
        _gate,
        gate,
        mut edge,
        public,
        admin: _,
    } = OneGate::start("app").await;
    let r = browser(&pki)
        .get(public, "/bytes/1000?mark=access-log-test")
        .await;
    assert_eq!(r.status, 200);
    let line = edge.wait_for("access-log-test");
    let entry: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(entry["target"], "access");
    assert_eq!(entry["listener"], "public");
    assert_eq!(entry["method"], "GET");
    assert_eq!(entry["host"], "www.farm.test");
    assert_eq!(entry["path"], "/bytes/1000?mark=access-log-test");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["upstream"], "farm");
    assert_eq!(entry["server"], gate.to_string());
    assert_eq!(entry["bytes_out"], 1000);
    assert_eq!(entry["bytes_in"], 0);
    assert_eq!(entry["complete"], true);
    assert_eq!(entry["tls"], "TLSv1.3");
    assert_eq!(entry["alpn"], "http/1.1");
    assert_eq!(entry["sni"], "www.farm.test");
    assert!(entry["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(entry["upstream_ms"].as_f64().unwrap() <= entry["total_ms"].as_f64().unwrap());
    assert!(entry["timestamp"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_mid_load_costs_no_get() {
    let pki = TestPki::new();
    let backend = pki.server("backend.farm.test");
    let mut origins = Vec::new();
    let mut gates = Vec::new();
    for i in 0..3 {
        let origin = Origin::start(&format!("origin-{i}")).await;
        gates.push(gate_process(
            &pki,
            &format!("gate-{i}"),
            &backend,
            origin.addr,
        ));
        origins.push(origin);
    }
    let addrs: Vec<SocketAddr> = gates.iter().map(|(_, a)| *a).collect();
    let (_edge, public, admin, _) = edge_process(&pki, &addrs, "");
    let load = Load::start(&browser(&pki), public, 4, "/");
    // Let the load reach every backend, then kill one without warning.
    origins[1].wait_for_requests(20).await;
    let (victim, _) = gates.remove(1);
    victim.signal("KILL");
    let _ = victim.wait();
    // Keep the load running until the survivors have answered plenty more.
    let served = origins[0].requests() + origins[2].requests();
    origins[0]
        .wait_for_requests(origins[0].requests() + 50)
        .await;
    let report = load.finish().await;
    assert!(
        report.failed.is_empty(),
        "{} failed GETs: {:?}",
        report.failed.len(),
        &report.failed[..report.failed.len().min(5)]
    );
    assert!(origins[0].requests() + origins[2].requests() > served);
    let (_, metrics) = plain_get(admin, "/metrics").await;
    assert!(
        metrics.contains("farmgate_upstream_errors_total{upstream=\"farm\""),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_slow_request_finish_then_exits_zero() {
    let OneGate {
        pki,
        origin,
        _gate,
        gate: _,
        mut edge,
        public,
        admin: _,
    } = OneGate::start("slow").await;
    let browser = browser(&pki);
    let slow = tokio::spawn(async move { browser.get(public, "/delay/1500").await });
    origin.wait_for_requests(1).await;
    edge.signal("TERM");
    let response = slow.await.unwrap();
    assert_eq!(response.status, 200, "the in-flight request completed");
    edge.wait_for("stopped");
    assert_eq!(edge.wait().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_at_once() {
    let OneGate {
        pki,
        origin,
        _gate,
        gate: _,
        mut edge,
        public,
        admin: _,
    } = OneGate::start("slow").await;
    let browser = browser(&pki);
    let slow = tokio::spawn(async move {
        let mut conn = browser.connect(public).await;
        conn.try_get("/delay/60000").await
    });
    origin.wait_for_requests(1).await;
    edge.signal("TERM");
    edge.wait_for("stopping");
    edge.signal("TERM");
    assert_eq!(edge.wait().code(), Some(1), "forced stop");
    assert!(
        slow.await.unwrap().is_err(),
        "the slow request was cut off, not completed"
    );
}
