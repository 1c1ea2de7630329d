//! farmgate's private certificate authority: keys, certificates, chains and CRLs, minted with
//! rcgen.
//!
//! An [`Authority`] is a CA that can sign: a new root ([`Authority::new_root`]), an intermediate
//! under it ([`Authority::intermediate`]), or an existing CA loaded from PEM
//! ([`Authority::from_pem`], for `farmgate ca issue`). It [`issue`](Authority::issue)s leaf
//! certificates described by a [`CertSpec`] and signs [`Crl`]s. The test kit builds every test
//! PKI with it, so tests exercise the same code as `farmgate ca`.
//!
//! Around it, [`store`]: a CA kept as files in a directory (`farmgate ca init` / `ca issue`),
//! which never overwrites a file and refuses names outside the CA's name constraints.
//!
//! The crate is a leaf: it depends on no other farmgate crate, so any of them can mint test
//! certificates with it. Reports on certificates (`farmgate inspect`, `check` warnings) live in
//! farmgate-doctor.
//!
//! ```
//! use farmgate_pki::{Authority, CaSpec, CertSpec};
//!
//! let root = Authority::new_root(&CaSpec::new("farm root CA"))?;
//! let intermediate = root.intermediate(&CaSpec::new("farm issuing CA").path_len(0))?;
//! let edge = intermediate.issue(&CertSpec::client("edge.farm.example"))?;
//! assert!(edge.chain_pem.starts_with(&edge.cert_pem));
//! assert!(edge.chain_pem.ends_with(intermediate.cert_pem()));
//! # Ok::<(), farmgate_pki::PkiError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod authority;
mod constraints;
mod crl;
mod error;
mod key;
mod pem;
mod spec;
pub mod store;

pub use authority::{Authority, Certified, Issued};
pub use crl::{Crl, Reason, Revoked};
pub use error::PkiError;
pub use key::{KeyPair, PublicKey};
pub use spec::{CaSpec, CertSpec, Usage};
