//! `farmgate run`: serve until told to stop.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use farmgate_proxy::{Drained, Generation, Server, Workers};
use tokio::signal::unix::{SignalKind, signal};

use crate::systemd::Systemd;

pub fn run(config: &Path) -> anyhow::Result<ExitCode> {
    let generation = Generation::load(config)?;
    crate::logging::init(generation.config().log.format);
    raise_fd_limit(generation.config());
    // What `farmgate check` would warn about, said once at start-up too.
    for warning in generation.warnings() {
        tracing::warn!("{}: {}", warning.at, warning.message);
    }
    // This thread is worker 0; the others start inside its runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(serve(config, generation))
}

/// Raise the soft open-files limit to the hard one: every connection holds a descriptor, and
/// the usual soft limit (1024) is far below what `max_connections` allows. Past the limit,
/// accepting fails until connections close (logged once a second, not fatal).
fn raise_fd_limit(config: &farmgate_config::Config) {
    let wanted: u64 = config
        .listeners
        .iter()
        .map(|l| u64::from(l.limits.max_connections))
        .sum();
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < wanted => tracing::warn!(
            "open files limited to {limit}, fewer than the {wanted} connections the listeners' \
             max_connections allow: past it, new connections wait until some close; raise \
             LimitNOFILE= (systemd) or ulimit -n, or lower max_connections"
        ),
        Ok(limit) => tracing::debug!("open files limited to {limit}"),
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
}

async fn serve(path: &Path, generation: Generation) -> anyhow::Result<ExitCode> {
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let admin = generation.config().admin.clone();
    let count = generation
        .config()
        .server
        .workers
        .map_or_else(Workers::default_count, |n| n as usize);
    let workers = Workers::start(count).context("cannot start the worker threads")?;
    tracing::info!("{count} worker thread(s), each accepting on its own socket per listener");
    let server = Arc::new(Server::start_on(generation, workers).await?);
    if let Some(admin) = admin {
        start_admin(&server, &admin).await?;
    }
    tokio::spawn(farmgate_proxy::reload::watch(
        server.clone(),
        path.to_path_buf(),
    ));
    // Every listener and the admin endpoint are bound.
    Systemd::ready(&server);
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                // Logged and counted inside; a failure keeps the running configuration.
                let _ = server.reload_from(path).await;
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    Systemd::stopping();
    // The grace period of the configuration in force now, not the one we started with.
    let grace = server.generation().config().server.shutdown_grace;
    tracing::info!(
        "stopping: no new connections; in-flight requests have {grace:?} to finish (a second signal stops at once)"
    );
    tokio::select! {
        drained = server.shutdown(grace) => {
            if drained == Drained::Forced {
                tracing::warn!("grace period over: closed the connections still open");
            }
            tracing::info!("stopped");
            Ok(ExitCode::SUCCESS)
        }
        _ = terminate.recv() => Ok(ExitCode::from(1)),
        _ = interrupt.recv() => Ok(ExitCode::from(1)),
    }
}

/// Serve `/metrics`, `/status`, `/upstreams` and its drains, `/healthz` and the dashboard on
/// the admin address. Moving it needs a restart; everything it shows, and the token it
/// requires, follow reloads.
async fn start_admin(server: &Arc<Server>, admin: &farmgate_config::Admin) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(admin.listen)
        .await
        .with_context(|| format!("{}: cannot listen on {}", admin.at, admin.listen))?;
    let local = listener.local_addr().unwrap_or(admin.listen);
    tracing::info!(listener = %"admin", "listening on {local}");
    if admin.token_file.is_none() {
        // The configuration allows this on loopback only.
        tracing::info!(
            "the admin endpoint on {local} requires no token: any user or process on this host \
             can read /status and /metrics and drain servers; [admin] token_file makes it \
             require one"
        );
    }
    serve_admin(server, listener);
    Ok(())
}

/// Serve `server`'s admin endpoint on `listener` until the server stops.
pub(crate) fn serve_admin(server: &Arc<Server>, listener: tokio::net::TcpListener) {
    let endpoint = server.admin_endpoint(farmgate_admin::Limits::default());
    tokio::spawn(farmgate_admin::serve(
        listener,
        Arc::new(endpoint),
        server.stopping_signal(),
    ));
}
