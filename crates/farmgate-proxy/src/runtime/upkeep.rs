//! The background work a generation needs while it serves: active health checks, and the
//! sweep of surplus idle backend connections; and, for the whole server, the sampling of each
//! server's traffic counters into its last-minute window.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use tokio::sync::watch;

use crate::generation::Generation;
use crate::inbound::Shared;
use crate::outbound::{Body, Chain, SAMPLE_EVERY, ServerRt, UpstreamFailure, UpstreamRt};

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

/// Start the active checks of every upstream of `generation` with a `health` table. Each runs
/// while `generation` is the current one; a verdict that changes is logged and bumps
/// `changed`.
pub(crate) fn spawn_checks(
    shared: &Arc<Shared>,
    generation: &Arc<Generation>,
    changed: &Arc<watch::Sender<u64>>,
) {
    for (u, upstream) in generation.upstreams.iter().enumerate() {
        let Some(config) = upstream.config.health.clone() else {
            continue;
        };
        for s in 0..upstream.servers.len() {
            let shared = shared.clone();
            // Weak: a replaced generation ends with its last request, not at the next tick.
            let generation = Arc::downgrade(generation);
            let changed = changed.clone();
            let config = config.clone();
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
                    let Some(generation) = generation.upgrade() else {
                        return;
                    };
                    if !Arc::ptr_eq(&shared.generation(), &generation) {
                        return;
                    }
                    let upstream = &generation.upstreams[u];
                    let server = &upstream.servers[s];
                    let verdict = check(upstream, server, &config).await;
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
        for server in generation.upstreams.iter().flat_map(|u| &u.servers) {
            server.stats.sample();
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
