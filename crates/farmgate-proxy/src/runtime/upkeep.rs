//! The background work a generation needs while it serves: active health checks, DNS
//! discovery, and the sweep of surplus idle backend connections; and, for the whole server,
//! the sampling of each server's traffic counters into its last-minute window.

use std::sync::{Arc, Weak};
use std::time::Duration;

use http::{Request, StatusCode};
use tokio::sync::watch;

use crate::generation::Generation;
use crate::inbound::Shared;
use crate::outbound::{
    Body, Chain, Change, Resolver, SAMPLE_EVERY, ServerRt, UpstreamFailure, UpstreamRt,
};

/// How often surplus idle backend connections are swept (HAProxy's `pool-purge-delay` default).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Why an active health check failed.
#[derive(Debug, thiserror::Error)]
enum CheckFailure {
    /// The configured path is not a valid request target.
    #[error("bad health path {path:?}")]
    BadPath {
        path: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    /// No answer within the check's timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The request failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamFailure),
    /// The server answered, but neither 2xx nor 3xx.
    #[error("{path} answered {status}")]
    Status { path: String, status: StatusCode },
}

/// Start the active checks of every server of every upstream of `generation` with a
/// `health` table. Each runs while `generation` is the current one and the server is one of
/// its upstream's (DNS discovery may drop it); a verdict that changes is logged and bumps
/// `changed`.
pub(crate) fn spawn_checks(
    shared: &Arc<Shared>,
    generation: &Arc<Generation>,
    changed: &Arc<watch::Sender<u64>>,
) {
    for (u, upstream) in generation.upstreams.iter().enumerate() {
        if upstream.config.health.is_none() {
            continue;
        }
        for server in &upstream.servers().servers {
            spawn_check(shared, generation, changed, u, server);
        }
    }
}

/// Check `server` of upstream `u` of `generation` every `health.interval`, the first time now.
fn spawn_check(
    shared: &Arc<Shared>,
    generation: &Arc<Generation>,
    changed: &Arc<watch::Sender<u64>>,
    u: usize,
    server: &Arc<ServerRt>,
) {
    let Some(config) = generation.upstreams[u].config.health.clone() else {
        return;
    };
    let shared = shared.clone();
    // Weak: a replaced generation ends with its last request, not at the next tick; a server
    // DNS dropped, with its last request.
    let generation = Arc::downgrade(generation);
    let server = Arc::downgrade(server);
    let changed = changed.clone();
    let mut stopping = shared.stopping.subscribe();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(config.interval);
        loop {
            if *stopping.borrow_and_update() {
                return;
            }
            tokio::select! {
                _ = interval.tick() => {}
                _ = stopping.changed() => return,
            }
            let Some(generation) = current(&shared, &generation) else {
                return;
            };
            let upstream = &generation.upstreams[u];
            let Some(server) = server.upgrade().filter(|s| upstream.servers().holds(s)) else {
                return;
            };
            let verdict = check(upstream, &server, &config).await;
            if let Err(why) = &verdict {
                server.stats.failed_check(Chain(why).to_string());
            }
            if server
                .health
                .checked(verdict.is_ok(), config.rise, config.fall)
                .is_none()
            {
                continue;
            }
            match &verdict {
                Ok(()) => {
                    tracing::info!(upstream = %upstream.name, server = %server.address, "server is up again: {} health checks passed", config.rise)
                }
                Err(why) => {
                    tracing::warn!(upstream = %upstream.name, server = %server.address, "server marked down after {} failed health checks: {}", config.fall, Chain(why))
                }
            }
            changed.send_modify(|n| *n += 1);
        }
    });
}

/// `generation`, if it is still the one serving.
fn current(shared: &Shared, generation: &Weak<Generation>) -> Option<Arc<Generation>> {
    let generation = generation.upgrade()?;
    Arc::ptr_eq(&shared.generation(), &generation).then_some(generation)
}

/// Start the DNS discovery of every upstream of `generation` with `discover`: look its servers
/// up now, then again when the answer's TTL (clamped to `[min_ttl, max_ttl]`) runs out, or
/// sooner after a failure (`outbound::discover`), while `generation` is the current one.
pub(crate) fn spawn_discovery(
    shared: &Arc<Shared>,
    generation: &Arc<Generation>,
    changed: &Arc<watch::Sender<u64>>,
) {
    for (u, upstream) in generation.upstreams.iter().enumerate() {
        let (Some(discover), Some(discovery)) =
            (upstream.config.discover.clone(), upstream.discovery.clone())
        else {
            continue;
        };
        let shared = shared.clone();
        let weak = Arc::downgrade(generation);
        let changed = changed.clone();
        let name = upstream.name.clone();
        let mut stopping = shared.stopping.subscribe();
        // A reload ends this task at once, rather than when its next lookup is due.
        let mut reloaded = shared.reloaded.subscribe();
        let bounds = (discover.min_ttl, discover.max_ttl);
        tokio::spawn(async move {
            discovery.ask(&discover);
            let mut resolver: Option<Resolver> = None;
            loop {
                if *stopping.borrow_and_update() || current(&shared, &weak).is_none() {
                    return;
                }
                let asked = match &resolver {
                    Some(resolver) => resolver.resolve().await,
                    // Made here, in the task: the system's configuration is read again after
                    // a failure to read it.
                    None => match Resolver::new(&discover) {
                        Ok(made) => resolver.insert(made).resolve().await,
                        Err(failure) => Err(failure),
                    },
                };
                // The generation is held only while the answer is applied, never across a
                // lookup, so a reload's old generation ends with its last request.
                let Some(generation) = current(&shared, &weak) else {
                    return;
                };
                let upstream = &generation.upstreams[u];
                let next = match asked {
                    Ok(answer) => {
                        let (change, next) = discovery.answered(answer.clone(), bounds);
                        let before = upstream.servers();
                        let same = before.servers.len() == answer.servers.len()
                            && before
                                .servers
                                .iter()
                                .zip(&before.weights)
                                .zip(&answer.servers)
                                .all(|((s, w), f)| {
                                    *s.address == *f.address.to_string() && *w == f.weight
                                });
                        if change == Change::Answering {
                            tracing::info!(upstream = %name, "DNS answers {}: {} server(s)", discover.lookup, answer.servers.len());
                        }
                        if !same && let Some(set) = upstream.discovered(&answer.servers) {
                            let (added, removed) =
                                difference(&before.addresses(), &set.addresses());
                            tracing::info!(upstream = %name, "servers changed with DNS ({}): now {}; added: {}; removed: {}", discover.lookup, set.servers.len(), list(&added), list(&removed));
                            for server in set.servers.iter().filter(|s| !before.holds(s)) {
                                spawn_check(&shared, &generation, &changed, u, server);
                            }
                            changed.send_modify(|n| *n += 1);
                        }
                        next
                    }
                    Err(failure) => {
                        let (change, next) = discovery.failed(&failure, bounds);
                        if change == Change::Failing {
                            let servers = upstream.servers().servers.len();
                            if servers == 0 {
                                tracing::warn!(upstream = %name, "DNS lookup failed ({}): {}; the upstream has no server and answers 503 until DNS answers", discover.lookup, Chain(&failure));
                            } else {
                                tracing::warn!(upstream = %name, "DNS lookup failed ({}): {}; keeping the last good answer's {servers} server(s)", discover.lookup, Chain(&failure));
                            }
                        }
                        next
                    }
                };
                drop(generation);
                reloaded.borrow_and_update();
                tokio::select! {
                    _ = tokio::time::sleep(next) => {}
                    _ = reloaded.changed() => {
                        if current(&shared, &weak).is_none() {
                            return;
                        }
                        // Another reload's news, with this generation still serving: the
                        // lookup is due as planned; asking early does no harm.
                    }
                    _ = stopping.changed() => return,
                }
            }
        });
    }
}

/// What `after` has that `before` has not, and the other way round.
fn difference<'a>(before: &[&'a str], after: &[&'a str]) -> (Vec<&'a str>, Vec<&'a str>) {
    let added = after
        .iter()
        .filter(|a| !before.contains(a))
        .copied()
        .collect();
    let removed = before
        .iter()
        .filter(|b| !after.contains(b))
        .copied()
        .collect();
    (added, removed)
}

/// `a, b` or `none`.
fn list(addresses: &[&str]) -> String {
    if addresses.is_empty() {
        "none".to_owned()
    } else {
        addresses.join(", ")
    }
}

/// One active check: GET the health path over the upstream's own pool (same TLS and client
/// certificate as real traffic); a 2xx or 3xx within the timeout passes.
async fn check(
    upstream: &UpstreamRt,
    server: &ServerRt,
    config: &farmgate_config::Health,
) -> Result<(), CheckFailure> {
    let host = upstream
        .config
        .tls
        .as_ref()
        .and_then(|t| t.server_name.clone())
        .unwrap_or_else(|| server.address.to_string());
    let mut req = Request::new(Body::Empty);
    *req.uri_mut() = config
        .path
        .parse()
        .map_err(|source| CheckFailure::BadPath {
            path: config.path.clone(),
            source,
        })?;
    if let Ok(value) = http::HeaderValue::from_str(&host) {
        req.headers_mut().insert(http::header::HOST, value);
    }
    req.headers_mut().insert(
        http::header::USER_AGENT,
        http::HeaderValue::from_static("farmgate-health-check"),
    );
    let response = tokio::time::timeout(config.timeout, upstream.send(server, req, None))
        .await
        .map_err(|_| CheckFailure::Timeout(config.timeout))??;
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(CheckFailure::Status {
            path: config.path.clone(),
            status,
        })
    }
}

/// Every [`SWEEP_EVERY`], close the surplus idle backend connections of `generation`, for as
/// long as it serves connections (after a reload, those accepted before it keep using its
/// pools), or until the server stops.
pub(crate) fn spawn_sweeper(shared: &Shared, generation: &Arc<Generation>) {
    let generation = Arc::downgrade(generation);
    every(shared, SWEEP_EVERY, move || {
        let Some(generation) = generation.upgrade() else {
            return false;
        };
        let closed = generation.sweep_idle();
        if closed > 0 {
            tracing::debug!(
                "closed {closed} idle backend connections no request needed for {SWEEP_EVERY:?}"
            );
        }
        true
    });
}

/// Every [`SAMPLE_EVERY`], keep each server's counters (`outbound::stats`) for the
/// last-minute figures of `/status`, and purge idle entries of the clients' rate limiters,
/// until the server stops. One task for the whole server:
/// the counters outlive generations, and those of the current one are sampled.
pub(crate) fn spawn_sampler(shared: &Arc<Shared>) {
    let weak = Arc::downgrade(shared);
    every(shared, SAMPLE_EVERY, move || {
        let Some(shared) = weak.upgrade() else {
            return false;
        };
        let generation = shared.generation();
        for upstream in &generation.upstreams {
            for server in &upstream.servers().servers {
                server.stats.sample();
            }
        }
        shared.purge_clients();
        true
    });
}

/// Run `work` every `period`, the first time one period from now, until the server stops or
/// `work` returns false. A late tick delays the next ones instead of bunching them.
fn every(shared: &Shared, period: Duration, mut work: impl FnMut() -> bool + Send + 'static) {
    let mut stopping = shared.stopping.subscribe();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopping.changed() => return,
            }
            if !work() {
                return;
            }
        }
    });
}
