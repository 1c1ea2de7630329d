//! Test support for farmgate: a test PKI minted at test time, in-process origins and clients.
//!
//! Nothing here is used by the shipped binary. Certificates are generated fresh for every test
//! run, written into a temporary directory, and never checked in.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod acme;
pub mod client;
pub mod grpc;
pub mod load;
pub mod lookalike;
pub mod origin;
pub mod pki;
pub mod ws;
