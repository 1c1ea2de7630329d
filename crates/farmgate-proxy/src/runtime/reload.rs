//! What a reload can end in: the counts so far, and why one failed.

use crate::error::{LoadError, ProxyError};

/// How many reloads succeeded and failed since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReloadCounts {
    /// Reloads that switched to a new generation.
    pub succeeded: u64,
    /// Reloads that failed; the previous generation kept serving.
    pub failed: u64,
}

/// Why a new generation was not put in service; the running one stays.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// A new or moved listener could not bind its address.
    #[error(transparent)]
    Bind(#[from] ProxyError),
}

/// Why a reload from a file failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadFailure {
    /// The new configuration could not be built.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// It could not be put in service.
    #[error(transparent)]
    Apply(#[from] ReloadError),
}
