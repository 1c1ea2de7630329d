//! Running the outside programs interop tests drive (openssl, curl, nginx...): a missing one
//! fails the test, never skips it.

use std::process::{Command, Output};

/// Run `program args`, failing the test if the program is not installed.
pub fn outside(program: &str, args: &[&str]) -> Output {
    output_of(program, Command::new(program).args(args))
}

/// Run `command` (which starts `program`), failing the test if the program is not installed.
pub fn output_of(program: &str, command: &mut Command) -> Output {
    command.output().unwrap_or_else(|e| {
        panic!("{program} is required for interop tests ({e}); .ci/run installs it")
    })
}

/// What a program printed, stdout then stderr.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
