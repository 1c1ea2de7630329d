//! Log output: text or JSON lines on stdout, level from `RUST_LOG` (default [`DEFAULT_FILTER`]).
//!
//! Access log lines (`log.access = true`) have the target `access`; in JSON every line carries
//! its `target`, so they are easy to route.

use std::io::IsTerminal;

use farmgate_config::LogFormat;
use tracing_subscriber::EnvFilter;

/// `info`, except rustls's own warnings: they are about what a peer sent ("Illegal SNI
/// extension: ignoring IP address presented as hostname" for every client that connects by
/// IP address, "Sending fatal alert ..." for every refused handshake, which our verifier
/// already explains in full), one line per connection that says nothing an operator can act
/// on. `RUST_LOG=info` brings them back.
pub const DEFAULT_FILTER: &str = "info,rustls=error";

/// Install the global subscriber. Later calls are ignored.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        // Colours only for a person at a terminal, never into files or the journal.
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}
