//! `[acme]` and `listener.tls.acme`: certificates ordered from an ACME server.

use super::Builder;
use crate::raw::{RawAcme, RawListenerAcme, S};
use crate::{
    Acme, AcmeCert, Challenge, ConfigError, DEFAULT_STORAGE, DirectoryUrl, FileRef, HostPattern,
    LETS_ENCRYPT, Listener, Location, Problem,
};

/// The most names a public CA puts on one certificate (Let's Encrypt's limit).
const MAX_ACME_DOMAINS: usize = 100;

impl Builder<'_> {
    /// `listener.tls.acme = { domains, profile, challenge }`.
    pub(super) fn listener_acme(&mut self, raw: &S<RawListenerAcme>) -> Option<AcmeCert> {
        const KEY: &str = "listener.tls.acme";
        let a = raw.get_ref();
        let before = self.errors.len();
        let list = a.domains.get_ref();
        if list.is_empty() {
            self.invalid(
                a.domains.span(),
                &format!("{KEY}.domains"),
                "domains is empty; list the names the certificate carries, e.g. domains = [\"www.example.com\"]".into(),
            );
        }
        if list.len() > MAX_ACME_DOMAINS {
            self.invalid(
                a.domains.span(),
                &format!("{KEY}.domains"),
                format!("{} names are more than the {MAX_ACME_DOMAINS} a public CA puts on one certificate; split them over listeners", list.len()),
            );
        }
        let mut domains: Vec<String> = Vec::new();
        for d in list {
            let text = d.get_ref();
            let name = text.trim_end_matches('.').to_ascii_lowercase();
            let problem = if name.parse::<std::net::IpAddr>().is_ok() {
                Some(format!(
                    "{text:?} is an IP address; farmgate orders certificates for DNS names only"
                ))
            } else {
                match HostPattern::parse(&name) {
                    Some(HostPattern::Exact(_)) if domains.contains(&name) => {
                        Some(format!("{text:?} appears twice"))
                    }
                    Some(HostPattern::Exact(_)) => None,
                    Some(HostPattern::Wildcard(_)) => Some(format!(
                        "{text:?}: wildcard names need the dns-01 challenge, which farmgate does not answer; list each name instead"
                    )),
                    None => Some(format!("{text:?} is not a DNS name")),
                }
            };
            match problem {
                Some(message) => self.invalid(d.span(), &format!("{KEY}.domains"), message),
                None => domains.push(name),
            }
        }
        let profile = match &a.profile {
            Some(p)
                if p.get_ref().is_empty() || !p.get_ref().bytes().all(|b| b.is_ascii_graphic()) =>
            {
                self.invalid(p.span(), &format!("{KEY}.profile"), format!("{:?} is not a profile name; write the name the CA lists, e.g. \"tlsserver\", or remove the key for the CA's default", p.get_ref()));
                None
            }
            Some(p) => Some(p.get_ref().clone()),
            None => None,
        };
        let challenge = match a.challenge.as_ref().map(|c| (c, c.get_ref().as_str())) {
            None | Some((_, "tls-alpn-01")) => Challenge::TlsAlpn01,
            Some((_, "http-01")) => Challenge::Http01,
            Some((c, "dns-01")) => {
                self.invalid(c.span(), &format!("{KEY}.challenge"), "dns-01 is not supported: farmgate answers \"tls-alpn-01\" (on this listener) or \"http-01\" (on a plain-HTTP listener)".into());
                Challenge::TlsAlpn01
            }
            Some((c, other)) => {
                self.invalid(c.span(), &format!("{KEY}.challenge"), format!("unknown challenge {other:?}; expected \"tls-alpn-01\" (default) or \"http-01\""));
                Challenge::TlsAlpn01
            }
        };
        (self.errors.len() == before).then(|| AcmeCert {
            domains,
            profile,
            challenge,
            at: self.at(raw.span(), KEY),
        })
    }

    /// The `[acme]` table, with its defaults when only listeners ask for ACME; and the rules
    /// that span listeners.
    pub(super) fn acme(
        &mut self,
        raw: Option<&S<RawAcme>>,
        listeners: &[Listener],
    ) -> Option<Acme> {
        let certs: Vec<&AcmeCert> = listeners
            .iter()
            .filter_map(|l| l.tls.as_ref()?.acme())
            .collect();
        self.acme_listeners(&certs, listeners);
        let at = match (raw, certs.first()) {
            (Some(r), _) => self.at(r.span(), "acme"),
            (None, Some(first)) => first.at.clone(),
            (None, None) => return None,
        };
        let table = raw.map(S::get_ref);
        let directory = match table.and_then(|t| t.directory.as_ref()) {
            Some(d) => match DirectoryUrl::parse(d.get_ref()) {
                Some(url) => Some(url),
                None => {
                    self.invalid(d.span(), "acme.directory", format!("{:?} is not an ACME directory URL; write the https:// URL of the CA's directory, e.g. \"{LETS_ENCRYPT}\"", d.get_ref()));
                    None
                }
            },
            None => DirectoryUrl::parse(LETS_ENCRYPT),
        };
        let contact = table
            .and_then(|t| t.contact.as_ref())
            .map_or_else(Vec::new, |list| {
                list.get_ref()
                    .iter()
                    .filter_map(|c| {
                        let text = c.get_ref();
                        let valid = text.strip_prefix("mailto:").is_some_and(|address| {
                            address.split_once('@').is_some_and(|(user, host)| {
                                !user.is_empty() && !host.is_empty()
                            }) && address.bytes().all(|b| b.is_ascii_graphic())
                        });
                        if !valid {
                            self.invalid(c.span(), "acme.contact", format!("{text:?} is not a contact URL; write e.g. \"mailto:ops@example.com\""));
                        }
                        valid.then(|| text.clone())
                    })
                    .collect()
            });
        let storage = match table.and_then(|t| t.storage.as_ref()) {
            Some(s) => self.file(s, "acme.storage"),
            None => FileRef {
                path: DEFAULT_STORAGE.into(),
                at: Location::new(self.src.path.clone(), at.line(), "acme.storage"),
            },
        };
        let trust = match table.and_then(|t| t.trust.as_ref()) {
            Some(list) if list.get_ref().is_empty() => {
                self.invalid(
                    list.span(),
                    "acme.trust",
                    "trust is empty; name the CA files of the ACME server's certificate, or remove the key".into(),
                );
                Vec::new()
            }
            Some(list) => self.trust(list, "acme.trust"),
            None => Vec::new(),
        };
        Some(Acme {
            directory: directory?,
            contact,
            storage,
            trust,
            at,
        })
    }

    /// http-01 needs a plain-HTTP listener to answer it; one certificate has one challenge.
    fn acme_listeners(&mut self, certs: &[&AcmeCert], listeners: &[Listener]) {
        let plain = listeners.iter().any(|l| l.tls.is_none());
        let mut problems = Vec::new();
        for (i, cert) in certs.iter().enumerate() {
            if cert.challenge == Challenge::Http01 && !plain {
                problems.push((cert.at.clone(), "challenge = \"http-01\" is answered by a plain-HTTP listener (port 80), and this configuration has none; add a [[listener]] without tls (e.g. listen = \"0.0.0.0:80\" with redirect_https = true), or use challenge = \"tls-alpn-01\"".to_owned()));
            }
            let same = certs[..i]
                .iter()
                .find(|other| other.domains == cert.domains && other.profile == cert.profile);
            if let Some(other) = same.filter(|other| other.challenge != cert.challenge) {
                problems.push((cert.at.clone(), format!("this certificate is also ordered at line {} with challenge = \"{}\"; one certificate is validated one way, so use the same challenge", other.at.line(), other.challenge)));
            }
        }
        for (at, message) in problems {
            self.errors.push(ConfigError {
                at,
                problem: Problem::Invalid(message),
            });
        }
    }
}
