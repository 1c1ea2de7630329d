//! TLS failures in words an operator can act on.
//!
//! A refused client certificate shows up on the client side as a TLS alert (TLS 1.2: during the
//! handshake; TLS 1.3: on the first read after it, since the client has already sent Finished).
//! These functions find the rustls error inside whatever error chain carries it and say what it
//! means for the hop it happened on.

use std::error::Error as StdError;

use rustls::{AlertDescription, CertificateError};

use crate::profile::Finding;

/// The rustls error somewhere in `err`'s source chain (including inside `std::io::Error`s, which
/// is how tokio-rustls and hyper carry it).
pub fn find_tls_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&'a (dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return Some(tls);
            }
            current = inner.source();
            continue;
        }
        current = e.source();
    }
    None
}

/// What an alert from a server that refused our client certificate means, e.g. "unknown CA".
/// `None` for alerts that are not about the client certificate.
pub fn client_cert_alert(alert: AlertDescription) -> Option<&'static str> {
    Some(match alert {
        AlertDescription::UnknownCA => {
            "unknown CA: its trust does not include the CA that issued our certificate"
        }
        AlertDescription::UnsupportedCertificate => {
            "unsupported certificate purpose: our certificate's chain lacks clientAuth (public CAs stopped issuing it in 2026)"
        }
        AlertDescription::CertificateExpired => "certificate expired or not yet valid",
        AlertDescription::CertificateRevoked => "certificate revoked",
        AlertDescription::AccessDenied => "our identity is not on its allow-list",
        AlertDescription::BadCertificate => {
            "bad certificate: malformed, or a certificate of our chain breaks the RFC 5280 profile it checks (a farmgate gate logs which rule)"
        }
        AlertDescription::CertificateUnknown => "certificate unacceptable",
        AlertDescription::CertificateRequired => {
            "it requires a client certificate and we sent none"
        }
        AlertDescription::DecryptError => "a signature in our chain did not verify",
        _ => return None,
    })
}

/// A failure on a connection from us (the edge) to a backend, in words: "backend refused our
/// client certificate: unknown CA", "backend's certificate is not valid for name ...".
pub fn upstream_failure(err: &rustls::Error, server_name: &str) -> String {
    match err {
        rustls::Error::AlertReceived(alert) => match client_cert_alert(*alert) {
            Some(why) => format!("backend refused our client certificate: {why}"),
            None if *alert == AlertDescription::HandshakeFailure => "backend aborted the handshake (no common TLS version or cipher suite, or it refused our client certificate)".to_owned(),
            None => format!("backend sent TLS alert {alert:?}"),
        },
        rustls::Error::InvalidCertificate(cert) => format!("backend's certificate refused: {}", server_cert_problem(cert, server_name)),
        rustls::Error::InvalidMessage(_) => "backend does not speak TLS (plain HTTP on a TLS upstream?)".to_owned(),
        rustls::Error::NoApplicationProtocol => "backend and we share no application protocol (ALPN)".to_owned(),
        rustls::Error::PeerIncompatible(why) => format!("backend and we share no TLS version or cipher suite ({why:?})"),
        other => format!("TLS error with backend: {other}"),
    }
}

/// Why a server ended our handshake with `alert`, as a sentence: "the server requires a client
/// certificate and we sent none", "the server rejected the certificate's purpose: it lacks
/// clientAuth (...)". For tools that speak for the client (`farmgate probe`).
pub fn refused_by_server(alert: AlertDescription) -> String {
    match alert {
        AlertDescription::CertificateRequired => {
            "the server requires a client certificate and we sent none".to_owned()
        }
        AlertDescription::UnsupportedCertificate => format!(
            "the server rejected the certificate's purpose: it lacks clientAuth ({LACKS_CLIENT_AUTH})"
        ),
        AlertDescription::HandshakeFailure => "the server aborted the handshake (handshake_failure): no common TLS version or cipher suite, or, from TLS 1.2 servers such as nginx, a required client certificate is missing or refused".to_owned(),
        other => match client_cert_alert(other) {
            Some(why) => format!("the server refused our client certificate: {why}"),
            None => format!("the server ended the handshake with the TLS alert {other:?}"),
        },
    }
}

/// A TLS failure that is neither an alert nor a refused server certificate, in words.
pub fn tls_failure(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "the server does not speak TLS here (plain HTTP on this port?)".to_owned()
        }
        rustls::Error::PeerIncompatible(why) => {
            format!("the server and we share no TLS version or cipher suite ({why:?})")
        }
        rustls::Error::NoApplicationProtocol => {
            "the server and we share no application protocol (ALPN)".to_owned()
        }
        other => format!("TLS error: {other}"),
    }
}

/// Why a chain without clientAuth is refused, and where to read on.
const LACKS_CLIENT_AUTH: &str = "public CAs stopped issuing it in 2026; see docs/migration.md";

/// What is wrong with a server's certificate, for a client that checked it against `server_name`.
pub fn server_cert_problem(err: &CertificateError, server_name: &str) -> String {
    match err {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("it is not valid for the name {server_name:?} (check server_name)")
        }
        CertificateError::UnknownIssuer => "it does not chain to a CA in trust".to_owned(),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "it has expired".to_owned()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "it is not valid yet".to_owned()
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "its chain does not permit serverAuth".to_owned()
        }
        CertificateError::Revoked => "it is revoked".to_owned(),
        CertificateError::BadSignature => "a signature in its chain does not verify: a CA in it has the name of a CA in trust but another key".to_owned(),
        CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "its chain is signed with an algorithm we do not accept".to_owned()
        }
        CertificateError::Other(other) => match other.0.downcast_ref::<Finding>() {
            Some(finding) => format!("its chain breaks the certificate profile: {finding}"),
            None => format!("{other}"),
        },
        other => format!("{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_rustls_error_inside_io_error() {
        let tls = rustls::Error::AlertReceived(AlertDescription::UnknownCA);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let found = find_tls_error(&io);
        assert_eq!(
            found,
            Some(&rustls::Error::AlertReceived(AlertDescription::UnknownCA))
        );
        let text = found.map(|e| upstream_failure(e, "backend.farm.test"));
        assert!(
            text.is_some_and(
                |t| t.starts_with("backend refused our client certificate: unknown CA")
            )
        );
    }

    #[test]
    fn server_refusals_are_explained_for_the_client() {
        assert_eq!(
            refused_by_server(AlertDescription::CertificateRequired),
            "the server requires a client certificate and we sent none"
        );
        assert!(
            refused_by_server(AlertDescription::UnsupportedCertificate)
                .starts_with("the server rejected the certificate's purpose: it lacks clientAuth")
        );
        assert_eq!(
            refused_by_server(AlertDescription::CertificateRevoked),
            "the server refused our client certificate: certificate revoked"
        );
    }

    #[test]
    fn wrong_name_is_explained_with_the_name() {
        let text = upstream_failure(
            &rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
            "backend.farm.test",
        );
        assert!(
            text.contains("not valid for the name \"backend.farm.test\""),
            "{text}"
        );
    }
}
