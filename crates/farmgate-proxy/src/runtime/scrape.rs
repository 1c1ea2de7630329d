//! `/metrics` at scrape time: the samples that are a view of current state (gate counters,
//! servers, pools, certificates, ACME) rather than events counted on the request path.

use std::sync::Weak;

use farmgate_admin::{Kind, Sample, Source};
use farmgate_tls::RefusalReason;

use crate::generation::Generation;
use crate::inbound::Shared;
use crate::outbound::{UpstreamRt, now_ms};

/// The proxy as a source of scrape-time samples.
#[derive(Debug)]
pub(crate) struct Scrape(pub(crate) Weak<Shared>);

impl Source for Scrape {
    fn collect(&self, out: &mut Vec<Sample>) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        let generation = shared.generation();
        out.push(sample(
            "farmgate_generations",
            "Configuration generations alive: 1, plus those requests in progress since a reload still hold",
            Kind::Gauge,
            Vec::new(),
            generation.lasting().generations_alive() as f64,
        ));
        gate_samples(&generation, out);
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

fn gate_samples(generation: &Generation, out: &mut Vec<Sample>) {
    const REFUSALS: &str = "farmgate_client_cert_refusals_total";
    const REFUSALS_HELP: &str = "Client certificates a gate refused, by listener and reason";
    const RELAXED: &str = "farmgate_compat_acceptances_total";
    const RELAXED_HELP: &str = "Client certificates accepted only in WebPKI compatibility mode, by listener and identity (the exact dns: or spki-sha256: allow entry that admitted them)";
    const ACCEPTED: &str = "farmgate_client_cert_accepted_total";
    const ACCEPTED_HELP: &str = "Client certificates a gate accepted, by listener";
    for listener in &generation.listeners {
        let Some(verifier) = listener.tls.as_ref().and_then(|t| t.verifier()) else {
            continue;
        };
        // The counters outlive generations (`Lasting`): these are the listener's since start.
        let now = verifier.stats().snapshot();
        let name = listener.name.to_string();
        let labels = |extra: (&'static str, String)| vec![("listener", name.clone()), extra];
        for reason in RefusalReason::ALL {
            let count = now
                .refused
                .iter()
                .find(|(r, _)| *r == reason)
                .map_or(0, |(_, n)| *n);
            out.push(sample(
                REFUSALS,
                REFUSALS_HELP,
                Kind::Counter,
                labels(("reason", reason.label().into())),
                count as f64,
            ));
        }
        for (entry, n) in now.relaxed {
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
            now.accepted as f64,
        ));
    }
}

fn upstream_samples(generation: &Generation, out: &mut Vec<Sample>) {
    let now = now_ms();
    for upstream in &generation.upstreams {
        out.push(sample(
            "farmgate_upstream_connections",
            "Connections to an upstream's servers open now (in use or idle in the pool)",
            Kind::Gauge,
            vec![("upstream", upstream.name.to_string())],
            upstream.connections_open() as f64,
        ));
        discovery_samples(upstream, out);
        let set = upstream.servers();
        for server in set.servers.iter() {
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
                "farmgate_server_draining",
                "1 if the server is drained through the admin endpoint: it takes no new requests",
                Kind::Gauge,
                labels.clone(),
                f64::from(u8::from(server.drain.is_draining())),
            ));
            out.push(sample(
                "farmgate_server_in_flight",
                "Requests on the server now, to the end of their response body, and its open WebSockets",
                Kind::Gauge,
                labels.clone(),
                server.drain.in_flight() as f64,
            ));
            out.push(sample(
                "farmgate_server_requests_total",
                "Requests sent to the server: responses and failed attempts",
                Kind::Counter,
                labels.clone(),
                server.stats.requests() as f64,
            ));
            out.push(sample(
                "farmgate_server_errors_total",
                "Attempts on the server that failed or were answered 5xx",
                Kind::Counter,
                labels,
                server.stats.errors() as f64,
            ));
        }
    }
}

/// An upstream's DNS discovery: failed lookups by reason, and when DNS last answered.
fn discovery_samples(upstream: &UpstreamRt, out: &mut Vec<Sample>) {
    let Some(discovery) = &upstream.discovery else {
        return;
    };
    let known = discovery.known();
    for (reason, count) in known.failures {
        out.push(sample(
            "farmgate_discovery_failures_total",
            "DNS lookups of a discovered upstream that failed (the last good answer kept serving), by reason: resolver_config, timeout, nxdomain, no_records, server_error, error",
            Kind::Counter,
            vec![
                ("upstream", upstream.name.to_string()),
                ("reason", reason.to_owned()),
            ],
            count as f64,
        ));
    }
    if let Some((_, at)) = known.good {
        let seconds = at
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        out.push(sample(
            "farmgate_discovery_last_answer_timestamp_seconds",
            "When DNS last gave a discovered upstream a good answer, in Unix seconds (absent before the first)",
            Kind::Gauge,
            vec![("upstream", upstream.name.to_string())],
            seconds,
        ));
    }
}

fn certificate_samples(generation: &Generation, out: &mut Vec<Sample>) {
    let now = std::time::SystemTime::now();
    for cert in generation.certificates() {
        out.push(sample(
            "farmgate_certificate_expiry_seconds",
            "Seconds until a configured certificate expires (negative: expired)",
            Kind::Gauge,
            vec![
                ("role", cert.role.as_str().to_owned()),
                ("name", cert.owner.to_string()),
                ("subject", cert.summary.subject.clone()),
            ],
            cert.summary.seconds_until_expiry(now) as f64,
        ));
    }
}
