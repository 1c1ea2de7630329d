//! Running the built binary and reading what it prints.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use farmgate_pki::{Authority, CaSpec, CertSpec};

/// How long to wait for an expected line before declaring the test failed (not a
/// synchronisation delay: the wait ends as soon as the line arrives).
const PATIENCE: Duration = Duration::from_secs(60);

/// `farmgate` with `args`.
pub fn farmgate(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_farmgate"));
    cmd.args(args);
    cmd
}

/// A process we started (`farmgate`, or an outside program), with its output lines as they come.
pub struct Running {
    program: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Running {
    pub fn spawn(args: &[&str]) -> Running {
        let mut command = farmgate(args);
        command.env("NO_COLOR", "1");
        Running::start("farmgate", command)
    }

    /// Start `command` (running `program`); a program that is not installed fails the test.
    pub fn start(program: &str, mut command: Command) -> Running {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {program} ({e}); .ci/run installs what the tests need")
            });
        let (tx, lines) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Running {
            program: program.to_owned(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line containing `needle` (earlier lines are kept in `seen`).
    pub fn wait_for(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(PATIENCE) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "{}: no line with {needle:?} ({e}); output so far:\n{}",
                    self.program,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The address listener `name` reported in its "listening on" line.
    pub fn listening(&mut self, name: &str) -> std::net::SocketAddr {
        let line = self.wait_for(&format!("listener={name}"));
        let addr = line.split("listening on ").nth(1).unwrap();
        addr.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// Take the lines printed so far into `seen`, without waiting for more.
    pub fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal by name (TERM, INT, HUP) to this process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Wait for the process to exit.
    pub fn wait(mut self) -> ExitStatus {
        self.child.wait().unwrap()
    }

    /// Peak resident memory in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Only our own child, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The certificates the examples name, minted into `dir/certs`.
pub fn mint_example_certs(dir: &Path) {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let ca = Authority::new_root(&CaSpec::new("example farm CA")).unwrap();
    std::fs::write(certs.join("farm-ca.pem"), ca.cert_pem()).unwrap();
    for (stem, spec) in [
        ("site", CertSpec::server("www.example.com")),
        ("static", CertSpec::server("static.example.com")),
        ("backend", CertSpec::server("backend.farm.internal")),
        ("edge-client", CertSpec::client("edge.example.com")),
    ] {
        let issued = ca.issue(&spec).unwrap();
        std::fs::write(certs.join(format!("{stem}.pem")), &issued.chain_pem).unwrap();
        std::fs::write(certs.join(format!("{stem}.key")), &issued.key_pem).unwrap();
    }
}
