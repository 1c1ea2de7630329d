//! `[[listener]]`: where traffic arrives, its TLS certificates and its routes.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::Builder;
use http::{HeaderName, HeaderValue};

use crate::raw::{
    RawHeaderRules, RawListener, RawListenerLimits, RawListenerTls, RawRate, RawRoute, S,
};
use crate::{
    Challenge, ConfigError, Duplicate, Empty, Form, HeaderRules, HostPattern, Listener,
    ListenerCerts, ListenerLimits, ListenerTimeouts, ListenerTls, MAX_REQUEST_HEADER,
    MIN_REQUEST_HEADER, Managed, OutOfRange, Problem, ProxyProtocol, RateLimit, Route, Rule,
    SniCert, UpstreamId,
};

impl Builder<'_> {
    pub(super) fn listener(
        &mut self,
        raw: &S<RawListener>,
        upstreams: &HashMap<String, UpstreamId>,
    ) -> Option<Listener> {
        let at = self.at(raw.span(), "listener");
        let l = raw.get_ref();
        let name = match &l.name {
            Some(n) if n.get_ref().trim().is_empty() => {
                self.problem(
                    n.span(),
                    "listener.name",
                    Problem::Empty(Empty::ListenerName),
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
                self.problem(
                    t.span(),
                    "listener.tls",
                    Problem::Rule(Rule::RedirectWithTls),
                );
            }
            if let Some(r) = l.route.first() {
                let problem = Problem::Rule(Rule::RedirectWithRoutes);
                self.problem(r.span(), "listener.route", problem);
            }
        } else if l.route.is_empty() {
            self.problem(raw.span(), "listener", Problem::Rule(Rule::NoRoutes));
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
                    request_body: one(&t.request_body, "request_body", d.request_body),
                    send: one(&t.send, "send", d.send),
                    idle: one(&t.idle, "idle", d.idle),
                }
            });
        let limits = l
            .limits
            .as_ref()
            .map_or_else(ListenerLimits::default, |raw| self.limits(raw.get_ref()));
        let proxy_protocol = l.proxy_protocol.as_ref().map(|p| ProxyProtocol {
            from: self.ranges(
                &p.get_ref().from,
                "listener.proxy_protocol.from",
                Empty::ProxyFrom,
            ),
        });
        let trusted_proxies = l.trusted_proxies.as_ref().map_or_else(Vec::new, |list| {
            self.ranges(list, "listener.trusted_proxies", Empty::TrustedProxies)
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
            limits,
            proxy_protocol,
            trusted_proxies,
            at,
        })
    }

    /// `[listener.limits]`, each key in range or reported.
    fn limits(&mut self, raw: &RawListenerLimits) -> ListenerLimits {
        let d = ListenerLimits::default();
        let key = |k: &str| format!("listener.limits.{k}");
        let max_connections = raw
            .max_connections
            .as_ref()
            .and_then(|n| self.count(n, &key("max_connections"), 10_000_000))
            .unwrap_or(d.max_connections);
        let max_connections_per_client = raw
            .max_connections_per_client
            .as_ref()
            .and_then(|n| self.count(n, &key("max_connections_per_client"), 10_000_000))
            .unwrap_or(d.max_connections_per_client);
        let requests_per_client = raw
            .requests_per_client
            .as_ref()
            .and_then(|r| self.rate(r, &key("requests_per_client")));
        let max_request_body = match &raw.max_request_body {
            Some(size) => self.size(size, &key("max_request_body")).filter(|&n| n > 0),
            None => d.max_request_body,
        };
        let max_request_header = match &raw.max_request_header {
            Some(size) => self
                .size(size, &key("max_request_header"))
                .and_then(|n| {
                    if (MIN_REQUEST_HEADER..=MAX_REQUEST_HEADER).contains(&n) {
                        return Some(n);
                    }
                    let problem = Problem::OutOfRange(OutOfRange::RequestHeader { found: n });
                    self.problem(size.span(), key("max_request_header"), problem);
                    None
                })
                .unwrap_or(d.max_request_header),
            None => d.max_request_header,
        };
        ListenerLimits {
            max_connections,
            max_connections_per_client,
            requests_per_client,
            max_request_body,
            max_request_header,
        }
    }

    /// `requests_per_client = { rate = N, per = "1s", burst = M }` (burst defaults to rate).
    fn rate(&mut self, raw: &S<RawRate>, key: &str) -> Option<RateLimit> {
        let r = raw.get_ref();
        let (Some(rate), Some(per)) = (&r.rate, &r.per) else {
            self.problem(raw.span(), key, Problem::Rule(Rule::RateIncomplete));
            return None;
        };
        let rate = self.count(rate, &format!("{key}.rate"), 1_000_000)?;
        let per = self.duration(per, &format!("{key}.per"))?;
        let burst = match &r.burst {
            Some(b) => self.count(b, &format!("{key}.burst"), 1_000_000)?,
            None => rate,
        };
        Some(RateLimit { rate, per, burst })
    }

    pub(super) fn unique_listeners(&mut self, listeners: &[Listener]) {
        let mut names = HashSet::new();
        let mut addrs: Vec<(SocketAddr, &str)> = Vec::new();
        for l in listeners {
            if !names.insert(l.name.as_str()) {
                self.errors.push(ConfigError {
                    at: l.at.clone(),
                    problem: Problem::Duplicate(Duplicate::ListenerName(l.name.clone())),
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
                let duplicate = Duplicate::Listen {
                    name: l.name.clone(),
                    listen: l.listen,
                    other: (*other).to_owned(),
                    other_listen: *addr,
                };
                self.errors.push(ConfigError {
                    at: l.at.clone(),
                    problem: Problem::Duplicate(duplicate),
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
                let problem = Problem::Rule(Rule::FilesAndAcme);
                self.problem(acme.span(), "listener.tls.acme", problem);
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
            let problem = Problem::Rule(Rule::AlpnOnGate);
            self.problem(acme.span(), "listener.tls.acme", problem);
            return None;
        }
        let ticket_keys = t
            .ticket_keys
            .as_ref()
            .map(|f| self.file(f, "listener.tls.ticket_keys"));
        if let Some(keys) = &t.ticket_keys
            && client_auth.is_some()
        {
            let problem = Problem::Rule(Rule::TicketKeysOnGate);
            self.problem(keys.span(), "listener.tls.ticket_keys", problem);
            return None;
        }
        Some(ListenerTls {
            certs: certs?,
            client_auth,
            ticket_keys,
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
                    self.malformed(
                        &e.server_name,
                        "listener.tls.sni.server_name",
                        Form::SniName,
                    );
                    return None;
                }
                if !seen.insert(name.clone()) {
                    let problem = Problem::Duplicate(Duplicate::SniServerName(name));
                    self.problem(
                        e.server_name.span(),
                        "listener.tls.sni.server_name",
                        problem,
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
                    self.malformed(h, "listener.route.host", Form::HostPattern);
                }
                Some(pattern?)
            }
            None => None,
        };
        let path_prefix = match &r.path_prefix {
            Some(p) if !p.get_ref().starts_with('/') => {
                let found = p.get_ref().clone();
                let problem = Problem::RelativePath { found };
                self.problem(p.span(), "listener.route.path_prefix", problem);
                return None;
            }
            Some(p) => p.get_ref().clone(),
            None => "/".to_owned(),
        };
        let Some(&upstream) = upstreams.get(r.upstream.get_ref()) else {
            let mut defined: Vec<String> = upstreams.keys().cloned().collect();
            defined.sort_unstable();
            let name = r.upstream.get_ref().clone();
            let problem = Problem::UnknownUpstream { name, defined };
            self.problem(r.upstream.span(), "listener.route.upstream", problem);
            return None;
        };
        let request_headers = self.header_rules(r.request_headers.as_ref(), "request_headers");
        let response_headers = self.header_rules(r.response_headers.as_ref(), "response_headers");
        Some(Route {
            host,
            path_prefix,
            upstream,
            request_headers: request_headers?,
            response_headers: response_headers?,
            at: self.at(raw.span(), "listener.route"),
        })
    }

    /// `request_headers` or `response_headers` (`which`): names and values parsed, headers
    /// farmgate manages refused, each header named once.
    fn header_rules(
        &mut self,
        raw: Option<&S<RawHeaderRules>>,
        which: &str,
    ) -> Option<HeaderRules> {
        let Some(raw) = raw else {
            return Some(HeaderRules::default());
        };
        let before = self.errors.len();
        let mut rules = HeaderRules::default();
        let mut seen = HashSet::new();
        let mut name = |b: &mut Self, text: &S<String>, key: &str| -> Option<HeaderName> {
            let Ok(name) = HeaderName::from_bytes(text.get_ref().as_bytes()) else {
                b.malformed(text, key, Form::HeaderName);
                return None;
            };
            if let Some(why) = Managed::of(name.as_str()) {
                let found = text.get_ref().clone();
                let problem = Problem::Rule(Rule::ManagedHeader { name: found, why });
                b.problem(text.span(), key, problem);
                return None;
            }
            if !seen.insert(name.clone()) {
                let problem = Problem::Duplicate(Duplicate::Header(text.get_ref().clone()));
                b.problem(text.span(), key, problem);
                return None;
            }
            Some(name)
        };
        let rules_ref = raw.get_ref();
        if let Some(set) = &rules_ref.set {
            let key = format!("listener.route.{which}.set");
            for (text, value) in set.get_ref() {
                let header = name(self, text, &key);
                let parsed = HeaderValue::from_str(value.get_ref()).ok();
                if parsed.is_none() {
                    self.malformed(value, &key, Form::HeaderValue);
                }
                if let (Some(header), Some(value)) = (header, parsed) {
                    rules.set.push((header, value));
                }
            }
        }
        if let Some(remove) = &rules_ref.remove {
            let key = format!("listener.route.{which}.remove");
            for text in remove.get_ref() {
                if let Some(header) = name(self, text, &key) {
                    rules.remove.push(header);
                }
            }
        }
        (self.errors.len() == before).then_some(rules)
    }
}
