//! systemd's service notifications, for `Type=notify` units (the packaged `farmgate@.service`):
//!
//! - `READY=1` once every listener and the admin endpoint are bound;
//! - `RELOADING=1` with `MONOTONIC_USEC` when a reload from the file starts (SIGHUP or a changed
//!   file), then `READY=1` when it ends, whatever its outcome; a failed one also sets `STATUS=`
//!   to the error, a successful one sets it back;
//! - `STOPPING=1` when SIGTERM or SIGINT begins the graceful shutdown;
//! - `WATCHDOG=1` every half of `WATCHDOG_USEC`, when systemd sets it (`WatchdogSec=`), from the
//!   runtime that also serves connections, so a wedged process stops feeding it.
//!
//! Without `NOTIFY_SOCKET` (not started by systemd) every call does nothing.

use std::sync::Arc;

use farmgate_proxy::{LastReload, ReloadObserver, Server};
use sd_notify::NotifyState;

/// Tells systemd what the server is doing.
#[derive(Debug)]
pub struct Systemd;

impl Systemd {
    /// Every listener is bound: the service is up. Also starts the watchdog, if systemd asks
    /// for one, and watches reloads.
    pub fn ready(server: &Arc<Server>) {
        let listening = server.local_addrs().len();
        send(&[
            NotifyState::Ready,
            NotifyState::Status(&format!("serving on {listening} listener(s)")),
        ]);
        server.observe_reloads(Arc::new(Systemd));
        if let Some(timeout) = sd_notify::watchdog_enabled() {
            tracing::info!("systemd watchdog every {timeout:?}: notifying every half of it");
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(timeout / 2);
                loop {
                    ticks.tick().await;
                    send(&[NotifyState::Watchdog]);
                }
            });
        }
    }

    /// The graceful shutdown begins.
    pub fn stopping() {
        send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
    }
}

impl ReloadObserver for Systemd {
    fn reloading(&self) {
        // systemd 253 and later expect MONOTONIC_USEC with RELOADING=1, to match the two up.
        match NotifyState::monotonic_usec_now() {
            Ok(now) => send(&[NotifyState::Reloading, now]),
            Err(e) => {
                tracing::warn!("cannot read the monotonic clock for systemd: {e}");
                send(&[NotifyState::Reloading]);
            }
        }
    }

    fn reloaded(&self, outcome: &LastReload) {
        match &outcome.error {
            None => send(&[
                NotifyState::Ready,
                NotifyState::Status("serving (reloaded)"),
            ]),
            Some(error) => {
                // One line: a STATUS= message ends at the line's end.
                let status = format!(
                    "reload failed, still serving the previous configuration: {}",
                    error.replace('\n', " ")
                );
                send(&[NotifyState::Ready, NotifyState::Status(&status)]);
            }
        }
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd (NOTIFY_SOCKET): {e}");
    }
}
