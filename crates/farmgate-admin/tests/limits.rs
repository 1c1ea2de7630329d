//! Slow and idle clients cannot hold the admin endpoint: with room for one connection, a client
//! that dribbles its request head or stops reading a response is cut off, and the client
//! waiting behind it is served.

use std::time::Duration;

use farmgate_admin::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Endpoint, request};

/// Longest a test waits for the client queued behind a stuck one: a failure report, not a
/// measurement (the limits below are far shorter).
const PATIENCE: Duration = Duration::from_secs(60);

fn one_connection(request_header: Duration, idle: Duration) -> Limits {
    Limits {
        request_header,
        idle,
        max_connections: 1,
    }
}

/// `/healthz` from a client queued behind whatever holds the only connection.
async fn queued_health_check(admin: &Endpoint) -> u16 {
    tokio::time::timeout(PATIENCE, admin.get("/healthz", None))
        .await
        .expect("the queued client was never served: the stuck one kept the endpoint")
        .status
}

#[tokio::test]
async fn a_request_head_that_never_ends_is_cut_off_and_the_next_client_served() {
    let limits = one_connection(Duration::from_millis(300), Duration::from_secs(60));
    let admin = Endpoint::start("127.0.0.1:0", None, limits, "up".into()).await;
    // The first in the accept queue takes the only slot: a request line and a header, then
    // silence (a slowloris that stopped early).
    let mut slow = TcpStream::connect(admin.addr).await.unwrap();
    slow.write_all(b"GET /status HTTP/1.1\r\nhost: admin\r\n")
        .await
        .unwrap();
    assert_eq!(queued_health_check(&admin).await, 200);
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(!answer.contains(" 200 "), "the slow client got {answer:?}");
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_cut_off_by_the_head_deadline() {
    // The same deadline bounds the wait for the next request on a kept-alive connection.
    let limits = one_connection(Duration::from_millis(300), Duration::from_secs(60));
    let admin = Endpoint::start("127.0.0.1:0", None, limits, "up".into()).await;
    let mut silent = TcpStream::connect(admin.addr).await.unwrap();
    assert_eq!(queued_health_check(&admin).await, 200);
    let mut answer = Vec::new();
    let _ = silent.read_to_end(&mut answer).await;
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_the_next_client_served() {
    let limits = one_connection(Duration::from_secs(60), Duration::from_millis(300));
    // Far more than the socket buffers of both ends hold.
    let body = 32 << 20;
    let admin = Endpoint::start("127.0.0.1:0", None, limits, "x".repeat(body)).await;
    let mut stalled = TcpStream::connect(admin.addr).await.unwrap();
    stalled
        .write_all(request("/status", None).as_bytes())
        .await
        .unwrap();
    // The response has begun; from now on this client reads nothing.
    let mut first = [0; 1024];
    let n = stalled.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200 "));
    assert_eq!(queued_health_check(&admin).await, 200);
    let mut rest = Vec::new();
    // Whatever the buffers held, then the end (or a reset: the server closed with data unsent).
    let _ = stalled.read_to_end(&mut rest).await;
    assert!(
        n + rest.len() < body,
        "the whole response arrived: the stalled client was not cut off"
    );
}
