//! Configuration errors: each names the file, line and key, and says what is wrong.

use std::fmt;

use farmgate_identity::AllowRuleError;

use crate::Location;

/// One problem in a configuration file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[error("{at}: {problem}")]
pub struct ConfigError {
    /// Where the problem is.
    pub at: Location,
    /// What the problem is.
    #[source]
    pub problem: Problem,
}

/// What is wrong with a configuration value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The file is not valid TOML, or a value has the wrong type, or a key is unknown.
    #[error("{0}")]
    Syntax(String),
    /// A value is well-formed TOML but not acceptable here.
    #[error("{0}")]
    Invalid(String),
    /// A required key is missing.
    #[error("missing required key `{0}`")]
    Missing(&'static str),
    /// A key a later version of farmgate implements; rejected rather than silently ignored.
    #[error("{0} is not yet supported by this version of farmgate; remove it")]
    Unsupported(&'static str),
    /// An allow-list entry that is not a valid identity.
    #[error("invalid identity {text:?}")]
    Identity {
        /// The entry as written.
        text: String,
        /// Why it is invalid.
        #[source]
        source: AllowRuleError,
    },
}

/// Every problem found in a configuration file, in file order.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The problems, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
            let mut source = std::error::Error::source(&e.problem);
            while let Some(s) = source {
                write!(f, ": {s}")?;
                source = s.source();
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
