//! A stock nginx for interop tests, started from a temporary prefix on a free loopback port.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::outside::{outside, text};

/// How long nginx may take to start listening before the test fails (not a delay: the wait
/// ends as soon as it accepts a connection).
const PATIENCE: Duration = Duration::from_secs(60);

/// A stock nginx on a free loopback port, from a temporary prefix; killed (by its PID, it is
/// our child) when dropped.
pub struct Nginx {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    prefix: PathBuf,
}

impl Nginx {
    /// nginx with `http` in its `http` block and one TLS `server` listening on a free port,
    /// whose directives are `server`.
    pub fn start(prefix: &Path, http: &str, server: &str) -> Nginx {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = prefix.display();
        let conf = format!(
            r#"
daemon off;
master_process off;
pid {p}/nginx.pid;
error_log {p}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {p}/access.log;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    {http}
    server {{
        listen 127.0.0.1:{port} ssl;
        {server}
    }}
}}
"#
        );
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("nginx")
            .args([
                "-p",
                prefix.to_str().unwrap(),
                "-e",
                prefix.join("error.log").to_str().unwrap(),
                "-c",
                conf_path.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("nginx is required for interop tests ({e}); .ci/run installs it")
            });
        let mut nginx = Nginx {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            prefix: prefix.to_path_buf(),
        };
        nginx.wait_until_listening();
        nginx
    }

    /// Returns as soon as nginx accepts a connection; fails if it exits first.
    fn wait_until_listening(&mut self) {
        let started = Instant::now();
        while TcpStream::connect(self.addr).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "nginx exited ({status}) before listening:\n{}",
                    self.error_log()
                );
            }
            assert!(
                started.elapsed() < PATIENCE,
                "nginx did not listen on {}:\n{}",
                self.addr,
                self.error_log()
            );
            std::thread::yield_now();
        }
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.join("error.log")).unwrap_or_default()
    }

    /// `curl` to this nginx as https://backend.farm.test/, trusting `ca`, with `extra` args;
    /// (HTTP status, body).
    pub fn curl(&self, ca: &Path, extra: &[&str]) -> (String, String) {
        let resolve = format!("backend.farm.test:{}:127.0.0.1", self.addr.port());
        let url = format!("https://backend.farm.test:{}/", self.addr.port());
        let mut args = vec![
            "-sS",
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &resolve,
            "-w",
            "\n%{http_code}",
        ];
        args.extend_from_slice(extra);
        args.push(&url);
        let out = outside("curl", &args);
        assert!(out.status.success(), "curl {args:?}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = stdout.rsplit_once('\n').unwrap();
        (status.to_owned(), body.to_owned())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // Only our own child, by its PID; with master_process off it has no workers.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
