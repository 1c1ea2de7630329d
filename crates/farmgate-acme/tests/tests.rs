//! The ACME client without an ACME server: storage, stored certificates, the temporary
//! certificate. (Against a real server, pebble: crates/farmgate/tests/interop_acme.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod storage;
