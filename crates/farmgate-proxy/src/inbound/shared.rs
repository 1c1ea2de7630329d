//! What every connection of one server shares with the others and with the runtime.

use std::sync::Arc;

use arc_swap::ArcSwap;
use farmgate_admin::Metrics;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::generation::Generation;

/// The state connections read; the runtime owns it and changes it (a reload swaps the
/// generation and bumps `reloaded`; a shutdown sets `stopping`).
#[derive(Debug)]
pub(crate) struct Shared {
    /// The generation new connections are served with.
    pub(crate) generation: ArcSwap<Generation>,
    /// Bumped by every reload, so open connections can re-check what the new generation allows.
    pub(crate) reloaded: watch::Sender<u64>,
    /// Set once, when the server begins to shut down.
    pub(crate) stopping: watch::Sender<bool>,
    /// The metrics registry; it outlives generations.
    pub(crate) metrics: Arc<Metrics>,
    /// Open client connections; a shutdown waits for them.
    pub(crate) connections: TaskTracker,
}

impl Shared {
    /// A server's shared state, serving `generation`.
    pub(crate) fn new(generation: Generation, metrics: Arc<Metrics>) -> Shared {
        Shared {
            generation: ArcSwap::from_pointee(generation),
            reloaded: watch::channel(0).0,
            stopping: watch::channel(false).0,
            metrics,
            connections: TaskTracker::new(),
        }
    }

    /// Client connections open now.
    pub(crate) fn open_connections(&self) -> usize {
        self.connections.len()
    }
}
