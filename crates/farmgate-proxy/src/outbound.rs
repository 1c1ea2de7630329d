//! Outbound: from a request ready to leave to a response from one of an upstream's servers.
//!
//! Connecting (TCP, then TLS with the upstream's client identity), pooled connections, the
//! choice of server, retries within a budget, passive health, and the one classification of
//! what went wrong ([`UpstreamFailure`]). The lowest layer: it knows nothing of listeners,
//! generations or the runtime (docs/architecture.md).

mod body;
mod connect;
mod failure;
mod health;
mod multiplex;
mod pool;
mod retry;
mod send;
mod upstream;

pub(crate) use body::Body;
pub(crate) use failure::{Chain, UpstreamFailure};
pub(crate) use health::now_ms;
pub(crate) use send::set_worker;
pub(crate) use upstream::{Outgoing, ServerRt, UpstreamRt};
