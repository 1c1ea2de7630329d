//! End-to-end scenarios for the proxy engine over real loopback sockets, with a test PKI minted
//! at test time: browser → edge → mTLS → gate → origin.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod farm;
mod logs;
mod probes;

mod layers;

mod acme;
mod balancers;
mod chain;
mod compat;
mod discovery;
mod drain;
mod every_request;
mod failures;
mod floods;
mod gate;
mod grpc;
mod header_rules;
mod health;
mod keepalive;
mod limits;
mod migration;
mod queue;
mod reload;
mod revocation;
mod status;
mod streaming;
mod strict_props;
mod timeouts;
mod websocket;
mod workers;
