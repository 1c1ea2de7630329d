//! Bodies stream through edge and gate in both directions; nothing is buffered whole.

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use crate::farm::Farm;

const SIZE: usize = 100 * 1024 * 1024;

/// A request body of `total` bytes, generated as it is sent.
pub(crate) fn generated(total: usize) -> farmgate_testkit::client::ClientBody {
    let chunk = Bytes::from(vec![b'y'; 64 * 1024]);
    let mut left = total;
    let stream = futures_iter(move || {
        if left == 0 {
            return None;
        }
        let n = left.min(chunk.len());
        left -= n;
        Some(Ok(Frame::data(chunk.slice(..n))))
    });
    StreamBody::new(stream).boxed()
}

fn futures_iter<F>(f: F) -> Gen<F> {
    Gen(f)
}

struct Gen<F>(F);

impl<F, T> futures_core::Stream for Gen<F>
where
    F: FnMut() -> Option<T> + Unpin,
{
    type Item = T;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        std::task::Poll::Ready((self.0)())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabyte_request_body_streams_through() {
    let farm = Farm::start(&[1]).await;
    let mut conn = farm.browser().connect(farm.edge_addr).await;
    let req = conn
        .request("POST", "/count")
        .body(generated(SIZE))
        .unwrap();
    let r = conn.fetch(req).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.trim(), SIZE.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabyte_response_streams_through() {
    let farm = Farm::start(&[1]).await;
    let mut conn = farm.browser().connect(farm.edge_addr).await;
    let req = conn
        .request("GET", &format!("/bytes/{SIZE}"))
        .body(farmgate_testkit::client::empty())
        .unwrap();
    let response = conn.send(req).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        total += frame.unwrap().data_ref().map_or(0, |d| d.len());
    }
    assert_eq!(total, SIZE);
}

const MIB64: usize = 64 * 1024 * 1024;

/// `total` bytes of the origin's pattern, generated as they are sent.
fn patterned(total: usize) -> farmgate_testkit::client::ClientBody {
    let mut sent = 0;
    let stream = futures_iter(move || {
        let n = (total - sent).min(61_003);
        if n == 0 {
            return None;
        }
        let chunk: Vec<u8> = (sent..sent + n)
            .map(farmgate_testkit::origin::pattern)
            .collect();
        sent += n;
        Some(Ok(Frame::data(Bytes::from(chunk))))
    });
    StreamBody::new(stream).boxed()
}

/// What the origin should answer to `/digest` for `total` bytes of the pattern.
fn digest_of_pattern(total: usize) -> String {
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let chunk: Vec<u8> = (0..total).map(farmgate_testkit::origin::pattern).collect();
    digest.update(&chunk);
    format!(
        "{total} {}",
        farmgate_testkit::origin::hex(digest.finish().as_ref())
    )
}

/// 64 MiB up, chunked and with a Content-Length, and 64 MiB down, byte for byte, through
/// `farm` from `client`.
async fn sixty_four_megabytes_each_way(farm: &Farm, client: farmgate_testkit::client::TlsClient) {
    let expected = digest_of_pattern(MIB64);
    let mut conn = client.connect(farm.edge_addr).await;
    for length in [None, Some(MIB64)] {
        let mut req = conn.request("POST", "/digest");
        if let Some(length) = length {
            req = req.header("content-length", length);
        }
        let r = conn.fetch(req.body(patterned(MIB64)).unwrap()).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.body.trim(),
            expected,
            "sent with content-length {length:?}"
        );
    }
    let req = conn
        .request("GET", &format!("/pattern/{MIB64}"))
        .body(farmgate_testkit::client::empty())
        .unwrap();
    let response = conn.send(req).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut at = 0usize;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.unwrap().data_ref() {
            for (i, byte) in data.iter().enumerate() {
                assert_eq!(
                    *byte,
                    farmgate_testkit::origin::pattern(at + i),
                    "byte {}",
                    at + i
                );
            }
            at += data.len();
        }
    }
    assert_eq!(at, MIB64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_megabytes_arrive_byte_for_byte_over_http1() {
    let farm = Farm::start(&[1]).await;
    sixty_four_megabytes_each_way(&farm, farm.browser()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_megabytes_arrive_byte_for_byte_over_http2_and_an_h2_upstream() {
    let farm = Farm::start_with(&[1], "protocol = \"h2\"").await;
    sixty_four_megabytes_each_way(&farm, farm.browser().http2()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_gets_its_100_then_the_body_goes_through() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let farm = Farm::start(&[1]).await;
    let mut tls = farm.browser().handshake(farm.edge_addr).await.unwrap();
    let head = format!(
        "POST /count HTTP/1.1\r\nhost: {}\r\ncontent-length: 11\r\nexpect: 100-continue\r\n\r\n",
        crate::farm::SITE
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    // The body is held back until the edge says to go on.
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = tls.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&chunk[..n]);
    }
    let interim = String::from_utf8_lossy(&got).into_owned();
    assert!(
        interim.starts_with("HTTP/1.1 100 Continue\r\n"),
        "{interim}"
    );
    tls.write_all(b"hello world").await.unwrap();
    let mut answer = String::new();
    while !answer.ends_with("11\n") {
        let n = tls.read(&mut chunk).await.unwrap();
        assert!(n > 0, "{answer}");
        answer.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
