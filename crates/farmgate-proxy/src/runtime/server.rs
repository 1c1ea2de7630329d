//! The running proxy: bound listeners, the current generation, reloads and graceful shutdown.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use farmgate_admin::{DrainAction, DrainRequest, Metrics};
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::error::ProxyError;
use crate::generation::{Generation, Lasting};
use crate::inbound::{self, Shared};
use crate::outbound::Chain;

use super::control;
use super::reload::{ReloadCounts, ReloadError, ReloadFailure};
use super::scrape::Scrape;
use super::status::unix_now;
use super::status::{self, DrainAnswer, LastReload, Status, Upstreams};
use super::upkeep;
use super::workers::{self, Workers};

/// A listening address and the accept loops serving it, one per worker.
#[derive(Debug)]
struct Bound {
    name: String,
    /// The address as configured (port 0 stays 0).
    configured: SocketAddr,
    /// The address actually bound.
    local: SocketAddr,
    stop: watch::Sender<bool>,
}

/// A running proxy.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    /// What every generation of this server shares (ACME, gate counters).
    lasting: Lasting,
    bound: Mutex<Vec<Bound>>,
    /// Accept loops; a shutdown waits for them to close their sockets.
    loops: TaskTracker,
    reloading: tokio::sync::Mutex<()>,
    reloads: watch::Sender<ReloadCounts>,
    /// How the most recent reload ended, for `/status`.
    last_reload: Mutex<Option<LastReload>>,
    /// Told when a reload from a file starts and ends (see [`ReloadObserver`]).
    observer: Mutex<Option<Arc<dyn ReloadObserver>>>,
    /// Bumped whenever an active health check moves a server up or down.
    health_changed: Arc<watch::Sender<u64>>,
    workers: Workers,
}

/// Told when a reload from a file ([`Server::reload_from`]: SIGHUP, a changed file) starts and
/// when it ends, whatever the outcome: how the binary tells systemd (`RELOADING=1`, then
/// `READY=1`). Called on the task that reloads, so keep it short.
pub trait ReloadObserver: Send + Sync + fmt::Debug {
    /// A reload begins: the configuration is about to be read.
    fn reloading(&self);
    /// It ended: whether the new configuration serves, or why the running one stays (as
    /// `/status` shows it: `reloads.last`).
    fn reloaded(&self, outcome: &LastReload);
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
        let lasting = generation.lasting().clone();
        let shared = Arc::new(Shared::new(generation, Arc::new(Metrics::new())));
        shared
            .metrics
            .set_source(Arc::new(Scrape(Arc::downgrade(&shared))));
        let server = Server {
            shared,
            lasting,
            bound: Mutex::new(Vec::new()),
            loops: TaskTracker::new(),
            reloading: tokio::sync::Mutex::new(()),
            reloads: watch::channel(ReloadCounts::default()).0,
            last_reload: Mutex::new(None),
            observer: Mutex::new(None),
            health_changed: Arc::new(watch::channel(0).0),
            workers,
        };
        server.spawn_loops(sockets);
        server.start_upkeep(&server.generation());
        upkeep::spawn_sampler(&server.shared);
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
        self.shared.generation()
    }

    /// The ACME state: every ACME certificate's status (`acme().status()`), a watch for changes,
    /// renewal on request. It is the same across reloads.
    pub fn acme(&self) -> farmgate_acme::Acme {
        self.lasting.acme().clone()
    }

    /// How many configuration generations are alive: the one serving, plus those that
    /// requests in progress since a reload still hold.
    pub fn generations_alive(&self) -> usize {
        self.lasting.generations_alive()
    }

    /// [`Server::generations_alive`], as it changes.
    pub fn generations(&self) -> watch::Receiver<usize> {
        self.lasting.generations()
    }

    /// Open client connections right now.
    pub fn open_connections(&self) -> usize {
        self.shared.open_connections()
    }

    /// Build the configuration at `path` and switch to it; on failure keep the running
    /// generation. Either way the outcome is logged and counted.
    pub async fn reload_from(&self, path: &Path) -> Result<(), ReloadFailure> {
        let observer = self.observer.lock().clone();
        if let Some(observer) = &observer {
            observer.reloading();
        }
        let owned = path.to_path_buf();
        // ACME certificates and gate counters carry over (see `Lasting`).
        let lasting = self.lasting.clone();
        // Reading files and building TLS configurations blocks: keep it off the runtime's workers.
        let built = tokio::task::spawn_blocking(move || Generation::load_with(&owned, &lasting))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let result = match built {
            Ok(generation) => self.reload(generation).await.map_err(ReloadFailure::from),
            Err(e) => Err(ReloadFailure::from(e)),
        };
        match &result {
            Ok(()) => tracing::info!("reloaded {}", path.display()),
            Err(e) => tracing::error!(
                "reload of {} failed; still serving the previous configuration: {}",
                path.display(),
                Chain(e)
            ),
        }
        let outcome = self.count_reload(&result);
        if let Some(observer) = &observer {
            observer.reloaded(&outcome);
        }
        result
    }

    /// Tell `observer` when each reload from a file starts and ends (replacing any observer
    /// set before).
    pub fn observe_reloads(&self, observer: Arc<dyn ReloadObserver>) {
        *self.observer.lock() = Some(observer);
    }

    /// Serve new connections with `generation` from now on, in this order: bind the listeners
    /// it adds or moves (a failure leaves everything as it was); take over what the running
    /// generation knows (server health); swap; stop the listeners it drops and start accepting
    /// on the new ones; start its background work (health checks, the idle sweep, ACME); tell
    /// open connections. ACME certificates and gate counters carry over only if `generation`
    /// was built with this server's [`Lasting`] (as [`Server::reload_from`] does).
    ///
    /// Connections already open finish on the generation they started with, except that a
    /// gate connection whose client the new generation no longer allows is closed after its
    /// current request.
    pub async fn reload(&self, generation: Generation) -> Result<(), ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let keep: Vec<(String, SocketAddr)> = self
            .bound()
            .iter()
            .filter(|b| wanted(&generation, b))
            .map(|b| (b.name.clone(), b.configured))
            .collect();
        let sockets = bind_new(&generation, &keep, self.workers.count())?;
        let running = self.shared.generation();
        warn_restart_only(&running, &generation);
        generation.inherit(&running);
        let generation = Arc::new(generation);
        let previous = self.shared.swap(generation.clone());
        if !previous.acme().is_same(generation.acme()) {
            // Built with other ACME state (not by `reload_from`): the old one has nothing to
            // renew for any more.
            previous.acme().stop();
        }
        self.bound().retain(|b| {
            let stays = wanted(&generation, b);
            if !stays {
                tracing::info!(listener = %b.name, "stopped listening on {}", b.local);
                let _ = b.stop.send(true);
            }
            stays
        });
        self.spawn_loops(sockets);
        self.start_upkeep(&generation);
        self.shared.reloaded.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Reload outcomes so far; changes whenever a reload succeeds or fails.
    pub fn reload_counts(&self) -> watch::Receiver<ReloadCounts> {
        self.reloads.subscribe()
    }

    /// The metrics registry (for the admin endpoint).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// The `/status` document: listeners, certificates, upstreams and servers, reloads,
    /// warnings.
    pub fn status(&self) -> Status {
        let bound: Vec<(String, SocketAddr)> = self.local_addrs();
        let cx = status::Context {
            bound: &bound,
            open_connections: self.open_connections(),
            reloads: *self.reloads.borrow(),
            last_reload: self.last_reload.lock().clone(),
            metrics: &self.shared.metrics,
        };
        status::build(&self.generation(), cx)
    }

    /// The `GET /upstreams` document: each upstream's servers, whether they take requests,
    /// and the requests in flight on each.
    pub fn upstreams(&self) -> Upstreams {
        status::upstreams(&self.generation())
    }

    /// Take server `server` (its address as [`Server::upstreams`] shows it) of upstream
    /// `upstream` out of rotation ([`DrainAction::Drain`]: it takes no new requests, those in
    /// flight finish) or put it back, at the request of `by` (logged); `None` if there is no
    /// such upstream or server. The drain lasts across reloads that keep the server.
    pub fn drain(
        &self,
        upstream: &str,
        server: &str,
        action: DrainAction,
        by: SocketAddr,
    ) -> Option<DrainAnswer> {
        let generation = self.generation();
        control::drain(
            &generation,
            &self.shared.metrics,
            upstream,
            server,
            action,
            by,
        )
    }

    /// The admin endpoint of this server, for [`farmgate_admin::serve`]: its metrics, its
    /// `/status` and `/upstreams`, its drains, and the token of the generation serving at each
    /// request (a reload that reads a new token swaps it with the rest).
    pub fn admin_endpoint(
        self: &Arc<Self>,
        limits: farmgate_admin::Limits,
    ) -> farmgate_admin::Admin {
        let (status, upstreams, drain, token) =
            (self.clone(), self.clone(), self.clone(), self.clone());
        farmgate_admin::Admin {
            metrics: self.metrics(),
            status: Box::new(move || serde_json::to_value(status.status()).unwrap_or_default()),
            token: Box::new(move || token.generation().admin_token().cloned()),
            upstreams: Box::new(move || {
                serde_json::to_value(upstreams.upstreams()).unwrap_or_default()
            }),
            drain: Box::new(move |asked: &DrainRequest<'_>| {
                let answer = drain.drain(asked.upstream, asked.server, asked.action, asked.by)?;
                Some(serde_json::to_value(answer).unwrap_or_default())
            }),
            limits,
        }
    }

    fn count_reload(&self, result: &Result<(), ReloadFailure>) -> LastReload {
        let succeeded = result.is_ok();
        let outcome = LastReload {
            at: unix_now(),
            succeeded,
            error: result.as_ref().err().map(|e| Chain(e).to_string()),
        };
        *self.last_reload.lock() = Some(outcome.clone());
        self.shared.metrics.reload(succeeded);
        self.reloads.send_modify(|c| {
            if succeeded {
                c.succeeded += 1;
            } else {
                c.failed += 1;
            }
        });
        outcome
    }

    /// Changes whenever an active health check moves a server up or down.
    pub fn health_changes(&self) -> watch::Receiver<u64> {
        self.health_changed.subscribe()
    }

    /// Turns true when the server begins to shut down.
    pub fn stopping_signal(&self) -> watch::Receiver<bool> {
        self.shared.stopping.subscribe()
    }

    /// Stop accepting, let open connections finish their in-flight requests for up to `grace`,
    /// then return.
    pub async fn shutdown(&self, grace: Duration) -> Drained {
        // `send_replace` updates the value even when no task listens yet.
        self.shared.stopping.send_replace(true);
        self.lasting.acme().stop();
        self.loops.close();
        self.shared.connections.close();
        let drained = async {
            // Accept loops first: once they are gone, no connection can start.
            self.loops.wait().await;
            self.shared.connections.wait().await;
        };
        match tokio::time::timeout(grace, drained).await {
            Ok(()) => Drained::Clean,
            Err(_) => Drained::Forced,
        }
    }

    fn bound(&self) -> MutexGuard<'_, Vec<Bound>> {
        self.bound.lock()
    }

    /// What a generation needs while it serves: active health checks, DNS discovery, the
    /// idle sweep, ACME.
    fn start_upkeep(&self, generation: &Arc<Generation>) {
        // Said at each start and reload: whose word about client addresses is taken.
        for listener in &generation.config().listeners {
            if let Some(relaxed) = listener.forwarding_relaxations() {
                tracing::info!(listener = %listener.name, "{relaxed}");
            }
        }
        upkeep::spawn_checks(&self.shared, generation, &self.health_changed);
        upkeep::spawn_discovery(&self.shared, generation, &self.health_changed);
        upkeep::spawn_sweeper(&self.shared, generation);
        generation.start_acme();
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
                let accept = inbound::accept_loop(
                    shared_name.clone(),
                    socket,
                    self.shared.clone(),
                    stop_rx.clone(),
                    self.shared.stopping.subscribe(),
                );
                worker.spawn(self.loops.track_future(accept));
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

/// Say which changes of `new` take effect only after a restart.
fn warn_restart_only(running: &Generation, new: &Generation) {
    let (old, new) = (running.config(), new.config());
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
        let socket = workers::bind(l.listen, workers).map_err(|source| ProxyError::Bind {
            at: l.at.clone(),
            addr: l.listen,
            source,
        })?;
        sockets.push((l.name.clone(), l.listen, socket));
    }
    Ok(sockets)
}
