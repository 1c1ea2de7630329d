//! Test support for farmgate: a test PKI minted at test time, in-process origins and clients.
//!
//! Nothing here is used by the shipped binary. Certificates are generated fresh for every test
//! run, written into a temporary directory, and never checked in.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod acme;
pub mod client;
pub mod grpc;
pub mod load;
pub mod lookalike;
pub mod origin;
pub mod pki;
pub mod ws;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Listen on a free loopback port and hand each accepted connection to `serve`, in a task of
/// its own, until the returned task is aborted: the accept loop of every test server here.
#[allow(clippy::expect_used)] // test support: a failure here is a test failure
pub(crate) async fn serve_each<F, Fut>(serve: F) -> (SocketAddr, JoinHandle<()>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let socket = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = socket.local_addr().expect("its address");
    let task = tokio::spawn(async move {
        loop {
            match socket.accept().await {
                Ok((tcp, _)) => {
                    tokio::spawn(serve(tcp));
                }
                // Out of descriptors, say: let connections close rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    });
    (addr, task)
}
