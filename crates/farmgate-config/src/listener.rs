//! Listeners: where traffic arrives, its TLS and client-authentication policy, and its routes.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use farmgate_identity::{AllowList, DnsName};

use crate::spelling::spelled;
use crate::{AcmeCert, FileRef, HeaderRules, IpRange, Location, Trust, UpstreamId};

/// A listening socket with its TLS policy and routes.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Unique name, used in logs and metrics.
    pub name: String,
    /// Where to listen. Port 0 picks a free port (tests, demo).
    pub listen: SocketAddr,
    /// TLS termination; `None` speaks plain HTTP.
    pub tls: Option<ListenerTls>,
    /// Plain-HTTP listener that answers every request with a redirect to HTTPS.
    pub redirect_https: bool,
    /// Routes, tried in order.
    pub routes: Vec<Route>,
    /// Client-side timeouts.
    pub timeouts: ListenerTimeouts,
    /// What the listener takes from its clients.
    pub limits: ListenerLimits,
    /// `proxy_protocol`: connections from these sources start with a PROXY header, and are
    /// then from the client it names.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// `trusted_proxies`: clients whose `X-Forwarded-For` and `Forwarded` are kept (and
    /// extended) rather than replaced. Empty: nobody's (a gate's verified clients aside).
    pub trusted_proxies: Vec<IpRange>,
    /// Where the listener is defined.
    pub at: Location,
}

/// `proxy_protocol = { from = [...] }`: where PROXY headers come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyProtocol {
    /// The load balancers' ranges: a connection from one of them must start with a PROXY
    /// header (v1 or v2); from anywhere else, its bytes are never read as one.
    pub from: Vec<IpRange>,
}

impl Listener {
    /// What this listener believes its clients about whom they forward for, in words, if
    /// anything: the address in a PROXY header (`proxy_protocol`), and client-supplied
    /// `X-Forwarded-For` and `Forwarded` (`trusted_proxies`). Relaxations `farmgate check`
    /// lists and `farmgate run` logs at each start and reload.
    pub fn forwarding_relaxations(&self) -> Option<String> {
        let ranges = |ranges: &[IpRange]| {
            ranges
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut said = Vec::new();
        if let Some(proxy) = &self.proxy_protocol {
            said.push(format!(
                "takes the client address from the PROXY header of connections from {}",
                ranges(&proxy.from)
            ));
        }
        if !self.trusted_proxies.is_empty() {
            said.push(format!(
                "keeps X-Forwarded-For and Forwarded from clients in {} (trusted_proxies)",
                ranges(&self.trusted_proxies)
            ));
        }
        (!said.is_empty()).then(|| said.join("; "))
    }

    /// Source ranges allowed to connect (a gate's `sources`); empty allows all.
    pub fn sources(&self) -> &[IpRange] {
        self.tls
            .as_ref()
            .and_then(|t| t.client_auth.as_ref())
            .map_or(&[], |c| c.sources.as_slice())
    }

    /// Whether a connection from `ip` must start with a PROXY header.
    pub fn expects_proxy_header(&self, ip: IpAddr) -> bool {
        self.proxy_protocol
            .as_ref()
            .is_some_and(|p| p.from.iter().any(|r| r.contains(ip)))
    }

    /// Whether the `X-Forwarded-For` and `Forwarded` headers of a client at `ip` (the address
    /// a PROXY header named, if any) are kept and extended.
    pub fn trusts_forwarding(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|r| r.contains(ip))
    }

    /// Whether this listener is a gate (requires client certificates).
    pub fn is_gate(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.client_auth.is_some())
    }
}

/// Timeouts on the client side of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerTimeouts {
    /// How long a client may take to complete the TLS handshake.
    pub handshake: Duration,
    /// How long a client may take to send a complete request header, counted from when the
    /// connection is ready for the next request (so it also bounds HTTP/1.1 keep-alive idling).
    pub request_header: Duration,
    /// From the end of a request's header to the last byte of its body; over: 408.
    pub request_body: Duration,
    /// A connection that accepts no response byte for this long is closed.
    pub send: Duration,
    /// A connection that moves no byte for this long is closed (after its in-flight requests).
    pub idle: Duration,
}

impl Default for ListenerTimeouts {
    fn default() -> Self {
        ListenerTimeouts {
            handshake: Duration::from_secs(10),
            request_header: Duration::from_secs(30),
            request_body: Duration::from_secs(60),
            send: Duration::from_secs(60),
            idle: Duration::from_secs(60),
        }
    }
}

/// The smallest `max_request_header`: hyper's read buffer floor.
pub const MIN_REQUEST_HEADER: u64 = 8 * 1024;
/// The largest `max_request_header`.
pub const MAX_REQUEST_HEADER: u64 = 1024 * 1024;

/// What one listener takes from its clients (`[listener.limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Open connections on the listener; beyond it, no more are accepted until some close.
    pub max_connections: u32,
    /// Open connections from one client address (IPv6: one /64); beyond it, closed before TLS.
    pub max_connections_per_client: u32,
    /// Requests (HTTP/2 streams included) one client may make; `None`: unlimited.
    pub requests_per_client: Option<RateLimit>,
    /// The largest request body, in bytes; `None`: unlimited. Over: 413.
    pub max_request_body: Option<u64>,
    /// The largest request head (request line and headers), in bytes. Over: 431.
    pub max_request_header: u64,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_connections: 10_000,
            max_connections_per_client: 256,
            requests_per_client: None,
            max_request_body: None,
            max_request_header: 64 * 1024,
        }
    }
}

/// A request rate: `rate` requests per `per`, with room for a burst of `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per `per`.
    pub rate: u32,
    /// The period `rate` is counted over.
    pub per: Duration,
    /// Requests allowed at once, above the steady rate.
    pub burst: u32,
}

/// A certificate chain and its private key, as files.
#[derive(Debug, Clone)]
pub struct CertKey {
    /// Full chain PEM: leaf first, then intermediates.
    pub certificate: FileRef,
    /// The leaf's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub private_key: FileRef,
}

/// TLS termination on a listener.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    /// Where the certificates come from: files, or an ACME server.
    pub certs: ListenerCerts,
    /// Present: clients must present a certificate that passes this policy (a gate).
    pub client_auth: Option<ClientAuth>,
    /// `ticket_keys`: the file of TLS session ticket keys shared by every edge (never on a
    /// gate); `None`: each process makes and rotates its own.
    pub ticket_keys: Option<FileRef>,
    /// Where the `tls` table is defined.
    pub at: Location,
}

impl ListenerTls {
    /// The ACME certificate this listener serves, if its certificate comes from ACME.
    pub fn acme(&self) -> Option<&AcmeCert> {
        match &self.certs {
            ListenerCerts::Acme(cert) => Some(cert),
            ListenerCerts::Files { .. } => None,
        }
    }
}

/// A listener's certificates: from files or from ACME, never both.
#[derive(Debug, Clone)]
pub enum ListenerCerts {
    /// `certificate`, `private_key` and `[[listener.tls.sni]]`.
    Files {
        /// The certificate served when no SNI entry matches.
        default: CertKey,
        /// More certificates chosen by SNI.
        sni: Vec<SniCert>,
    },
    /// `acme = { domains = [...] }`: one certificate for every domain, obtained and renewed by
    /// farmgate.
    Acme(AcmeCert),
}

/// A certificate served for one SNI name.
#[derive(Debug, Clone)]
pub struct SniCert {
    /// Lower-case server name, exact or `*.example.com`.
    pub server_name: String,
    /// The certificate and key.
    pub cert: CertKey,
    /// Where the entry is defined.
    pub at: Location,
}

spelled! {
    /// Which extended key usage a client certificate chain must permit (`eku`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum EkuPolicy (what: "eku", quoted: true) {
        /// Strict (default): the whole chain must permit TLS client authentication.
        ClientAuth = "client_auth" ("default"),
        /// WebPKI compatibility mode: a chain that permits server authentication instead is
        /// accepted, verified under the server-auth purpose, and only for exact
        /// `dns:`/`spki-sha256:` entries.
        ClientOrServerAuth = "client_or_server_auth" ("WebPKI compatibility mode"),
    }
}

/// A gate's client-certificate policy.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    /// Trust anchors for client chains.
    pub trust: Vec<Trust>,
    /// Identities allowed in.
    pub allow: AllowList,
    /// Purpose the chain must permit.
    pub eku: EkuPolicy,
    /// Revocation lists.
    pub crl: Vec<FileRef>,
    /// Source ranges allowed to connect; empty allows all. Others are closed before TLS.
    pub sources: Vec<IpRange>,
    /// Where the policy is defined.
    pub at: Location,
}

/// A host pattern in a route or SNI entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this (lower-case) host.
    Exact(String),
    /// `*.example.com`: any host with one or more labels before `.example.com` (stored as the
    /// suffix `.example.com`).
    Wildcard(String),
}

impl HostPattern {
    /// Parse `www.example.com` or `*.example.com` (any [`DnsName`], and `*.` before one;
    /// trailing dots ignored).
    pub fn parse(text: &str) -> Option<HostPattern> {
        let text = text.trim_end_matches('.');
        let exact = |name: &str| DnsName::parse(name).ok().filter(|n| !n.is_wildcard());
        match text.strip_prefix("*.") {
            Some(parent) => exact(parent).map(|p| HostPattern::Wildcard(format!(".{p}"))),
            None => exact(text).map(|n| HostPattern::Exact(n.into())),
        }
    }

    /// Whether `host` (lower-case, without port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        }
    }
}

/// The pattern as written: `www.example.com` or `*.example.com`.
impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(host) => f.write_str(host),
            HostPattern::Wildcard(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// Where requests matching a host and path prefix go.
#[derive(Debug, Clone)]
pub struct Route {
    /// Host to match; `None` matches any host.
    pub host: Option<HostPattern>,
    /// Path prefix to match; `/` matches everything.
    pub path_prefix: String,
    /// The upstream that serves the route.
    pub upstream: UpstreamId,
    /// Headers set and removed on the requests the route forwards (`request_headers`).
    pub request_headers: HeaderRules,
    /// Headers set and removed on the responses the route returns (`response_headers`),
    /// farmgate's own error answers included.
    pub response_headers: HeaderRules,
    /// Where the route is defined.
    pub at: Location,
}

impl Route {
    /// Whether a request for `host` (lower-case, no port) and `path` takes this route.
    pub fn matches(&self, host: &str, path: &str) -> bool {
        self.host.as_ref().is_none_or(|h| h.matches(host))
            && path_has_prefix(path, &self.path_prefix)
    }
}

/// `/api` matches `/api`, `/api/x` and `/api?q`, but not `/apix`; a prefix ending in `/` matches
/// everything below it.
fn path_has_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with(['/', '?']),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        let exact = HostPattern::parse("WWW.Example.com");
        assert_eq!(exact, Some(HostPattern::Exact("www.example.com".into())));
        let wild = HostPattern::parse("*.example.com");
        assert!(wild.as_ref().is_some_and(|w| w.matches("a.example.com")));
        assert!(wild.as_ref().is_some_and(|w| w.matches("a.b.example.com")));
        assert!(wild.as_ref().is_some_and(|w| !w.matches("example.com")));
        assert!(wild.as_ref().is_some_and(|w| !w.matches("aexample.com")));
        assert!(HostPattern::parse("*").is_none());
        assert!(HostPattern::parse("a.*.com").is_none());
        assert!(HostPattern::parse("bad host").is_none());
        assert!(HostPattern::parse("*.*.example.com").is_none());
        assert!(HostPattern::parse(&format!("{}.com", "a".repeat(64))).is_none());
        // A wildcard over one label matches hosts, unlike a dns: allow-list entry.
        let one_label = HostPattern::parse("*.internal");
        assert!(
            one_label
                .as_ref()
                .is_some_and(|w| w.matches("app.internal"))
        );
    }

    #[test]
    fn host_patterns_print_as_written() {
        for text in ["www.example.com", "*.example.com"] {
            assert_eq!(
                HostPattern::parse(text).map(|p| p.to_string()).as_deref(),
                Some(text)
            );
        }
        assert_eq!(
            HostPattern::parse("WWW.Example.com.")
                .map(|p| p.to_string())
                .as_deref(),
            Some("www.example.com")
        );
    }

    #[test]
    fn path_prefixes() {
        assert!(path_has_prefix("/anything", "/"));
        assert!(path_has_prefix("/api", "/api"));
        assert!(path_has_prefix("/api/v1", "/api"));
        assert!(!path_has_prefix("/apix", "/api"));
        assert!(path_has_prefix("/api/x", "/api/"));
        assert!(!path_has_prefix("/other", "/api"));
    }
}
