//! Why a request got no usable response from an upstream: the one place a failure is
//! classified. Its variant decides the status the client gets, the metric label, whether the
//! request may be retried on another server, and the words in the log; its source error is
//! kept.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use farmgate_tls::explain;
use http::StatusCode;

use super::connect::ConnectError;

/// The error a TLS failure came with: the handshake's I/O error, or hyper's when the alert
/// arrived with the response (TLS 1.3).
pub(crate) type TlsSource = Box<dyn StdError + Send + Sync>;

/// A failed attempt to get a response from an upstream.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamFailure {
    /// The server refused the TCP connection.
    #[error("cannot connect to backend {server}: connection refused")]
    ConnectRefused {
        server: Arc<str>,
        #[source]
        source: io::Error,
    },
    /// The TCP connection failed otherwise.
    #[error("cannot connect to backend {server}")]
    Connect {
        server: Arc<str>,
        #[source]
        source: io::Error,
    },
    /// TCP connect plus TLS handshake took longer than `timeouts.connect`.
    #[error("connecting to {server} timed out after {after:?}")]
    ConnectTimeout { server: Arc<str>, after: Duration },
    /// The server's host name did not resolve.
    #[error("cannot resolve {host}")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    /// The server refused the client certificate we presented (a TLS alert that says so).
    #[error("{} (backend {server})", Tls(&**source, server_name))]
    ClientCertRefused {
        server: Arc<str>,
        server_name: String,
        #[source]
        source: TlsSource,
    },
    /// We refused the server's certificate.
    #[error("{} (backend {server})", Tls(&**source, server_name))]
    ServerCert {
        server: Arc<str>,
        server_name: String,
        #[source]
        source: TlsSource,
    },
    /// The TLS handshake failed for another reason.
    #[error("{} (backend {server})", Tls(&**source, server_name))]
    Tls {
        server: Arc<str>,
        server_name: String,
        #[source]
        source: TlsSource,
    },
    /// The server does not speak the HTTP version the upstream is set to (`protocol`).
    #[error("backend {server} does not speak HTTP/2: {why}")]
    NoH2 { server: Arc<str>, why: NoH2 },
    /// The connection failed while sending the request or reading the response head.
    #[error("backend {server} failed before responding")]
    Reset {
        server: Arc<str>,
        #[source]
        source: hyper::Error,
    },
    /// No response head within `timeouts.response_header`.
    #[error("backend {server} sent no response header within {}", Seconds(*after))]
    ResponseTimeout { server: Arc<str>, after: Duration },
    /// Every server is down, ejected or drained.
    #[error("upstream {upstream}: no healthy server (all are down, ejected or drained)")]
    NoHealthyServer { upstream: Arc<str> },
    /// A discovered upstream whose DNS lookup never answered: it has no server at all.
    #[error("upstream {upstream}: no server yet, DNS has not answered ({lookup})")]
    NotResolved { upstream: Arc<str>, lookup: String },
    /// The client's request body failed (over a limit, too slow, or the client went away),
    /// so the request to the server was aborted. Not the server's fault.
    #[error("request to backend {server} aborted")]
    ClientBody {
        server: Arc<str>,
        #[source]
        source: hyper::Error,
    },
    /// Every server that can take requests had `max_connections_per_server` of them in
    /// flight for the whole `queue_timeout` this request waited.
    #[error(
        "upstream {upstream}: every server busy (max_connections_per_server = {cap}) for queue_timeout {}",
        Seconds(*after)
    )]
    QueueTimeout {
        upstream: Arc<str>,
        cap: u32,
        after: Duration,
    },
}

impl UpstreamFailure {
    /// What the client is answered.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            UpstreamFailure::ResponseTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            UpstreamFailure::NoHealthyServer { .. }
            | UpstreamFailure::NotResolved { .. }
            | UpstreamFailure::QueueTimeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamFailure::ClientBody { source, .. } => match client_body(source) {
                Some(ClientBodyError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
                Some(ClientBodyError::TooSlow { .. }) => StatusCode::REQUEST_TIMEOUT,
                _ => StatusCode::BAD_REQUEST,
            },
            UpstreamFailure::ConnectRefused { .. }
            | UpstreamFailure::Connect { .. }
            | UpstreamFailure::ConnectTimeout { .. }
            | UpstreamFailure::Resolve { .. }
            | UpstreamFailure::ClientCertRefused { .. }
            | UpstreamFailure::ServerCert { .. }
            | UpstreamFailure::Tls { .. }
            | UpstreamFailure::NoH2 { .. }
            | UpstreamFailure::Reset { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// The `reason` label of `farmgate_upstream_errors_total`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            UpstreamFailure::ConnectRefused { .. } => "connect_refused",
            UpstreamFailure::Connect { .. } => "connect_error",
            UpstreamFailure::ConnectTimeout { .. } => "connect_timeout",
            UpstreamFailure::Resolve { .. } => "resolve",
            UpstreamFailure::ClientCertRefused { .. } => "client_cert_refused",
            UpstreamFailure::ServerCert { .. } => "server_cert",
            UpstreamFailure::Tls { .. } => "tls",
            UpstreamFailure::NoH2 { .. } => "protocol",
            UpstreamFailure::Reset { .. } => "reset",
            UpstreamFailure::ResponseTimeout { .. } => "response_timeout",
            UpstreamFailure::NoHealthyServer { .. } => "no_healthy_server",
            UpstreamFailure::NotResolved { .. } => "not_resolved",
            UpstreamFailure::ClientBody { .. } => "client_body",
            UpstreamFailure::QueueTimeout { .. } => "queue_timeout",
        }
    }

    /// Whether the server cannot have processed the request, so that an idempotent request
    /// without a body may go to another server. A response timeout may have been processed;
    /// a queue timeout reached no server, and every one of them is busy.
    pub(crate) fn retryable(&self) -> bool {
        match self {
            UpstreamFailure::ConnectRefused { .. }
            | UpstreamFailure::Connect { .. }
            | UpstreamFailure::ConnectTimeout { .. }
            | UpstreamFailure::Resolve { .. }
            | UpstreamFailure::ClientCertRefused { .. }
            | UpstreamFailure::ServerCert { .. }
            | UpstreamFailure::Tls { .. }
            | UpstreamFailure::NoH2 { .. }
            | UpstreamFailure::Reset { .. } => true,
            UpstreamFailure::ResponseTimeout { .. }
            | UpstreamFailure::NoHealthyServer { .. }
            | UpstreamFailure::NotResolved { .. }
            | UpstreamFailure::ClientBody { .. }
            | UpstreamFailure::QueueTimeout { .. } => false,
        }
    }

    /// Classify a connection that could not be opened to `server`.
    pub(crate) fn connect(e: ConnectError, server: &Arc<str>) -> UpstreamFailure {
        match e {
            ConnectError::Tcp { source, .. }
                if source.kind() == io::ErrorKind::ConnectionRefused =>
            {
                UpstreamFailure::ConnectRefused {
                    server: server.clone(),
                    source,
                }
            }
            ConnectError::Tcp { source, .. } => UpstreamFailure::Connect {
                server: server.clone(),
                source,
            },
            ConnectError::Timeout { after, .. } => UpstreamFailure::ConnectTimeout {
                server: server.clone(),
                after,
            },
            ConnectError::Resolve { host, source } => UpstreamFailure::Resolve { host, source },
            ConnectError::Tls {
                server_name,
                source,
                ..
            } => UpstreamFailure::tls(server, server_name, Box::new(source)),
            ConnectError::NoH2 { .. } => UpstreamFailure::NoH2 {
                server: server.clone(),
                why: NoH2::Alpn,
            },
        }
    }

    /// Classify a failure while sending the request to `server` or reading its response head.
    /// With TLS 1.3 a gate refuses our certificate after we consider the handshake done, so its
    /// alert arrives here, when we read the response.
    pub(crate) fn exchange(e: hyper::Error, server: &Arc<str>) -> UpstreamFailure {
        if client_body(&e).is_some() {
            return UpstreamFailure::ClientBody {
                server: server.clone(),
                source: e,
            };
        }
        if explain::find_tls_error(&e).is_some() {
            return UpstreamFailure::tls(server, server.to_string(), Box::new(e));
        }
        if h2_refused_by_http1(&e) {
            return UpstreamFailure::NoH2 {
                server: server.clone(),
                why: NoH2::Preface,
            };
        }
        UpstreamFailure::Reset {
            server: server.clone(),
            source: e,
        }
    }

    /// A failed TLS handshake with `server`, checked against `server_name`.
    fn tls(server: &Arc<str>, server_name: String, source: TlsSource) -> UpstreamFailure {
        let server = server.clone();
        match explain::find_tls_error(&*source) {
            Some(rustls::Error::AlertReceived(a)) if explain::client_cert_alert(*a).is_some() => {
                UpstreamFailure::ClientCertRefused {
                    server,
                    server_name,
                    source,
                }
            }
            Some(rustls::Error::InvalidCertificate(_)) => UpstreamFailure::ServerCert {
                server,
                server_name,
                source,
            },
            _ => UpstreamFailure::Tls {
                server,
                server_name,
                source,
            },
        }
    }
}

impl UpstreamFailure {
    /// Whether the server is to blame: counted against it (passive health, error metrics).
    /// A client's failed request body is not.
    pub(crate) fn server_at_fault(&self) -> bool {
        !matches!(self, UpstreamFailure::ClientBody { .. })
    }

    /// Why the client's request body failed, if that is what ended the request.
    pub(crate) fn client_body(&self) -> Option<&ClientBodyError> {
        match self {
            UpstreamFailure::ClientBody { source, .. } => client_body(source),
            _ => None,
        }
    }
}

/// The client body's error in `e`'s sources, if the request failed because of it.
fn client_body(e: &hyper::Error) -> Option<&ClientBodyError> {
    find_source(e)
}

/// The first error of type `T` among `e`'s sources (not `e` itself): what a hyper error
/// wraps, several layers down.
pub(crate) fn find_source<'e, T: StdError + 'static>(
    e: &'e (dyn StdError + 'static),
) -> Option<&'e T> {
    let mut source = e.source();
    while let Some(inner) = source {
        if let Some(found) = inner.downcast_ref::<T>() {
            return Some(found);
        }
        source = inner.source();
    }
    None
}

/// Why a client's request body was cut off.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientBodyError {
    /// More than `max_request_body`.
    #[error("request body over max_request_body ({limit} bytes)")]
    TooLarge { limit: u64 },
    /// Not all there within `timeouts.request_body`.
    #[error("request body not complete within {within:?} (listener timeouts.request_body)")]
    TooSlow { within: Duration },
    /// The client's connection failed or it reset the stream.
    #[error("reading the request body from the client failed")]
    Read(#[source] hyper::Error),
}

/// How a server showed it does not speak HTTP/2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoH2 {
    /// Over TLS, it did not select ALPN `h2`.
    Alpn,
    /// In cleartext, it answered the HTTP/2 preface with something that is not HTTP/2.
    Preface,
}

impl fmt::Display for NoH2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NoH2::Alpn => {
                "it did not select ALPN h2 in the TLS handshake (an HTTP/1.1-only server); set protocol = \"http1\" on its upstream"
            }
            NoH2::Preface => {
                "it answered the HTTP/2 preface with something else (an HTTP/1.1-only server); set protocol = \"http1\" on its upstream"
            }
        })
    }
}

/// Whether `e` is our HTTP/2 connection failing on what the server sent back: the reply of a
/// server that read our prior-knowledge preface as a malformed HTTP/1.1 request.
fn h2_refused_by_http1(e: &hyper::Error) -> bool {
    find_source::<h2::Error>(e).is_some_and(|h2| {
        h2.is_go_away()
            && !h2.is_remote()
            && matches!(
                h2.reason(),
                Some(h2::Reason::PROTOCOL_ERROR | h2::Reason::FRAME_SIZE_ERROR)
            )
    })
}

/// A TLS failure in an operator's words ("backend refused our client certificate: ...").
struct Tls<'a>(&'a (dyn StdError + 'static), &'a str);

impl fmt::Display for Tls<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match explain::find_tls_error(self.0) {
            Some(tls) => f.write_str(&explain::upstream_failure(tls, self.1)),
            None => write!(f, "TLS handshake failed: {}", self.0),
        }
    }
}

/// A duration as an operator writes it in the configuration: `30s`, `300ms`.
pub(crate) struct Seconds(pub(crate) Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.subsec_millis() == 0 {
            write!(f, "{}s", self.0.as_secs())
        } else {
            write!(f, "{}ms", self.0.as_millis())
        }
    }
}

/// An error and its sources, joined with ": ", each source left out when the text so far
/// already says it.
pub(crate) struct Chain<'a>(pub(crate) &'a dyn std::error::Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.0.to_string();
        let mut source = self.0.source();
        while let Some(s) = source {
            let part = s.to_string();
            if !text.contains(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
            source = s.source();
        }
        f.write_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> Arc<str> {
        Arc::from("10.0.0.11:8443")
    }

    #[test]
    fn a_refused_connection_is_a_retryable_502() {
        let e = ConnectError::Tcp {
            addr: "10.0.0.11:8443".into(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        let failure = UpstreamFailure::connect(e, &server());
        assert_eq!(failure.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(failure.label(), "connect_refused");
        assert!(failure.retryable());
        assert_eq!(
            failure.to_string(),
            "cannot connect to backend 10.0.0.11:8443: connection refused"
        );
    }

    #[test]
    fn a_refused_client_certificate_says_so() {
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::UnsupportedCertificate);
        let e = ConnectError::Tls {
            addr: "10.0.0.11:8443".into(),
            server_name: "backend.farm.internal".into(),
            source: io::Error::new(io::ErrorKind::InvalidData, alert),
        };
        let failure = UpstreamFailure::connect(e, &server());
        assert_eq!(failure.label(), "client_cert_refused");
        let text = failure.to_string();
        assert!(
            text.starts_with("backend refused our client certificate: "),
            "{text}"
        );
        assert!(text.ends_with("(backend 10.0.0.11:8443)"), "{text}");
    }

    #[test]
    fn a_refused_server_certificate_is_ours_to_explain() {
        let invalid = rustls::Error::InvalidCertificate(rustls::CertificateError::Expired);
        let e = ConnectError::Tls {
            addr: "10.0.0.11:8443".into(),
            server_name: "backend.farm.internal".into(),
            source: io::Error::new(io::ErrorKind::InvalidData, invalid),
        };
        let failure = UpstreamFailure::connect(e, &server());
        assert_eq!(failure.label(), "server_cert");
        assert!(
            failure
                .to_string()
                .starts_with("backend's certificate refused")
        );
    }

    #[test]
    fn timeouts_and_an_empty_farm_are_not_retried() {
        let timeout = UpstreamFailure::ResponseTimeout {
            server: server(),
            after: Duration::from_millis(300),
        };
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(!timeout.retryable());
        assert_eq!(
            timeout.to_string(),
            "backend 10.0.0.11:8443 sent no response header within 300ms"
        );
        let none = UpstreamFailure::NoHealthyServer {
            upstream: Arc::from("farm"),
        };
        assert_eq!(none.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(none.label(), "no_healthy_server");
        assert!(!none.retryable());
        let connect = UpstreamFailure::ConnectTimeout {
            server: server(),
            after: Duration::from_secs(2),
        };
        assert!(connect.retryable(), "nothing reached the server");
        assert_eq!(connect.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn an_upstream_dns_never_answered_for_is_a_503_that_says_so() {
        let failure = UpstreamFailure::NotResolved {
            upstream: Arc::from("farm"),
            lookup: "dns gates.farm.internal port 8443".into(),
        };
        assert_eq!(failure.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(failure.label(), "not_resolved");
        assert!(!failure.retryable());
        assert_eq!(
            failure.to_string(),
            "upstream farm: no server yet, DNS has not answered (dns gates.farm.internal port 8443)"
        );
    }

    #[test]
    fn a_queue_timeout_is_a_503_that_names_the_upstream_and_is_not_retried() {
        let failure = UpstreamFailure::QueueTimeout {
            upstream: Arc::from("farm"),
            cap: 2,
            after: Duration::from_secs(1),
        };
        assert_eq!(failure.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(failure.label(), "queue_timeout");
        assert!(!failure.retryable());
        assert_eq!(
            failure.to_string(),
            "upstream farm: every server busy (max_connections_per_server = 2) for queue_timeout 1s"
        );
    }

    #[test]
    fn a_chain_leaves_out_what_was_said() {
        let e = UpstreamFailure::Connect {
            server: server(),
            source: io::Error::other("network unreachable"),
        };
        assert_eq!(
            Chain(&e).to_string(),
            "cannot connect to backend 10.0.0.11:8443: network unreachable"
        );
    }
}
