//! The admin endpoint's bearer token in a running process: what it guards, and how a reload
//! (here set off by the token file changing on disk) swaps it or, given a bad file, keeps it.

use std::net::SocketAddr;
use std::path::Path;

use farmgate_testkit::pki::TestPki;

use crate::cli::Running;
use crate::operations::{ADMIN, gate_process_with, listening, plain_get, plain_get_with};

/// A gate whose admin endpoint requires the token in `token_file`: (process, admin address).
fn gate_with_token(pki: &TestPki, token_file: &Path) -> (Running, SocketAddr) {
    let backend = pki.server("backend.farm.test");
    let top = format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {token_file:?}");
    // The admin endpoint needs no backend: the gate's upstream is never asked.
    let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let (mut process, _) = gate_process_with(pki, "gate", &backend, nowhere, &top);
    let admin = listening(&mut process, "admin");
    (process, admin)
}

/// Replace the content of `path` at once (a rename), as a careful operator or a secret
/// manager does, so a reload never reads it half written.
fn replace(path: &Path, content: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, content).unwrap();
    std::fs::rename(&next, path).unwrap();
}

/// The status line of `GET path` with `Authorization: Bearer token`, or without the header.
async fn status_of(admin: SocketAddr, path: &str, token: Option<&str>) -> String {
    let header = token.map_or_else(String::new, |t| format!("authorization: Bearer {t}\r\n"));
    plain_get_with(admin, path, &header).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_guards_status_and_metrics_and_healthz_stays_open() {
    let pki = TestPki::new();
    let token_file = pki.dir().join("admin.token");
    std::fs::write(&token_file, "first-token\n").unwrap();
    let (_process, admin) = gate_with_token(&pki, &token_file);
    for path in ["/status", "/metrics"] {
        assert_eq!(
            status_of(admin, path, None).await,
            "HTTP/1.1 401 Unauthorized"
        );
        assert_eq!(
            status_of(admin, path, Some("second-token")).await,
            "HTTP/1.1 401 Unauthorized"
        );
        assert_eq!(
            status_of(admin, path, Some("first-token")).await,
            "HTTP/1.1 200 OK",
            "{path}"
        );
    }
    assert_eq!(plain_get(admin, "/healthz").await.0, "HTTP/1.1 200 OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_the_admin_token_and_a_bad_token_file_keeps_the_running_one() {
    let pki = TestPki::new();
    let token_file = pki.dir().join("admin.token");
    std::fs::write(&token_file, "first-token\n").unwrap();
    let (mut process, admin) = gate_with_token(&pki, &token_file);
    assert_eq!(
        status_of(admin, "/status", Some("first-token")).await,
        "HTTP/1.1 200 OK"
    );

    // The token file is watched like the certificates: a new token is a reload.
    replace(&token_file, "second-token\n");
    process.wait_for("reloaded ");
    assert_eq!(
        status_of(admin, "/status", Some("first-token")).await,
        "HTTP/1.1 401 Unauthorized",
        "the old token is refused"
    );
    assert_eq!(
        status_of(admin, "/status", Some("second-token")).await,
        "HTTP/1.1 200 OK"
    );

    // An empty file fails the reload, naming the key and the file; the token in force stays.
    replace(&token_file, "\n");
    let failed = process.wait_for("reload of ");
    assert!(failed.contains("failed"), "{failed}");
    assert!(
        failed.contains(&format!(
            "admin.token_file: {}: it is empty",
            token_file.display()
        )),
        "{failed}"
    );
    assert_eq!(
        status_of(admin, "/status", Some("second-token")).await,
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        status_of(admin, "/status", None).await,
        "HTTP/1.1 401 Unauthorized"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_file_run_says_the_loopback_admin_endpoint_is_open() {
    let pki = TestPki::new();
    let backend = pki.server("backend.farm.test");
    let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let (mut process, _) = gate_process_with(&pki, "gate", &backend, nowhere, ADMIN);
    let admin = listening(&mut process, "admin");
    let line = process.wait_for("requires no token");
    assert!(line.contains(&admin.to_string()), "{line}");
    assert!(line.contains("token_file"), "{line}");
    assert_eq!(plain_get(admin, "/status").await.0, "HTTP/1.1 200 OK");
}
