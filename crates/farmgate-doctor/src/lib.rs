//! farmgate's certificate reports: what a certificate chain is good for, and what in a valid
//! configuration will break, worded for the operator who must act and coded for the script that
//! watches.
//!
//! - [`inspect`]: a [`Report`](inspect::Report) on a certificate chain (`farmgate inspect`):
//!   each certificate's [`CertificateSummary`](farmgate_identity::CertificateSummary), where the
//!   chain leads, and four verdicts (server, client, farmgate gate strict and compatible), each
//!   "no" with [`Reason`](inspect::Reason)s that carry a stable `code`;
//! - [`advice`]: the [`Warning`](advice::Warning)s `farmgate check` prints, `run` logs and the
//!   admin status shows for a configuration that is valid today but will break;
//! - [`facts`]: the one table of dated public-CA facts those warnings and verdicts cite.
//!
//! The doctor judges nothing by itself: path validation is rustls-webpki's and the gate's own
//! verifier's (farmgate-tls), certificates are read as farmgate-identity reads them, and
//! configured files are loaded through `farmgate_tls::load` exactly as a gate or edge loads them.
//! It sits beside the proxy, above config, identity and tls; the private CA (farmgate-pki) is a
//! leaf it does not need.
//!
//! ```no_run
//! use farmgate_doctor::inspect::Inspector;
//!
//! let pem = std::fs::read("edge-client.pem")?;
//! let report = Inspector::new(None).inspect("edge-client.pem", &pem, time::OffsetDateTime::now_utc())?;
//! for reason in &report.verdicts.client.reasons {
//!     println!("{}: {reason}", reason.code());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod advice;
mod error;
pub mod facts;
pub mod inspect;
mod reason;
mod verdict;

pub use error::InspectError;
