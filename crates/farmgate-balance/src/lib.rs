//! farmgate-balance
#![forbid(unsafe_code)]
#![warn(missing_docs)]
