//! The `farmgate` command as operators run it: the built binary, spawned, on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod cli;

mod admin;
mod ca;
mod ca_lifecycle;
mod check;
mod demo;
mod inspect;
mod limits;
mod manual;
mod operations;
mod probe;
mod run;
mod systemd;
mod warnings;

#[cfg(feature = "interop")]
mod interop;
#[cfg(feature = "interop")]
mod interop_acme;
#[cfg(feature = "interop")]
mod interop_balancer;
#[cfg(feature = "interop")]
mod interop_ca;
#[cfg(feature = "interop")]
mod interop_compat;
#[cfg(feature = "interop")]
mod interop_dashboard;
#[cfg(feature = "interop")]
mod interop_discovery;
#[cfg(feature = "interop")]
mod interop_graded;
#[cfg(feature = "interop")]
mod interop_kubernetes;
#[cfg(feature = "interop")]
mod interop_package;
#[cfg(feature = "interop")]
mod interop_websocket;
#[cfg(feature = "interop")]
mod nginx;
#[cfg(feature = "interop")]
mod outside;
#[cfg(feature = "interop")]
mod pebble;
