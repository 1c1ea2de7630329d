//! `farmgate run`: serve until told to stop.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use farmgate_proxy::{Drained, Generation, Server};
use tokio::signal::unix::{SignalKind, signal};

pub fn run(config: &Path) -> anyhow::Result<ExitCode> {
    let generation = Generation::load(config)?;
    crate::logging::init(generation.config().log.format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(serve(config, generation))
}

async fn serve(path: &Path, generation: Generation) -> anyhow::Result<ExitCode> {
    let grace = generation.config().server.shutdown_grace;
    let server = Server::start(generation).await?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    loop {
        tokio::select! {
            _ = hangup.recv() => reload(&server, path),
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
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

fn reload(server: &Server, path: &Path) {
    let result = Generation::load(path)
        .map_err(anyhow::Error::from)
        .and_then(|g| server.reload(g).map_err(anyhow::Error::from));
    match result {
        Ok(()) => tracing::info!("reloaded {}", path.display()),
        Err(e) => tracing::error!("reload failed, still serving the previous configuration: {e:#}"),
    }
}
