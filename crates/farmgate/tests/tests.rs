//! The `farmgate` command as operators run it: the built binary, spawned, on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod cli;

mod check;
mod demo;
mod run;

#[cfg(feature = "interop")]
mod interop;
