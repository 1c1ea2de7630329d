//! From raw serde structs to the typed [`Config`], collecting every problem with its location.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use farmgate_identity::{AllowList, AllowRule, RuleKind};

use crate::location::Source;
use crate::raw::{
    RawAcme, RawClientAuth, RawConfig, RawHealth, RawListener, RawListenerAcme, RawListenerTls,
    RawRoute, RawServer, RawTimeouts, RawUpstream, RawUpstreamTls, S,
};
use crate::{
    Acme, AcmeCert, Address, Admin, Backend, Balance, CertKey, Challenge, ClientAuth, Config,
    ConfigError, ConfigErrors, DEFAULT_STORAGE, DirectoryUrl, EkuPolicy, FileRef, HashKey, Health,
    HostPattern, IpRange, LETS_ENCRYPT, Listener, ListenerCerts, ListenerTimeouts, ListenerTls,
    Location, Log, LogFormat, MAX_WORKERS, Problem, Route, Server, SniCert, Timeouts, Trust,
    Upstream, UpstreamId, UpstreamTls, parse_duration,
};

/// The most names a public CA puts on one certificate (Let's Encrypt's limit).
const MAX_ACME_DOMAINS: usize = 100;

pub(crate) fn build(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let mut b = Builder {
        src: Source {
            path: Arc::from(path),
            text,
        },
        errors: Vec::new(),
    };
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let key = b.src.key_before(&span).unwrap_or_default();
            let message = e.message().trim_end().to_owned();
            b.problem(span, key, Problem::Syntax(message));
            return Err(ConfigErrors(b.errors));
        }
    };
    let config = b.config(raw);
    if b.errors.is_empty() {
        Ok(config)
    } else {
        b.errors.sort_by_key(|e| e.at.line());
        Err(ConfigErrors(b.errors))
    }
}

struct Builder<'a> {
    src: Source<'a>,
    errors: Vec<ConfigError>,
}

impl Builder<'_> {
    fn at(&self, span: Range<usize>, key: &str) -> Location {
        self.src.at(span, key)
    }

    fn problem(&mut self, span: Range<usize>, key: impl Into<String>, problem: Problem) {
        let at = self.src.at(span, key);
        self.errors.push(ConfigError { at, problem });
    }

    fn invalid(&mut self, span: Range<usize>, key: &str, message: String) {
        self.problem(span, key, Problem::Invalid(message));
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let upstream_ids: HashMap<String, UpstreamId> = raw
            .upstream
            .keys()
            .enumerate()
            .map(|(i, name)| (name.get_ref().clone(), UpstreamId(i)))
            .collect();
        let upstreams = raw
            .upstream
            .iter()
            .map(|(name, up)| self.upstream(name, up))
            .collect();
        if raw.listener.is_empty() {
            self.invalid(
                0..0,
                "listener",
                "no [[listener]] is defined; farmgate needs at least one place to listen".into(),
            );
        }
        let listeners: Vec<Listener> = raw
            .listener
            .iter()
            .filter_map(|l| self.listener(l, &upstream_ids))
            .collect();
        self.unique_listeners(&listeners);

        let admin = raw.admin.as_ref().and_then(|a| {
            let listen = self.socket_addr(&a.get_ref().listen, "admin.listen")?;
            Some(Admin {
                listen,
                at: self.at(a.span(), "admin"),
            })
        });
        let log = raw.log.as_ref().map_or_else(Log::default, |l| self.log(l));
        let server = raw
            .server
            .as_ref()
            .map_or_else(Server::default, |s| self.server(s.get_ref()));
        let acme = self.acme(raw.acme.as_ref(), &listeners);
        Config {
            file: self.src.path.clone(),
            admin,
            log,
            server,
            acme,
            listeners,
            upstreams,
        }
    }

    fn log(&mut self, raw: &S<crate::raw::RawLog>) -> Log {
        let raw = raw.get_ref();
        let format = match raw.format.as_ref().map(|f| (f, f.get_ref().as_str())) {
            None | Some((_, "text")) => LogFormat::Text,
            Some((_, "json")) => LogFormat::Json,
            Some((f, other)) => {
                self.invalid(
                    f.span(),
                    "log.format",
                    format!("unknown log format {other:?}; expected \"text\" or \"json\""),
                );
                LogFormat::Text
            }
        };
        Log {
            format,
            access: raw.access.as_ref().is_some_and(|a| *a.get_ref()),
        }
    }

    fn listener(
        &mut self,
        raw: &S<RawListener>,
        upstreams: &HashMap<String, UpstreamId>,
    ) -> Option<Listener> {
        let at = self.at(raw.span(), "listener");
        let l = raw.get_ref();
        let name = match &l.name {
            Some(n) if n.get_ref().trim().is_empty() => {
                self.invalid(
                    n.span(),
                    "listener.name",
                    "a listener name must not be empty".into(),
                );
                None
            }
            Some(n) => Some(n.get_ref().clone()),
            None => {
                self.problem(raw.span(), "listener", Problem::Missing("name"));
                None
            }
        };
        let listen = match &l.listen {
            Some(addr) => self.socket_addr(addr, "listener.listen"),
            None => {
                self.problem(raw.span(), "listener", Problem::Missing("listen"));
                None
            }
        };
        let tls = l.tls.as_ref().and_then(|t| self.listener_tls(t));
        let redirect_https = l.redirect_https.as_ref().is_some_and(|r| *r.get_ref());
        if redirect_https {
            if let Some(t) = &l.tls {
                self.invalid(
                    t.span(),
                    "listener.tls",
                    "a listener with redirect_https = true speaks plain HTTP; remove its tls table"
                        .into(),
                );
            }
            if let Some(r) = l.route.first() {
                self.invalid(r.span(), "listener.route", "a listener with redirect_https = true redirects every request; remove its routes".into());
            }
        } else if l.route.is_empty() {
            self.invalid(
                raw.span(),
                "listener",
                "a listener needs at least one [[listener.route]] (or redirect_https = true)"
                    .into(),
            );
        }
        let timeouts = l
            .timeouts
            .as_ref()
            .map_or_else(ListenerTimeouts::default, |t| {
                let t = t.get_ref();
                let d = ListenerTimeouts::default();
                let mut one = |v: &Option<S<String>>, k: &str, default: Duration| {
                    v.as_ref()
                        .and_then(|v| self.duration(v, &format!("listener.timeouts.{k}")))
                        .unwrap_or(default)
                };
                ListenerTimeouts {
                    handshake: one(&t.handshake, "handshake", d.handshake),
                    request_header: one(&t.request_header, "request_header", d.request_header),
                    idle: one(&t.idle, "idle", d.idle),
                }
            });
        let routes: Vec<Route> = l
            .route
            .iter()
            .filter_map(|r| self.route(r, upstreams))
            .collect();
        Some(Listener {
            name: name?,
            listen: listen?,
            tls: if l.tls.is_some() { Some(tls?) } else { None },
            redirect_https,
            routes,
            timeouts,
            at,
        })
    }

    fn unique_listeners(&mut self, listeners: &[Listener]) {
        let mut names = HashSet::new();
        let mut addrs: Vec<(SocketAddr, &str)> = Vec::new();
        for l in listeners {
            if !names.insert(l.name.as_str()) {
                self.errors.push(ConfigError {
                    at: l.at.clone(),
                    problem: Problem::Invalid(format!(
                        "duplicate listener name {:?}; names must be unique",
                        l.name
                    )),
                });
            }
            // Same port on the same address, or on a wildcard address that covers the other
            // one (0.0.0.0 and [::] take every address): the second bind would fail.
            let clash = addrs.iter().find(|(a, _)| {
                l.listen.port() != 0
                    && a.port() == l.listen.port()
                    && (a.ip() == l.listen.ip()
                        || a.ip().is_unspecified()
                        || l.listen.ip().is_unspecified())
            });
            if let Some((addr, other)) = clash {
                self.errors.push(ConfigError {
                    at: l.at.clone(),
                    problem: Problem::Invalid(format!(
                        "listener {:?} listens on {}, which listener {other:?} on {addr} takes already",
                        l.name, l.listen
                    )),
                });
            }
            addrs.push((l.listen, &l.name));
        }
    }

    fn listener_tls(&mut self, raw: &S<RawListenerTls>) -> Option<ListenerTls> {
        let t = raw.get_ref();
        let certs = match &t.acme {
            Some(acme)
                if t.certificate.is_some() || t.private_key.is_some() || !t.sni.is_empty() =>
            {
                self.invalid(acme.span(), "listener.tls.acme", "a listener's certificate comes from files (certificate, private_key, sni) or from ACME (acme), never both; remove one of them".into());
                None
            }
            Some(acme) => self.listener_acme(acme).map(ListenerCerts::Acme),
            None => self.cert_files(raw),
        };
        let client_auth = match &t.client_auth {
            Some(ca) => Some(self.client_auth(ca)?),
            None => None,
        };
        let alpn = |c: &ListenerCerts| matches!(c, ListenerCerts::Acme(a) if a.challenge == Challenge::TlsAlpn01);
        if let Some(acme) = &t.acme
            && client_auth.is_some()
            && certs.as_ref().is_some_and(alpn)
        {
            self.invalid(acme.span(), "listener.tls.acme", "tls-alpn-01 cannot be answered by a listener with client_auth: the CA's validation presents no client certificate; use challenge = \"http-01\"".into());
            return None;
        }
        Some(ListenerTls {
            certs: certs?,
            client_auth,
            at: self.at(raw.span(), "listener.tls"),
        })
    }

    /// `certificate`, `private_key` and `[[listener.tls.sni]]`.
    fn cert_files(&mut self, raw: &S<RawListenerTls>) -> Option<ListenerCerts> {
        let t = raw.get_ref();
        let default = self.cert_key(
            raw.span(),
            t.certificate.as_ref(),
            t.private_key.as_ref(),
            ("listener.tls", "certificate", "private_key"),
        );
        let mut seen = HashSet::new();
        let sni: Vec<SniCert> = t
            .sni
            .iter()
            .filter_map(|s| {
                let e = s.get_ref();
                let name = e
                    .server_name
                    .get_ref()
                    .trim_end_matches('.')
                    .to_ascii_lowercase();
                if HostPattern::parse(&name).is_none() {
                    self.invalid(
                        e.server_name.span(),
                        "listener.tls.sni.server_name",
                        format!(
                            "{:?} is not a DNS name (or *.name)",
                            e.server_name.get_ref()
                        ),
                    );
                    return None;
                }
                if !seen.insert(name.clone()) {
                    self.invalid(
                        e.server_name.span(),
                        "listener.tls.sni.server_name",
                        format!("server name {name:?} appears twice"),
                    );
                    return None;
                }
                let cert = self.cert_key(
                    s.span(),
                    Some(&e.certificate),
                    Some(&e.private_key),
                    ("listener.tls.sni", "certificate", "private_key"),
                )?;
                Some(SniCert {
                    server_name: name,
                    cert,
                    at: self.at(s.span(), "listener.tls.sni"),
                })
            })
            .collect();
        Some(ListenerCerts::Files {
            default: default?,
            sni,
        })
    }

    /// `listener.tls.acme = { domains, profile, challenge }`.
    fn listener_acme(&mut self, raw: &S<RawListenerAcme>) -> Option<AcmeCert> {
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
    fn acme(&mut self, raw: Option<&S<RawAcme>>, listeners: &[Listener]) -> Option<Acme> {
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

    fn cert_key(
        &mut self,
        table: Range<usize>,
        cert: Option<&S<String>>,
        key: Option<&S<String>>,
        (prefix, cert_key, key_key): (&str, &str, &str),
    ) -> Option<CertKey> {
        match (cert, key) {
            (Some(c), Some(k)) => Some(CertKey {
                certificate: self.file(c, &format!("{prefix}.{cert_key}")),
                private_key: self.file(k, &format!("{prefix}.{key_key}")),
            }),
            (Some(_), None) | (None, Some(_)) | (None, None) => {
                let missing = if cert.is_none() { cert_key } else { key_key };
                self.invalid(table, prefix, format!("missing required key `{missing}`: a certificate needs both `{cert_key}` and `{key_key}`"));
                None
            }
        }
    }

    fn client_auth(&mut self, raw: &S<RawClientAuth>) -> Option<ClientAuth> {
        const KEY: &str = "listener.tls.client_auth";
        let c = raw.get_ref();
        let trust = match &c.trust {
            Some(t) if !t.get_ref().is_empty() => self.trust(t, &format!("{KEY}.trust")),
            Some(t) => {
                self.invalid(
                    t.span(),
                    &format!("{KEY}.trust"),
                    "trust must name at least one CA file, \"mozilla\" or \"system\"".into(),
                );
                Vec::new()
            }
            None => {
                self.invalid(raw.span(), KEY, "missing required key `trust`: a gate must say which CAs issue its clients' certificates".into());
                Vec::new()
            }
        };
        let eku = match c.eku.as_ref().map(|e| (e, e.get_ref().as_str())) {
            None | Some((_, "client_auth")) => EkuPolicy::ClientAuth,
            Some((_, "client_or_server_auth")) => EkuPolicy::ClientOrServerAuth,
            Some((e, other)) => {
                self.invalid(e.span(), &format!("{KEY}.eku"), format!("unknown eku {other:?}; expected \"client_auth\" (default) or \"client_or_server_auth\" (WebPKI compatibility mode)"));
                EkuPolicy::ClientAuth
            }
        };
        let allow = self.allow(c, raw.span(), eku);
        let crl = c.crl.as_ref().map_or_else(Vec::new, |list| {
            if list.get_ref().is_empty() {
                self.invalid(
                    list.span(),
                    &format!("{KEY}.crl"),
                    "crl is empty; list the CRL files (PEM or DER) of the CAs in trust, or remove the key".into(),
                );
            }
            list.get_ref()
                .iter()
                .map(|p| self.file(p, &format!("{KEY}.crl")))
                .collect()
        });
        let sources = self.sources(c.sources.as_ref());
        Some(ClientAuth {
            trust,
            allow: allow?,
            eku,
            crl,
            sources,
            at: self.at(raw.span(), KEY),
        })
    }

    fn allow(
        &mut self,
        c: &RawClientAuth,
        table: Range<usize>,
        eku: EkuPolicy,
    ) -> Option<AllowList> {
        const KEY: &str = "listener.tls.client_auth.allow";
        let Some(list) = &c.allow else {
            self.invalid(table, "listener.tls.client_auth", "missing required key `allow`: list the identities allowed in, e.g. allow = [\"dns:edge.example.com\"]".into());
            return None;
        };
        if list.get_ref().is_empty() {
            self.invalid(
                list.span(),
                KEY,
                "allow is empty, so no client could ever get in; list the identities allowed in"
                    .into(),
            );
            return None;
        }
        let before = self.errors.len();
        let rules: Vec<AllowRule> = list
            .get_ref()
            .iter()
            .filter_map(|entry| match entry.get_ref().parse::<AllowRule>() {
                Ok(rule) => Some(rule),
                Err(source) => {
                    let text = entry.get_ref().clone();
                    self.problem(entry.span(), KEY, Problem::Identity { text, source });
                    None
                }
            })
            .collect();
        if self.errors.len() > before {
            return None;
        }
        if eku == EkuPolicy::ClientOrServerAuth {
            let exact = |r: &AllowRule| match r {
                AllowRule::Dns(name) => !name.starts_with("*."),
                AllowRule::SpkiSha256(_) => true,
                _ => false,
            };
            if !rules.iter().any(exact) {
                self.invalid(list.span(), KEY, "eku = \"client_or_server_auth\" accepts public server certificates, so it needs at least one exact dns: or spki-sha256: entry; cn: and uri: entries cannot identify such a certificate".into());
            }
            for (rule, entry) in rules.iter().zip(list.get_ref()) {
                if rule.kind() == RuleKind::Dns && !exact(rule) {
                    self.invalid(entry.span(), KEY, format!("{:?}: eku = \"client_or_server_auth\" only accepts exact names, not wildcards", entry.get_ref()));
                }
            }
        }
        Some(AllowList::new(rules))
    }

    fn sources(&mut self, list: Option<&S<Vec<S<String>>>>) -> Vec<IpRange> {
        let Some(list) = list else { return Vec::new() };
        if list.get_ref().is_empty() {
            self.invalid(
                list.span(),
                "listener.tls.client_auth.sources",
                "sources is empty, which would refuse nobody; list the ranges to admit, or remove the key to admit every address".into(),
            );
        }
        list.get_ref()
            .iter()
            .filter_map(|r| {
                let range = IpRange::parse(r.get_ref().trim());
                if range.is_none() {
                    self.invalid(
                        r.span(),
                        "listener.tls.client_auth.sources",
                        format!("{:?} is not an address range; write e.g. \"10.0.0.0/24\" or \"192.0.2.7\"", r.get_ref()),
                    );
                }
                range
            })
            .collect()
    }

    fn route(
        &mut self,
        raw: &S<RawRoute>,
        upstreams: &HashMap<String, UpstreamId>,
    ) -> Option<Route> {
        let r = raw.get_ref();
        let host = match &r.host {
            Some(h) => {
                let pattern = HostPattern::parse(h.get_ref());
                if pattern.is_none() {
                    self.invalid(h.span(), "listener.route.host", format!("{:?} is not a host name; write e.g. \"www.example.com\" or \"*.example.com\"", h.get_ref()));
                }
                Some(pattern?)
            }
            None => None,
        };
        let path_prefix = match &r.path_prefix {
            Some(p) if !p.get_ref().starts_with('/') => {
                self.invalid(
                    p.span(),
                    "listener.route.path_prefix",
                    format!("{:?} must start with \"/\"", p.get_ref()),
                );
                return None;
            }
            Some(p) => p.get_ref().clone(),
            None => "/".to_owned(),
        };
        let Some(&upstream) = upstreams.get(r.upstream.get_ref()) else {
            let mut known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
            known.sort_unstable();
            let known = if known.is_empty() {
                "none is defined".to_owned()
            } else {
                format!("defined: {}", known.join(", "))
            };
            self.invalid(
                r.upstream.span(),
                "listener.route.upstream",
                format!("no upstream named {:?} ({known})", r.upstream.get_ref()),
            );
            return None;
        };
        Some(Route {
            host,
            path_prefix,
            upstream,
            at: self.at(raw.span(), "listener.route"),
        })
    }

    fn upstream(&mut self, name: &S<String>, raw: &S<RawUpstream>) -> Upstream {
        let prefix = format!("upstream.{}", name.get_ref());
        let u = raw.get_ref();
        let servers = match &u.servers {
            Some(list) if !list.get_ref().is_empty() => {
                self.servers(list, &format!("{prefix}.servers"))
            }
            Some(list) => {
                self.invalid(
                    list.span(),
                    &format!("{prefix}.servers"),
                    "servers is empty; an upstream needs at least one server".into(),
                );
                Vec::new()
            }
            None => {
                self.problem(raw.span(), prefix.clone(), Problem::Missing("servers"));
                Vec::new()
            }
        };
        let balance = self.balance(u, &prefix);
        let health = u
            .health
            .as_ref()
            .and_then(|h| self.health(h, &format!("{prefix}.health")));
        let timeouts = u.timeouts.as_ref().map_or_else(Timeouts::default, |t| {
            self.timeouts(t.get_ref(), &format!("{prefix}.timeouts"))
        });
        let tls = u
            .tls
            .as_ref()
            .and_then(|t| self.upstream_tls(t, &format!("{prefix}.tls")));
        Upstream {
            name: name.get_ref().clone(),
            servers,
            balance,
            health,
            timeouts,
            tls,
            at: self.at(raw.span(), &prefix),
        }
    }

    fn servers(&mut self, list: &S<Vec<S<toml::Value>>>, key: &str) -> Vec<Backend> {
        let mut seen = HashSet::new();
        let mut servers = Vec::new();
        for entry in list.get_ref() {
            let (address, weight) = match entry.get_ref() {
                toml::Value::String(s) => (Some(s.as_str()), 1),
                toml::Value::Table(t) => {
                    if let Some(unknown) = t
                        .keys()
                        .find(|k| !matches!(k.as_str(), "address" | "weight"))
                    {
                        self.invalid(entry.span(), key, format!("unknown key `{unknown}` in a server; expected `address` and optional `weight`"));
                        continue;
                    }
                    let weight = match t.get("weight") {
                        None => 1,
                        Some(toml::Value::Integer(w)) if (1..=1000).contains(w) => *w as u32,
                        Some(other) => {
                            self.invalid(
                                entry.span(),
                                key,
                                format!(
                                    "weight must be a whole number from 1 to 1000, not {}",
                                    describe(other)
                                ),
                            );
                            continue;
                        }
                    };
                    (t.get("address").and_then(toml::Value::as_str), weight)
                }
                other => {
                    self.invalid(entry.span(), key, format!("a server is \"HOST:PORT\" or {{ address = \"HOST:PORT\", weight = N }}, not {}", describe(other)));
                    continue;
                }
            };
            let Some(text) = address else {
                self.invalid(
                    entry.span(),
                    key,
                    "missing required key `address` in a server".into(),
                );
                continue;
            };
            let Some(address) = Address::parse(text) else {
                self.invalid(
                    entry.span(),
                    key,
                    format!(
                        "{text:?} is not a server address; write IP:PORT, [IPv6]:PORT or HOST:PORT"
                    ),
                );
                continue;
            };
            if !seen.insert(address.clone()) {
                self.invalid(
                    entry.span(),
                    key,
                    format!(
                        "server {address} is listed twice; use weight to give it a larger share"
                    ),
                );
                continue;
            }
            servers.push(Backend { address, weight });
        }
        servers
    }

    fn balance(&mut self, u: &RawUpstream, prefix: &str) -> Balance {
        let kind = u.balance.as_ref().map(|b| (b.span(), b.get_ref().as_str()));
        let balance = match kind {
            None | Some((_, "round_robin")) => Balance::RoundRobin,
            Some((_, "least_requests")) => Balance::LeastRequests,
            Some((_, "p2c_ewma")) => Balance::P2cEwma,
            Some((ref span, "hash")) => match &u.hash_key {
                Some(k) => match parse_hash_key(k.get_ref()) {
                    Some(key) => Balance::Hash(key),
                    None => {
                        self.invalid(k.span(), &format!("{prefix}.hash_key"), format!("{:?} is not a hash key; expected \"header:NAME\", \"cookie:NAME\" or \"client_ip\"", k.get_ref()));
                        Balance::RoundRobin
                    }
                },
                None => {
                    self.invalid(span.clone(), &format!("{prefix}.balance"), "balance = \"hash\" needs hash_key = \"header:NAME\" | \"cookie:NAME\" | \"client_ip\"".into());
                    Balance::RoundRobin
                }
            },
            Some((ref span, other)) => {
                self.invalid(span.clone(), &format!("{prefix}.balance"), format!("unknown balance {other:?}; expected round_robin, least_requests, p2c_ewma or hash"));
                Balance::RoundRobin
            }
        };
        if let (Some(k), false) = (&u.hash_key, kind.is_some_and(|(_, b)| b == "hash")) {
            self.invalid(
                k.span(),
                &format!("{prefix}.hash_key"),
                "hash_key only applies with balance = \"hash\"".into(),
            );
        }
        balance
    }

    fn health(&mut self, raw: &S<RawHealth>, key: &str) -> Option<Health> {
        let h = raw.get_ref();
        let path = match &h.path {
            Some(p) if !p.get_ref().starts_with('/') => {
                self.invalid(
                    p.span(),
                    &format!("{key}.path"),
                    format!("{:?} must start with \"/\"", p.get_ref()),
                );
                return None;
            }
            Some(p) => p.get_ref().clone(),
            None => "/healthz".to_owned(),
        };
        let dur = |b: &mut Self, v: &Option<S<String>>, k: &str, default: u64| {
            v.as_ref().map_or(Some(Duration::from_secs(default)), |d| {
                b.duration(d, &format!("{key}.{k}"))
            })
        };
        let interval = dur(self, &h.interval, "interval", 5);
        let timeout = dur(self, &h.timeout, "timeout", 2);
        let count = |b: &mut Self, v: &Option<S<u32>>, k: &str, default: u32| match v {
            Some(n) if *n.get_ref() == 0 => {
                b.invalid(
                    n.span(),
                    &format!("{key}.{k}"),
                    format!("{k} must be at least 1"),
                );
                None
            }
            Some(n) => Some(*n.get_ref()),
            None => Some(default),
        };
        let rise = count(self, &h.rise, "rise", 2);
        let fall = count(self, &h.fall, "fall", 3);
        Some(Health {
            path,
            interval: interval?,
            timeout: timeout?,
            rise: rise?,
            fall: fall?,
        })
    }

    fn server(&mut self, s: &RawServer) -> Server {
        let workers = s.workers.as_ref().and_then(|n| {
            let value = *n.get_ref();
            if (1..=MAX_WORKERS).contains(&value) {
                Some(value)
            } else {
                self.invalid(
                    n.span(),
                    "server.workers",
                    format!("workers must be from 1 to {MAX_WORKERS}, not {value}; leave it out for one per CPU"),
                );
                None
            }
        });
        Server {
            shutdown_grace: s
                .shutdown_grace
                .as_ref()
                .and_then(|d| self.duration(d, "server.shutdown_grace"))
                .unwrap_or(Server::default().shutdown_grace),
            workers,
        }
    }

    fn timeouts(&mut self, t: &RawTimeouts, key: &str) -> Timeouts {
        let d = Timeouts::default();
        let mut one = |v: &Option<S<String>>, k: &str, default: Duration| {
            v.as_ref()
                .and_then(|v| self.duration(v, &format!("{key}.{k}")))
                .unwrap_or(default)
        };
        Timeouts {
            connect: one(&t.connect, "connect", d.connect),
            response_header: one(&t.response_header, "response_header", d.response_header),
            idle: one(&t.idle, "idle", d.idle),
        }
    }

    fn upstream_tls(&mut self, raw: &S<RawUpstreamTls>, key: &str) -> Option<UpstreamTls> {
        let t = raw.get_ref();
        let server_name = match &t.server_name {
            Some(n) => {
                let name = n.get_ref().trim_end_matches('.').to_ascii_lowercase();
                let valid = name.parse::<std::net::IpAddr>().is_ok()
                    || matches!(HostPattern::parse(&name), Some(HostPattern::Exact(_)));
                if !valid {
                    self.invalid(
                        n.span(),
                        &format!("{key}.server_name"),
                        format!("{:?} is not a DNS name or IP address", n.get_ref()),
                    );
                    return None;
                }
                Some(name)
            }
            None => None,
        };
        let trust = match &t.trust {
            Some(list) if list.get_ref().is_empty() => {
                self.invalid(
                    list.span(),
                    &format!("{key}.trust"),
                    "trust must name at least one CA file, \"mozilla\" or \"system\"".into(),
                );
                return None;
            }
            Some(list) => self.trust(list, &format!("{key}.trust")),
            None => vec![Trust::Mozilla],
        };
        let client_cert = match (&t.client_certificate, &t.client_key) {
            (None, None) => None,
            (c, k) => self.cert_key(
                raw.span(),
                c.as_ref(),
                k.as_ref(),
                (key, "client_certificate", "client_key"),
            ),
        };
        if t.client_certificate.is_some() && client_cert.is_none() {
            return None;
        }
        Some(UpstreamTls {
            server_name,
            trust,
            client_cert,
            at: self.at(raw.span(), key),
        })
    }

    fn trust(&mut self, list: &S<Vec<S<String>>>, key: &str) -> Vec<Trust> {
        list.get_ref()
            .iter()
            .map(|t| match t.get_ref().as_str() {
                "mozilla" => Trust::Mozilla,
                "system" => Trust::System,
                _ => Trust::File(self.file(t, key)),
            })
            .collect()
    }

    fn file(&mut self, value: &S<String>, key: &str) -> FileRef {
        if value.get_ref().trim().is_empty() {
            self.invalid(value.span(), key, "a file path must not be empty".into());
        }
        FileRef {
            path: self.src.resolve(value.get_ref()),
            at: self.at(value.span(), key),
        }
    }

    fn duration(&mut self, value: &S<String>, key: &str) -> Option<Duration> {
        match parse_duration(value.get_ref()) {
            Some(d) if d.is_zero() => {
                self.invalid(
                    value.span(),
                    key,
                    "a duration must be greater than zero".into(),
                );
                None
            }
            Some(d) => Some(d),
            None => {
                self.invalid(
                    value.span(),
                    key,
                    format!(
                        "{:?} is not a duration; write e.g. \"500ms\", \"30s\", \"5m\" or \"1h\"",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn socket_addr(&mut self, value: &S<String>, key: &str) -> Option<SocketAddr> {
        let parsed = value.get_ref().parse::<SocketAddr>().ok();
        if parsed.is_none() {
            self.invalid(value.span(), key, format!("{:?} is not an address to listen on; write IP:PORT, e.g. \"0.0.0.0:443\" or \"[::]:443\"", value.get_ref()));
        }
        parsed
    }
}

/// A TOML value as a message shows it: integers and strings as written, others by type.
fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::String(s) => format!("{s:?}"),
        other => format!("a {}", other.type_str()),
    }
}

fn parse_hash_key(text: &str) -> Option<HashKey> {
    let valid_token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    match text.split_once(':') {
        Some(("header", name)) if valid_token(name) => {
            Some(HashKey::Header(name.to_ascii_lowercase()))
        }
        Some(("cookie", name)) if valid_token(name) => Some(HashKey::Cookie(name.to_owned())),
        None if text == "client_ip" => Some(HashKey::ClientIp),
        _ => None,
    }
}
