//! Outbound: from a request ready to leave to a response from one of an upstream's servers.
//!
//! Connecting (TCP, the PROXY header of `send_proxy`, then TLS with the upstream's client
//! identity), pooled connections (a `send_proxy` connection reused by its own client only), the
//! choice of server, drained servers and the requests in flight on each, the cap on requests
//! per server and its queue, retries within a budget, passive health, and the one
//! classification of what went wrong ([`UpstreamFailure`]). The lowest layer: it knows nothing
//! of listeners, generations or the runtime (docs/architecture.md).

mod body;
mod connect;
mod discover;
mod drain;
mod failure;
mod health;
mod multiplex;
mod pool;
mod queue;
mod retry;
mod send;
mod set;
mod stats;
mod upstream;

pub(crate) use body::{Body, BodyError, ClientBody, holding};
pub(crate) use connect::{ConnectionId, Relayed, relaying};
pub(crate) use discover::{Change, Discovery, Known, Resolver};
pub(crate) use drain::Drain;
pub(crate) use failure::{Chain, ClientBodyError, UpstreamFailure};
pub(crate) use health::now_ms;
pub(crate) use queue::Queue;
pub(crate) use send::set_worker;
pub(crate) use set::{ServerRt, ServerSet, ServerSource};
pub(crate) use stats::{LastFailure, LastMinute, SAMPLE_EVERY, ServerStats};
pub(crate) use upstream::{Outgoing, UpstreamRt};
