//! The certificates a generation serves (listeners) and presents (upstream client
//! certificates), read for metrics and `/status`.

use std::sync::Arc;

use farmgate_identity::CertificateSummary;

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
}

/// A certificate in use.
#[derive(Debug, Clone)]
pub(crate) struct InUse {
    pub(crate) role: Role,
    /// The listener or upstream name.
    pub(crate) owner: Arc<str>,
    pub(crate) summary: CertificateSummary,
}

/// Every leaf certificate the listeners serve right now (ACME ones included, as renewed) and
/// every upstream client certificate.
pub(crate) fn in_use(listeners: &[Arc<ListenerRt>], upstreams: &[UpstreamRt]) -> Vec<InUse> {
    let mut certs = Vec::new();
    for listener in listeners {
        let Some(tls) = &listener.tls else { continue };
        for key in tls.store().current().all() {
            if let Some(leaf) = key.cert.first() {
                certs.extend(parse(Role::Listener, &listener.name, leaf.as_ref()));
            }
        }
    }
    for upstream in upstreams {
        if let Some(leaf) = &upstream.client_leaf {
            certs.extend(parse(Role::Upstream, &upstream.name, leaf));
        }
    }
    certs
}

fn parse(role: Role, owner: &Arc<str>, der: &[u8]) -> Option<InUse> {
    Some(InUse {
        role,
        owner: owner.clone(),
        summary: CertificateSummary::from_der(der).ok()?,
    })
}
