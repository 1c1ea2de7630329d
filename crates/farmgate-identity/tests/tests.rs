//! Property tests of farmgate-identity: what comes from configuration (allow rules) and from
//! peers (certificate names) can never break parsing or forge a header field. The number of
//! cases per property is proptest's default (256); `PROPTEST_CASES=N` raises it (CI's interop
//! stage does).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod allow;
mod header;
