//! What the command says about itself, for packages and shells: `farmgate completions SHELL`
//! prints a completion script (clap_complete), `farmgate man DIR` writes the man pages
//! (clap_mangen): `farmgate.1` and one page per subcommand (`farmgate-run.1`...). Both are made
//! from the same clap definition the command parses with, so they never drift from it; the
//! Debian package is built with them (`crates/farmgate/debian/package`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

/// Print the completion script for `shell` on stdout.
pub fn completions<C: CommandFactory>(shell: Shell) -> anyhow::Result<ExitCode> {
    let mut command = C::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "farmgate", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    Ok(ExitCode::SUCCESS)
}

/// Write the man pages into `dir` (created if missing) and name them.
pub fn man<C: CommandFactory>(dir: &Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(C::command(), dir)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
    let mut pages: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("farmgate") && name.ends_with(".1"))
        .collect();
    pages.sort();
    for page in pages {
        outln!("{}", dir.join(page).display());
    }
    Ok(ExitCode::SUCCESS)
}
