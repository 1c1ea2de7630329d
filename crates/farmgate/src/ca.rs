//! `farmgate ca`: a private CA for the farm's identities.

use std::process::ExitCode;

/// `farmgate ca` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn ca(_args: &Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`farmgate ca` is not implemented yet")
}
