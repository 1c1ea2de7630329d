//! farmgate-admin
#![forbid(unsafe_code)]
#![warn(missing_docs)]
