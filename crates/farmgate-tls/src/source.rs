//! Where a handshake's client connects from, for the gate's record of refused clients.
//!
//! rustls hands a certificate verifier the certificates, never the connection, so the listener
//! runs each handshake inside [`handshake_from`]: while the handshake future is polled, the
//! thread knows the client's address, and the verifier (which rustls calls synchronously inside
//! that poll) reads it with [`current`]. Outside such a poll there is no address.

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

thread_local! {
    static SOURCE: Cell<Option<SocketAddr>> = const { Cell::new(None) };
}

/// `handshake`, with `source` as the client address the gate records if it refuses the client.
pub fn handshake_from<F: Future + Unpin>(source: SocketAddr, handshake: F) -> FromSource<F> {
    FromSource { source, handshake }
}

/// A handshake that knows its client's address; see [`handshake_from`].
#[derive(Debug)]
pub struct FromSource<F> {
    source: SocketAddr,
    handshake: F,
}

impl<F: Future + Unpin> Future for FromSource<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _during = Scope(SOURCE.replace(Some(self.source)));
        Pin::new(&mut self.handshake).poll(cx)
    }
}

/// Puts back what the thread knew before, even if the poll panics.
struct Scope(Option<SocketAddr>);

impl Drop for Scope {
    fn drop(&mut self) {
        SOURCE.set(self.0);
    }
}

/// The address of the client whose handshake this thread is running, if any.
pub(crate) fn current() -> Option<SocketAddr> {
    SOURCE.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_is_known_only_while_the_handshake_is_polled() {
        let peer: SocketAddr = ([192, 0, 2, 7], 40_000).into();
        let mut seen = None;
        let handshake = std::future::poll_fn(|_| {
            seen = current();
            Poll::Ready(())
        });
        let mut from = handshake_from(peer, handshake);
        let waker = std::task::Waker::noop();
        assert!(
            Pin::new(&mut from)
                .poll(&mut Context::from_waker(waker))
                .is_ready()
        );
        assert_eq!(seen, Some(peer));
        assert_eq!(current(), None);
    }
}
