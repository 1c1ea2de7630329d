//! Backend selection for farmgate: which of an upstream's servers takes the next request.
//!
//! This crate knows nothing of HTTP or sockets: servers are indices `0..n`, and callers say which
//! of them are currently eligible (healthy). Selection is lock-free on the request path.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod round_robin;

pub use round_robin::RoundRobin;
