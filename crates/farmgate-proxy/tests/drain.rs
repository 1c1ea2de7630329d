//! Draining a server through the admin endpoint (`POST /upstreams/NAME/servers/ADDR/drain`),
//! served in process exactly as `farmgate run` serves it (`Server::admin_endpoint`): under a
//! steady load nothing fails and the drained server gets no new request; requests already on
//! it finish; undrain brings traffic back; a reload keeps the drain; the token guards it; and
//! the rolling-deploy recipe of docs/operations.md works end to end.
//!
//! Nothing waits on a clock: the tests wait for what the origins saw or what `/upstreams` says.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use farmgate_proxy::Server;
use farmgate_testkit::load::{Load, assert_no_failures};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::farm::{BACKEND, Farm, gate_toml, start};
use crate::queue::{HeldOrigin, get, proxy, proxy_toml, until};

/// Serve `server`'s admin endpoint on a free loopback port, as `farmgate run` does; its address.
async fn admin(server: &Arc<Server>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let endpoint = server.admin_endpoint(farmgate_admin::Limits::default());
    tokio::spawn(farmgate_admin::serve(
        listener,
        Arc::new(endpoint),
        server.stopping_signal(),
    ));
    addr
}

/// `METHOD path` on the admin endpoint with `headers` (whole lines); status and body.
async fn call(admin: SocketAddr, method: &str, path: &str, headers: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(admin).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: admin\r\n{headers}content-length: 0\r\nconnection: close\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
    let body = raw.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// Drain (`action` "drain") or undrain server `server` of `upstream`; the answer, which must
/// be a `200`.
async fn set(admin: SocketAddr, upstream: &str, server: SocketAddr, action: &str) -> Value {
    let path = format!("/upstreams/{upstream}/servers/{server}/{action}");
    let (status, body) = call(admin, "POST", &path, "").await;
    assert_eq!(status, 200, "{action} {server}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Server `server` of `upstream` in `GET /upstreams`.
async fn listed(admin: SocketAddr, upstream: &str, server: SocketAddr) -> Value {
    let (status, body) = call(admin, "GET", "/upstreams", "").await;
    assert_eq!(status, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    let upstream = doc["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == upstream)
        .unwrap_or_else(|| panic!("no upstream {upstream} in {doc}"));
    upstream["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["address"] == server.to_string())
        .unwrap_or_else(|| panic!("no server {server} in {doc}"))
        .clone()
}

/// Wait until `GET /upstreams` says `server` has nothing in flight, as the recipe's script
/// does (each look is a request: the proxy runs in between).
async fn until_idle(admin: SocketAddr, upstream: &str, server: SocketAddr) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while listed(admin, upstream, server).await["in_flight"] != 0 {}
    })
    .await
    .expect("the drained server's requests never finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_deploy_with_drain_under_load_fails_no_request() {
    let mut farm = Farm::start(&[1, 1]).await;
    let admin = admin(&farm.edge).await;
    let load = Load::start(&farm.browser(), farm.edge_addr, 3, "/");
    for origin in &farm.origins {
        origin.wait_for_requests(20).await;
    }
    let deployed = farm.gates[1].1;

    // 1. Drain: the answer says so, and what is still on the server.
    let answer = set(admin, "farm", deployed, "drain").await;
    assert_eq!(answer["server"]["state"], "draining", "{answer}");
    assert_eq!(answer["changed"], true, "{answer}");
    assert_eq!(answer["available"], 1, "{answer}");
    // 2. Wait for in_flight 0: what started before the drain has finished.
    until_idle(admin, "farm", deployed).await;
    let seen = farm.origins[1].requests();
    // Nothing new reaches it while the other server keeps serving.
    let other = farm.origins[0].requests();
    farm.origins[0].wait_for_requests(other + 300).await;
    assert_eq!(
        farm.origins[1].requests(),
        seen,
        "the drained server got a request"
    );
    let status = farm.edge.status();
    assert_eq!(
        serde_json::to_value(status.upstreams[0].servers[1].state).unwrap(),
        "draining"
    );
    assert!(status.upstreams[0].servers[1].up, "health is still its own");

    // 3. Deploy: the gate stops and a new one starts on the same address.
    let (old, _) = farm.gates.remove(1);
    old.shutdown(Duration::from_secs(10)).await;
    drop(old);
    let text = gate_toml(
        "gate",
        &farm.pki.server(BACKEND),
        &[&farm.pki.ca_file()],
        &[&format!("dns:{}", crate::farm::EDGE)],
        "",
        farm.origins[1].addr,
    )
    .replace("127.0.0.1:0", &deployed.to_string());
    let new = start(farm.pki.dir(), "gate-1-new", &text).await;
    assert_eq!(new.local_addr("gate"), Some(deployed));

    // 4. Undrain: traffic comes back to it.
    let answer = set(admin, "farm", deployed, "undrain").await;
    assert_eq!(answer["server"]["state"], "up", "{answer}");
    assert_eq!(answer["available"], 2, "{answer}");
    farm.origins[1].wait_for_requests(seen + 50).await;

    let report = load.finish().await;
    assert_no_failures(&report);
    let metrics = farm.edge.metrics().encode();
    for action in ["drain", "undrain"] {
        let line = format!(
            r#"farmgate_server_drains_total{{upstream="farm",server="{deployed}",action="{action}"}} 1"#
        );
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    let drained = crate::logs::lines_with(&["server drained at the request of 127.0.0.1:"]);
    assert!(!drained.is_empty(), "the drain is logged with who asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_on_a_drained_server_finish_and_new_ones_go_elsewhere() {
    let (held, other) = (HeldOrigin::start().await, HeldOrigin::start().await);
    let proxy = proxy("pair", &[held.addr, other.addr], "").await;
    let admin = admin(&proxy.server).await;
    // Round robin: the first request goes to the first server, which holds it.
    let slow = tokio::spawn(get(proxy.addr, "/hold/slow"));
    held.arrived(1).await;
    assert_eq!(other.requests(), 0);

    let answer = set(admin, "pair", held.addr, "drain").await;
    assert_eq!(answer["server"]["in_flight"], 1, "{answer}");
    for _ in 0..10 {
        assert_eq!(get(proxy.addr, "/quick").await.0, "HTTP/1.1 200 OK");
    }
    assert_eq!(other.requests(), 10);
    assert_eq!(held.requests(), 1, "nothing new on the drained server");
    let listed_now = listed(admin, "pair", held.addr).await;
    assert_eq!(listed_now["state"], "draining", "{listed_now}");
    assert_eq!(listed_now["in_flight"], 1, "{listed_now}");
    assert!(listed_now["draining_since"].is_u64(), "{listed_now}");

    // The request on it finishes, and with it the server's in-flight count.
    held.release(1);
    assert_eq!(slow.await.unwrap().0, "HTTP/1.1 200 OK");
    until_idle(admin, "pair", held.addr).await;
    // Draining twice changes nothing; undrain puts it back.
    assert_eq!(
        set(admin, "pair", held.addr, "drain").await["changed"],
        false
    );
    set(admin, "pair", held.addr, "undrain").await;
    for _ in 0..4 {
        assert_eq!(get(proxy.addr, "/quick").await.0, "HTTP/1.1 200 OK");
    }
    assert_eq!(held.requests(), 3, "back in rotation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_a_drain_on_an_address_that_remains() {
    let (a, b, c) = (
        HeldOrigin::start().await,
        HeldOrigin::start().await,
        HeldOrigin::start().await,
    );
    let proxy = proxy("kept", &[a.addr, b.addr], "").await;
    let admin = admin(&proxy.server).await;
    set(admin, "kept", a.addr, "drain").await;

    // A reload that adds a server and changes the balance keeps `a` drained.
    let text = proxy_toml(
        "kept",
        &[a.addr, b.addr, c.addr],
        "balance = \"least_requests\"",
    );
    std::fs::write(&proxy.config, text).unwrap();
    proxy.server.reload_from(&proxy.config).await.unwrap();
    assert_eq!(listed(admin, "kept", a.addr).await["state"], "draining");
    for _ in 0..12 {
        assert_eq!(get(proxy.addr, "/quick").await.0, "HTTP/1.1 200 OK");
    }
    assert_eq!(a.requests(), 0, "still drained after the reload");
    assert_eq!(b.requests() + c.requests(), 12);

    // A reload without it forgets the drain: the address comes back as a new server.
    let text = proxy_toml("kept", &[b.addr, c.addr], "");
    std::fs::write(&proxy.config, text).unwrap();
    proxy.server.reload_from(&proxy.config).await.unwrap();
    let text = proxy_toml("kept", &[a.addr, b.addr, c.addr], "");
    std::fs::write(&proxy.config, text).unwrap();
    proxy.server.reload_from(&proxy.config).await.unwrap();
    assert_eq!(listed(admin, "kept", a.addr).await["state"], "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_server_keeps_its_health_checks() {
    let origin = farmgate_testkit::origin::Origin::start("checked").await;
    let health =
        r#"health = { path = "/", interval = "100ms", timeout = "1s", rise = 1, fall = 1 }"#;
    let proxy = proxy("checked", &[origin.addr], health).await;
    let admin = admin(&proxy.server).await;
    set(admin, "checked", origin.addr, "drain").await;
    // No request can reach it now: whatever arrives is a health check.
    let before = origin.requests();
    origin.wait_for_requests(before + 3).await;
    let server = listed(admin, "checked", origin.addr).await;
    assert_eq!(server["state"], "draining", "{server}");
    assert_eq!(server["up"], true, "its checks pass: {server}");
    let (answer, _) = get(proxy.addr, "/").await;
    assert_eq!(answer, "HTTP/1.1 503 Service Unavailable");
    let answer = set(admin, "checked", origin.addr, "undrain").await;
    assert_eq!(answer["server"]["state"], "up", "{answer}");
    assert_eq!(get(proxy.addr, "/").await.0, "HTTP/1.1 200 OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_api_needs_the_token_and_a_server_that_exists() {
    let pki = farmgate_testkit::pki::TestPki::new();
    let token_file = pki.dir().join("admin.token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    // Servers that are never asked: the API needs none of them up.
    let v4: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {token_file:?}\n{}",
        proxy_toml("farm", &[v4], "").replace(
            &format!("servers = [\"{v4}\"]"),
            &format!("servers = [\"{v4}\", \"[::1]:9\"]")
        )
    );
    let server = Arc::new(start(pki.dir(), "guarded", &text).await);
    let admin = admin(&server).await;
    let token = "authorization: Bearer s3cret\r\n";
    let drain = |server: &str| format!("/upstreams/farm/servers/{server}/drain");

    let (status, body) = call(admin, "POST", &drain("127.0.0.1:9"), "").await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = call(
        admin,
        "POST",
        &drain("127.0.0.1:9"),
        "authorization: Bearer no\r\n",
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        listed_with(admin, token).await,
        ["up", "up"],
        "nothing changed"
    );

    // Unknown server, unknown upstream, other methods, other actions.
    let (status, body) = call(admin, "POST", &drain("127.0.0.1:10"), token).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("GET /upstreams lists them"), "{body}");
    let (status, _) = call(
        admin,
        "POST",
        "/upstreams/nope/servers/127.0.0.1:9/drain",
        token,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        admin,
        "POST",
        "/upstreams/farm/servers/127.0.0.1:9/pause",
        token,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(admin, "GET", &drain("127.0.0.1:9"), token).await;
    assert_eq!(status, 405);
    let (status, _) = call(admin, "DELETE", &drain("127.0.0.1:9"), token).await;
    assert_eq!(status, 405);
    let (status, _) = call(admin, "POST", "/upstreams", token).await;
    assert_eq!(status, 405);

    // With the token: the address as /status shows it, or percent-encoded.
    let (status, body) = call(admin, "POST", &drain("127.0.0.1%3A9"), token).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(admin, "POST", &drain("[::1]:9"), token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(listed_with(admin, token).await, ["draining", "draining"]);
    let (status, body) = call(
        admin,
        "POST",
        "/upstreams/farm/servers/%5B%3A%3A1%5D%3A9/undrain",
        token,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["server"]["address"], "[::1]:9");
    assert_eq!(answer["server"]["state"], "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_a_browser_cannot_drain_but_curl_on_loopback_can() {
    let origin = HeldOrigin::start().await;
    let proxy = proxy("open", &[origin.addr], "").await;
    let admin = admin(&proxy.server).await;
    let path = format!("/upstreams/open/servers/{}/drain", origin.addr);
    let (status, body) = call(admin, "POST", &path, "origin: https://evil.example\r\n").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("token_file"), "{body}");
    assert_eq!(listed(admin, "open", origin.addr).await["state"], "up");
    let (status, body) = call(admin, "POST", &path, "").await;
    assert_eq!(status, 200, "{body}");
    // With every server drained, requests get a 503 that says why.
    let (answer, _) = get(proxy.addr, "/quick").await;
    assert_eq!(answer, "HTTP/1.1 503 Service Unavailable");
    until(|| !crate::logs::lines_with(&["has no server that takes requests"]).is_empty()).await;
}

/// Each server's state in `GET /upstreams` (with the token header `token`), in order.
async fn listed_with(admin: SocketAddr, token: &str) -> Vec<String> {
    let (status, body) = call(admin, "GET", "/upstreams", token).await;
    assert_eq!(status, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    doc["upstreams"][0]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap().to_owned())
        .collect()
}
