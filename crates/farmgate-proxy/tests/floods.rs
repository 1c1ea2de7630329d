//! HTTP/2 abuse ends the abuser's connection and nobody else's: rapid reset (CVE-2023-44487),
//! CONTINUATION floods, PING and SETTINGS floods from a client that reads nothing, and more
//! concurrent streams than advertised. The attacks are written frame by frame, as an attacker
//! would, not through an HTTP/2 library that would refuse to misbehave.

use std::time::Duration;

use farmgate_testkit::origin::Origin;
use farmgate_testkit::pki::TestPki;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::farm::SITE;
use crate::limits::{client, edge, eventually, limited};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const SETTINGS_ACK: u8 = 0x1;
/// RST_STREAM and GOAWAY codes.
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame: length, type, flags, stream, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A GET for `/` as an HPACK block: `:method GET`, `:scheme https`, `:path /` from the static
/// table, `:authority` as a literal.
fn get_block() -> Vec<u8> {
    let mut block = vec![0x82, 0x87, 0x84, 0x01, u8::try_from(SITE.len()).unwrap()];
    block.extend_from_slice(SITE.as_bytes());
    block
}

/// A header field `name: value` as an HPACK literal without indexing.
fn literal(name: &str, value: &str) -> Vec<u8> {
    let mut field = vec![0x00, u8::try_from(name.len()).unwrap()];
    field.extend_from_slice(name.as_bytes());
    field.push(u8::try_from(value.len()).unwrap());
    field.extend_from_slice(value.as_bytes());
    field
}

/// How the edge ended an abusive connection.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// GOAWAY with this error code.
    GoAway(u32),
    /// Closed without a GOAWAY we could read.
    Closed,
}

/// Read frames until a GOAWAY or the end of the connection; count the RST_STREAMs with
/// `REFUSED_STREAM`.
async fn read_until_end<R: AsyncRead + Unpin>(reader: R) -> (Ended, usize) {
    read_until(reader, usize::MAX).await
}

/// [`read_until_end`], or until `enough` streams were refused (then it says `Closed`).
async fn read_until<R: AsyncRead + Unpin>(mut reader: R, enough: usize) -> (Ended, usize) {
    let mut refused = 0;
    loop {
        if refused >= enough {
            return (Ended::Closed, refused);
        }
        let mut head = [0u8; 9];
        if reader.read_exact(&mut head).await.is_err() {
            return (Ended::Closed, refused);
        }
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        if reader.read_exact(&mut payload).await.is_err() {
            return (Ended::Closed, refused);
        }
        match head[3] {
            GOAWAY if payload.len() >= 8 => {
                let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                return (Ended::GoAway(code), refused);
            }
            RST_STREAM if payload == REFUSED_STREAM.to_be_bytes() => refused += 1,
            _ => {}
        }
    }
}

/// The edge's first SETTINGS (identifier, value).
async fn first_settings<R: AsyncRead + Unpin>(reader: &mut R) -> Vec<(u16, u32)> {
    loop {
        let mut head = [0u8; 9];
        reader.read_exact(&mut head).await.unwrap();
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        reader.read_exact(&mut payload).await.unwrap();
        if head[3] == SETTINGS && head[4] & SETTINGS_ACK == 0 {
            return payload
                .chunks_exact(6)
                .map(|e| {
                    let value = u32::from_be_bytes([e[2], e[3], e[4], e[5]]);
                    (u16::from_be_bytes([e[0], e[1]]), value)
                })
                .collect();
        }
    }
}

/// Resident memory of this process (the edge runs in it), in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Write `frames` in batches until done or the edge closes; true if it closed first.
async fn flood<W: AsyncWrite + Unpin>(
    mut writer: W,
    frames: impl Iterator<Item = Vec<u8>>,
) -> bool {
    let mut batch = Vec::with_capacity(64 * 1024);
    for f in frames {
        batch.extend_from_slice(&f);
        if batch.len() >= 60 * 1024 {
            if writer.write_all(&batch).await.is_err() {
                return true;
            }
            batch.clear();
        }
    }
    writer.write_all(&batch).await.is_err() || writer.flush().await.is_err()
}

/// A normal client from its own address, served while an attack runs.
async fn served_meanwhile(pki: &TestPki, addr: std::net::SocketAddr, requests: usize) {
    let browser = client(pki, "127.0.0.99").http2();
    let mut conn = browser.connect(addr).await;
    for _ in 0..requests {
        assert_eq!(conn.get("/").await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_ends_the_connection_and_others_are_served() {
    let block = get_block();
    // 20,000 streams, each opened and cancelled at once.
    let attack = (0..20_000u32).flat_map(move |i| {
        let stream = 2 * i + 1;
        [
            frame(HEADERS, END_HEADERS | END_STREAM, stream, &block),
            frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes()),
        ]
    });
    let app = h2_flood("127.0.0.61", attack).await;
    // h2's max_pending_accept_reset_streams stopped it before it reached the app.
    assert!(
        app.requests() < 20_000,
        "the attack was stopped before it reached the app: {}",
        app.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_flood_ends_the_connection() {
    // A header block that never ends: HEADERS without END_HEADERS, then 20,000
    // CONTINUATION frames of one more field each.
    let field = literal("x-flood", "yyyyyyyy");
    let attack = std::iter::once(frame(HEADERS, END_STREAM, 1, &get_block()))
        .chain((0..20_000).map(move |_| frame(CONTINUATION, 0, 1, &field)));
    let app = h2_flood("127.0.0.62", attack).await;
    // h2 bounds CONTINUATION frames by max_header_list_size.
    assert_eq!(
        app.requests(),
        25,
        "only the normal client's requests (20 during the flood, 5 after)"
    );
}

/// An edge with default limits meets `attack`, HTTP/2 frames from a client at `source`, while
/// a normal client is served 20 requests: the edge ends the attacker's connection with
/// `GOAWAY ENHANCE_YOUR_CALM`, its memory grows by less than 64 MiB, and the normal client is
/// served again after. Returns the app, to say what reached it.
async fn h2_flood(source: &str, attack: impl Iterator<Item = Vec<u8>>) -> Origin {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let edge = edge(&pki, &origin, "", "").await;
    let addr = edge.local_addr("public").unwrap();
    let before = rss_kib();
    let tls = client(&pki, source).http2().handshake(addr).await.unwrap();
    let (reader, mut writer) = tokio::io::split(tls);
    writer.write_all(PREFACE).await.unwrap();
    writer.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    let reading = tokio::spawn(read_until_end(reader));
    let (_, ()) = tokio::join!(flood(writer, attack), served_meanwhile(&pki, addr, 20));
    let (ended, _) = tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .expect("the edge kept the attacker's connection open")
        .unwrap();
    assert_eq!(ended, Ended::GoAway(ENHANCE_YOUR_CALM));
    let grown = rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "memory grew by {grown} KiB");
    served_meanwhile(&pki, addr, 5).await;
    origin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_settings_floods_from_a_client_that_reads_nothing_are_ended_by_send() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let edge = edge(&pki, &origin, "timeouts = { send = \"1s\" }", "").await;
    let addr = edge.local_addr("public").unwrap();
    for (i, kind) in [PING, SETTINGS].into_iter().enumerate() {
        let tls = client(&pki, &format!("127.0.0.{}", 63 + i))
            .http2()
            .handshake(addr)
            .await
            .unwrap();
        // The answers pile up unread: the edge stops reading, its writes stall, and `send`
        // ends the connection. Without that, this flood would run to its end.
        let (_reader, mut writer) = tokio::io::split(tls);
        writer.write_all(PREFACE).await.unwrap();
        let attack = (0..2_000_000u64).map(move |n| match kind {
            PING => frame(PING, 0, 0, &n.to_be_bytes()),
            _ => frame(SETTINGS, 0, 0, &[0, 0x4, 0, 1, 0, 0]),
        });
        let (closed, ()) = tokio::join!(flood(writer, attack), served_meanwhile(&pki, addr, 5));
        assert!(closed, "the edge took the whole flood");
        eventually("send_timeout counted", || {
            limited(&edge, "send_timeout") == i as u64 + 1
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_advertised_limit_are_refused() {
    let pki = TestPki::new();
    let origin = Origin::start("app").await;
    let edge = edge(&pki, &origin, "", "max_request_header = \"32KiB\"").await;
    let addr = edge.local_addr("public").unwrap();
    let tls = client(&pki, "127.0.0.66")
        .http2()
        .handshake(addr)
        .await
        .unwrap();
    let (mut reader, mut writer) = tokio::io::split(tls);
    writer.write_all(PREFACE).await.unwrap();
    writer.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    // The edge's settings apply once acknowledged.
    let settings = first_settings(&mut reader).await;
    assert!(settings.contains(&(0x3, 128)), "{settings:?}");
    assert!(settings.contains(&(0x6, 32 * 1024)), "{settings:?}");
    writer
        .write_all(&frame(SETTINGS, SETTINGS_ACK, 0, &[]))
        .await
        .unwrap();
    // 200 POSTs whose bodies never come: the first 128 stay open, the rest are refused.
    let mut block = vec![0x83, 0x87, 0x84, 0x01, u8::try_from(SITE.len()).unwrap()];
    block.extend_from_slice(SITE.as_bytes());
    let opened = (0..200u32).map(|i| frame(HEADERS, END_HEADERS, 2 * i + 1, &block));
    assert!(!flood(&mut writer, opened).await);
    // The connection stays open (the accepted streams wait for their bodies).
    let (_, refused) = tokio::time::timeout(Duration::from_secs(60), read_until(reader, 72))
        .await
        .expect("72 streams refused");
    assert_eq!(refused, 72);
    origin.wait_for_requests(128).await;
    assert_eq!(
        origin.requests(),
        128,
        "the 128 accepted streams were forwarded"
    );
}
