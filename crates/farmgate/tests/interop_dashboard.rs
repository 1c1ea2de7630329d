//! The dashboard in a real browser: headless Chromium (Debian's `chromium`, which .ci/run
//! installs) renders the admin page of running farmgate processes, and runs the page's render
//! function against partial documents; where a user must act (typing the admin token), the
//! test drives it over the DevTools protocol. Screenshots are saved under `target/tmp/` as test
//! artifacts. Behind the `interop` feature; a missing Chromium fails the test.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use farmgate_testkit::origin::Origin;
use farmgate_testkit::pki::TestPki;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, WebSocket};

use crate::cli::Running;
use crate::operations::{
    ADMIN, browser, edge_process, gate_process_with, listening, plain_get, probe_gate,
};

/// Headless Chromium as the machine notes prescribe: no sandbox (root), no GPU, no network of
/// its own (a fresh profile each time goes with these).
const CHROMIUM: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
];

/// Longest the browser may take to show what a test waits for: a failure report, not a
/// synchronisation delay (each wait ends as soon as the page changes).
const PATIENCE: Duration = Duration::from_secs(60);

/// Headless Chromium with a fresh profile, run to completion.
fn chromium(args: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let user_data = format!("--user-data-dir={}", profile.path().display());
    Command::new("chromium")
        .args(CHROMIUM)
        .arg(&user_data)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("chromium is required for the dashboard tests ({e}); .ci/run installs it")
        })
}

/// The DOM of `url` once its scripts have run (virtual time: the 2 s refresh fires too, and
/// the budget waits for the page's fetches).
fn dom(url: &str) -> String {
    let out = chromium(&["--virtual-time-budget=3000", "--dump-dom", url]);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium --dump-dom {url} failed: {}\n{dom}",
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// A screenshot of `url` saved as `target/tmp/NAME.png`, where CI keeps it.
fn screenshot(url: &str, name: &str) {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.png"));
    let _ = std::fs::remove_file(&path);
    let arg = format!("--screenshot={}", path.display());
    let out = chromium(&[
        "--virtual-time-budget=3000",
        "--window-size=1400,1600",
        &arg,
        url,
    ]);
    let png = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {} ({e}): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        png.starts_with(b"\x89PNG"),
        "{} is not a PNG",
        path.display()
    );
    eprintln!("dashboard screenshot: {}", path.display());
}

/// The HTML of the table row (or element) whose opening tag has `attribute`.
fn element_with<'d>(dom: &'d str, attribute: &str) -> &'d str {
    let start = dom
        .find(attribute)
        .unwrap_or_else(|| panic!("no {attribute} in the page:\n{dom}"));
    let end = dom[start..].find("</tr>").map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

#[test]
fn the_render_function_copes_with_every_field_absent() {
    // The page itself, with its refresh turned off, and a script that renders documents that
    // lack fields or hold the wrong types, as an older or partial /status would.
    let documents = r#"[
        undefined, null, 1, "text", [], {},
        {"listeners": [{}], "upstreams": [{}], "acme": [{}], "warnings": [{}]},
        {"listeners": null, "upstreams": "x", "acme": {}, "warnings": 5, "reloads": []},
        {"upstreams": [{"servers": [{}, null, 3, {"last_minute": {"history": [1, null, "a", 2]}}], "tls": {}}]},
        {"upstreams": [{"tls": {"client_certificate": {}}, "servers": [{"last_failure": {}, "state": "draining"}]}]},
        {"listeners": [{"client_auth": {}}, {"client_auth": {"refused": [{}, null], "recent_refusals": [{}], "compat_acceptances": [{}]}, "certificates": [{}, {"facts": [{}]}]}]},
        {"reloads": {"last": {}}, "acme": [{"domains": null}], "warnings": [{"facts": [null, {}]}]}
    ]"#;
    let page = farmgate_admin::DASHBOARD
        .replacen(
            "<head>",
            "<head><script>window.FARMGATE_NO_REFRESH = true;</script>",
            1,
        )
        .replacen(
            "</body>",
            &format!(
                r#"<script>
const documents = {documents};
const outcomes = documents.map((doc, i) => {{
  try {{ farmgate.render(doc); farmgate.meta(doc); return "ok"; }}
  catch (e) {{ return "document " + i + " threw " + e; }}
}});
const failures = outcomes.filter(o => o !== "ok");
document.getElementById("out").textContent = failures.length
  ? "RENDER FAILED: " + failures.join("; ")
  : "RENDERED " + outcomes.length + " DOCUMENTS";
</script></body>"#
            ),
            1,
        );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("render.html");
    std::fs::write(&file, page).unwrap();
    let dom = dom(&format!("file://{}", file.display()));
    assert!(dom.contains("RENDERED 12 DOCUMENTS"), "{dom}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_dashboard_shows_traffic_a_dead_gate_and_the_client_certificate() {
    let pki = TestPki::new();
    let backend = pki.server("backend.farm.test");
    let mut origins = Vec::new();
    let mut gates = Vec::new();
    for i in 0..2 {
        let origin = Origin::start(&format!("origin-{i}")).await;
        gates.push(gate_process_with(
            &pki,
            &format!("gate-{i}"),
            &backend,
            origin.addr,
            "",
        ));
        origins.push(origin);
    }
    let addrs: Vec<SocketAddr> = gates.iter().map(|(_, a)| *a).collect();
    let health =
        r#"health = { path = "/", interval = "200ms", timeout = "1s", rise = 1, fall = 1 }"#;
    let (mut edge, public, admin, _) = edge_process(&pki, &addrs, health);
    let browser = browser(&pki);
    for _ in 0..20 {
        assert_eq!(browser.get(public, "/").await.status, 200);
    }
    let (victim, dead) = gates.remove(1);
    victim.signal("KILL");
    let _ = victim.wait();
    edge.wait_for("server marked down");

    let url = format!("http://{admin}/");
    let dom = dom(&url);
    screenshot(&url, "dashboard-edge");

    let alive = element_with(&dom, &format!(r#"data-server="{}""#, addrs[0]));
    assert!(alive.contains(r#"data-state="up""#), "{alive}");
    assert!(alive.contains(" ms</td>"), "p50 and p99 shown: {alive}");
    assert!(alive.contains("<polyline"), "a sparkline: {alive}");
    let dead = element_with(&dom, &format!(r#"data-server="{dead}""#));
    assert!(dead.contains(r#"data-state="down""#), "{dead}");
    assert!(dead.contains(">down<"), "{dead}");
    assert!(dead.contains("health_check"), "the failed check: {dead}");
    assert!(dom.contains("req/s"), "{dom}");

    let client = element_with(&dom, r#"data-certificate="upstream farm (client)""#);
    assert!(client.contains("dns:edge.farm.test"), "{client}");
    assert!(client.contains("days left"), "{client}");
    assert!(client.contains("permits clientAuth"), "{client}");

    // The page shows what /status says.
    let (_, status) = plain_get(admin, "/status").await;
    let status: Value = serde_json::from_str(&status).unwrap();
    let requests: u64 = status["upstreams"][0]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["requests"].as_u64().unwrap())
        .sum();
    assert!(requests >= 20, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gates_dashboard_shows_its_refusals_by_reason_and_who_was_refused() {
    let pki = TestPki::new();
    let other_ca = TestPki::other();
    let origin = Origin::start("app").await;
    let backend = pki.server("backend.farm.test");
    let (mut process, gate) = gate_process_with(&pki, "gate", &backend, origin.addr, ADMIN);
    let admin = listening(&mut process, "admin");
    let intruder = pki.client("intruder.farm.test");
    let stranger = other_ca.client("edge.farm.test");
    let edge = pki.client("edge.farm.test");
    probe_gate(
        &pki,
        gate,
        &[None, Some(&intruder), Some(&stranger), Some(&edge)],
    )
    .await;

    let url = format!("http://{admin}/");
    let dom = dom(&url);
    screenshot(&url, "dashboard-gate");
    for reason in ["no_certificate", "not_allowed", "unknown_ca"] {
        let row = element_with(&dom, &format!(r#"data-reason="{reason}""#));
        assert!(row.contains(r#"data-count="1""#), "{row}");
    }
    let intruder = element_with(&dom, r#"data-refused="not_allowed""#);
    assert!(intruder.contains("intruder.farm.test"), "{intruder}");
    assert!(intruder.contains("127.0.0.1:"), "the source: {intruder}");
    let anonymous = element_with(&dom, r#"data-refused="no_certificate""#);
    assert!(anonymous.contains("no certificate"), "{anonymous}");
}

/// One page in headless Chromium, driven over the DevTools protocol (the WebSocket that
/// `--remote-debugging-port` opens): run scripts in it and wait for the DOM to change.
struct DevTools {
    ws: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
    // Dropped after the socket: the browser is killed, then its profile removed.
    _chromium: Running,
    _profile: tempfile::TempDir,
}

impl DevTools {
    /// Chromium showing `url`, once its load event has fired.
    fn open(url: &str) -> DevTools {
        let profile = tempfile::tempdir().unwrap();
        let mut command = Command::new("chromium");
        command
            .args(CHROMIUM)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--remote-debugging-port=0", "about:blank"]);
        let mut chromium = Running::start("chromium", command);
        let line = chromium.wait_for("DevTools listening on ");
        let endpoint = line
            .split("DevTools listening on ")
            .nth(1)
            .unwrap()
            .trim()
            .to_owned();
        let host = endpoint
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap();
        let tcp = TcpStream::connect(host).unwrap();
        tcp.set_read_timeout(Some(PATIENCE)).unwrap();
        let (ws, _) = tokio_tungstenite::tungstenite::client(endpoint.as_str(), tcp)
            .unwrap_or_else(|e| panic!("DevTools at {endpoint}: {e}"));
        let mut devtools = DevTools {
            ws,
            session: String::new(),
            next_id: 0,
            _chromium: chromium,
            _profile: profile,
        };
        let target = devtools.call("Target.createTarget", json!({ "url": "about:blank" }));
        let attached = devtools.call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        devtools.session = attached["sessionId"].as_str().unwrap().to_owned();
        devtools.call("Page.enable", json!({}));
        devtools.call("Page.navigate", json!({ "url": url }));
        devtools.wait_event("Page.loadEventFired");
        devtools
    }

    /// Call `method` (in the page's session once there is one) and return its result; events
    /// that arrive meanwhile are passed over.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.ws.send(Message::text(message.to_string())).unwrap();
        loop {
            let reply = self.receive();
            if reply["id"] == json!(id) {
                assert!(reply["error"].is_null(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// Wait for the page's event `method`.
    fn wait_event(&mut self, method: &str) {
        while self.receive()["method"] != json!(method) {}
    }

    fn receive(&mut self) -> Value {
        loop {
            match self.ws.read() {
                Ok(Message::Text(text)) => return serde_json::from_str(text.as_str()).unwrap(),
                Ok(_) => continue,
                Err(e) => panic!("DevTools: no message within {PATIENCE:?} ({e})"),
            }
        }
    }

    /// The value of `expression` in the page (a promise is awaited).
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
        );
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression}: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    /// Wait until an element matches `selector`: a MutationObserver in the page resolves as
    /// soon as the DOM changes so (or fails after [`PATIENCE`] with the page's content).
    fn wait_for(&mut self, selector: &str) {
        let script = format!(
            r#"new Promise((resolve, reject) => {{
  const selector = {selector:?};
  if (document.querySelector(selector)) return resolve(true);
  const observer = new MutationObserver(() => {{
    if (document.querySelector(selector)) {{ observer.disconnect(); resolve(true); }}
  }});
  observer.observe(document, {{ childList: true, subtree: true, attributes: true }});
  setTimeout(() => reject(new Error("no " + selector + " in " + document.body.innerHTML)), {ms});
}})"#,
            ms = PATIENCE.as_millis()
        );
        self.eval(&script);
    }

    /// Type `token` into the page's token form and submit it.
    fn submit_token(&mut self, token: &str) {
        self.eval(&format!(
            r#"(() => {{
  const form = document.querySelector("[data-login]");
  form.elements.token.value = {token:?};
  form.requestSubmit();
  return true;
}})()"#
        ));
    }
}

#[test]
fn a_dashboard_behind_a_token_asks_for_it_and_shows_the_data_once_given() {
    let pki = TestPki::new();
    let backend = pki.server("backend.farm.test");
    let token = "d4e1b07a9c3f52e86b1d0a7c4e9f3b25";
    let token_file = pki.dir().join("admin.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let top = format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {token_file:?}");
    // The dashboard needs no backend: the gate's upstream is never asked.
    let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let (mut process, _) = gate_process_with(&pki, "gate", &backend, nowhere, &top);
    let admin = listening(&mut process, "admin");

    let mut page = DevTools::open(&format!("http://{admin}/"));
    // /status answered 401: the page asks for the token and shows no data.
    page.wait_for("[data-login-message='missing']");
    assert_eq!(
        page.eval("document.querySelector('[data-gate]')"),
        Value::Null
    );
    page.submit_token("not-the-token");
    page.wait_for("[data-login-message='wrong']");
    assert_eq!(
        page.eval("sessionStorage.getItem('farmgate.admin.token')"),
        Value::Null,
        "a refused token is not kept"
    );
    page.submit_token(token);
    page.wait_for("[data-gate='gate']");
    assert_eq!(
        page.eval("sessionStorage.getItem('farmgate.admin.token')"),
        json!(token)
    );
    assert_eq!(page.eval("document.cookie"), json!(""), "no cookies");
    // The next refresh reads the stored token: the data stays.
    page.wait_for("body[data-rendered]:not([data-rendered='1']) [data-gate='gate']");
    process.wait_for("admin endpoint: refused GET /status");
}
