//! The running proxy: bound listeners, the current generation, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::error::ProxyError;
use crate::generation::Generation;

/// State shared by every accept loop and connection.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) generation: ArcSwap<Generation>,
    pub(crate) http: auto::Builder<TokioExecutor>,
}

/// A running proxy.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    bound: Vec<(String, SocketAddr)>,
    shutdown: watch::Sender<bool>,
    alive: mpsc::Sender<()>,
    drained: mpsc::Receiver<()>,
}

/// Why a reload was refused; the running generation stays.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// Listeners were added, removed, renamed or moved.
    #[error("the new configuration adds, removes or moves listeners; that needs a restart")]
    ListenersChanged,
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection finished within the grace period.
    Clean,
    /// The grace period ran out with connections still open; they are dropped.
    Forced,
}

impl Server {
    /// Bind every listener of `generation` and start serving. Must run inside a tokio runtime.
    pub async fn start(generation: Generation) -> Result<Server, ProxyError> {
        let mut sockets = Vec::new();
        for l in &generation.config().listeners {
            let socket = TcpListener::bind(l.listen)
                .await
                .map_err(|source| ProxyError::Bind {
                    at: l.at.clone(),
                    addr: l.listen,
                    source,
                })?;
            let addr = socket.local_addr().map_err(|source| ProxyError::Bind {
                at: l.at.clone(),
                addr: l.listen,
                source,
            })?;
            sockets.push((l.name.clone(), addr, socket));
        }
        let shared = Arc::new(Shared {
            generation: ArcSwap::from_pointee(generation),
            http: crate::listener::http_builder(),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (alive, drained) = mpsc::channel(1);
        let mut bound = Vec::new();
        for (name, addr, socket) in sockets {
            tracing::info!(listener = %name, "listening on {addr}");
            tokio::spawn(crate::listener::accept_loop(
                Arc::from(name.as_str()),
                socket,
                shared.clone(),
                shutdown_rx.clone(),
                alive.clone(),
            ));
            bound.push((name, addr));
        }
        Ok(Server {
            shared,
            bound,
            shutdown,
            alive,
            drained,
        })
    }

    /// The address listener `name` is bound to (useful with port 0).
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.bound.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }

    /// Every listener's name and bound address.
    pub fn local_addrs(&self) -> &[(String, SocketAddr)] {
        &self.bound
    }

    /// The generation serving new connections.
    pub fn generation(&self) -> Arc<Generation> {
        self.shared.generation.load_full()
    }

    /// Serve new connections with `generation` from now on; connections already open finish on
    /// the generation they started with. The listeners must be the same (names and addresses):
    /// a generation that moves a listener needs a restart.
    pub fn reload(&self, generation: Generation) -> Result<(), ReloadError> {
        let current = self.shared.generation.load();
        let listeners = |g: &Generation| {
            let mut l: Vec<(String, SocketAddr)> = g
                .config()
                .listeners
                .iter()
                .map(|l| (l.name.clone(), l.listen))
                .collect();
            l.sort();
            l
        };
        if listeners(&current) != listeners(&generation) {
            return Err(ReloadError::ListenersChanged);
        }
        self.shared.generation.store(Arc::new(generation));
        Ok(())
    }

    /// Stop accepting, let open connections finish their in-flight requests for up to `grace`,
    /// then return.
    pub async fn shutdown(self, grace: Duration) -> Drained {
        let Server {
            shutdown,
            alive,
            mut drained,
            ..
        } = self;
        let _ = shutdown.send(true);
        drop(alive);
        // Every accept loop and connection task holds a sender; `recv` returns `None` once the
        // last of them is gone.
        match tokio::time::timeout(grace, drained.recv()).await {
            Ok(_) => Drained::Clean,
            Err(_) => Drained::Forced,
        }
    }
}
