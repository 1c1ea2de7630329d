//! farmgate's TLS: rustls configurations for listeners (edge and gate) and for upstream
//! connections, built from the typed configuration.
//!
//! - [`load`] reads certificates, keys and CRLs from the files the configuration names, and
//!   refuses a key that does not match its certificate.
//! - [`TrustStore`] turns `trust = [...]` into trust anchors: PEM files, `"mozilla"`
//!   (webpki-roots) or `"system"` (rustls-native-certs), linting each anchor as it loads
//!   ([`AnchorWarning`]s for `farmgate check`).
//! - [`profile`] holds the RFC 5280 rules rustls-webpki leaves out, run on trust anchors and on
//!   every path webpki accepts, by both verifiers.
//! - [`ClientVerifier`] is the gate: our own rustls `ClientCertVerifier` on rustls-webpki, with the
//!   extended-key-usage policy and revocation as parameters, then the profile checks, then the
//!   allow-list; [`ServerVerifier`] is the edge's verifier of backends, with the same profile
//!   checks. It counts what
//!   it decides in [`GateStats`], with the last few refused clients (their address comes from
//!   the listener running the handshake in [`handshake_from`]); [`crl`] loads and checks its
//!   revocation lists.
//! - [`ServerTls`] is a listener's rustls `ServerConfig` with an SNI certificate store that can be
//!   swapped while running ([`CertStore`]; the ACME client swaps its certificates there, and
//!   answers tls-alpn-01 validations through [`AlpnChallenges`]); an edge's session tickets
//!   come from rustls's rotating ticketer, or from the keys every edge shares
//!   ([`TicketKeys`], `ticket_keys`). [`upstream_client_config`] is the client side towards
//!   backends.
//! - [`explain`] turns a TLS failure into words an operator can act on; [`probe`] performs one
//!   handshake with a server and records what it showed (`farmgate probe`).
//!
//! Everything uses the aws-lc-rs crypto provider.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
pub mod crl;
mod error;
pub mod explain;
pub mod load;
mod path;
pub mod probe;
pub mod profile;
mod server;
mod source;
mod stats;
mod tickets;
mod trust;
mod uri_constraints;
mod verifier;

use std::sync::Arc;

use rustls::CipherSuite;
use rustls::crypto::CryptoProvider;

pub use client::{ServerVerifier, server_verifier, upstream_client_config};
pub use error::{TlsError, TlsErrorKind};
pub use server::{ACME_TLS_ALPN, AlpnChallenges, CertStore, ServerTls, SniCerts};
pub use source::{FromSource, handshake_from};
pub use stats::{GateStats, GateStatsSnapshot, RECENT_REFUSALS, RefusedClient};
pub use tickets::{TICKET_KEY_LEN, TicketKeys};
pub use trust::{AnchorSource, AnchorWarning, TrustStore};
pub use verifier::{Accepted, ClientVerifier, Refusal, RefusalReason};

/// The crypto provider every configuration uses: aws-lc-rs, with rustls' default cipher suites and
/// key exchange groups.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// [`provider`] with the AES-128-GCM suites first, for the connections farmgate serves and
/// opens (listeners choose by this order, backends by our order as client). AES-128 runs 10
/// rounds instead of AES-256's 14, and TLS_AES_128_GCM_SHA256 runs the TLS 1.3 key schedule on
/// SHA-256 (SHA extensions in current CPUs) instead of SHA-384: a full handshake at the edge
/// costs about a tenth less CPU. Every TLS 1.3 client supports it (RFC 8446 §9.1 makes it
/// mandatory), so the order decides for every client.
pub(crate) fn aes128_first() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    // A stable sort: AES-128-GCM suites first, everything else in rustls' order.
    provider.cipher_suites.sort_by_key(|suite| {
        !matches!(
            suite.suite(),
            CipherSuite::TLS13_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    Arc::new(provider)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes128_gcm_comes_first() {
        let provider = aes128_first();
        assert_eq!(
            provider.cipher_suites[0].suite(),
            CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        // Nothing is lost, only reordered.
        assert_eq!(
            provider.cipher_suites.len(),
            rustls::crypto::aws_lc_rs::default_provider()
                .cipher_suites
                .len()
        );
    }
}
