//! DNS discovery against a real DNS server: dnsmasq (Debian's `dnsmasq-base`), started by each
//! test on a free loopback port, answering from a hosts file the test rewrites (and SIGHUPs it
//! to re-read) and from `srv-host` lines. Gates (farmgate gates, mTLS, each in front of its own
//! origin) listen at 127.0.0.11–13 on one port: loopback is a /8, so every gate has its own
//! address. A steady load runs through every change and loses no request. Behind the `interop`
//! feature; a missing dnsmasq fails the test.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use farmgate_config::Config;
use farmgate_proxy::{Generation, Server, UpstreamStatus};
use farmgate_testkit::client::TlsClient;
use farmgate_testkit::load::{Load, assert_no_failures};
use farmgate_testkit::origin::Origin;
use farmgate_testkit::pki::TestPki;

const SITE: &str = "www.farm.test";
const EDGE: &str = "edge.farm.test";
const GATES: &str = "gates.farm.test";
/// How long a test waits for what it expects before it fails: a bound, not a measure.
const PATIENCE: Duration = Duration::from_secs(60);

/// A dnsmasq this test started, killed when dropped.
struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
    hosts: PathBuf,
}

impl Dnsmasq {
    /// dnsmasq answering from the hosts file `hosts` (lines `IP NAME`) and the dnsmasq
    /// options in `conf` (e.g. `srv-host=...` lines), with a TTL of one second.
    fn start(dir: &Path, hosts: &str, conf: &str) -> Dnsmasq {
        // dnsmasq drops root for `nobody` and re-reads the hosts file on SIGHUP as that user.
        let dir = dir.join("dns");
        std::fs::create_dir_all(&dir).unwrap();
        set_mode(&dir, 0o755);
        let (hosts_file, conf_file) = (dir.join("hosts"), dir.join("dnsmasq.conf"));
        write_readable(&hosts_file, hosts);
        write_readable(&conf_file, conf);
        let port = free_udp_and_tcp_port();
        let child = Command::new("dnsmasq")
            .args([
                "--no-daemon",
                &format!("--port={port}"),
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                &format!("--addn-hosts={}", hosts_file.display()),
                &format!("--conf-file={}", conf_file.display()),
                "--local-ttl=1",
                "--pid-file=",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("dnsmasq is required for interop tests ({e}); .ci/run installs it")
            });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for("dnsmasq to listen", || {
            std::net::TcpStream::connect(addr).is_ok()
        });
        Dnsmasq {
            child,
            addr,
            hosts: hosts_file,
        }
    }

    /// Rewrite the hosts file and tell dnsmasq (SIGHUP, to the PID this test started).
    fn hosts(&self, hosts: &str) {
        write_readable(&self.hosts, hosts);
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        assert!(status.success(), "kill -HUP {pid}");
    }

    /// Kill it: the DNS server is gone.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_readable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    set_mode(path, 0o644);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A port free for both UDP and TCP on 127.0.0.1 (dnsmasq takes both).
fn free_udp_and_tcp_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A port free on 127.0.0.11, .12 and .13 at once.
fn free_gate_port() -> u16 {
    loop {
        let first = TcpListener::bind("127.0.0.11:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if ["127.0.0.12", "127.0.0.13"]
            .iter()
            .all(|ip| TcpListener::bind((*ip, port)).is_ok())
        {
            return port;
        }
    }
}

/// Poll `done` until it holds, failing after [`PATIENCE`].
#[track_caller]
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`wait_for`], without blocking the runtime.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start(dir: &Path, name: &str, text: &str) -> Server {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    let config = Config::parse(text, &path).unwrap_or_else(|e| panic!("{e}\n{text}"));
    Server::start(Generation::build(config).unwrap())
        .await
        .unwrap()
}

/// A farmgate gate at `listen` that lets the edge in (mTLS), with `cert_name` as its
/// certificate's name, in front of its own origin.
async fn gate(pki: &TestPki, listen: SocketAddr, cert_name: &str) -> (Server, Origin) {
    let origin = Origin::start(&listen.ip().to_string()).await;
    let files = pki.server(cert_name);
    let server = start(
        pki.dir(),
        &format!("gate-{}-{}", listen.ip(), listen.port()),
        &format!(
            r#"
[[listener]]
name = "gate"
listen = "{listen}"
[listener.tls]
certificate = {cert:?}
private_key = {key:?}
[listener.tls.client_auth]
trust = [{ca:?}]
allow = ["dns:{EDGE}"]
[[listener.route]]
upstream = "app"
[upstream.app]
servers = ["{origin}"]
"#,
            cert = files.cert,
            key = files.key,
            ca = pki.ca_file(),
            origin = origin.addr,
        ),
    )
    .await;
    (server, origin)
}

/// The edge: a TLS listener for browsers, upstream `farm` found with `discover`, over mTLS.
async fn edge(pki: &TestPki, discover: &str) -> Server {
    let (site, client) = (pki.server(SITE), pki.client(EDGE));
    start(
        pki.dir(),
        "edge",
        &format!(
            r#"
[[listener]]
name = "public"
listen = "127.0.0.1:0"
[listener.tls]
certificate = {cert:?}
private_key = {key:?}
[[listener.route]]
upstream = "farm"
[upstream.farm]
discover = {discover}
health = {{ path = "/healthz", interval = "200ms", timeout = "2s", rise = 2, fall = 2 }}
[upstream.farm.tls]
trust = [{ca:?}]
client_certificate = {client_cert:?}
client_key = {client_key:?}
"#,
            cert = site.cert,
            key = site.key,
            ca = pki.ca_file(),
            client_cert = client.cert,
            client_key = client.key,
        ),
    )
    .await
}

fn farm(edge: &Server) -> UpstreamStatus {
    let status = edge.status();
    status
        .upstreams
        .into_iter()
        .find(|u| u.name == "farm")
        .unwrap()
}

/// The addresses of the farm's servers that take requests now.
fn serving(edge: &Server) -> Vec<String> {
    farm(edge)
        .servers
        .into_iter()
        .filter(|s| s.up && !s.ejected)
        .map(|s| s.address)
        .collect()
}

fn hosts(ips: &[&str]) -> String {
    ips.iter().map(|ip| format!("{ip} {GATES}\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_are_followed_through_dns_under_load_without_a_failed_request() {
    let pki = TestPki::new();
    let port = free_gate_port();
    let at = |last: u8| SocketAddr::from(([127, 0, 0, last], port));
    let (_g1, o1) = gate(&pki, at(11), GATES).await;
    let (_g2, o2) = gate(&pki, at(12), GATES).await;
    let (_g3, o3) = gate(&pki, at(13), GATES).await;
    let mut dns = Dnsmasq::start(pki.dir(), &hosts(&["127.0.0.11", "127.0.0.12"]), "");
    let edge = edge(
        &pki,
        &format!(
            r#"{{ dns = "{GATES}", port = {port}, resolver = "{}", min_ttl = "1s", max_ttl = "5s" }}"#,
            dns.addr
        ),
    )
    .await;
    until("the first answer's two gates", || {
        serving(&edge) == [at(11).to_string(), at(12).to_string()]
    })
    .await;
    let discovery = farm(&edge).discovery.unwrap();
    assert!(discovery.resolved);
    assert_eq!(discovery.lookup, format!("dns {GATES} port {port}"));
    assert_eq!(discovery.resolver, dns.addr.to_string());

    let browser = TlsClient::new(&pki.ca_file(), SITE);
    let addr = edge.local_addr("public").unwrap();
    let load = Load::start(&browser, addr, 4, "/");
    until("traffic on both gates", || {
        o1.requests() > 0 && o2.requests() > 0
    })
    .await;

    // A new gate in DNS gets traffic, once its health check has passed.
    dns.hosts(&hosts(&["127.0.0.11", "127.0.0.12", "127.0.0.13"]));
    until("traffic on the added gate", || o3.requests() > 0).await;
    assert_eq!(serving(&edge).len(), 3);

    // A reload that asks DNS the same question starts with the servers DNS last gave, up:
    // no moment without servers.
    edge.reload_from(&pki.dir().join("edge.toml"))
        .await
        .unwrap();
    assert_eq!(serving(&edge).len(), 3, "{:#?}", farm(&edge));

    // A gate gone from DNS takes no new request.
    dns.hosts(&hosts(&["127.0.0.12", "127.0.0.13"]));
    until("the removed gate out of the set", || {
        farm(&edge).servers.len() == 2
    })
    .await;
    let others = || o2.requests() + o3.requests();
    let settled = others() + 200;
    until("the requests in flight on it to end", || others() > settled).await;
    let left = o1.requests();
    let later = others() + 200;
    until("more traffic on the others", || others() > later).await;
    assert_eq!(o1.requests(), left, "the removed gate got new requests");

    // The DNS server dies: the last good set keeps serving.
    dns.kill();
    until("a failed lookup to show", || {
        farm(&edge).discovery.is_some_and(|d| d.failing > 0)
    })
    .await;
    let later = others() + 200;
    until("traffic on the last good set", || others() > later).await;
    let farm_now = farm(&edge);
    assert_eq!(
        serving(&edge),
        [at(12).to_string(), at(13).to_string()],
        "{farm_now:#?}"
    );
    let discovery = farm_now.discovery.unwrap();
    assert!(discovery.resolved && discovery.last_answer_at.is_some());
    assert!(discovery.failures.iter().map(|f| f.count).sum::<u64>() > 0);
    assert!(discovery.last_failure.is_some());

    let report = load.finish().await;
    assert_no_failures(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_give_each_gate_its_port_and_weight() {
    let pki = TestPki::new();
    let (p1, p2) = (free_gate_port(), free_gate_port());
    let (_g1, o1) = gate(
        &pki,
        SocketAddr::from(([127, 0, 0, 11], p1)),
        "gate1.farm.test",
    )
    .await;
    let (_g2, o2) = gate(
        &pki,
        SocketAddr::from(([127, 0, 0, 12], p2)),
        "gate2.farm.test",
    )
    .await;
    // Priority 0 for both; a priority-1 backup that must never be used.
    let conf = format!(
        "srv-host=_gate._tcp.farm.test,gate1.farm.test,{p1},0,1\n\
         srv-host=_gate._tcp.farm.test,gate2.farm.test,{p2},0,3\n\
         srv-host=_gate._tcp.farm.test,gate3.farm.test,{p1},1,1\n"
    );
    let hosts =
        "127.0.0.11 gate1.farm.test\n127.0.0.12 gate2.farm.test\n127.0.0.13 gate3.farm.test\n";
    let dns = Dnsmasq::start(pki.dir(), hosts, &conf);
    // No tls.server_name: each gate's certificate is checked against its SRV target.
    let edge = edge(
        &pki,
        &format!(
            r#"{{ srv = "_gate._tcp.farm.test", resolver = "{}" }}"#,
            dns.addr
        ),
    )
    .await;
    let (a1, a2) = (format!("127.0.0.11:{p1}"), format!("127.0.0.12:{p2}"));
    until("both SRV targets up", || {
        let mut up = serving(&edge);
        up.sort();
        let mut want = vec![a1.clone(), a2.clone()];
        want.sort();
        up == want
    })
    .await;
    let weights: Vec<(String, u32)> = farm(&edge)
        .servers
        .into_iter()
        .map(|s| (s.address, s.weight))
        .collect();
    assert!(weights.contains(&(a1.clone(), 1)), "{weights:?}");
    assert!(weights.contains(&(a2.clone(), 3)), "{weights:?}");
    assert_eq!(
        weights.len(),
        2,
        "the priority-1 backup is not used: {weights:?}"
    );

    // Round robin follows the weights exactly, request by request.
    let browser = TlsClient::new(&pki.ca_file(), SITE);
    let addr = edge.local_addr("public").unwrap();
    let (before1, before2) = (o1.requests(), o2.requests());
    let mut conn = browser.connect(addr).await;
    for _ in 0..40 {
        assert_eq!(conn.get("/").await.status, 200);
    }
    // Health checks reach the origins too; they are not requests of the load, so count
    // what the edge sent: its per-server counters.
    let sent: Vec<(String, u64)> = farm(&edge)
        .servers
        .into_iter()
        .map(|s| (s.address, s.requests))
        .collect();
    let of = |a: &str| sent.iter().find(|(s, _)| s == a).map(|(_, n)| *n);
    assert_eq!((of(&a1), of(&a2)), (Some(10), Some(30)), "{sent:?}");
    assert!(o1.requests() > before1 && o2.requests() > before2);
}
