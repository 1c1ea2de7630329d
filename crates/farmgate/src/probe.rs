//! `farmgate probe`: try a (m)TLS handshake and explain the outcome.

use std::process::ExitCode;

/// `farmgate probe` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn probe(_args: &Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`farmgate probe` is not implemented yet")
}
