//! Worker threads: one single-threaded runtime per thread, each accepting on its own socket.
//!
//! Every listener address gets one listening socket per worker, bound with `SO_REUSEPORT`, so
//! the kernel spreads new connections over the workers, and a connection lives its whole life
//! on the thread that accepted it: its TLS, its requests and the pooled backend connections
//! they use (each worker has its own idle lists, see `outbound::set_worker`) never wake
//! another thread. nginx's workers with
//! `reuseport` and HAProxy's threads with `shards` work the same way. What the workers share
//! (the generation, health state, balancers, metrics) is behind atomics and short locks.
//!
//! Worker 0 is the runtime the server was started on; it also runs the health checks, reloads,
//! ACME and the admin endpoint, all of them light.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpSocket;
use tokio::runtime::Handle;

/// The runtimes that serve connections.
#[derive(Debug, Clone)]
pub struct Workers {
    handles: Arc<[Handle]>,
}

impl Workers {
    /// The runtime this is called on, alone. Must be called within a runtime.
    pub fn current() -> Workers {
        Workers {
            handles: Arc::from([Handle::current()]),
        }
    }

    /// The runtime this is called on as worker 0, plus `count - 1` threads each running a
    /// runtime of its own; they run until the process ends. Must be called within a runtime.
    pub fn start(count: usize) -> io::Result<Workers> {
        let mut handles = vec![Handle::current()];
        for index in 1..count.max(1) {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name(format!("farmgate-worker-{index}"))
                .spawn(move || {
                    crate::outbound::set_worker(index);
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    match runtime {
                        Ok(runtime) => {
                            let _ = tx.send(Ok(runtime.handle().clone()));
                            runtime.block_on(std::future::pending::<()>());
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                })?;
            let handle = rx
                .recv()
                .map_err(|_| io::Error::other("a worker thread ended while starting"))??;
            handles.push(handle);
        }
        Ok(Workers {
            handles: handles.into(),
        })
    }

    /// One worker per CPU this process may run on.
    pub fn default_count() -> usize {
        std::thread::available_parallelism().map_or(1, usize::from)
    }

    /// How many workers there are.
    pub fn count(&self) -> usize {
        self.handles.len()
    }

    pub(crate) fn handles(&self) -> &[Handle] {
        &self.handles
    }
}

/// One listening socket per worker on `addr`, all of them listening before this returns.
/// With more than one, they share the port with `SO_REUSEPORT`; a port that another socket
/// holds already, even one with `SO_REUSEPORT` set (a second farmgate started by mistake), is
/// refused as "address in use", as it would be with a single socket.
pub(crate) fn bind(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let shared = count > 1;
    if shared && addr.port() != 0 {
        // A plain bind fails while any socket holds the port; ours would silently join it.
        drop(socket(addr, false)?);
    }
    let first = listen(socket(addr, shared)?)?;
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..count {
        sockets.push(listen(socket(bound, true)?)?);
    }
    Ok(sockets)
}

fn socket(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As tokio's and std's `TcpListener::bind`: a restart may bind while old connections linger.
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    // Linux hands TCP_NODELAY down to every accepted connection: set once here, it spares a
    // `setsockopt` per connection (see `inbound::accept`).
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// Listen, and hand the socket back unregistered, for the worker that will accept on it.
fn listen(socket: TcpSocket) -> io::Result<std::net::TcpListener> {
    socket.listen(1024)?.into_std()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    /// `inbound::accept` relies on this instead of a `setsockopt` per connection.
    #[tokio::test]
    async fn accepted_connections_inherit_nodelay_from_the_listening_socket() {
        let mut sockets = super::bind("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let listener = tokio::net::TcpListener::from_std(sockets.remove(0)).unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
