//! Two edges behind a stock HAProxy in `mode tcp` with `send-proxy-v2`: the app sees the
//! browser's own address through either edge, and a direct client from elsewhere is served
//! as before. The edges share `ticket_keys`: a session `openssl s_client` made with one
//! resumes on the other, not on an edge with other keys, and still after the file is rotated
//! (a new key first) while it lists the old key. Behind the `interop` feature; a missing
//! program fails the test.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use farmgate_testkit::origin::{Origin, header_values, parse_echo};
use farmgate_testkit::pki::TestPki;

use crate::cli::Running;
use crate::outside::{outside, text};

/// How long HAProxy may take to listen before the test fails (not a delay: the wait ends as
/// soon as it accepts a connection).
const PATIENCE: Duration = Duration::from_secs(60);

const SITE: &str = "www.farm.test";

/// HAProxy connects to the edges from 127.0.0.1; browsers come from other loopback addresses.
const FROM_HAPROXY: &str = "proxy_protocol = { from = [\"127.0.0.1/32\"] }";

/// A free port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A stock HAProxy relaying TCP to `edges` in turn, each connection prefixed with a PROXY v2
/// header; killed (by its PID, it is our child) when dropped.
struct HaProxy {
    child: Child,
    addr: SocketAddr,
}

impl HaProxy {
    fn start(dir: &Path, edges: &[SocketAddr]) -> HaProxy {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let servers: String = edges
            .iter()
            .enumerate()
            .map(|(i, e)| format!("    server edge{i} {e} send-proxy-v2\n"))
            .collect();
        let conf = format!(
            "global\n    maxconn 64\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\nfrontend balancer\n    bind {addr}\n    default_backend edges\nbackend edges\n    balance roundrobin\n{servers}"
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f", path.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("haproxy is required for interop tests ({e}); .ci/run installs it")
            });
        let mut haproxy = HaProxy { child, addr };
        let started = Instant::now();
        while TcpStream::connect(addr).is_err() {
            if let Some(status) = haproxy.child.try_wait().unwrap() {
                let check = outside("haproxy", &["-c", "-f", path.to_str().unwrap()]);
                panic!(
                    "haproxy exited ({status}) before listening:\n{}",
                    text(&check)
                );
            }
            assert!(started.elapsed() < PATIENCE, "haproxy did not listen");
            std::thread::yield_now();
        }
        haproxy
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An edge in front of `origin`, with `listener_extra` among its listener's keys and
/// `tls_extra` in its `[listener.tls]`; its process and address.
fn edge(
    pki: &TestPki,
    name: &str,
    origin: &Origin,
    listener_extra: &str,
    tls_extra: &str,
) -> (Running, SocketAddr) {
    let site = pki.server(SITE);
    let config = pki.dir().join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"
[[listener]]
name = "public"
listen = "127.0.0.1:0"
{listener_extra}
[listener.tls]
certificate = {:?}
private_key = {:?}
{tls_extra}
[[listener.route]]
upstream = "app"
[upstream.app]
servers = ["{}"]
"#,
            site.cert, site.key, origin.addr
        ),
    )
    .unwrap();
    let mut process = Running::spawn(&["run", "-c", config.to_str().unwrap()]);
    let addr = process.listening("public");
    (process, addr)
}

/// `curl` from `source` to https://www.farm.test/ at `at`: (x-origin, X-Forwarded-For).
fn curl_from(pki: &TestPki, source: &str, at: SocketAddr) -> (String, String) {
    let ca = pki.ca_file();
    let resolve = format!("{SITE}:{}:{}", at.port(), at.ip());
    let url = format!("https://{SITE}:{}/", at.port());
    let out = outside(
        "curl",
        &[
            "-sS",
            "-i",
            "--interface",
            source,
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &resolve,
            &url,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let answer = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let (head, body) = answer.split_once("\n\n").unwrap();
    let origin = head
        .lines()
        .find_map(|l| l.strip_prefix("x-origin: "))
        .unwrap_or_default()
        .to_owned();
    let (_, headers) = parse_echo(body);
    (
        origin,
        header_values(&headers, "x-forwarded-for").join(" | "),
    )
}

// Outside programs block their thread while the origins run in this runtime: use two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_with_send_proxy_v2_passes_the_browsers_address_through_both_edges() {
    let pki = TestPki::new();
    let (app1, app2) = (Origin::start("app1").await, Origin::start("app2").await);
    let (_edge1, at1) = edge(&pki, "edge1", &app1, FROM_HAPROXY, "");
    let (_edge2, at2) = edge(&pki, "edge2", &app2, FROM_HAPROXY, "");
    let haproxy = HaProxy::start(pki.dir(), &[at1, at2]);
    // Round robin: one request through each edge, both from the browser at 127.0.0.77.
    let mut seen = [
        curl_from(&pki, "127.0.0.77", haproxy.addr),
        curl_from(&pki, "127.0.0.77", haproxy.addr),
    ];
    seen.sort();
    assert_eq!(
        seen,
        [
            ("app1".to_owned(), "127.0.0.77".to_owned()),
            ("app2".to_owned(), "127.0.0.77".to_owned())
        ]
    );
    // A browser that reaches an edge directly, from a source not in proxy_protocol.from, is
    // an ordinary client.
    assert_eq!(
        curl_from(&pki, "127.0.0.78", at1),
        ("app1".to_owned(), "127.0.0.78".to_owned())
    );
    // From such a source a PROXY header is not read as one (curl's own, before TLS): the
    // handshake fails, nothing reaches the app.
    let before = app1.requests();
    let ca = pki.ca_file();
    let resolve = format!("{SITE}:{}:127.0.0.1", at1.port());
    let forged = outside(
        "curl",
        &[
            "-sS",
            "--haproxy-protocol",
            "--interface",
            "127.0.0.78",
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &resolve,
            &format!("https://{SITE}:{}/", at1.port()),
        ],
    );
    assert!(!forged.status.success(), "{}", text(&forged));
    assert_eq!(app1.requests(), before);
}

/// `openssl s_client` to `at` for one request, TLS 1.3, reading the session from `sess_in`
/// if given and writing it to `sess_out`: whether the handshake resumed a session.
fn s_client(pki: &TestPki, at: SocketAddr, sess_in: Option<&Path>, sess_out: &Path) -> bool {
    let ca = pki.ca_file();
    let mut command = format!(
        "printf 'GET / HTTP/1.1\\r\\nhost: {SITE}\\r\\nconnection: close\\r\\n\\r\\n' | openssl s_client -connect {at} -servername {SITE} -CAfile {} -tls1_3 -ign_eof -sess_out {}",
        ca.display(),
        sess_out.display()
    );
    if let Some(sess_in) = sess_in {
        command.push_str(&format!(" -sess_in {}", sess_in.display()));
    }
    let out = outside("sh", &["-c", &format!("{command} 2>&1")]);
    let shown = text(&out);
    assert!(shown.contains("HTTP/1.1 200 OK"), "{shown}");
    match (
        shown.contains("Reused, TLSv1.3"),
        shown.contains("New, TLSv1.3"),
    ) {
        (true, false) => true,
        (false, true) => false,
        _ => panic!("neither new nor reused:\n{shown}"),
    }
}

/// 80 random bytes from `openssl rand`, as an operator makes a ticket key.
fn new_key(dir: &Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    let out = outside("openssl", &["rand", "-out", path.to_str().unwrap(), "80"]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::read(path).unwrap()
}

/// Write `keys` to `path` whole, as `mv` of a new file would (the watcher sees one change).
fn write_keys(path: &PathBuf, keys: &[&[u8]]) {
    let fresh = path.with_extension("new");
    std::fs::write(&fresh, keys.concat()).unwrap();
    std::fs::rename(&fresh, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openssl_session_from_one_edge_resumes_on_another_with_the_same_ticket_keys() {
    let pki = TestPki::new();
    let app = Origin::start("app").await;
    let dir = pki.dir();
    let (old, new) = (new_key(dir, "old.key"), new_key(dir, "new.key"));
    let shared = dir.join("tickets.key");
    write_keys(&shared, &[&old]);
    let other = dir.join("other.key");
    write_keys(&other, &[&new_key(dir, "third.key")]);
    let shared_keys = "ticket_keys = \"tickets.key\"";
    let (_edge1, at1) = edge(&pki, "edge1", &app, "", shared_keys);
    let (mut edge2, at2) = edge(&pki, "edge2", &app, "", shared_keys);
    let (_edge3, at3) = edge(&pki, "edge3", &app, "", "ticket_keys = \"other.key\"");
    let session = dir.join("session.pem");
    let scratch = dir.join("scratch.pem");
    assert!(!s_client(&pki, at1, None, &session), "a first visit");
    assert!(
        s_client(&pki, at2, Some(&session), &scratch),
        "another edge, the same keys"
    );
    assert!(
        !s_client(&pki, at3, Some(&session), &scratch),
        "an edge with other keys"
    );

    // Rotation: the new key first, the old one after it. The edge reloads (the file is
    // watched) and still opens the old key's tickets.
    write_keys(&shared, &[&new, &old]);
    edge2.wait_for("reloaded ");
    assert!(
        s_client(&pki, at2, Some(&session), &scratch),
        "the old key is still listed"
    );
    // The old key goes: its tickets no longer open.
    write_keys(&shared, &[&new]);
    edge2.wait_for("reloaded ");
    assert!(
        !s_client(&pki, at2, Some(&session), &scratch),
        "the old key is gone"
    );
}
