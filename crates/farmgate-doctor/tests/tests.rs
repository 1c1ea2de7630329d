//! farmgate-doctor's integration tests: reports on certificates minted at test time, and
//! warnings on configurations written at test time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod advice;
mod inspect;
