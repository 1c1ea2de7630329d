//! farmgate-config
#![forbid(unsafe_code)]
#![warn(missing_docs)]
