//! Counting what moves on a connection's stream, for its idle and send timers; and closing it
//! politely when its client may still be sending.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// How long a closed connection's client may keep sending before the socket closes.
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// What moved on a stream: counters instead of a clock keep the hot path free of time calls;
/// a timer compares them from one tick to the next.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    /// Reads and writes that moved bytes (`timeouts.idle`).
    moved: AtomicU64,
    /// Writes that moved bytes.
    wrote: AtomicU64,
    /// The last write found the peer's window full: it is not reading (`timeouts.send`).
    blocked: AtomicBool,
    /// The client may still be sending a request body we did not read: when the connection
    /// closes, [`linger`] first.
    linger: AtomicBool,
}

impl Meter {
    /// Reads and writes that moved bytes so far.
    pub(crate) fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }

    /// Writes that moved bytes so far, and whether the last one had to wait.
    pub(crate) fn writes(&self) -> (u64, bool) {
        (
            self.wrote.load(Ordering::Relaxed),
            self.blocked.load(Ordering::Relaxed),
        )
    }

    /// The connection closes with a request body unread (after a 413 or 408): when it does,
    /// keep reading for a moment so the client gets the answer instead of a reset.
    pub(crate) fn linger_on_close(&self) {
        self.linger.store(true, Ordering::Relaxed);
    }

    fn wrote(&self, polled: &Poll<std::io::Result<usize>>) {
        match polled {
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.moved.fetch_add(1, Ordering::Relaxed);
                self.wrote.fetch_add(1, Ordering::Relaxed);
                self.blocked.store(false, Ordering::Relaxed);
            }
            Poll::Pending => self.blocked.store(true, Ordering::Relaxed),
            Poll::Ready(_) => {}
        }
    }
}

/// A stream, metered. Dropped after [`Meter::linger_on_close`], it lingers.
pub(crate) struct Activity<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    /// `None` once handed to [`linger`].
    inner: Option<S>,
    meter: Arc<Meter>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Activity<S> {
    /// `inner`, counting into `meter`.
    pub(crate) fn new(inner: S, meter: Arc<Meter>) -> Activity<S> {
        Activity {
            inner: Some(inner),
            meter,
        }
    }

    fn inner(&mut self) -> std::io::Result<Pin<&mut S>> {
        match &mut self.inner {
            Some(inner) => Ok(Pin::new(inner)),
            None => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for Activity<S> {
    fn drop(&mut self) {
        if self.meter.linger.load(Ordering::Relaxed)
            && let Some(inner) = self.inner.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(linger(inner));
        }
    }
}

/// Close our side of `stream`, but keep reading (and discarding) for [`LINGER`], so a client
/// still sending reads our last words (a TLS alert, a 413) instead of a connection reset:
/// closing a socket with unread data resets it. All of it within [`LINGER`]: a TLS stream's
/// shutdown writes a close_notify, which a client that reads nothing would hold up forever
/// (and this task runs after the connection left every limit's count).
pub(crate) async fn linger<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        let _ = stream.shutdown().await;
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for Activity<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = self.inner()?.poll_read(cx, buf);
        if buf.filled().len() > before {
            self.meter.moved.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for Activity<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = self.inner()?.poll_write(cx, buf);
        self.meter.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = self.inner()?.poll_write_vectored(cx, bufs);
        self.meter.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(S::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner()?.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner()?.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    use super::{LINGER, linger};

    /// A peer that reads nothing: writes, a TLS close_notify included, never complete, and
    /// nothing ever arrives.
    struct Deaf;

    impl AsyncRead for Deaf {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Pending
        }
    }

    impl AsyncWrite for Deaf {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Poll::Pending
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Pending
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn lingering_ends_even_when_the_close_cannot_be_written() {
        let ended = tokio::time::timeout(LINGER * 2, linger(Deaf)).await;
        assert!(ended.is_ok(), "linger outlived its {LINGER:?}");
    }
}
