//! Errors: building a generation, and failures while forwarding a request.

use farmgate_config::Location;
use http::StatusCode;

/// A configuration that cannot be put to work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A certificate, key, trust bundle or CRL is unusable.
    #[error(transparent)]
    Tls(#[from] farmgate_tls::TlsError),
    /// A name is not usable as a TLS server name or URI authority.
    #[error("{at}: {name:?} cannot be used as a server name")]
    ServerName {
        /// Where.
        at: Location,
        /// The name.
        name: String,
    },
}

/// A configuration file that cannot be put to work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error(transparent)]
    Config(#[from] farmgate_config::ConfigErrors),
    /// A file it names is unusable.
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// The proxy could not start or keep serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// A listening socket could not be opened.
    #[error("{at}: cannot listen on {addr}")]
    Bind {
        /// Where the listener is defined.
        at: Location,
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Who caused a failed request: decides the status, the log line and the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The client sent something we refuse.
    Downstream,
    /// A backend failed or is unreachable.
    Upstream,
    /// We failed.
    Internal,
}

/// A request farmgate answers itself because forwarding it failed or is impossible.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: StatusCode,
    pub(crate) fault: Fault,
    /// The cause in words, for the log.
    pub(crate) cause: String,
    /// Failed before any response byte arrived: replaying the request is safe if it is
    /// idempotent and has no body.
    pub(crate) before_response: bool,
}

impl Failure {
    pub(crate) fn bad_gateway(cause: String) -> Failure {
        Failure {
            status: StatusCode::BAD_GATEWAY,
            fault: Fault::Upstream,
            cause,
            before_response: true,
        }
    }

    pub(crate) fn timeout(cause: String) -> Failure {
        Failure {
            status: StatusCode::GATEWAY_TIMEOUT,
            fault: Fault::Upstream,
            cause,
            before_response: false,
        }
    }

    pub(crate) fn unavailable(cause: String) -> Failure {
        Failure {
            status: StatusCode::SERVICE_UNAVAILABLE,
            fault: Fault::Upstream,
            cause,
            before_response: false,
        }
    }

    pub(crate) fn bad_request(cause: String) -> Failure {
        Failure {
            status: StatusCode::BAD_REQUEST,
            fault: Fault::Downstream,
            cause,
            before_response: false,
        }
    }

    pub(crate) fn not_found(cause: String) -> Failure {
        Failure {
            status: StatusCode::NOT_FOUND,
            fault: Fault::Downstream,
            cause,
            before_response: false,
        }
    }

    pub(crate) fn internal(cause: String) -> Failure {
        Failure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            fault: Fault::Internal,
            cause,
            before_response: false,
        }
    }
}
