//! What every connection of one server shares with the others and with the runtime.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use farmgate_admin::Metrics;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::generation::Generation;

use super::clients::Clients;

/// The state connections read; the runtime owns it and changes it (a reload swaps the
/// generation and bumps `reloaded`; a shutdown sets `stopping`).
#[derive(Debug)]
pub(crate) struct Shared {
    /// The generation new connections and new requests are served with.
    generation: ArcSwap<Generation>,
    /// Bumped after every swap of `generation`: a connection compares it with the version it
    /// last served a request with, one atomic load per request.
    version: AtomicU64,
    /// Bumped by every reload, so open connections can re-check what the new generation allows.
    pub(crate) reloaded: watch::Sender<u64>,
    /// Set once, when the server begins to shut down.
    pub(crate) stopping: watch::Sender<bool>,
    /// The metrics registry; it outlives generations.
    pub(crate) metrics: Arc<Metrics>,
    /// Open client connections; a shutdown waits for them.
    pub(crate) connections: TaskTracker,
    /// Each listener's clients, by listener name: what they hold against its limits. They
    /// outlive generations, as listeners' sockets do.
    clients: Mutex<HashMap<Arc<str>, Arc<Clients>>>,
}

impl Shared {
    /// A server's shared state, serving `generation`.
    pub(crate) fn new(generation: Generation, metrics: Arc<Metrics>) -> Shared {
        Shared {
            generation: ArcSwap::from_pointee(generation),
            version: AtomicU64::new(0),
            reloaded: watch::channel(0).0,
            stopping: watch::channel(false).0,
            metrics,
            connections: TaskTracker::new(),
            clients: Mutex::default(),
        }
    }

    /// The clients of listener `name`.
    pub(crate) fn clients(&self, name: &Arc<str>) -> Arc<Clients> {
        self.clients
            .lock()
            .entry(name.clone())
            .or_insert_with(|| Arc::new(Clients::new(name, &self.metrics)))
            .clone()
    }

    /// Forget what the listeners' rate limits no longer need (see [`Clients::purge`]).
    pub(crate) fn purge_clients(&self) {
        let all: Vec<Arc<Clients>> = self.clients.lock().values().cloned().collect();
        for clients in all {
            clients.purge();
        }
    }

    /// The current generation.
    pub(crate) fn generation(&self) -> Arc<Generation> {
        self.generation.load_full()
    }

    /// The current generation and its version.
    pub(crate) fn versioned(&self) -> (u64, Arc<Generation>) {
        // The version first: if a swap comes between the two loads, the version is the older
        // one, and the next request looks again.
        let version = self.version();
        (version, self.generation.load_full())
    }

    /// The version of the current generation.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Serve new connections and requests with `generation` from now on; returns the one it
    /// replaces.
    pub(crate) fn swap(&self, generation: Arc<Generation>) -> Arc<Generation> {
        let previous = self.generation.swap(generation);
        self.version.fetch_add(1, Ordering::AcqRel);
        previous
    }

    /// Client connections open now.
    pub(crate) fn open_connections(&self) -> usize {
        self.connections.len()
    }
}
