//! Inbound: from a client's connection to a request ready to leave, and its answer back.
//!
//! Accepting and the TLS handshake (a gate's verifier refuses clients there), each
//! connection's state ([`ConnInfo`](client::ConnInfo)), serving HTTP/1.1 and HTTP/2, strict
//! HTTP checks, routing, the headers a hop manages, the access log, and the answers farmgate
//! gives itself. It reads the current generation and hands requests to the outbound layer
//! (docs/architecture.md).

mod accept;
mod access;
mod activity;
mod client;
mod clients;
mod conn;
mod failure;
mod forward;
mod headers;
mod on_wake;
mod proxy;
mod shared;
mod strict;
mod upgrade;

pub(crate) use accept::accept_loop;
pub(crate) use shared::Shared;
