//! `[upstream.NAME]`: pools of servers, their balancing, health checks, timeouts and TLS.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use farmgate_identity::DnsName;

use super::Builder;
use crate::raw::{RawDiscover, RawHealth, RawTimeouts, RawUpstream, RawUpstreamTls, S};
use crate::upstream::BalanceKind;
use crate::{
    Address, Backend, Balance, DEFAULT_MAX_TTL, DEFAULT_MIN_TTL, Discover, Duplicate, Empty, Form,
    HashKey, Health, HostPattern, Incomplete, Lookup, MAX_WEIGHT, OutOfRange, Problem, Protocol,
    Rule, Timeouts, Trust, Upstream, UpstreamTls,
};

/// The port a `resolver` written without one listens on.
const DNS_PORT: u16 = 53;

impl Builder<'_> {
    pub(super) fn upstream(&mut self, name: &S<String>, raw: &S<RawUpstream>) -> Upstream {
        let prefix = format!("upstream.{}", name.get_ref());
        let u = raw.get_ref();
        let servers = match &u.servers {
            Some(list) if !list.get_ref().is_empty() => {
                self.servers(list, &format!("{prefix}.servers"))
            }
            Some(list) => {
                let problem = Problem::Empty(Empty::Servers);
                self.problem(list.span(), format!("{prefix}.servers"), problem);
                Vec::new()
            }
            None => Vec::new(),
        };
        let discover = u
            .discover
            .as_ref()
            .and_then(|d| self.discover(d, &format!("{prefix}.discover")));
        match (&u.servers, &u.discover) {
            (Some(_), Some(d)) => {
                let problem = Problem::Rule(Rule::ServersAndDiscover);
                self.problem(d.span(), format!("{prefix}.discover"), problem);
            }
            (None, None) => {
                let problem = Problem::Incomplete(Incomplete::Servers);
                self.problem(raw.span(), prefix.clone(), problem);
            }
            (Some(_), None) | (None, Some(_)) => {}
        }
        let balance = self.balance(u, &prefix);
        let protocol = u
            .protocol
            .as_ref()
            .and_then(|p| self.word(p, &format!("{prefix}.protocol")))
            .unwrap_or_default();
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
        let max_connections_per_server = u.max_connections_per_server.as_ref().and_then(|n| {
            // 0 is written for "unlimited", as the default.
            if *n.get_ref() == 0 {
                return None;
            }
            self.count(
                n,
                &format!("{prefix}.max_connections_per_server"),
                1_000_000,
            )
        });
        let queue_timeout = u
            .queue_timeout
            .as_ref()
            .and_then(|d| self.duration(d, &format!("{prefix}.queue_timeout")))
            .unwrap_or(Duration::from_secs(5));
        let send_proxy = u.send_proxy.as_ref().and_then(|v| {
            let key = format!("{prefix}.send_proxy");
            let version = self.word(v, &key)?;
            if protocol == Protocol::H2 {
                self.problem(v.span(), key, Problem::Rule(Rule::SendProxyWithH2));
                return None;
            }
            Some(version)
        });
        Upstream {
            name: name.get_ref().clone(),
            servers,
            discover,
            balance,
            protocol,
            max_connections_per_server,
            queue_timeout,
            send_proxy,
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
                        let problem = Problem::UnknownServerKey {
                            key: unknown.clone(),
                        };
                        self.problem(entry.span(), key, problem);
                        continue;
                    }
                    let weight = match t.get("weight") {
                        None => 1,
                        Some(toml::Value::Integer(w))
                            if (1..=i64::from(MAX_WEIGHT)).contains(w) =>
                        {
                            // In range, so it fits.
                            u32::try_from(*w).unwrap_or(MAX_WEIGHT)
                        }
                        Some(other) => {
                            let found = describe(other);
                            let problem = Problem::OutOfRange(OutOfRange::Weight { found });
                            self.problem(entry.span(), key, problem);
                            continue;
                        }
                    };
                    (t.get("address").and_then(toml::Value::as_str), weight)
                }
                other => {
                    let found = describe(other);
                    self.problem(entry.span(), key, Problem::NotAServer { found });
                    continue;
                }
            };
            let Some(text) = address else {
                let problem = Problem::Incomplete(Incomplete::ServerAddress);
                self.problem(entry.span(), key, problem);
                continue;
            };
            let Some(address) = Address::parse(text) else {
                let problem = Problem::Malformed {
                    found: text.to_owned(),
                    expected: Form::ServerAddress,
                };
                self.problem(entry.span(), key, problem);
                continue;
            };
            if !seen.insert(address.clone()) {
                let problem = Problem::Duplicate(Duplicate::Server(address));
                self.problem(entry.span(), key, problem);
                continue;
            }
            servers.push(Backend { address, weight });
        }
        servers
    }

    fn discover(&mut self, raw: &S<RawDiscover>, key: &str) -> Option<Discover> {
        let d = raw.get_ref();
        let lookup = match (&d.dns, &d.srv) {
            (Some(_), Some(srv)) => {
                let problem = Problem::Rule(Rule::DnsAndSrv);
                self.problem(srv.span(), format!("{key}.srv"), problem);
                None
            }
            (None, None) => {
                let problem = Problem::Incomplete(Incomplete::DiscoverName);
                self.problem(raw.span(), key, problem);
                None
            }
            (Some(dns), None) => {
                let name = self.discover_name(dns, &format!("{key}.dns"));
                let port = match &d.port {
                    Some(p) => self.port(p, &format!("{key}.port")),
                    None => {
                        let problem = Problem::Incomplete(Incomplete::DiscoverPort);
                        self.problem(raw.span(), key, problem);
                        None
                    }
                };
                name.zip(port)
                    .map(|(name, port)| Lookup::Dns { name, port })
            }
            (None, Some(srv)) => {
                if let Some(p) = &d.port {
                    let problem = Problem::Rule(Rule::SrvWithPort);
                    self.problem(p.span(), format!("{key}.port"), problem);
                }
                self.srv_name(srv, &format!("{key}.srv"))
                    .map(|name| Lookup::Srv { name })
            }
        };
        let resolver = d.resolver.as_ref().map(|r| {
            let text = r.get_ref();
            let parsed = text.parse::<SocketAddr>().ok().or_else(|| {
                let ip = text.parse::<IpAddr>().ok()?;
                Some(SocketAddr::new(ip, DNS_PORT))
            });
            if parsed.is_none() {
                self.malformed(r, &format!("{key}.resolver"), Form::Resolver);
            }
            parsed
        });
        let ttl = |b: &mut Self, v: &Option<S<String>>, k: &str, default: Duration| {
            v.as_ref()
                .map_or(Some(default), |t| b.duration(t, &format!("{key}.{k}")))
        };
        let min_ttl = ttl(self, &d.min_ttl, "min_ttl", DEFAULT_MIN_TTL);
        let max_ttl = ttl(self, &d.max_ttl, "max_ttl", DEFAULT_MAX_TTL);
        if let (Some(min), Some(max)) = (min_ttl, max_ttl)
            && min > max
        {
            let span = d.min_ttl.as_ref().map_or(raw.span(), |t| t.span());
            self.problem(
                span,
                format!("{key}.min_ttl"),
                Problem::Rule(Rule::TtlOrder),
            );
            return None;
        }
        Some(Discover {
            lookup: lookup?,
            resolver: resolver.unwrap_or(None),
            min_ttl: min_ttl?,
            max_ttl: max_ttl?,
            at: self.at(raw.span(), key),
        })
    }

    /// `discover.dns`: a host name (not an address, not a wildcard), in canonical form.
    fn discover_name(&mut self, value: &S<String>, key: &str) -> Option<String> {
        let text = value.get_ref();
        let name = DnsName::parse(text)
            .ok()
            .filter(|n| !n.is_wildcard() && text.parse::<IpAddr>().is_err());
        if name.is_none() {
            self.malformed(value, key, Form::DnsName);
        }
        name.map(Into::into)
    }

    /// `discover.srv`: a DNS name whose labels may hold `_` (`_gate._tcp.farm.internal`), in
    /// canonical form.
    fn srv_name(&mut self, value: &S<String>, key: &str) -> Option<String> {
        let name = value
            .get_ref()
            .strip_suffix('.')
            .unwrap_or(value.get_ref())
            .to_ascii_lowercase();
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if name.len() > 253 || !name.split('.').all(label_ok) {
            self.malformed(value, key, Form::SrvName);
            return None;
        }
        Some(name)
    }

    /// A TCP or UDP port: 1 to 65535.
    fn port(&mut self, value: &S<i64>, key: &str) -> Option<u16> {
        let found = *value.get_ref();
        let port = u16::try_from(found).ok().filter(|p| *p != 0);
        if port.is_none() {
            let problem = Problem::OutOfRange(OutOfRange::Port { found });
            self.problem(value.span(), key, problem);
        }
        port
    }

    fn balance(&mut self, u: &RawUpstream, prefix: &str) -> Balance {
        let kind = match &u.balance {
            None => Some(BalanceKind::RoundRobin),
            Some(b) => self.word(b, &format!("{prefix}.balance")),
        };
        let balance = match (kind, &u.hash_key) {
            (Some(BalanceKind::Hash), Some(k)) => match HashKey::parse(k.get_ref()) {
                Some(key) => Balance::Hash(key),
                None => {
                    self.malformed(k, &format!("{prefix}.hash_key"), Form::HashKey);
                    Balance::RoundRobin
                }
            },
            (Some(BalanceKind::Hash), None) => {
                if let Some(b) = &u.balance {
                    let problem = Problem::Rule(Rule::HashWithoutKey);
                    self.problem(b.span(), format!("{prefix}.balance"), problem);
                }
                Balance::RoundRobin
            }
            // An unknown word was reported above.
            (Some(BalanceKind::RoundRobin) | None, _) => Balance::RoundRobin,
            (Some(BalanceKind::LeastRequests), _) => Balance::LeastRequests,
            (Some(BalanceKind::P2cEwma), _) => Balance::P2cEwma,
        };
        if let (Some(k), false) = (&u.hash_key, kind == Some(BalanceKind::Hash)) {
            let problem = Problem::Rule(Rule::KeyWithoutHash);
            self.problem(k.span(), format!("{prefix}.hash_key"), problem);
        }
        balance
    }

    fn health(&mut self, raw: &S<RawHealth>, key: &str) -> Option<Health> {
        let h = raw.get_ref();
        let path = match &h.path {
            Some(p) if !p.get_ref().starts_with('/') => {
                let found = p.get_ref().clone();
                self.problem(
                    p.span(),
                    format!("{key}.path"),
                    Problem::RelativePath { found },
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
        let count = |b: &mut Self, v: &Option<S<u32>>, k: &'static str, default: u32| match v {
            Some(n) if *n.get_ref() == 0 => {
                let problem = Problem::OutOfRange(OutOfRange::HealthCount { key: k });
                b.problem(n.span(), format!("{key}.{k}"), problem);
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
            tunnel_idle: one(&t.tunnel_idle, "tunnel_idle", d.tunnel_idle),
        }
    }

    fn upstream_tls(&mut self, raw: &S<RawUpstreamTls>, key: &str) -> Option<UpstreamTls> {
        let t = raw.get_ref();
        let server_name = match &t.server_name {
            Some(n) => {
                let name = n.get_ref().trim_end_matches('.').to_ascii_lowercase();
                let valid = name.parse::<IpAddr>().is_ok()
                    || matches!(HostPattern::parse(&name), Some(HostPattern::Exact(_)));
                if !valid {
                    self.malformed(n, &format!("{key}.server_name"), Form::ServerName);
                    return None;
                }
                Some(name)
            }
            None => None,
        };
        let trust = match &t.trust {
            Some(list) if list.get_ref().is_empty() => {
                self.problem(
                    list.span(),
                    format!("{key}.trust"),
                    Problem::Empty(Empty::Trust),
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
}

/// A TOML value as a message shows it: integers and strings as written, others by type.
fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::String(s) => format!("{s:?}"),
        other => format!("a {}", other.type_str()),
    }
}
