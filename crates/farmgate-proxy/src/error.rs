//! The crate's public errors: a configuration that cannot be built or loaded, a listener that
//! cannot be bound. A leaf: every layer may return them, and they import nothing of the crate.
//! Failures of single requests are typed where they arise (`outbound::UpstreamFailure`,
//! `inbound::Failure`).

use farmgate_config::Location;

/// A configuration that cannot be put to work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A certificate, key, trust bundle or CRL is unusable.
    #[error(transparent)]
    Tls(#[from] farmgate_tls::TlsError),
    /// An ACME listener's certificate cannot be set up (e.g. its storage is unwritable).
    #[error(transparent)]
    Acme(#[from] farmgate_acme::AcmeError),
    /// `[admin] token_file` is unreadable, empty or not one word.
    #[error("{at}: {}", path.display())]
    AdminToken {
        /// Where the file is named.
        at: Location,
        /// The file.
        path: std::path::PathBuf,
        /// Why it cannot serve.
        #[source]
        source: farmgate_admin::TokenError,
    },
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
