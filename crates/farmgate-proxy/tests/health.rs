//! Health, ejection, retries and balancing: unhealthy servers get no traffic, and a GET never
//! fails because one backend died — while a POST is never replayed.

use std::net::SocketAddr;
use std::time::Duration;

use farmgate_proxy::Server;
use farmgate_testkit::client::empty;

use crate::farm::{BACKEND, EDGE, Farm, gate};

/// Stop gate `i` of the farm: it refuses connections from now on.
async fn kill_gate(farm: &mut Farm, i: usize) -> SocketAddr {
    let (server, addr) = &farm.gates[i];
    let drained = server.shutdown(Duration::from_secs(10)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "gate {i} still accepts after shutdown ({drained:?})"
    );
    *addr
}

/// Start a gate again on the address it had, in front of the same origin.
async fn revive_gate(farm: &Farm, i: usize, addr: SocketAddr) -> Server {
    let backend = farm.pki.server(BACKEND);
    let allow = format!("dns:{EDGE}");
    let (server, _) = gate(
        farm.pki.dir(),
        &format!("gate-{i}-again"),
        &backend,
        &farm.pki.ca_file(),
        &[&allow],
        farm.origins[i].addr,
    )
    .await;
    // `gate` listens on a free port; move it to the old one through a reload.
    let path = farm.pki.dir().join(format!("gate-{i}-again.toml"));
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{addr}\""));
    std::fs::write(&path, text).unwrap();
    server.reload_from(&path).await.unwrap();
    server
}

/// Wait until the edge sees server `addr` of upstream `farm` as `up`.
async fn until_up(farm: &Farm, addr: SocketAddr, up: bool) {
    let mut changes = farm.edge.health_changes();
    let wait = async {
        loop {
            let state = farm
                .edge
                .generation()
                .server_state("farm", &addr.to_string())
                .unwrap();
            if state.up == up {
                return;
            }
            changes.changed().await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("health never changed");
}

const HEALTH: &str =
    r#"health = { path = "/healthz", interval = "100ms", timeout = "2s", rise = 2, fall = 2 }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_marks_a_dead_backend_down_and_back_up() {
    let mut farm = Farm::start_with(&[1, 1], HEALTH).await;
    let dead = kill_gate(&mut farm, 1).await;
    until_up(&farm, dead, false).await;

    let before = farm.origins[1].requests();
    let mut conn = farm.browser().connect(farm.edge_addr).await;
    for _ in 0..10 {
        let r = conn.get("/").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("x-origin"),
            "origin-0",
            "a server marked down gets no traffic"
        );
    }
    assert_eq!(farm.origins[1].requests(), before);

    let _revived = revive_gate(&farm, 1, dead).await;
    until_up(&farm, dead, true).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(conn.get("/").await.header("x-origin").to_owned());
    }
    assert!(
        seen.iter().any(|o| o == "origin-1"),
        "back up, it takes traffic again: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_server_is_down_requests_fail_fast_with_503() {
    let mut farm = Farm::start_with(&[1, 1], HEALTH).await;
    let a = kill_gate(&mut farm, 0).await;
    let b = kill_gate(&mut farm, 1).await;
    until_up(&farm, a, false).await;
    until_up(&farm, b, false).await;
    let r = farm.browser().get(farm.edge_addr, "/all-down").await;
    assert_eq!(r.status, 503);
    let lines = crate::logs::lines_with(&["path=/all-down", "status=503"]);
    assert!(lines[0].contains("no healthy server"), "{}", lines[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_costs_no_get_and_is_ejected() {
    let mut farm = Farm::start(&[1, 1, 1]).await;
    let dead = kill_gate(&mut farm, 1).await;
    let mut conn = farm.browser().connect(farm.edge_addr).await;
    for _ in 0..30 {
        let r = conn.get("/").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let state = farm
        .edge
        .generation()
        .server_state("farm", &dead.to_string())
        .unwrap();
    assert!(state.ejected, "three failures in a row eject the server");
    assert!(
        !crate::logs::lines_with(&["retrying on another server", &dead.to_string()]).is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_is_never_replayed() {
    let mut farm = Farm::start(&[1, 1]).await;
    kill_gate(&mut farm, 0).await;
    let mut conn = farm.browser().connect(farm.edge_addr).await;
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let req = conn.request("POST", "/count").body(empty()).unwrap();
        statuses.push(conn.fetch(req).await.status.as_u16());
    }
    // Round robin sends the first POST to the dead gate: it fails rather than being sent twice.
    eprintln!("{}", crate::logs::dump());
    assert_eq!(statuses, [502, 200]);
    assert_eq!(farm.origins[1].requests(), 1);
}

#[tokio::test]
async fn hash_balancing_keeps_a_key_on_one_server() {
    let farm = Farm::start_with(
        &[1, 1, 1],
        "balance = \"hash\"\nhash_key = \"header:x-user\"",
    )
    .await;
    let mut conn = farm.browser().connect(farm.edge_addr).await;
    let mut owners = std::collections::BTreeSet::new();
    for user in 0..12 {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..5 {
            let req = conn
                .request("GET", "/")
                .header("x-user", format!("user-{user}"))
                .body(empty())
                .unwrap();
            seen.insert(conn.fetch(req).await.header("x-origin").to_owned());
        }
        assert_eq!(seen.len(), 1, "user-{user} went to {seen:?}");
        owners.extend(seen);
    }
    assert!(owners.len() > 1, "keys spread over servers: {owners:?}");
}

#[tokio::test]
async fn every_balancing_policy_serves_through_the_farm() {
    for policy in [
        "round_robin",
        "least_requests",
        "p2c_ewma",
        "hash\"\nhash_key = \"client_ip",
    ] {
        let farm = Farm::start_with(&[1, 2], &format!("balance = \"{policy}\"")).await;
        let mut conn = farm.browser().connect(farm.edge_addr).await;
        for _ in 0..20 {
            assert_eq!(conn.get("/").await.status, 200, "{policy}");
        }
        let total: usize = farm.origins.iter().map(|o| o.requests()).sum();
        assert_eq!(total, 20, "{policy}");
    }
}

#[tokio::test]
async fn a_single_server_answering_500_is_never_ejected() {
    let farm = Farm::start(&[1]).await;
    let mut conn = farm.browser().connect(farm.edge_addr).await;
    for _ in 0..6 {
        let status = conn.get("/status/500").await.status;
        assert_eq!(status, 500, "the application's answer passes through");
    }
    assert_eq!(
        conn.get("/").await.status,
        200,
        "one broken URL does not take the farm out"
    );
    let addr = farm.gates[0].1.to_string();
    let state = farm.edge.generation().server_state("farm", &addr).unwrap();
    assert!(!state.ejected);
}
