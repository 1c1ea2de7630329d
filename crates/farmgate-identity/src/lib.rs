//! Who is on the other end of a TLS connection, and may they come in?
//!
//! farmgate-identity turns a peer's X.509 certificate into a [`PeerIdentity`] (subject, DNS and
//! URI SANs, common name, SPKI and certificate hashes) and matches it against an [`AllowList`] of
//! [`AllowRule`]s parsed from configuration text (`dns:NAME`, `uri:URI`, `cn:NAME`,
//! `spki-sha256:BASE64`). It also renders the identity for the headers a gate sends to its
//! application: Envoy's `x-forwarded-client-cert` and RFC 9440 `Client-Cert`, as
//! [`FieldValue`]s that are valid header values whatever the certificate holds, with subjects
//! written as RFC 4514 names ([`rfc4514`]) that read one way only.
//!
//! For reports rather than decisions, [`CertificateSummary`] reads everything a person wants to
//! see about one certificate (names, issuer, validity, key, purposes, hashes): `inspect`,
//! `probe`, ACME status and the admin status page all show certificates through it.
//!
//! The crate is synchronous and does no I/O. It never verifies a certificate chain: by the time a
//! certificate reaches [`PeerIdentity::from_der`], the TLS layer has already checked it.
//!
//! ```
//! use farmgate_identity::{AllowList, AllowRule};
//!
//! let allow = AllowList::new(vec![
//!     "dns:edge.farm.example".parse::<AllowRule>()?,
//!     "uri:spiffe://farm.example/edge".parse()?,
//! ]);
//! assert_eq!(allow.rules()[0].to_string(), "dns:edge.farm.example");
//! assert!("dns:*.com".parse::<AllowRule>().is_err()); // bare wildcard
//! # Ok::<(), farmgate_identity::AllowRuleError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod allow;
mod dn;
mod dns;
mod header;
mod peer;
mod summary;

pub use allow::{AllowList, AllowRule, AllowRuleError, RuleKind};
pub use dn::rfc4514;
pub use dns::{DnsName, DnsNameProblem};
pub use header::{FieldValue, client_cert_header};
pub use peer::{IdentityError, PeerIdentity};
pub use summary::{CertificateSummary, KeyPurpose, SubjectAltName};
