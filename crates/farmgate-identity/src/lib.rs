//! farmgate-identity
#![forbid(unsafe_code)]
#![warn(missing_docs)]
