//! farmgate's configuration: TOML text in, a validated and typed [`Config`] out.
//!
//! This crate does no I/O: the caller reads the file and passes its text and path. Parsing happens
//! in two steps, as in "parse, don't validate": serde reads the text into raw structs that keep
//! spans (`raw`), then `build` turns them into domain types (`SocketAddr`, `Duration`, enums,
//! [`AllowList`](farmgate_identity::AllowList)) and reports every problem with its file, line and
//! key. Nothing downstream re-checks a string. Relative paths are resolved against the directory
//! holding the configuration file.
//!
//! ```
//! let text = r#"
//! [[listener]]
//! name = "gate"
//! listen = "127.0.0.1:8443"
//! tls = { certificate = "backend.pem", private_key = "backend.key" }
//! [[listener.route]]
//! upstream = "app"
//! [upstream.app]
//! servers = ["127.0.0.1:8080"]
//! "#;
//! let config = farmgate_config::Config::parse(text, "/etc/farmgate/gate.toml".as_ref()).unwrap();
//! assert_eq!(config.listeners[0].name, "gate");
//! let tls = config.listeners[0].tls.as_ref().unwrap();
//! let farmgate_config::ListenerCerts::Files { default, .. } = &tls.certs else { panic!() };
//! assert!(default.certificate.path.ends_with("backend.pem"));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod acme;
mod build;
mod duration;
mod error;
mod headers;
mod listener;
mod location;
mod net;
mod raw;
mod spelling;
mod upstream;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use acme::{
    Acme, AcmeCert, Challenge, DEFAULT_STORAGE, DirectoryUrl, Eab, LETS_ENCRYPT, MAX_ACME_DOMAINS,
};
pub use duration::{parse_duration, parse_size};
pub use error::{
    ConfigError, ConfigErrors, Duplicate, Empty, Form, Incomplete, OutOfRange, Problem, Rule,
};
pub use headers::{HeaderRules, Managed};
pub use listener::{
    CertKey, ClientAuth, EkuPolicy, HostPattern, Listener, ListenerCerts, ListenerLimits,
    ListenerTimeouts, ListenerTls, MAX_REQUEST_HEADER, MIN_REQUEST_HEADER, ProxyProtocol,
    RateLimit, Route, SniCert,
};
pub use location::Location;
pub use net::{Address, IpRange};
pub use spelling::Expected;
use spelling::spelled;
pub use upstream::{
    Backend, Balance, DEFAULT_MAX_TTL, DEFAULT_MIN_TTL, Discover, HashKey, Health, Lookup,
    MAX_WEIGHT, Protocol, ProxyVersion, Timeouts, Upstream, UpstreamId, UpstreamTls,
};

/// A complete, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: Arc<Path>,
    /// The admin endpoint, if enabled.
    pub admin: Option<Admin>,
    /// Logging.
    pub log: Log,
    /// Process-wide settings.
    pub server: Server,
    /// The ACME server and storage; present when a listener uses ACME or `[acme]` is written.
    pub acme: Option<Acme>,
    /// Listeners, at least one.
    pub listeners: Vec<Listener>,
    /// Upstreams, referred to by [`UpstreamId`].
    pub upstreams: Vec<Upstream>,
}

impl Config {
    /// Parse and validate configuration `text` read from `path` (used for messages and to resolve
    /// relative paths). Returns every problem found, each with file, line and key.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        build::build(text, path)
    }

    /// Every file this configuration names (certificates, keys, trust bundles, CRLs, ticket
    /// keys, the admin token): what a reload must watch. Not the ACME storage, whose files farmgate writes
    /// itself.
    pub fn files(&self) -> Vec<&FileRef> {
        fn trust_files(trust: &[Trust]) -> impl Iterator<Item = &FileRef> {
            trust.iter().filter_map(|t| match t {
                Trust::File(f) => Some(f),
                Trust::Mozilla | Trust::System => None,
            })
        }
        let mut files = Vec::new();
        for l in &self.listeners {
            let Some(tls) = &l.tls else { continue };
            if let ListenerCerts::Files { default, sni } = &tls.certs {
                files.push(&default.certificate);
                files.push(&default.private_key);
                for entry in sni {
                    files.push(&entry.cert.certificate);
                    files.push(&entry.cert.private_key);
                }
            }
            if let Some(ca) = &tls.client_auth {
                files.extend(trust_files(&ca.trust));
                files.extend(ca.crl.iter());
            }
            files.extend(tls.ticket_keys.iter());
        }
        if let Some(acme) = &self.acme {
            files.extend(trust_files(&acme.trust));
        }
        if let Some(admin) = &self.admin {
            files.extend(admin.token_file.iter());
        }
        for u in &self.upstreams {
            let Some(tls) = &u.tls else { continue };
            files.extend(trust_files(&tls.trust));
            if let Some(pair) = &tls.client_cert {
                files.push(&pair.certificate);
                files.push(&pair.private_key);
            }
        }
        files
    }

    /// The upstream a route refers to.
    pub fn upstream(&self, id: UpstreamId) -> &Upstream {
        &self.upstreams[id.index()]
    }
}

/// The admin endpoint: metrics, status and health.
#[derive(Debug, Clone)]
pub struct Admin {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The bearer token that guards everything but `/healthz` (required when `listen` is not
    /// a loopback address).
    pub token_file: Option<FileRef>,
    /// Where it is defined.
    pub at: Location,
}

/// Log output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Log {
    /// Line format.
    pub format: LogFormat,
    /// One line per request.
    pub access: bool,
}

spelled! {
    /// Log line format (`log.format`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum LogFormat (what: "log format", quoted: true) {
        /// Human-readable text (default).
        #[default]
        Text = "text",
        /// One JSON object per line.
        Json = "json",
    }
}

/// Process-wide settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Threads serving connections, each with its own runtime and its own listening socket
    /// on every listener address; `None`: one per CPU the process may run on.
    pub workers: Option<u32>,
}

/// The most `[server] workers` may ask for.
pub const MAX_WORKERS: u32 = 256;

impl Default for Server {
    fn default() -> Self {
        Server {
            shutdown_grace: Duration::from_secs(30),
            workers: None,
        }
    }
}

/// A file named in the configuration, with where it was named (for errors when reading it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// The path, resolved against the configuration file's directory.
    pub path: PathBuf,
    /// Where it was named.
    pub at: Location,
}

/// A source of trust anchors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The bundled Mozilla root program (webpki-roots): `"mozilla"`.
    Mozilla,
    /// The operating system's store (rustls-native-certs): `"system"`.
    System,
    /// CA certificates in a PEM file.
    File(FileRef),
}

impl Trust {
    /// The bundled store a `trust` entry (or `--trust` argument) names: `"mozilla"` or
    /// `"system"`; `None` for anything else, which names a file.
    pub fn builtin(word: &str) -> Option<Trust> {
        match word {
            MOZILLA => Some(Trust::Mozilla),
            SYSTEM => Some(Trust::System),
            _ => None,
        }
    }
}

/// The entry as written: `mozilla`, `system` or the file's (resolved) path.
impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trust::Mozilla => f.write_str(MOZILLA),
            Trust::System => f.write_str(SYSTEM),
            Trust::File(file) => write!(f, "{}", file.path.display()),
        }
    }
}

/// The words naming the bundled trust stores.
const MOZILLA: &str = "mozilla";
const SYSTEM: &str = "system";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_words_round_trip() {
        for trust in [Trust::Mozilla, Trust::System] {
            assert_eq!(Trust::builtin(&trust.to_string()), Some(trust));
        }
        assert_eq!(Trust::builtin("certs/ca.pem"), None);
        assert_eq!(Trust::builtin("Mozilla"), None);
        let file = Trust::File(FileRef {
            path: PathBuf::from("/etc/farmgate/ca.pem"),
            at: Location::new(Arc::from(Path::new("f.toml")), 1, "trust"),
        });
        assert_eq!(file.to_string(), "/etc/farmgate/ca.pem");
    }
}
