//! farmgate's proxy engine: listeners, routing, forwarding and upstream pools.
//!
//! A [`Generation`] is everything built from one configuration (TLS configurations, verifiers,
//! routes, upstream pools); a [`Server`] binds the listeners and serves each new connection
//! with the current generation. Both roles, edge and gate, are this one engine: a gate is a
//! listener with client authentication in front of the local application.
//!
//! The crate is four layers, each importing only the ones below it (docs/architecture.md):
//!
//! - `runtime`: the running [`Server`], its workers, reloads, shutdown and status;
//! - `inbound`: accepting connections, TLS, serving HTTP, routing, forwarding;
//! - `generation`: the immutable data built from one configuration;
//! - `outbound`: connections to backends, pools, retries, failures.
//!
//! Listeners whose certificate comes from ACME serve it from the long-lived
//! [`farmgate_acme::Acme`] state, which every generation of a server shares
//! ([`Server::acme`]): TLS listeners answer tls-alpn-01 validations, plain-HTTP listeners answer
//! http-01 ones (under `/.well-known/acme-challenge/`, before redirecting or routing).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod generation;
mod inbound;
mod outbound;
mod runtime;

pub use error::{BuildError, LoadError, ProxyError};
pub use generation::{Generation, Lasting, ServerState};
pub use runtime::{
    AcmeStatus, CertificateStatus, ClientAuthStatus, CompatCount, DiscoveryFailureCount,
    DiscoveryStatus, DrainAnswer, Drained, FactStatus, FailureStatus, LastReload, ListenerRole,
    ListenerStatus, RefusalCount, RefusedStatus, ReloadError, ReloadObserver, Reloads, Server,
    ServerHealth, ServerRotation, ServerStatus, Status, TrafficStatus, UpstreamServers,
    UpstreamStatus, UpstreamTlsStatus, Upstreams, WarningStatus, Workers,
};

/// Reloading: on request (SIGHUP) and whenever the configuration file or any file it names
/// changes on disk.
pub mod reload {
    pub use crate::runtime::{ReloadCounts, ReloadFailure, watch};
}
