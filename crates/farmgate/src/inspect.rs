//! `farmgate inspect`: what a certificate (chain) is good for.

use std::process::ExitCode;

/// `farmgate inspect` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn inspect(_args: &Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`farmgate inspect` is not implemented yet")
}
