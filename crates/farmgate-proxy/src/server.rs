//! The running proxy: bound listeners, the current generation, reloads and graceful shutdown.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Notify, watch};

use farmgate_admin::Metrics;

use crate::error::ProxyError;
use crate::generation::Generation;
use crate::workers::Workers;

/// State shared by every accept loop and connection; it outlives generations.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) generation: ArcSwap<Generation>,
    /// Bumped by every reload, so open connections can re-check what the new generation allows.
    pub(crate) reloaded: watch::Sender<u64>,
    /// Set once, when the server begins to shut down.
    pub(crate) stopping: watch::Sender<bool>,
    /// Open connections and accept loops; shutdown waits for it to reach zero.
    pub(crate) tasks: Tracker,
    /// Reload outcomes so far.
    pub(crate) reloads: watch::Sender<crate::reload::ReloadCounts>,
    /// Bumped whenever an active health check moves a server up or down.
    pub(crate) health_changed: watch::Sender<u64>,
    /// The metrics registry; it outlives generations.
    pub(crate) metrics: Arc<Metrics>,
    /// Gate counters that outlive generations: clients that sent no certificate (refused by
    /// rustls before our verifier runs), and the verifier counts of replaced generations.
    pub(crate) gate_history: Mutex<BTreeMap<String, GateHistory>>,
}

/// A gate's counts from before the current generation, plus refusals without a certificate.
#[derive(Debug, Default, Clone)]
pub(crate) struct GateHistory {
    pub(crate) no_certificate: u64,
    pub(crate) accepted: u64,
    pub(crate) refused: BTreeMap<&'static str, u64>,
    pub(crate) relaxed: BTreeMap<String, u64>,
}

/// Counts running tasks and wakes a waiter when none is left.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    count: AtomicUsize,
    idle: Notify,
}

/// Held by a running task; dropping it ends the task's count.
#[derive(Debug)]
pub(crate) struct TaskGuard(Arc<Shared>);

impl Tracker {
    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

impl Shared {
    pub(crate) fn enter(self: &Arc<Self>) -> TaskGuard {
        self.tasks.count.fetch_add(1, Ordering::AcqRel);
        TaskGuard(self.clone())
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.tasks.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.tasks.idle.notify_waiters();
        }
    }
}

/// A listening address and the accept loops serving it, one per worker.
#[derive(Debug)]
pub(crate) struct Bound {
    pub(crate) name: String,
    /// The address as configured (port 0 stays 0).
    configured: SocketAddr,
    /// The address actually bound.
    pub(crate) local: SocketAddr,
    stop: watch::Sender<bool>,
}

/// A running proxy.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    bound: Mutex<Vec<Bound>>,
    reloading: tokio::sync::Mutex<()>,
    workers: Workers,
}

/// Why a reload was refused; the running generation stays.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// A new or moved listener could not bind its address.
    #[error(transparent)]
    Bind(#[from] ProxyError),
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
    /// Bind every listener of `generation` and start serving, on the runtime this runs on
    /// alone. Must run inside a tokio runtime.
    pub async fn start(generation: Generation) -> Result<Server, ProxyError> {
        Server::start_on(generation, Workers::current()).await
    }

    /// Bind every listener of `generation` once per worker and start serving, each worker
    /// accepting on its own socket. Must run inside the runtime of worker 0.
    pub async fn start_on(generation: Generation, workers: Workers) -> Result<Server, ProxyError> {
        let sockets = bind_new(&generation, &[], workers.count())?;
        let shared = Arc::new(Shared {
            generation: ArcSwap::from_pointee(generation),
            reloaded: watch::channel(0).0,
            stopping: watch::channel(false).0,
            tasks: Tracker::default(),
            reloads: watch::channel(crate::reload::ReloadCounts::default()).0,
            health_changed: watch::channel(0).0,
            metrics: Arc::new(Metrics::new()),
            gate_history: Mutex::new(BTreeMap::new()),
        });
        shared
            .metrics
            .set_source(Arc::new(crate::metrics::Scrape(Arc::downgrade(&shared))));
        let server = Server {
            shared,
            bound: Mutex::new(Vec::new()),
            reloading: tokio::sync::Mutex::new(()),
            workers,
        };
        server.spawn_loops(sockets);
        let generation = server.shared.generation.load_full();
        crate::health::spawn_checks(&server.shared, &generation);
        spawn_sweeper(&server.shared, &generation);
        generation.start_acme();
        Ok(server)
    }

    /// The address listener `name` is bound to (useful with port 0).
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.bound()
            .iter()
            .find(|b| b.name == name)
            .map(|b| b.local)
    }

    /// Every listener's name and bound address.
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.bound()
            .iter()
            .map(|b| (b.name.clone(), b.local))
            .collect()
    }

    /// The generation serving new connections.
    pub fn generation(&self) -> Arc<Generation> {
        self.shared.generation.load_full()
    }

    /// The ACME state: every ACME certificate's status (`acme().status()`), a watch for changes,
    /// renewal on request. It is the same across reloads.
    pub fn acme(&self) -> farmgate_acme::Acme {
        self.generation().acme().clone()
    }

    /// Open client connections right now.
    pub fn open_connections(&self) -> usize {
        // Accept loops are tasks too, one per listener and worker.
        let loops = self.bound().len() * self.workers.count();
        self.shared.tasks.count().saturating_sub(loops)
    }

    /// Serve new connections with `generation` from now on. Listeners it adds or moves are
    /// bound first (a failure leaves everything as it was); listeners it drops stop accepting.
    /// ACME certificates are kept only if `generation` was built with this server's
    /// [`Server::acme`] (`Generation::build_with`), as [`Server::reload_from`] does.
    /// Connections already open finish on the generation they started with, except that a
    /// gate connection whose client the new generation no longer allows is closed after its
    /// current request.
    pub async fn reload(&self, generation: Generation) -> Result<(), ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let keep: Vec<(String, SocketAddr)> = {
            let bound = self.bound();
            bound
                .iter()
                .filter(|b| wanted(&generation, b))
                .map(|b| (b.name.clone(), b.configured))
                .collect()
        };
        let sockets = bind_new(&generation, &keep, self.workers.count())?;
        {
            let current = self.shared.generation.load();
            let (old, new) = (current.config(), generation.config());
            if old.log.format != new.log.format {
                tracing::warn!("log.format changed: the new format takes effect after a restart");
            }
            if old.admin.as_ref().map(|a| a.listen) != new.admin.as_ref().map(|a| a.listen) {
                tracing::warn!("[admin] listen changed: the admin endpoint moves after a restart");
            }
            if old.server.workers != new.server.workers {
                tracing::warn!(
                    "server.workers changed: the number of worker threads changes after a restart"
                );
            }
        }
        crate::health::inherit(&generation, &self.shared.generation.load());
        crate::metrics::retire(&self.shared, &self.shared.generation.load());
        let generation = Arc::new(generation);
        let previous = self.shared.generation.swap(generation.clone());
        crate::health::spawn_checks(&self.shared, &generation);
        spawn_sweeper(&self.shared, &generation);
        generation.start_acme();
        if !previous.acme().is_same(generation.acme()) {
            // Built with other ACME state (not by `reload_from`): the old one has nothing to
            // renew for any more.
            previous.acme().stop();
        }
        {
            let mut bound = self.bound();
            let generation = self.shared.generation.load();
            bound.retain(|b| {
                let stays = wanted(&generation, b);
                if !stays {
                    tracing::info!(listener = %b.name, "stopped listening on {}", b.local);
                    let _ = b.stop.send(true);
                }
                stays
            });
        }
        self.spawn_loops(sockets);
        self.shared.reloaded.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Reload outcomes so far; changes whenever a reload succeeds or fails.
    pub fn reload_counts(&self) -> watch::Receiver<crate::reload::ReloadCounts> {
        self.shared.reloads.subscribe()
    }

    /// The metrics registry (for the admin endpoint).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// The `/status` document: listeners, certificates, upstreams and servers, reloads.
    pub fn status(&self) -> serde_json::Value {
        crate::metrics::status(&self.shared, &self.bound())
    }

    pub(crate) fn count_reload(&self, succeeded: bool) {
        self.shared.metrics.reload(succeeded);
        self.shared.reloads.send_modify(|c| {
            if succeeded {
                c.succeeded += 1;
            } else {
                c.failed += 1;
            }
        });
    }

    /// Changes whenever an active health check moves a server up or down.
    pub fn health_changes(&self) -> watch::Receiver<u64> {
        self.shared.health_changed.subscribe()
    }

    /// Turns true when the server begins to shut down.
    pub fn stopping_signal(&self) -> watch::Receiver<bool> {
        self.shared.stopping.subscribe()
    }

    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.shared.stopping.subscribe()
    }

    /// Stop accepting, let open connections finish their in-flight requests for up to `grace`,
    /// then return.
    pub async fn shutdown(&self, grace: Duration) -> Drained {
        // `send_replace` updates the value even when no task listens yet.
        self.shared.stopping.send_replace(true);
        self.generation().acme().stop();
        match tokio::time::timeout(grace, self.shared.tasks.wait_idle()).await {
            Ok(()) => Drained::Clean,
            Err(_) => Drained::Forced,
        }
    }

    fn bound(&self) -> std::sync::MutexGuard<'_, Vec<Bound>> {
        // A panic while holding this lock cannot leave the list half-changed: keep going.
        self.bound.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn_loops(&self, sockets: Vec<(String, SocketAddr, Vec<std::net::TcpListener>)>) {
        let mut bound = self.bound();
        for (name, configured, per_worker) in sockets {
            let local = per_worker
                .first()
                .and_then(|s| s.local_addr().ok())
                .unwrap_or(configured);
            tracing::info!(listener = %name, "listening on {local}");
            let (stop, stop_rx) = watch::channel(false);
            let shared_name: Arc<str> = Arc::from(name.as_str());
            for (socket, worker) in per_worker.into_iter().zip(self.workers.handles()) {
                let accept = crate::listener::accept_loop(
                    shared_name.clone(),
                    socket,
                    self.shared.clone(),
                    stop_rx.clone(),
                    self.shared.stopping.subscribe(),
                    self.shared.enter(),
                );
                worker.spawn(accept);
            }
            bound.push(Bound {
                name,
                configured,
                local,
                stop,
            });
        }
    }
}

/// Whether `generation` still has the listener `b` serves, at the same configured address.
fn wanted(generation: &Generation, b: &Bound) -> bool {
    generation
        .config()
        .listeners
        .iter()
        .any(|l| l.name == b.name && l.listen == b.configured)
}

/// Bind the listeners of `generation` not already in `keep`, one socket per worker; all or
/// nothing. Must run inside a runtime.
fn bind_new(
    generation: &Generation,
    keep: &[(String, SocketAddr)],
    workers: usize,
) -> Result<Vec<(String, SocketAddr, Vec<std::net::TcpListener>)>, ProxyError> {
    let mut sockets = Vec::new();
    for l in &generation.config().listeners {
        if keep.iter().any(|(n, a)| *n == l.name && *a == l.listen) {
            continue;
        }
        let socket =
            crate::workers::bind(l.listen, workers).map_err(|source| ProxyError::Bind {
                at: l.at.clone(),
                addr: l.listen,
                source,
            })?;
        sockets.push((l.name.clone(), l.listen, socket));
    }
    Ok(sockets)
}

/// Every [`SWEEP_EVERY`](crate::pool::SWEEP_EVERY), close the surplus idle backend connections
/// of `generation`, for as long as it serves connections (after a reload, those accepted before
/// it keep using its pools), or until the server stops.
fn spawn_sweeper(shared: &Shared, generation: &Arc<Generation>) {
    let generation = Arc::downgrade(generation);
    let mut stopping = shared.stopping.subscribe();
    tokio::spawn(async move {
        let every = crate::pool::SWEEP_EVERY;
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopping.changed() => return,
            }
            let Some(generation) = generation.upgrade() else {
                return;
            };
            let closed = generation.sweep_idle_connections();
            if closed > 0 {
                tracing::debug!(
                    "closed {closed} idle backend connections no request needed for {every:?}"
                );
            }
        }
    });
}
