//! Configuration errors: each names the file, line and key, and says what is wrong.

use std::fmt;
use std::net::SocketAddr;

use farmgate_identity::AllowRuleError;

use crate::{
    Address, Challenge, Expected, HashKey, LETS_ENCRYPT, Location, MAX_ACME_DOMAINS,
    MAX_REQUEST_HEADER, MAX_WEIGHT, MAX_WORKERS, MIN_REQUEST_HEADER,
};

/// One problem in a configuration file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[error("{at}: {problem}")]
pub struct ConfigError {
    /// Where the problem is.
    pub at: Location,
    /// What the problem is.
    #[source]
    pub problem: Problem,
}

/// What is wrong with a configuration value. Each message says what to write instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The file is not valid TOML, or a value has the wrong type, or a key is unknown.
    #[error("{0}")]
    Syntax(String),
    /// A required key is missing.
    #[error("missing required key `{0}`")]
    Missing(&'static str),
    /// A required key is missing, and why it is required.
    #[error("{0}")]
    Incomplete(Incomplete),
    /// An allow-list entry that is not a valid identity.
    #[error("invalid identity {text:?}")]
    Identity {
        /// The entry as written.
        text: String,
        /// Why it is invalid.
        #[source]
        source: AllowRuleError,
    },
    /// A word that names none of the values a setting takes (`balance`, `eku`, …).
    #[error("unknown {what} {found:?}; expected {expected}")]
    UnknownVariant {
        /// The setting, e.g. `log format`.
        what: &'static str,
        /// The word as written.
        found: String,
        /// The words it takes.
        expected: Expected,
    },
    /// A value that is not of the form its key takes.
    #[error("{found:?} is not {expected}")]
    Malformed {
        /// The value as written.
        found: String,
        /// The form it should take.
        expected: Form,
    },
    /// A duration of zero.
    #[error("a duration must be greater than zero")]
    ZeroDuration,
    /// A path that must be absolute (`path_prefix`, a health check's `path`).
    #[error("{found:?} must start with \"/\"")]
    RelativePath {
        /// The path as written.
        found: String,
    },
    /// A list or value that is empty where it must not be.
    #[error("{0}")]
    Empty(Empty),
    /// A number outside the range its key takes.
    #[error("{0}")]
    OutOfRange(OutOfRange),
    /// A name or address written twice where each must be unique.
    #[error("{0}")]
    Duplicate(Duplicate),
    /// A rule that ties several keys together is broken.
    #[error("{0}")]
    Rule(Rule),
    /// A route names an upstream that is not defined.
    #[error("no upstream named {name:?} ({})", defined_upstreams(.defined))]
    UnknownUpstream {
        /// The name as written.
        name: String,
        /// The upstreams that are defined, sorted.
        defined: Vec<String>,
    },
    /// A table in `servers` holds a key other than `address` and `weight`.
    #[error("unknown key `{key}` in a server; expected `address` and optional `weight`")]
    UnknownServerKey {
        /// The key as written.
        key: String,
    },
    /// An entry of `servers` that is neither a string nor a table.
    #[error("a server is \"HOST:PORT\" or {{ address = \"HOST:PORT\", weight = N }}, not {found}")]
    NotAServer {
        /// The entry as a message shows a TOML value: an integer or string as written,
        /// otherwise its type (`a boolean`).
        found: String,
    },
}

/// The form a value should take, as [`Problem::Malformed`] says it: `"30 seconds" is not a
/// duration; write e.g. …`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Form {
    /// `"500ms"`, `"30s"`, …
    Duration,
    /// `listen`: an IP socket address.
    ListenAddress,
    /// A backend in `servers`.
    ServerAddress,
    /// A `sources` entry.
    AddressRange,
    /// A route's `host`.
    HostPattern,
    /// An SNI entry's `server_name`.
    SniName,
    /// An upstream's `server_name`.
    ServerName,
    /// An ACME `domains` entry.
    DnsName,
    /// `acme.directory`.
    DirectoryUrl,
    /// An `acme.contact` entry.
    ContactUrl,
    /// `listener.tls.acme.profile`.
    Profile,
    /// `hash_key`.
    HashKey,
    /// A size (`max_request_body`, `max_request_header`).
    Size,
    /// A header name in `request_headers` / `response_headers`.
    HeaderName,
    /// A header value in `set`.
    HeaderValue,
    /// `acme.eab.kid`.
    EabKid,
    /// `discover.srv`.
    SrvName,
    /// `discover.resolver`.
    Resolver,
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Form::Duration => {
                f.write_str("a duration; write e.g. \"500ms\", \"30s\", \"5m\" or \"1h\"")
            }
            Form::ListenAddress => f.write_str(
                "an address to listen on; write IP:PORT, e.g. \"0.0.0.0:443\" or \"[::]:443\"",
            ),
            Form::ServerAddress => {
                f.write_str("a server address; write IP:PORT, [IPv6]:PORT or HOST:PORT")
            }
            Form::AddressRange => {
                f.write_str("an address range; write e.g. \"10.0.0.0/24\" or \"192.0.2.7\"")
            }
            Form::HostPattern => {
                f.write_str("a host name; write e.g. \"www.example.com\" or \"*.example.com\"")
            }
            Form::SniName => f.write_str("a DNS name (or *.name)"),
            Form::ServerName => f.write_str("a DNS name or IP address"),
            Form::DnsName => f.write_str("a DNS name"),
            Form::DirectoryUrl => write!(
                f,
                "an ACME directory URL; write the https:// URL of the CA's directory, \
                 e.g. \"{LETS_ENCRYPT}\""
            ),
            Form::ContactUrl => f.write_str("a contact URL; write e.g. \"mailto:ops@example.com\""),
            Form::Profile => f.write_str(
                "a profile name; write the name the CA lists, e.g. \"tlsserver\", or remove the \
                 key for the CA's default",
            ),
            Form::HashKey => write!(f, "a hash key; expected {}", HashKey::expected()),
            Form::Size => f.write_str(
                "a size; write e.g. \"64KiB\", \"10MiB\", \"1GiB\" or a number of bytes",
            ),
            Form::EabKid => f.write_str(
                "a key identifier; copy the EAB \"kid\" your CA shows with the HMAC key",
            ),
            Form::HeaderName => f.write_str(
                "a header name; write letters, digits and -, e.g. \"Strict-Transport-Security\"",
            ),
            Form::HeaderValue => {
                f.write_str("a header value; write visible ASCII and spaces, without line breaks")
            }
            Form::SrvName => f.write_str(
                "a DNS name to ask SRV records of; write e.g. \"_gate._tcp.farm.internal\"",
            ),
            Form::Resolver => f.write_str(
                "a DNS server's address; write IP or IP:PORT, e.g. \"10.0.0.2:53\", or remove \
                 the key to use the system's resolver",
            ),
        }
    }
}

/// A required key that is missing, with why it is required.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Incomplete {
    /// One half of a certificate and key pair.
    #[error(
        "missing required key `{missing}`: a certificate needs both `{certificate}` and `{key}`"
    )]
    CertificatePair {
        /// The key that is missing.
        missing: &'static str,
        /// The certificate's key, e.g. `client_certificate`.
        certificate: &'static str,
        /// The private key's key, e.g. `client_key`.
        key: &'static str,
    },
    /// `acme.eab` without `kid` or `hmac_key_file`.
    #[error(
        "missing required key `{missing}`: External Account Binding needs the CA's key \
         identifier (kid) and a file holding its HMAC key (hmac_key_file)"
    )]
    Eab {
        /// The key that is missing.
        missing: &'static str,
    },
    /// A gate without `trust`.
    #[error(
        "missing required key `trust`: a gate must say which CAs issue its clients' certificates"
    )]
    GateTrust,
    /// A gate without `allow`.
    #[error(
        "missing required key `allow`: list the identities allowed in, \
         e.g. allow = [\"dns:edge.example.com\"]"
    )]
    GateAllow,
    /// A server table without `address`.
    #[error("missing required key `address` in a server")]
    ServerAddress,
    /// An upstream with neither `servers` nor `discover`.
    #[error(
        "missing required key `servers` or `discover`: list the servers, e.g. servers = \
         [\"10.0.0.11:8443\"], or find them through DNS, e.g. discover = {{ dns = \
         \"gates.farm.internal\", port = 8443 }}"
    )]
    Servers,
    /// `discover` with neither `dns` nor `srv`.
    #[error(
        "missing required key `dns` or `srv`: write discover = {{ dns = \"NAME\", port = N }} \
         (A/AAAA records) or discover = {{ srv = \"_service._tcp.NAME\" }} (SRV records)"
    )]
    DiscoverName,
    /// `discover.dns` without `port`.
    #[error(
        "missing required key `port`: A and AAAA records carry no port; write e.g. port = 8443"
    )]
    DiscoverPort,
}

/// What is empty where it must not be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Empty {
    /// No `[[listener]]` at all.
    #[error("no [[listener]] is defined; farmgate needs at least one place to listen")]
    Listeners,
    /// `listener.name`.
    #[error("a listener name must not be empty")]
    ListenerName,
    /// Any key naming a file.
    #[error("a file path must not be empty")]
    FilePath,
    /// `trust` of a gate or an upstream.
    #[error("trust must name at least one CA file, \"mozilla\" or \"system\"")]
    Trust,
    /// `acme.trust`.
    #[error(
        "trust is empty; name the CA files of the ACME server's certificate, or remove the key"
    )]
    AcmeTrust,
    /// `listener.tls.acme.domains`.
    #[error(
        "domains is empty; list the names the certificate carries, \
         e.g. domains = [\"www.example.com\"]"
    )]
    Domains,
    /// `client_auth.crl`.
    #[error("crl is empty; list the CRL files (PEM or DER) of the CAs in trust, or remove the key")]
    Crl,
    /// `client_auth.allow`.
    #[error("allow is empty, so no client could ever get in; list the identities allowed in")]
    Allow,
    /// `client_auth.sources`.
    #[error(
        "sources is empty, which would refuse nobody; list the ranges to admit, \
         or remove the key to admit every address"
    )]
    Sources,
    /// An upstream's `servers`.
    #[error("servers is empty; an upstream needs at least one server")]
    Servers,
    /// `proxy_protocol.from`.
    #[error(
        "from is empty, so no connection would carry a PROXY header; list the load balancers' \
         address ranges, or remove proxy_protocol"
    )]
    ProxyFrom,
    /// `trusted_proxies`.
    #[error(
        "trusted_proxies is empty, which would trust nobody; list the proxies' address ranges, \
         or remove the key"
    )]
    TrustedProxies,
}

/// A number outside the range its key takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutOfRange {
    /// A server's `weight`: 1 to [`MAX_WEIGHT`].
    #[error("weight must be a whole number from 1 to {MAX_WEIGHT}, not {found}")]
    Weight {
        /// The value as a message shows a TOML value: an integer or string as written,
        /// otherwise its type.
        found: String,
    },
    /// `server.workers`: 1 to [`MAX_WORKERS`].
    #[error("workers must be from 1 to {MAX_WORKERS}, not {found}; leave it out for one per CPU")]
    Workers {
        /// The value as written.
        found: u32,
    },
    /// A health check's `rise` or `fall` of 0.
    #[error("{key} must be at least 1")]
    HealthCount {
        /// `rise` or `fall`.
        key: &'static str,
    },
    /// A count (connections, requests) outside its range.
    #[error("{key} must be a whole number from 1 to {max}, not {found}")]
    Count {
        /// The key's last part.
        key: String,
        /// The value as written.
        found: i64,
        /// The largest allowed.
        max: u32,
    },
    /// A port of 0 or above 65535.
    #[error("port must be from 1 to 65535, not {found}")]
    Port {
        /// The value as written.
        found: i64,
    },
    /// `max_request_header` below what a request line needs, or above what is sane.
    #[error(
        "max_request_header must be from {MIN_REQUEST_HEADER} bytes (8KiB) to \
         {MAX_REQUEST_HEADER} bytes (1MiB), not {found}"
    )]
    RequestHeader {
        /// The value, in bytes.
        found: u64,
    },
    /// More ACME `domains` than one certificate carries.
    #[error(
        "{count} names are more than the {MAX_ACME_DOMAINS} a public CA puts on one \
         certificate; split them over listeners"
    )]
    Domains {
        /// How many are listed.
        count: usize,
    },
}

/// A name or address written twice where each must be unique.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Duplicate {
    /// Two listeners with one name.
    #[error("duplicate listener name {0:?}; names must be unique")]
    ListenerName(String),
    /// A listener on an address another listener takes.
    #[error(
        "listener {name:?} listens on {listen}, which listener {other:?} on {other_listen} takes already"
    )]
    Listen {
        /// The later listener.
        name: String,
        /// Its address.
        listen: SocketAddr,
        /// The listener defined first.
        other: String,
        /// Its address.
        other_listen: SocketAddr,
    },
    /// Two SNI entries for one server name.
    #[error("server name {0:?} appears twice")]
    SniServerName(String),
    /// An ACME domain listed twice.
    #[error("{0:?} appears twice")]
    Domain(String),
    /// A server listed twice in one upstream.
    #[error("server {0} is listed twice; use weight to give it a larger share")]
    Server(Address),
    /// A header set twice (names are case-insensitive), or both set and removed.
    #[error("header {0:?} appears twice; set or remove each header once")]
    Header(String),
}

/// A rule that ties several keys together, broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rule {
    /// `redirect_https = true` with a `tls` table.
    #[error("a listener with redirect_https = true speaks plain HTTP; remove its tls table")]
    RedirectWithTls,
    /// `redirect_https = true` with routes.
    #[error("a listener with redirect_https = true redirects every request; remove its routes")]
    RedirectWithRoutes,
    /// A listener with neither routes nor `redirect_https`.
    #[error("a listener needs at least one [[listener.route]] (or redirect_https = true)")]
    NoRoutes,
    /// Certificate files and `acme` on one listener.
    #[error(
        "a listener's certificate comes from files (certificate, private_key, sni) or from \
         ACME (acme), never both; remove one of them"
    )]
    FilesAndAcme,
    /// An admin endpoint off loopback without a token.
    #[error(
        "an admin endpoint that listens beyond loopback must require a token: add token_file \
         = \"admin.token\" (a file holding the bearer token), or listen on 127.0.0.1"
    )]
    AdminTokenRequired,
    /// `requests_per_client` without `rate` or `per`.
    #[error(
        "requests_per_client needs rate and per, e.g. {{ rate = 100, per = \"1s\", burst = 200 }}"
    )]
    RateIncomplete,
    /// tls-alpn-01 on a gate.
    #[error(
        "tls-alpn-01 cannot be answered by a listener with client_auth: the CA's validation \
         presents no client certificate; use challenge = \"http-01\""
    )]
    AlpnOnGate,
    /// `challenge = "dns-01"`.
    #[error(
        "dns-01 is not supported: farmgate answers \"tls-alpn-01\" (on this listener) or \
         \"http-01\" (on a plain-HTTP listener)"
    )]
    Dns01,
    /// http-01 without a plain-HTTP listener to answer it.
    #[error(
        "challenge = \"http-01\" is answered by a plain-HTTP listener (port 80), and this \
         configuration has none; add a [[listener]] without tls (e.g. listen = \"0.0.0.0:80\" \
         with redirect_https = true), or use challenge = \"tls-alpn-01\""
    )]
    Http01WithoutPlainListener,
    /// One certificate ordered on two listeners with different challenges.
    #[error(
        "this certificate is also ordered at line {line} with challenge = \"{challenge}\"; \
         one certificate is validated one way, so use the same challenge"
    )]
    ChallengeMismatch {
        /// The line of the other listener's `acme`.
        line: usize,
        /// Its challenge.
        challenge: Challenge,
    },
    /// An IP address in ACME `domains`.
    #[error("{0:?} is an IP address; farmgate orders certificates for DNS names only")]
    IpDomain(String),
    /// A wildcard in ACME `domains`.
    #[error(
        "{0:?}: wildcard names need the dns-01 challenge, which farmgate does not answer; \
         list each name instead"
    )]
    WildcardDomain(String),
    /// `balance = "hash"` without `hash_key`.
    #[error("balance = \"hash\" needs hash_key = {}", HashKey::expected().alternatives())]
    HashWithoutKey,
    /// `hash_key` with another `balance`.
    #[error("hash_key only applies with balance = \"hash\"")]
    KeyWithoutHash,
    /// `eku = "client_or_server_auth"` with no entry that can name a public certificate.
    #[error(
        "eku = \"client_or_server_auth\" accepts public server certificates, so it needs at \
         least one exact dns: or spki-sha256: entry; cn: and uri: entries cannot identify such \
         a certificate"
    )]
    CompatNeedsExactEntry,
    /// `servers` and `discover` in one upstream.
    #[error(
        "servers and discover are mutually exclusive: list the servers, or find them through \
         DNS; remove one of them"
    )]
    ServersAndDiscover,
    /// `dns` and `srv` in one `discover`.
    #[error(
        "dns and srv are mutually exclusive: dns finds addresses (A/AAAA) on one port, srv finds \
         addresses with their ports and weights; remove one of them"
    )]
    DnsAndSrv,
    /// `port` with `srv`.
    #[error("SRV records carry each server's port; remove port")]
    SrvWithPort,
    /// `min_ttl` above `max_ttl`.
    #[error("min_ttl must not be longer than max_ttl")]
    TtlOrder,
    /// A wildcard entry under `eku = "client_or_server_auth"`.
    #[error("{0:?}: eku = \"client_or_server_auth\" only accepts exact names, not wildcards")]
    CompatWildcard(String),
    /// A header rule on a header farmgate manages itself.
    #[error("header {name:?} cannot be set or removed: {}", why.why())]
    ManagedHeader {
        /// The header as written.
        name: String,
        /// Why farmgate keeps it.
        why: crate::Managed,
    },
    /// `ticket_keys` on a gate.
    #[error(
        "a gate never resumes TLS sessions (a resumed session would skip the client \
         certificate check), so it takes no ticket_keys; remove the key"
    )]
    TicketKeysOnGate,
    /// `send_proxy` with `protocol = "h2"`.
    #[error(
        "send_proxy names one client per connection, and HTTP/2 carries many clients' requests \
         on one connection; use protocol = \"http1\" (the default) with send_proxy"
    )]
    SendProxyWithH2,
}

/// `defined: a, b` or `none is defined`.
fn defined_upstreams(defined: &[String]) -> String {
    if defined.is_empty() {
        "none is defined".to_owned()
    } else {
        format!("defined: {}", defined.join(", "))
    }
}

/// Every problem found in a configuration file, in file order.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The problems, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
            let mut source = std::error::Error::source(&e.problem);
            while let Some(s) = source {
                write!(f, ": {s}")?;
                source = s.source();
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Each message, byte for byte: docs/configuration.md and docs/troubleshooting.md quote
    /// them, and operators grep for them.
    #[test]
    fn each_problem_says_what_it_always_said() {
        let server = Address::parse("10.0.0.1:8443").map_or(Problem::ZeroDuration, |a| {
            Problem::Duplicate(Duplicate::Server(a))
        });
        let cases: Vec<(Problem, &str)> = vec![
            (Problem::Missing("name"), "missing required key `name`"),
            (
                Problem::Incomplete(Incomplete::CertificatePair {
                    missing: "client_key",
                    certificate: "client_certificate",
                    key: "client_key",
                }),
                "missing required key `client_key`: a certificate needs both \
                 `client_certificate` and `client_key`",
            ),
            (
                Problem::Incomplete(Incomplete::GateTrust),
                "missing required key `trust`: a gate must say which CAs issue its clients' \
                 certificates",
            ),
            (
                Problem::Incomplete(Incomplete::GateAllow),
                "missing required key `allow`: list the identities allowed in, e.g. allow = \
                 [\"dns:edge.example.com\"]",
            ),
            (
                Problem::Incomplete(Incomplete::ServerAddress),
                "missing required key `address` in a server",
            ),
            (
                Problem::UnknownVariant {
                    what: "log format",
                    found: "yaml".into(),
                    expected: crate::LogFormat::expected(),
                },
                "unknown log format \"yaml\"; expected \"text\" or \"json\"",
            ),
            (
                Problem::UnknownVariant {
                    what: "balance",
                    found: "random".into(),
                    expected: crate::upstream::BalanceKind::expected(),
                },
                "unknown balance \"random\"; expected round_robin, least_requests, p2c_ewma or hash",
            ),
            (
                Problem::UnknownVariant {
                    what: "eku",
                    found: "strict".into(),
                    expected: crate::EkuPolicy::expected(),
                },
                "unknown eku \"strict\"; expected \"client_auth\" (default) or \
                 \"client_or_server_auth\" (WebPKI compatibility mode)",
            ),
            (
                Problem::UnknownVariant {
                    what: "challenge",
                    found: "http01".into(),
                    expected: Challenge::expected(),
                },
                "unknown challenge \"http01\"; expected \"tls-alpn-01\" (default) or \"http-01\"",
            ),
            (
                Problem::Malformed {
                    found: "2 seconds".into(),
                    expected: Form::Duration,
                },
                "\"2 seconds\" is not a duration; write e.g. \"500ms\", \"30s\", \"5m\" or \"1h\"",
            ),
            (
                Problem::Malformed {
                    found: "localhost:443".into(),
                    expected: Form::ListenAddress,
                },
                "\"localhost:443\" is not an address to listen on; write IP:PORT, e.g. \
                 \"0.0.0.0:443\" or \"[::]:443\"",
            ),
            (
                Problem::Malformed {
                    found: "10.0.0.1".into(),
                    expected: Form::ServerAddress,
                },
                "\"10.0.0.1\" is not a server address; write IP:PORT, [IPv6]:PORT or HOST:PORT",
            ),
            (
                Problem::Malformed {
                    found: "ten".into(),
                    expected: Form::AddressRange,
                },
                "\"ten\" is not an address range; write e.g. \"10.0.0.0/24\" or \"192.0.2.7\"",
            ),
            (
                Problem::Malformed {
                    found: "a b".into(),
                    expected: Form::HostPattern,
                },
                "\"a b\" is not a host name; write e.g. \"www.example.com\" or \"*.example.com\"",
            ),
            (
                Problem::Malformed {
                    found: "a b".into(),
                    expected: Form::SniName,
                },
                "\"a b\" is not a DNS name (or *.name)",
            ),
            (
                Problem::Malformed {
                    found: "*.a.b".into(),
                    expected: Form::ServerName,
                },
                "\"*.a.b\" is not a DNS name or IP address",
            ),
            (
                Problem::Malformed {
                    found: "bad name".into(),
                    expected: Form::DnsName,
                },
                "\"bad name\" is not a DNS name",
            ),
            (
                Problem::Malformed {
                    found: "http://x".into(),
                    expected: Form::DirectoryUrl,
                },
                "\"http://x\" is not an ACME directory URL; write the https:// URL of the CA's \
                 directory, e.g. \"https://acme-v02.api.letsencrypt.org/directory\"",
            ),
            (
                Problem::Malformed {
                    found: "ops".into(),
                    expected: Form::ContactUrl,
                },
                "\"ops\" is not a contact URL; write e.g. \"mailto:ops@example.com\"",
            ),
            (
                Problem::Malformed {
                    found: String::new(),
                    expected: Form::Profile,
                },
                "\"\" is not a profile name; write the name the CA lists, e.g. \"tlsserver\", or \
                 remove the key for the CA's default",
            ),
            (
                Problem::Malformed {
                    found: "ip".into(),
                    expected: Form::HashKey,
                },
                "\"ip\" is not a hash key; expected \"header:NAME\", \"cookie:NAME\" or \
                 \"client_ip\"",
            ),
            (
                Problem::ZeroDuration,
                "a duration must be greater than zero",
            ),
            (
                Problem::RelativePath {
                    found: "api".into(),
                },
                "\"api\" must start with \"/\"",
            ),
            (
                Problem::Empty(Empty::Listeners),
                "no [[listener]] is defined; farmgate needs at least one place to listen",
            ),
            (
                Problem::Empty(Empty::ListenerName),
                "a listener name must not be empty",
            ),
            (
                Problem::Empty(Empty::FilePath),
                "a file path must not be empty",
            ),
            (
                Problem::Empty(Empty::Trust),
                "trust must name at least one CA file, \"mozilla\" or \"system\"",
            ),
            (
                Problem::Empty(Empty::AcmeTrust),
                "trust is empty; name the CA files of the ACME server's certificate, or remove \
                 the key",
            ),
            (
                Problem::Empty(Empty::Domains),
                "domains is empty; list the names the certificate carries, e.g. domains = \
                 [\"www.example.com\"]",
            ),
            (
                Problem::Empty(Empty::Crl),
                "crl is empty; list the CRL files (PEM or DER) of the CAs in trust, or remove \
                 the key",
            ),
            (
                Problem::Empty(Empty::Allow),
                "allow is empty, so no client could ever get in; list the identities allowed in",
            ),
            (
                Problem::Empty(Empty::Sources),
                "sources is empty, which would refuse nobody; list the ranges to admit, or \
                 remove the key to admit every address",
            ),
            (
                Problem::Empty(Empty::Servers),
                "servers is empty; an upstream needs at least one server",
            ),
            (
                Problem::Empty(Empty::ProxyFrom),
                "from is empty, so no connection would carry a PROXY header; list the load \
                 balancers' address ranges, or remove proxy_protocol",
            ),
            (
                Problem::Empty(Empty::TrustedProxies),
                "trusted_proxies is empty, which would trust nobody; list the proxies' address \
                 ranges, or remove the key",
            ),
            (
                Problem::OutOfRange(OutOfRange::Weight { found: "0".into() }),
                "weight must be a whole number from 1 to 1000, not 0",
            ),
            (
                Problem::OutOfRange(OutOfRange::Workers { found: 0 }),
                "workers must be from 1 to 256, not 0; leave it out for one per CPU",
            ),
            (
                Problem::OutOfRange(OutOfRange::HealthCount { key: "rise" }),
                "rise must be at least 1",
            ),
            (
                Problem::OutOfRange(OutOfRange::Domains { count: 101 }),
                "101 names are more than the 100 a public CA puts on one certificate; split \
                 them over listeners",
            ),
            (
                Problem::Duplicate(Duplicate::ListenerName("edge".into())),
                "duplicate listener name \"edge\"; names must be unique",
            ),
            (
                Problem::Duplicate(Duplicate::Listen {
                    name: "b".into(),
                    listen: addr("127.0.0.1:1"),
                    other: "a".into(),
                    other_listen: addr("0.0.0.0:1"),
                }),
                "listener \"b\" listens on 127.0.0.1:1, which listener \"a\" on 0.0.0.0:1 takes \
                 already",
            ),
            (
                Problem::Duplicate(Duplicate::SniServerName("a.example".into())),
                "server name \"a.example\" appears twice",
            ),
            (
                Problem::Duplicate(Duplicate::Domain("A.example".into())),
                "\"A.example\" appears twice",
            ),
            (
                server,
                "server 10.0.0.1:8443 is listed twice; use weight to give it a larger share",
            ),
            (
                Problem::Rule(Rule::RedirectWithTls),
                "a listener with redirect_https = true speaks plain HTTP; remove its tls table",
            ),
            (
                Problem::Rule(Rule::RedirectWithRoutes),
                "a listener with redirect_https = true redirects every request; remove its \
                 routes",
            ),
            (
                Problem::Rule(Rule::NoRoutes),
                "a listener needs at least one [[listener.route]] (or redirect_https = true)",
            ),
            (
                Problem::Rule(Rule::FilesAndAcme),
                "a listener's certificate comes from files (certificate, private_key, sni) or \
                 from ACME (acme), never both; remove one of them",
            ),
            (
                Problem::Rule(Rule::AlpnOnGate),
                "tls-alpn-01 cannot be answered by a listener with client_auth: the CA's \
                 validation presents no client certificate; use challenge = \"http-01\"",
            ),
            (
                Problem::Rule(Rule::Dns01),
                "dns-01 is not supported: farmgate answers \"tls-alpn-01\" (on this listener) \
                 or \"http-01\" (on a plain-HTTP listener)",
            ),
            (
                Problem::Rule(Rule::Http01WithoutPlainListener),
                "challenge = \"http-01\" is answered by a plain-HTTP listener (port 80), and \
                 this configuration has none; add a [[listener]] without tls (e.g. listen = \
                 \"0.0.0.0:80\" with redirect_https = true), or use challenge = \
                 \"tls-alpn-01\"",
            ),
            (
                Problem::Rule(Rule::ChallengeMismatch {
                    line: 7,
                    challenge: Challenge::Http01,
                }),
                "this certificate is also ordered at line 7 with challenge = \"http-01\"; one \
                 certificate is validated one way, so use the same challenge",
            ),
            (
                Problem::Rule(Rule::IpDomain("10.0.0.1".into())),
                "\"10.0.0.1\" is an IP address; farmgate orders certificates for DNS names only",
            ),
            (
                Problem::Rule(Rule::WildcardDomain("*.example.com".into())),
                "\"*.example.com\": wildcard names need the dns-01 challenge, which farmgate \
                 does not answer; list each name instead",
            ),
            (
                Problem::Rule(Rule::HashWithoutKey),
                "balance = \"hash\" needs hash_key = \"header:NAME\" | \"cookie:NAME\" | \
                 \"client_ip\"",
            ),
            (
                Problem::Rule(Rule::KeyWithoutHash),
                "hash_key only applies with balance = \"hash\"",
            ),
            (
                Problem::Rule(Rule::CompatNeedsExactEntry),
                "eku = \"client_or_server_auth\" accepts public server certificates, so it needs \
                 at least one exact dns: or spki-sha256: entry; cn: and uri: entries cannot \
                 identify such a certificate",
            ),
            (
                Problem::Rule(Rule::CompatWildcard("dns:*.example.com".into())),
                "\"dns:*.example.com\": eku = \"client_or_server_auth\" only accepts exact \
                 names, not wildcards",
            ),
            (
                Problem::Rule(Rule::TicketKeysOnGate),
                "a gate never resumes TLS sessions (a resumed session would skip the client \
                 certificate check), so it takes no ticket_keys; remove the key",
            ),
            (
                Problem::Rule(Rule::SendProxyWithH2),
                "send_proxy names one client per connection, and HTTP/2 carries many clients' \
                 requests on one connection; use protocol = \"http1\" (the default) with \
                 send_proxy",
            ),
            (
                Problem::UnknownUpstream {
                    name: "farn".into(),
                    defined: vec!["app".into(), "farm".into()],
                },
                "no upstream named \"farn\" (defined: app, farm)",
            ),
            (
                Problem::UnknownUpstream {
                    name: "farn".into(),
                    defined: Vec::new(),
                },
                "no upstream named \"farn\" (none is defined)",
            ),
            (
                Problem::Incomplete(Incomplete::Servers),
                "missing required key `servers` or `discover`: list the servers, e.g. servers = \
                 [\"10.0.0.11:8443\"], or find them through DNS, e.g. discover = { dns = \
                 \"gates.farm.internal\", port = 8443 }",
            ),
            (
                Problem::Incomplete(Incomplete::DiscoverName),
                "missing required key `dns` or `srv`: write discover = { dns = \"NAME\", port = \
                 N } (A/AAAA records) or discover = { srv = \"_service._tcp.NAME\" } (SRV \
                 records)",
            ),
            (
                Problem::Incomplete(Incomplete::DiscoverPort),
                "missing required key `port`: A and AAAA records carry no port; write e.g. port \
                 = 8443",
            ),
            (
                Problem::OutOfRange(OutOfRange::Port { found: 0 }),
                "port must be from 1 to 65535, not 0",
            ),
            (
                Problem::Rule(Rule::ServersAndDiscover),
                "servers and discover are mutually exclusive: list the servers, or find them \
                 through DNS; remove one of them",
            ),
            (
                Problem::Rule(Rule::DnsAndSrv),
                "dns and srv are mutually exclusive: dns finds addresses (A/AAAA) on one port, \
                 srv finds addresses with their ports and weights; remove one of them",
            ),
            (
                Problem::Rule(Rule::SrvWithPort),
                "SRV records carry each server's port; remove port",
            ),
            (
                Problem::Rule(Rule::TtlOrder),
                "min_ttl must not be longer than max_ttl",
            ),
            (
                Problem::Malformed {
                    found: "_gate".into(),
                    expected: Form::SrvName,
                },
                "\"_gate\" is not a DNS name to ask SRV records of; write e.g. \
                 \"_gate._tcp.farm.internal\"",
            ),
            (
                Problem::Malformed {
                    found: "dns.local".into(),
                    expected: Form::Resolver,
                },
                "\"dns.local\" is not a DNS server's address; write IP or IP:PORT, e.g. \
                 \"10.0.0.2:53\", or remove the key to use the system's resolver",
            ),
            (
                Problem::UnknownServerKey {
                    key: "adress".into(),
                },
                "unknown key `adress` in a server; expected `address` and optional `weight`",
            ),
            (
                Problem::NotAServer { found: "42".into() },
                "a server is \"HOST:PORT\" or { address = \"HOST:PORT\", weight = N }, not 42",
            ),
        ];
        for (problem, message) in cases {
            assert_eq!(problem.to_string(), message, "{problem:?}");
        }
    }
}
