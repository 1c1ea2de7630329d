//! The limits of a real process: out of file descriptors, an edge logs a little, backs off,
//! and serves again as connections close.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cli::Running;

#[test]
fn an_edge_out_of_file_descriptors_logs_a_little_and_serves_again() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("edge.toml");
    std::fs::write(
        &config,
        r#"[[listener]]
name = "web"
listen = "127.0.0.1:0"
redirect_https = true
[listener.limits]
max_connections_per_client = 1000
"#,
    )
    .unwrap();
    // 200 descriptors, hard limit included: farmgate cannot raise its way out.
    let mut command = Command::new("sh");
    command
        .args(["-c", "ulimit -n 200 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_farmgate"))
        .args(["run", "--config"])
        .arg(&config)
        .env("NO_COLOR", "1");
    let mut edge = Running::start("farmgate", command);
    let addr = edge.listening("web");
    let held: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    edge.wait_for("accept failed");
    let first_failure = Instant::now();
    drop(held);
    // As the held connections close, descriptors free up and the edge serves again.
    let mut browser = TcpStream::connect(addr).unwrap();
    browser
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    browser
        .write_all(b"GET /again HTTP/1.1\r\nhost: www.farm.test\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    browser.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 301"), "{answer}");
    edge.drain();
    let logged = edge
        .seen
        .iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    let seconds = first_failure.elapsed().as_secs() as usize;
    assert!(
        logged <= seconds + 2,
        "{logged} lines in {seconds} s:\n{}",
        edge.seen.join("\n")
    );
}
