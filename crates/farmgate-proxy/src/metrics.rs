//! What the admin endpoint shows of the proxy: scrape-time samples for `/metrics` and the
//! `/status` document. Both read the current generation and the server's shared state; the
//! request path only bumps counters resolved once per route.

use std::sync::Weak;

use farmgate_admin::{Kind, Sample, Source};
use farmgate_config::Route;
use farmgate_tls::RefusalReason;
use serde_json::{Value, json};

use crate::generation::Generation;
use crate::server::{Bound, GateHistory, Shared};

/// The label of a route: its host (or `*`) and path prefix, e.g. `www.example.com/api`.
pub(crate) fn route_label(route: &Route) -> String {
    let host = route
        .host
        .as_ref()
        .map_or_else(|| "*".to_owned(), ToString::to_string);
    format!("{host}{}", route.path_prefix)
}

/// Count a client refused for sending no certificate (rustls refuses it before our verifier).
pub(crate) fn count_no_certificate(shared: &Shared, listener: &str) {
    let mut history = shared
        .gate_history
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    history
        .entry(listener.to_owned())
        .or_default()
        .no_certificate += 1;
}

/// Fold the gate counters of `old`, about to be replaced, into the history, so counters never
/// go down across reloads.
pub(crate) fn retire(shared: &Shared, old: &Generation) {
    let mut history = shared
        .gate_history
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    for listener in &old.listeners {
        let Some(verifier) = listener.tls.as_ref().and_then(|t| t.verifier()) else {
            continue;
        };
        let snapshot = verifier.stats().snapshot();
        let entry = history.entry(listener.name.to_string()).or_default();
        entry.accepted += snapshot.accepted;
        for (reason, n) in snapshot.refused {
            *entry.refused.entry(reason.label()).or_default() += n;
        }
        for (allow, n) in snapshot.relaxed {
            *entry.relaxed.entry(allow).or_default() += n;
        }
    }
}

/// The proxy as a source of scrape-time samples.
#[derive(Debug)]
pub(crate) struct Scrape(pub(crate) Weak<Shared>);

impl Source for Scrape {
    fn collect(&self, out: &mut Vec<Sample>) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        let generation = shared.generation.load_full();
        gate_samples(&shared, &generation, out);
        upstream_samples(&generation, out);
        certificate_samples(&generation, out);
        acme_samples(&generation, out);
    }
}

/// Each ACME certificate: orders by outcome and seconds until the served one expires.
fn acme_samples(generation: &Generation, out: &mut Vec<Sample>) {
    const ORDERS: &str = "farmgate_acme_certificates_total";
    const ORDERS_HELP: &str = "ACME certificates obtained or failed, by certificate (its first name) and result: issued, issue_failed, renewed, renew_failed, adopted (stored by another edge)";
    let now = std::time::SystemTime::now();
    for cert in generation.acme().status() {
        let name = cert.domains.first().cloned().unwrap_or_default();
        let c = cert.counters;
        for (result, n) in [
            ("issued", c.issued),
            ("issue_failed", c.issue_failures),
            ("renewed", c.renewed),
            ("renew_failed", c.renew_failures),
            ("adopted", c.adopted),
        ] {
            out.push(sample(
                ORDERS,
                ORDERS_HELP,
                Kind::Counter,
                vec![("certificate", name.clone()), ("result", result.to_owned())],
                n as f64,
            ));
        }
        if let Some(left) = cert.seconds_until_expiry(now) {
            out.push(sample(
                "farmgate_acme_expiry_seconds",
                "Seconds until the ACME certificate served now expires (absent while the temporary certificate is served)",
                Kind::Gauge,
                vec![("certificate", name.clone())],
                left as f64,
            ));
        }
        out.push(sample(
            "farmgate_acme_valid",
            "1 while a certificate from the ACME CA is served (0: the temporary self-signed one, or expired)",
            Kind::Gauge,
            vec![("certificate", name)],
            f64::from(u8::from(matches!(
                cert.state,
                farmgate_acme::CertificateState::Valid | farmgate_acme::CertificateState::Renewing
            ))),
        ));
    }
}

fn sample(
    name: &'static str,
    help: &'static str,
    kind: Kind,
    labels: Vec<(&'static str, String)>,
    value: f64,
) -> Sample {
    Sample {
        name,
        help,
        kind,
        labels,
        value,
    }
}

fn gate_samples(shared: &Shared, generation: &Generation, out: &mut Vec<Sample>) {
    const REFUSALS: &str = "farmgate_client_cert_refusals_total";
    const REFUSALS_HELP: &str = "Client certificates a gate refused, by listener and reason";
    const RELAXED: &str = "farmgate_compat_acceptances_total";
    const RELAXED_HELP: &str = "Client certificates accepted only in WebPKI compatibility mode, by listener and identity (the exact dns: or spki-sha256: allow entry that admitted them)";
    const ACCEPTED: &str = "farmgate_client_cert_accepted_total";
    const ACCEPTED_HELP: &str = "Client certificates a gate accepted, by listener";
    let history = shared
        .gate_history
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let empty = GateHistory::default();
    for listener in generation.listeners.iter().filter(|l| l.config.is_gate()) {
        let name = listener.name.to_string();
        let past = history.get(&name).unwrap_or(&empty);
        let now = listener
            .tls
            .as_ref()
            .and_then(|t| t.verifier())
            .map(|v| v.stats().snapshot())
            .unwrap_or_default();
        let labels = |extra: (&'static str, String)| vec![("listener", name.clone()), extra];
        out.push(sample(
            REFUSALS,
            REFUSALS_HELP,
            Kind::Counter,
            labels(("reason", "no_certificate".into())),
            past.no_certificate as f64,
        ));
        for reason in RefusalReason::ALL {
            let current = now
                .refused
                .iter()
                .find(|(r, _)| *r == reason)
                .map_or(0, |(_, n)| *n);
            let before = past.refused.get(reason.label()).copied().unwrap_or(0);
            out.push(sample(
                REFUSALS,
                REFUSALS_HELP,
                Kind::Counter,
                labels(("reason", reason.label().into())),
                (current + before) as f64,
            ));
        }
        let mut relaxed = past.relaxed.clone();
        for (entry, n) in now.relaxed {
            *relaxed.entry(entry).or_default() += n;
        }
        for (entry, n) in relaxed {
            out.push(sample(
                RELAXED,
                RELAXED_HELP,
                Kind::Counter,
                labels(("identity", entry)),
                n as f64,
            ));
        }
        out.push(sample(
            ACCEPTED,
            ACCEPTED_HELP,
            Kind::Counter,
            vec![("listener", name.clone())],
            (now.accepted + past.accepted) as f64,
        ));
    }
}

fn upstream_samples(generation: &Generation, out: &mut Vec<Sample>) {
    let now = crate::health::now_ms();
    for upstream in &generation.upstreams {
        out.push(sample(
            "farmgate_upstream_connections",
            "Connections to an upstream's servers open now (in use or idle in the pool)",
            Kind::Gauge,
            vec![("upstream", upstream.name.to_string())],
            upstream.connections_open() as f64,
        ));
        for (i, server) in upstream.servers.iter().enumerate() {
            let labels = vec![
                ("upstream", upstream.name.to_string()),
                ("server", server.address.to_string()),
            ];
            out.push(sample(
                "farmgate_server_up",
                "1 if active health checks pass (always 1 without health checks)",
                Kind::Gauge,
                labels.clone(),
                f64::from(u8::from(server.health.is_up())),
            ));
            out.push(sample(
                "farmgate_server_ejected",
                "1 if the server is ejected after consecutive failures",
                Kind::Gauge,
                labels.clone(),
                f64::from(u8::from(server.health.is_ejected(now))),
            ));
            out.push(sample(
                "farmgate_server_in_flight",
                "Requests on the server now",
                Kind::Gauge,
                labels,
                upstream.in_flight(i) as f64,
            ));
        }
    }
}

fn certificate_samples(generation: &Generation, out: &mut Vec<Sample>) {
    let now = unix_now();
    for cert in certificates(generation) {
        out.push(sample(
            "farmgate_certificate_expiry_seconds",
            "Seconds until a configured certificate expires (negative: expired)",
            Kind::Gauge,
            vec![
                ("role", cert.role.to_owned()),
                ("name", cert.owner.clone()),
                ("subject", cert.subject.clone()),
            ],
            (cert.not_after - now) as f64,
        ));
    }
}

/// A certificate the running generation uses.
struct Served {
    /// `listener` or `upstream`.
    role: &'static str,
    /// The listener or upstream name.
    owner: String,
    subject: String,
    not_after: i64,
}

fn certificates(generation: &Generation) -> Vec<Served> {
    let mut certs = Vec::new();
    for listener in &generation.listeners {
        let Some(tls) = &listener.tls else { continue };
        for key in tls.store().current().all() {
            if let Some(leaf) = key.cert.first() {
                certs.extend(served("listener", &listener.name, leaf.as_ref()));
            }
        }
    }
    for upstream in &generation.upstreams {
        if let Some(leaf) = &upstream.client_leaf {
            certs.extend(served("upstream", &upstream.name, leaf));
        }
    }
    certs
}

fn served(role: &'static str, owner: &str, der: &[u8]) -> Option<Served> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(Served {
        role,
        owner: owner.to_owned(),
        subject: cert.subject().to_string(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The `/status` document.
pub(crate) fn status(shared: &Shared, bound: &[Bound]) -> Value {
    let generation = shared.generation.load_full();
    let config = generation.config();
    let now = unix_now();
    let served = certificates(&generation);
    let certs_of = |role: &str, owner: &str| -> Vec<Value> {
        served
            .iter()
            .filter(|c| c.role == role && c.owner == owner)
            .map(|c| {
                json!({
                    "subject": c.subject,
                    "not_after": c.not_after,
                    "days_left": (c.not_after - now).div_euclid(86_400),
                })
            })
            .collect()
    };
    let listeners: Vec<Value> = config
        .listeners
        .iter()
        .map(|l| {
            let address = bound
                .iter()
                .find(|b| b.name == l.name)
                .map_or_else(|| l.listen.to_string(), |b| b.local.to_string());
            let role = match (&l.tls, l.redirect_https) {
                (_, true) => "redirect",
                (None, false) => "plain",
                (Some(t), false) if t.client_auth.is_some() => "gate",
                (Some(_), false) => "tls",
            };
            let gate = l.tls.as_ref().and_then(|t| t.client_auth.as_ref()).map(|ca| {
                json!({
                    "trust": ca.trust.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "allow": ca.allow.rules().iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "eku": ca.eku.as_str(),
                })
            });
            json!({
                "name": l.name,
                "address": address,
                "role": role,
                "routes": l.routes.iter().map(route_label).collect::<Vec<_>>(),
                "certificates": certs_of("listener", &l.name),
                "client_auth": gate,
            })
        })
        .collect();
    let health_now = crate::health::now_ms();
    let upstreams: Vec<Value> = generation
        .upstreams
        .iter()
        .map(|u| {
            json!({
                "name": u.name.as_ref(),
                "balance": u.config.balance.as_str(),
                "tls": u.config.tls.as_ref().map(|t| json!({
                    "server_name": t.server_name,
                    "trust": t.trust.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "client_certificate": certs_of("upstream", &u.name).into_iter().next(),
                })),
                "connections_open": u.connections_open(),
                "servers": u.servers.iter().enumerate().map(|(i, s)| json!({
                    "address": s.address.as_ref(),
                    "weight": u.config.servers.get(i).map_or(1, |c| c.weight),
                    "up": s.health.is_up(),
                    "ejected": s.health.is_ejected(health_now),
                    "in_flight": u.in_flight(i),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let reloads = *shared.reloads.borrow();
    let unix = |t: Option<std::time::SystemTime>| {
        t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
    };
    let acme: Vec<Value> = generation
        .acme()
        .status()
        .into_iter()
        .map(|c| {
            json!({
                "domains": c.domains,
                "listeners": c.listeners,
                "directory": c.directory,
                "profile": c.profile,
                "state": c.state.as_str(),
                "ordering": c.ordering,
                "not_after": unix(c.not_after),
                "days_left": c.seconds_until_expiry(std::time::SystemTime::now()).map(|s| s.div_euclid(86_400)),
                "next_renewal": unix(c.next_renewal),
                "last_error": c.last_error,
                "consecutive_failures": c.consecutive_failures,
            })
        })
        .collect();
    json!({
        "config": config.file.display().to_string(),
        "open_connections": shared.tasks.count().saturating_sub(bound.len()),
        "reloads": { "succeeded": reloads.succeeded, "failed": reloads.failed },
        "listeners": listeners,
        "upstreams": upstreams,
        "acme": acme,
    })
}
