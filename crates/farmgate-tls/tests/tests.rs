//! farmgate-tls against certificates minted at test time and against the x509-limbo suite: what
//! a gate's verifier and CRL loader accept, refuse, and say.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod acme;
mod gate;
mod handshake;
mod tickets;

mod crl;
mod limbo;
mod props;
mod real_world;
