//! A real ACME server on loopback for the interop tests: Debian's `pebble`, validating for real,
//! with `pebble-challtestsrv` as its DNS server answering 127.0.0.1 for every name. Both run on
//! free ports and are stopped (by their PIDs) when the [`Pebble`] is dropped. A missing program
//! fails the test.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;

use farmgate_testkit::pki::{CertFiles, TestPki};

use crate::cli::Running;

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port free for both UDP and TCP on 127.0.0.1 (DNS).
fn free_dns_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Pebble and its DNS server.
pub struct Pebble {
    /// The ACME directory URL.
    pub directory: String,
    /// The port of the ACME API.
    pub port: u16,
    management: u16,
    /// The CA of pebble's own HTTPS certificate: what `[acme] trust` names.
    pub https_ca: PathBuf,
    pki: TestPki,
    _https: CertFiles,
    _dns: Running,
    _pebble: Running,
}

impl Pebble {
    /// Pebble on a free port, validating http-01 on `http_port` and tls-alpn-01 on `tls_port`.
    pub fn start(http_port: u16, tls_port: u16) -> Pebble {
        Pebble::start_on(free_port(), http_port, tls_port)
    }

    /// Pebble with its ACME API on `port`.
    pub fn start_on(port: u16, http_port: u16, tls_port: u16) -> Pebble {
        Pebble::launch(port, http_port, tls_port, None)
    }

    /// Pebble that registers only accounts bound by External Account Binding to key
    /// identifier `kid` with HMAC key `hmac` (base64url, as CAs print it).
    pub fn start_requiring_eab(http_port: u16, tls_port: u16, kid: &str, hmac: &str) -> Pebble {
        Pebble::launch(free_port(), http_port, tls_port, Some((kid, hmac)))
    }

    fn launch(port: u16, http_port: u16, tls_port: u16, eab: Option<(&str, &str)>) -> Pebble {
        let pki = TestPki::new();
        let https = pki.server("localhost");
        let dns_port = free_dns_port();
        let mut dns_command = Command::new("pebble-challtestsrv");
        dns_command.args([
            "-dns01",
            &format!("127.0.0.1:{dns_port}"),
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            &format!("127.0.0.1:{}", free_port()),
        ]);
        let mut dns = Running::start("pebble-challtestsrv", dns_command);
        dns.wait_for("Starting challenge servers");
        let management = free_port();
        let config = pki.dir().join("pebble.json");
        let text = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{port}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": https.cert,
                "privateKey": https.key,
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": eab.is_some(),
                "externalAccountMACKeys": eab
                    .map(|(kid, hmac)| serde_json::json!({ kid: hmac }))
                    .unwrap_or_else(|| serde_json::json!({}))
            }
        });
        std::fs::write(&config, text.to_string()).unwrap();
        let mut pebble_command = Command::new("pebble");
        pebble_command
            .args([
                "-config",
                config.to_str().unwrap(),
                "-dnsserver",
                &format!("127.0.0.1:{dns_port}"),
            ])
            // Validate at full speed, every order for real (no authorization reuse), and no
            // deliberately rejected nonces: the tests are about farmgate, not retries.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_AUTHZREUSE", "0")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env_remove("PEBBLE_VA_ALWAYS_VALID");
        let mut pebble = Running::start("pebble", pebble_command);
        pebble.wait_for("ACME directory available at");
        Pebble {
            directory: format!("https://127.0.0.1:{port}/dir"),
            port,
            management,
            https_ca: pki.ca_file(),
            pki,
            _https: https,
            _dns: dns,
            _pebble: pebble,
        }
    }

    /// Pebble's issuing root (fresh every run), fetched from its management interface with curl
    /// into a file: what a browser that trusts pebble trusts.
    pub fn root(&self) -> PathBuf {
        let file = self.pki.dir().join("pebble-root.pem");
        if !file.exists() {
            let out = Command::new("curl")
                .args([
                    "--silent",
                    "--show-error",
                    "--fail",
                    "--cacert",
                    self.https_ca.to_str().unwrap(),
                    "--output",
                    file.to_str().unwrap(),
                    &format!("https://127.0.0.1:{}/roots/0", self.management),
                ])
                .output()
                .unwrap_or_else(|e| panic!("curl is required for interop tests ({e})"));
            assert!(
                out.status.success(),
                "cannot fetch pebble's root: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        file
    }

    /// A directory for test files that lives as long as pebble.
    pub fn dir(&self) -> &Path {
        self.pki.dir()
    }
}
