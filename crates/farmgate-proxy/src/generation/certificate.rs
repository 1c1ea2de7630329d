//! The certificates a generation serves (listeners) and presents (upstream client
//! certificates), read for metrics and `/status`.

use std::net::IpAddr;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

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

    /// The extended key usage the role needs, by its RFC name.
    pub(crate) fn purpose(self) -> &'static str {
        match self {
            Role::Listener => "serverAuth",
            Role::Upstream => "clientAuth",
        }
    }
}

/// A certificate in use.
#[derive(Debug, Clone)]
pub(crate) struct InUse {
    pub(crate) role: Role,
    /// The listener or upstream name.
    pub(crate) owner: Arc<str>,
    pub(crate) subject: String,
    /// Subject alternative names: `dns:NAME`, `uri:URI`, `ip:ADDRESS`.
    pub(crate) sans: Vec<String>,
    /// The issuer, as a distinguished name.
    pub(crate) issuer: String,
    /// Unix seconds.
    pub(crate) not_after: i64,
    /// The leaf's extended key usages by RFC name (`serverAuth`, `clientAuth`, or a dotted
    /// OID); `None`: no EKU extension, so any purpose.
    pub(crate) eku: Option<Vec<String>>,
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
    let (_, cert) = x509_parser::parse_x509_certificate(chain.first()?.as_ref()).ok()?;
    let sans = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(san_text)
            .collect(),
        _ => Vec::new(),
    };
    let permits = chain.iter().all(|der| {
        x509_parser::parse_x509_certificate(der.as_ref())
            .is_ok_and(|(_, c)| ekus(&c).is_none_or(|list| permits(&list, role.purpose())))
    });
    Some(InUse {
        role,
        owner: owner.clone(),
        subject: cert.subject().to_string(),
        sans,
        issuer: cert.issuer().to_string(),
        not_after: cert.validity().not_after.timestamp(),
        eku: ekus(&cert),
        permits,
    })
}

/// Whether an EKU list permits `purpose`.
fn permits(list: &[String], purpose: &str) -> bool {
    list.iter()
        .any(|e| e == purpose || e == "anyExtendedKeyUsage")
}

/// A certificate's extended key usages by RFC name; `None` without the extension. A malformed
/// extension permits nothing, as a verifier treats it. (The names `farmgate inspect` prints;
/// one shared certificate summary is on its way to farmgate-identity and will replace this.)
fn ekus(cert: &X509Certificate<'_>) -> Option<Vec<String>> {
    let eku = match cert.extended_key_usage() {
        Ok(Some(eku)) => eku.value,
        Ok(None) => return None,
        Err(_) => return Some(Vec::new()),
    };
    let named = [
        (eku.any, "anyExtendedKeyUsage"),
        (eku.server_auth, "serverAuth"),
        (eku.client_auth, "clientAuth"),
        (eku.code_signing, "codeSigning"),
        (eku.email_protection, "emailProtection"),
        (eku.time_stamping, "timeStamping"),
        (eku.ocsp_signing, "OCSPSigning"),
    ];
    Some(
        named
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, name)| (*name).to_owned())
            .chain(eku.other.iter().map(ToString::to_string))
            .collect(),
    )
}

fn san_text(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::DNSName(n) => Some(format!("dns:{n}")),
        GeneralName::URI(u) => Some(format!("uri:{u}")),
        GeneralName::IPAddress(bytes) => {
            let ip = match bytes.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).ok()?),
                16 => IpAddr::from(<[u8; 16]>::try_from(*bytes).ok()?),
                _ => return None,
            };
            Some(format!("ip:{ip}"))
        }
        _ => None,
    }
}
