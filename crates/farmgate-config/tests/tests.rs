//! Configuration scenarios: what an operator writes, and what farmgate says back.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod acme;
mod balancers;
mod discover;
mod errors;
mod headers;
mod limits;
mod props;
mod schema;
