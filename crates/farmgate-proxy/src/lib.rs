//! farmgate's proxy engine: listeners, routing, forwarding and upstream pools.
//!
//! A [`Generation`] is everything built from one configuration (TLS configurations, verifiers,
//! routes, upstream pools); a [`Server`] binds the listeners and serves each new connection
//! with the current generation. Both roles, edge and gate, are this one engine: a gate is a
//! listener with client authentication in front of the local application.
//!
//! Listeners whose certificate comes from ACME serve it from the long-lived
//! [`farmgate_acme::Acme`] state, which every generation of a server shares
//! ([`Server::acme`]): TLS listeners answer tls-alpn-01 validations, plain-HTTP listeners answer
//! http-01 ones (under `/.well-known/acme-challenge/`, before redirecting or routing).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod access;
mod body;
mod connect;
mod error;
mod forward;
mod generation;
mod health;
mod listener;
mod metrics;
mod on_wake;
mod pool;
pub mod reload;
mod server;
mod strict;
mod upstream;
mod workers;

pub use body::Body;
pub use connect::ConnectError;
pub use error::{BuildError, LoadError, ProxyError};
pub use generation::{Generation, ServerState};
pub use pool::PooledBody;
pub use server::{Drained, ReloadError, Server};
pub use workers::Workers;
