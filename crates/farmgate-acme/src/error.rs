//! Why a certificate could not be obtained, stored or served.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use farmgate_config::{Challenge, Location};

/// Something went wrong getting or keeping an ACME certificate. Each variant keeps its cause as
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    /// The storage directory cannot be created or written.
    #[error("{at}: cannot keep ACME state in {}", path.display())]
    Storage {
        /// The `acme.storage` key.
        at: Location,
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file in the storage directory cannot be read, written or locked.
    #[error("cannot {action} {}", path.display())]
    File {
        /// What we tried: "read", "write", "lock".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file in the storage directory holds something we cannot use.
    #[error("{} is damaged (remove it: farmgate then orders or registers anew)", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The External Account Binding key file cannot be read.
    #[error("{at}: cannot read the External Account Binding key {}", path.display())]
    EabKey {
        /// The `acme.eab.hmac_key_file` key.
        at: Location,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The External Account Binding key file does not hold a base64url key.
    #[error(
        "{at}: {} does not hold an External Account Binding key; write the HMAC key exactly as \
         your CA shows it (base64url), alone in the file",
        path.display()
    )]
    EabKeyEncoding {
        /// The `acme.eab.hmac_key_file` key.
        at: Location,
        /// The file.
        path: PathBuf,
    },
    /// The trust anchors for the ACME server's own certificate cannot be loaded.
    #[error(transparent)]
    Trust(#[from] farmgate_tls::TlsError),
    /// A request to the ACME server failed: it could not be reached, or it refused.
    #[error("{doing}")]
    Server {
        /// What we were doing, e.g. "cannot place an order with https://.../directory".
        doing: String,
        /// What instant-acme reported.
        #[source]
        source: instant_acme::Error,
    },
    /// The ACME server sent something farmgate cannot use (e.g. a challenge token that is not
    /// base64url).
    #[error("the ACME server sent {what} {value:?}, which farmgate cannot use")]
    Unusable {
        /// What it was.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// The configured profile is not one the ACME server offers.
    #[error(
        "the ACME server offers no profile {profile:?} (it offers {offered}); change listener.tls.acme.profile"
    )]
    UnknownProfile {
        /// The configured profile.
        profile: String,
        /// The profiles the directory lists.
        offered: String,
    },
    /// The ACME server offers no challenge of the configured type for a name.
    #[error("the ACME server offers no {challenge} challenge for {domain}")]
    NoChallenge {
        /// The name.
        domain: String,
        /// The configured challenge.
        challenge: Challenge,
    },
    /// An authorization is in a state an order cannot proceed from.
    #[error("the ACME server reports the authorization for {domain} as {status}")]
    Authorization {
        /// The name.
        domain: String,
        /// Its status, as the server said.
        status: String,
    },
    /// The ACME server could not confirm that we control the names.
    #[error(
        "the ACME server could not validate {challenge}: {}",
        Failures(failures)
    )]
    Validation {
        /// The challenge type answered.
        challenge: Challenge,
        /// Per name, what the server reported (it may report nothing).
        failures: Vec<(String, instant_acme::Problem)>,
    },
    /// A certificate or request could not be made (CSR, challenge or temporary certificate).
    #[error("cannot make {what}")]
    Make {
        /// What: "a certificate request", ...
        what: &'static str,
        /// Why.
        #[source]
        source: rcgen::Error,
    },
    /// The certificate the ACME server issued cannot be served.
    #[error("the certificate the ACME server issued cannot be served")]
    Issued {
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An order took longer than farmgate waits.
    #[error("the order did not complete within {0:?}")]
    Timeout(Duration),
}

impl AcmeError {
    /// Whether the ACME server answered and said no (a refused order, a failed validation, an
    /// unknown profile): retrying soon would only repeat it, and count against the CA's limits.
    /// Otherwise the failure is on the way (unreachable server, timeout) or local.
    pub fn refused_by_ca(&self) -> bool {
        match self {
            AcmeError::Server { source, .. } => matches!(source, instant_acme::Error::Api(_)),
            AcmeError::UnknownProfile { .. }
            | AcmeError::Unusable { .. }
            | AcmeError::NoChallenge { .. }
            | AcmeError::Authorization { .. }
            | AcmeError::Validation { .. }
            | AcmeError::Issued { .. } => true,
            _ => false,
        }
    }
}

/// `a.example: <problem>; b.example: <problem>`, or a note that the server said nothing.
struct Failures<'a>(&'a [(String, instant_acme::Problem)]);

impl fmt::Display for Failures<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("the order became invalid without a reason");
        }
        for (i, (domain, problem)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{domain}: {problem}")?;
        }
        Ok(())
    }
}

/// An error and its causes on one line, for logs and status.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        // instant-acme's transparent errors repeat their source's text.
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
