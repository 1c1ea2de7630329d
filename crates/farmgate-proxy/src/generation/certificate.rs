//! The certificates a generation serves (listeners) and presents (upstream client
//! certificates), read for metrics and `/status`.

use std::sync::Arc;

use farmgate_identity::{CertificateSummary, KeyPurpose};
use rustls_pki_types::CertificateDer;

use crate::outbound::UpstreamRt;

use super::listener::ListenerRt;

/// What a certificate is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Served by a listener.
    Listener,
    /// Presented by an upstream to its servers.
    Upstream,
}

impl Role {
    /// The `role` label of `farmgate_certificate_expiry_seconds`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Listener => "listener",
            Role::Upstream => "upstream",
        }
    }

    /// The extended key usage the role needs.
    pub(crate) fn purpose(self) -> KeyPurpose {
        match self {
            Role::Listener => KeyPurpose::ServerAuth,
            Role::Upstream => KeyPurpose::ClientAuth,
        }
    }
}

/// A certificate in use.
#[derive(Debug, Clone)]
pub(crate) struct InUse {
    pub(crate) role: Role,
    /// The listener or upstream name.
    pub(crate) owner: Arc<str>,
    /// The leaf.
    pub(crate) summary: CertificateSummary,
    /// Whether every certificate of its chain permits the role's [`Role::purpose`]: no EKU
    /// extension, or one that lists it or anyExtendedKeyUsage (the rule `farmgate inspect`
    /// applies).
    pub(crate) permits: bool,
}

/// Every leaf certificate the listeners serve right now (ACME ones included, as renewed) and
/// every upstream client certificate.
pub(crate) fn in_use(listeners: &[Arc<ListenerRt>], upstreams: &[UpstreamRt]) -> Vec<InUse> {
    let mut certs = Vec::new();
    for listener in listeners {
        let Some(tls) = &listener.tls else { continue };
        for key in tls.store().current().all() {
            certs.extend(parse(Role::Listener, &listener.name, &key.cert));
        }
    }
    for upstream in upstreams {
        certs.extend(parse(
            Role::Upstream,
            &upstream.name,
            &upstream.client_chain,
        ));
    }
    certs
}

/// The leaf of `chain` (leaf first), read for reports; `None` if it is empty or unreadable.
fn parse(role: Role, owner: &Arc<str>, chain: &[CertificateDer<'_>]) -> Option<InUse> {
    let summary = CertificateSummary::from_der(chain.first()?.as_ref()).ok()?;
    let permits = chain.iter().all(|der| {
        CertificateSummary::from_der(der.as_ref()).is_ok_and(|c| c.permits(role.purpose()))
    });
    Some(InUse {
        role,
        owner: owner.clone(),
        summary,
        permits,
    })
}
