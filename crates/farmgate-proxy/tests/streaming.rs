//! Bodies stream through edge and gate in both directions; nothing is buffered whole.

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use crate::farm::Farm;

const SIZE: usize = 100 * 1024 * 1024;

/// A request body of `total` bytes, generated as it is sent.
fn generated(total: usize) -> farmgate_testkit::client::ClientBody {
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
