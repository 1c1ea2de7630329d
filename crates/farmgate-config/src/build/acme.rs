//! `[acme]` and `listener.tls.acme`: certificates ordered from an ACME server.

use super::Builder;
use crate::raw::{RawAcme, RawEab, RawListenerAcme, S};
use crate::{
    Acme, AcmeCert, Challenge, ConfigError, DEFAULT_STORAGE, DirectoryUrl, Duplicate, Eab, Empty,
    FileRef, Form, HostPattern, Incomplete, LETS_ENCRYPT, Listener, Location, MAX_ACME_DOMAINS,
    OutOfRange, Problem, Rule,
};

impl Builder<'_> {
    /// `listener.tls.acme = { domains, profile, challenge }`.
    pub(super) fn listener_acme(&mut self, raw: &S<RawListenerAcme>) -> Option<AcmeCert> {
        const KEY: &str = "listener.tls.acme";
        let a = raw.get_ref();
        let before = self.errors.len();
        let list = a.domains.get_ref();
        if list.is_empty() {
            let problem = Problem::Empty(Empty::Domains);
            self.problem(a.domains.span(), format!("{KEY}.domains"), problem);
        }
        if list.len() > MAX_ACME_DOMAINS {
            let problem = Problem::OutOfRange(OutOfRange::Domains { count: list.len() });
            self.problem(a.domains.span(), format!("{KEY}.domains"), problem);
        }
        let mut domains: Vec<String> = Vec::new();
        for d in list {
            let text = d.get_ref();
            let name = text.trim_end_matches('.').to_ascii_lowercase();
            let found = text.clone();
            let problem = if name.parse::<std::net::IpAddr>().is_ok() {
                Some(Problem::Rule(Rule::IpDomain(found)))
            } else {
                match HostPattern::parse(&name) {
                    Some(HostPattern::Exact(_)) if domains.contains(&name) => {
                        Some(Problem::Duplicate(Duplicate::Domain(found)))
                    }
                    Some(HostPattern::Exact(_)) => None,
                    Some(HostPattern::Wildcard(_)) => {
                        Some(Problem::Rule(Rule::WildcardDomain(found)))
                    }
                    None => Some(Problem::Malformed {
                        found,
                        expected: Form::DnsName,
                    }),
                }
            };
            match problem {
                Some(problem) => self.problem(d.span(), format!("{KEY}.domains"), problem),
                None => domains.push(name),
            }
        }
        let profile = match &a.profile {
            Some(p)
                if p.get_ref().is_empty() || !p.get_ref().bytes().all(|b| b.is_ascii_graphic()) =>
            {
                self.malformed(p, &format!("{KEY}.profile"), Form::Profile);
                None
            }
            Some(p) => Some(p.get_ref().clone()),
            None => None,
        };
        let challenge = match &a.challenge {
            None => Some(Challenge::TlsAlpn01),
            Some(c) if c.get_ref() == "dns-01" => {
                let problem = Problem::Rule(Rule::Dns01);
                self.problem(c.span(), format!("{KEY}.challenge"), problem);
                None
            }
            Some(c) => self.word(c, &format!("{KEY}.challenge")),
        };
        // An unknown challenge was reported above.
        let challenge = challenge?;
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
                    self.malformed(d, "acme.directory", Form::DirectoryUrl);
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
                            address
                                .split_once('@')
                                .is_some_and(|(user, host)| !user.is_empty() && !host.is_empty())
                                && address.bytes().all(|b| b.is_ascii_graphic())
                        });
                        if !valid {
                            self.malformed(c, "acme.contact", Form::ContactUrl);
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
                self.problem(list.span(), "acme.trust", Problem::Empty(Empty::AcmeTrust));
                Vec::new()
            }
            Some(list) => self.trust(list, "acme.trust"),
            None => Vec::new(),
        };
        let eab = match table.and_then(|t| t.eab.as_ref()) {
            Some(raw) => Some(self.eab(raw)?),
            None => None,
        };
        Some(Acme {
            directory: directory?,
            contact,
            storage,
            trust,
            eab,
            at,
        })
    }

    /// `acme.eab = { kid, hmac_key_file }`: both keys required.
    fn eab(&mut self, raw: &S<RawEab>) -> Option<Eab> {
        let e = raw.get_ref();
        let kid = match &e.kid {
            Some(kid)
                if kid.get_ref().is_empty()
                    || !kid.get_ref().bytes().all(|b| b.is_ascii_graphic()) =>
            {
                self.malformed(kid, "acme.eab.kid", Form::EabKid);
                None
            }
            Some(kid) => Some(kid.get_ref().clone()),
            None => {
                self.problem(
                    raw.span(),
                    "acme.eab",
                    Problem::Incomplete(Incomplete::Eab { missing: "kid" }),
                );
                None
            }
        };
        let file = match &e.hmac_key_file {
            Some(file) => Some(self.file(file, "acme.eab.hmac_key_file")),
            None => {
                let problem = Problem::Incomplete(Incomplete::Eab {
                    missing: "hmac_key_file",
                });
                self.problem(raw.span(), "acme.eab", problem);
                None
            }
        };
        Some(Eab {
            kid: kid?,
            hmac_key_file: file?,
        })
    }

    /// http-01 needs a plain-HTTP listener to answer it; one certificate has one challenge.
    fn acme_listeners(&mut self, certs: &[&AcmeCert], listeners: &[Listener]) {
        let plain = listeners.iter().any(|l| l.tls.is_none());
        let mut problems = Vec::new();
        for (i, cert) in certs.iter().enumerate() {
            if cert.challenge == Challenge::Http01 && !plain {
                problems.push((cert.at.clone(), Rule::Http01WithoutPlainListener));
            }
            let same = certs[..i]
                .iter()
                .find(|other| other.domains == cert.domains && other.profile == cert.profile);
            if let Some(other) = same.filter(|other| other.challenge != cert.challenge) {
                let mismatch = Rule::ChallengeMismatch {
                    line: other.at.line(),
                    challenge: other.challenge,
                };
                problems.push((cert.at.clone(), mismatch));
            }
        }
        for (at, rule) in problems {
            self.errors.push(ConfigError {
                at,
                problem: Problem::Rule(rule),
            });
        }
    }
}
