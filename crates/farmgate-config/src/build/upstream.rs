//! `[upstream.NAME]`: pools of servers, their balancing, health checks, timeouts and TLS.

use std::collections::HashSet;
use std::time::Duration;

use super::Builder;
use crate::raw::{RawHealth, RawTimeouts, RawUpstream, RawUpstreamTls, S};
use crate::{
    Address, Backend, Balance, HashKey, Health, HostPattern, Problem, Timeouts, Trust, Upstream,
    UpstreamTls,
};

impl Builder<'_> {
    pub(super) fn upstream(&mut self, name: &S<String>, raw: &S<RawUpstream>) -> Upstream {
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

/// A TOML value as a message shows it: integers and strings as written, others by type.
fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::String(s) => format!("{s:?}"),
        other => format!("a {}", other.type_str()),
    }
}
