//! `farmgate`: the command line. Each subcommand lives in its own module; the libraries do the
//! work. Exit codes: 0 ok, 1 a user error (bad configuration, refused certificate), 2 bad usage.
#![forbid(unsafe_code)]

/// `println!` that stops quietly when stdout is gone (`farmgate check | head`) instead of
/// panicking on the broken pipe.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `print!` that stops quietly when stdout is gone.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod ca;
mod check;
mod demo;
mod inspect;
mod logging;
mod manual;
mod probe;
mod run;
mod systemd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: a proxy allocates and frees many small buffers per
/// request, and mimalloc's thread-local free lists cost a fraction of glibc malloc's bins and
/// arena locks (see docs/performance.md for the measured gain).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Reverse proxy and load balancer for web farms whose backends accept only mutually
/// authenticated TLS.
#[derive(Debug, Parser)]
#[command(name = "farmgate", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve; SIGHUP reloads the configuration, SIGTERM or Ctrl-C drains and stops.
    Run {
        /// The configuration file.
        #[arg(short, long, default_value = "farmgate.toml")]
        config: PathBuf,
    },
    /// Validate the configuration and every file it names exactly as `run` would.
    Check {
        /// The configuration file.
        #[arg(short, long, default_value = "farmgate.toml")]
        config: PathBuf,
    },
    /// A whole farm on loopback: throwaway CA, an edge, N gates, N origins.
    Demo(demo::Args),
    /// A private CA for the farm's identities.
    Ca(ca::Args),
    /// What a certificate (chain) is good for, as server and as client.
    Inspect(inspect::Args),
    /// Try a (m)TLS handshake with a server and explain the outcome.
    Probe(probe::Args),
    /// Print a shell completion script, e.g. `farmgate completions bash >
    /// /etc/bash_completion.d/farmgate`.
    Completions {
        /// The shell: bash, zsh or fish (elvish and powershell work too).
        shell: clap_complete::Shell,
    },
    /// Write the man pages (farmgate.1 and one per subcommand) into a directory.
    Man {
        /// Where to write them; created if missing.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run::run(&config),
        Command::Check { config } => check::check(&config),
        Command::Demo(args) => demo::demo(&args),
        Command::Ca(args) => ca::ca(&args),
        Command::Inspect(args) => inspect::inspect(&args),
        Command::Probe(args) => probe::probe(&args),
        Command::Completions { shell } => manual::completions::<Cli>(shell),
        Command::Man { dir } => manual::man::<Cli>(&dir),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
