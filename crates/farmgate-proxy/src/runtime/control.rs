//! What the admin endpoint may change: a server's place in rotation (drain, undrain), and the
//! `GET /upstreams` document a script reads before and after (docs/operations.md, "Rolling
//! deploys").
//!
//! A drain sets the server's flag in its `outbound::Drain`, which `generation::Lasting` keeps
//! by upstream name and address: every generation, the serving one and those to come, sees
//! it. Each change is logged with the admin client's address and counted
//! (`farmgate_server_drains_total`).

use std::net::SocketAddr;

use farmgate_admin::{DrainAction, Metrics};

use crate::generation::Generation;
use crate::outbound::now_ms;

use super::status::{self, DrainAnswer, unix_now};

/// Drain or undrain server `server` of upstream `upstream` in `generation` (the serving one)
/// at the request of `by`; `None` if there is no such upstream or server.
pub(crate) fn drain(
    generation: &Generation,
    metrics: &Metrics,
    upstream: &str,
    server: &str,
    action: DrainAction,
    by: SocketAddr,
) -> Option<DrainAnswer> {
    let (u, s) = generation.server_named(upstream, server)?;
    let changed = match action {
        DrainAction::Drain => s.drain.start(u64::try_from(unix_now()).unwrap_or(1)),
        DrainAction::Undrain => s.drain.stop(),
    };
    let now = now_ms();
    let available = u
        .servers()
        .servers
        .iter()
        .filter(|s| s.takes_requests(now))
        .count();
    let answer = DrainAnswer {
        upstream: u.name.to_string(),
        server: status::rotation(&s),
        changed,
        available,
    };
    let in_flight = answer.server.in_flight;
    match (action, changed) {
        (DrainAction::Drain, true) => {
            metrics.server_drain(upstream, server, action);
            tracing::info!(upstream = %u.name, server = %s.address, %by, "server drained at the request of {by}: it takes no new requests; {in_flight} in flight finish");
        }
        (DrainAction::Undrain, true) => {
            metrics.server_drain(upstream, server, action);
            let health = if answer.server.up {
                "back in rotation"
            } else {
                "back in rotation once its health checks pass"
            };
            tracing::info!(upstream = %u.name, server = %s.address, %by, "server undrained at the request of {by}: {health}");
        }
        (DrainAction::Drain, false) => {
            tracing::info!(upstream = %u.name, server = %s.address, %by, "drain asked by {by}: the server was draining already; {in_flight} in flight");
        }
        (DrainAction::Undrain, false) => {
            tracing::info!(upstream = %u.name, server = %s.address, %by, "undrain asked by {by}: the server was not drained");
        }
    }
    if available == 0 {
        tracing::warn!(upstream = %u.name, "upstream {} has no server that takes requests: its requests are answered 503 until a server is undrained or healthy again", u.name);
    }
    Some(answer)
}
