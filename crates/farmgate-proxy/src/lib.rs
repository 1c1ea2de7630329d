//! farmgate's proxy engine: listeners, routing, forwarding and upstream pools.
//!
//! A [`Generation`] is everything built from one configuration (TLS configurations, verifiers,
//! routes, upstream pools); a [`Server`] binds the listeners and serves each new connection
//! with the current generation. Both roles, edge and gate, are this one engine: a gate is a
//! listener with client authentication in front of the local application.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod body;
mod connect;
mod error;
mod forward;
mod generation;
mod health;
mod listener;
mod pool;
pub mod reload;
mod server;
mod strict;
mod upstream;

pub use body::Body;
pub use connect::ConnectError;
pub use error::{BuildError, LoadError, ProxyError};
pub use generation::{Generation, ServerState};
pub use pool::PooledBody;
pub use server::{Drained, ReloadError, Server};
