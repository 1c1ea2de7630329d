//! [`warnings`]: what is valid in a configuration today but will break, or already leans on a
//! relaxation, as `farmgate check` prints it after its summary (and the admin status page can
//! show it).
//!
//! - an upstream client certificate whose chain lacks clientAuth, or that chains to public
//!   roots (whose renewals lack clientAuth);
//! - a gate that trusts public roots in strict mode, where no current public certificate passes;
//! - `cn:` allow entries (legacy: newer public certificates have no CN);
//! - `eku = "client_or_server_auth"` (the WebPKI compatibility mode) in use;
//! - a configured certificate (listener, SNI, upstream client) that has expired, or is close to
//!   expiry: within 30 days, or within the last third of its lifetime when that is shorter (so a
//!   30-day certificate warns in its last 10 days, not from the day it is issued);
//! - a gate's CRL whose nextUpdate is within the last third of its validity (a CRL valid 7
//!   days warns once fewer than 56 hours remain): publish the next one before the gate fails
//!   closed.
//!
//! Certificates are read through [`farmgate_tls::load`], exactly as a gate or edge reads them;
//! the facts behind each warning are rows of [`crate::facts::FACTS`].

use std::error::Error;
use std::fmt;

use farmgate_config::{Config, EkuPolicy, FileRef, ListenerCerts, Trust};
use farmgate_identity::{KeyPurpose, RuleKind};
use rustls_pki_types::CertificateRevocationListDer;
use rustls_pki_types::pem::PemObject as _;
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::facts::{self, FactId};
use crate::inspect::{Inspector, Report};

/// A certificate closer to expiry than this (or than a third of its lifetime, if shorter) is
/// worth a warning.
const RENEW_WITHIN_DAYS: i64 = 30;

/// One thing to act on.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Warning {
    /// What kind of problem.
    pub kind: WarningKind,
    /// The configuration file, line and key it is about.
    pub at: String,
    /// What is wrong and what to do, in words.
    pub message: String,
    /// The rows of [`crate::facts::FACTS`] it rests on.
    pub facts: Vec<FactId>,
}

/// The kinds of [`Warning`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WarningKind {
    /// An upstream client certificate whose chain does not permit clientAuth.
    ClientCertificateLacksClientAuth,
    /// An upstream client certificate from a public CA: its renewal will lack clientAuth.
    ClientCertificateFromPublicCa,
    /// A gate trusting public roots with `eku = "client_auth"`.
    StrictGateTrustsPublicRoots,
    /// A `cn:` allow entry.
    LegacyCnRule,
    /// `eku = "client_or_server_auth"`.
    CompatibilityMode,
    /// A configured certificate close to expiry.
    ExpiresSoon,
    /// A configured certificate that has expired.
    Expired,
    /// A configured certificate file could not be read for these checks.
    Unreadable,
    /// An upstream keeps idle connections at least as long as a listener of the same file it
    /// sends to keeps them open: a request can meet a connection that listener is closing.
    IdleRace,
    /// A gate's CRL in the last third of its validity: when it expires, the gate refuses every
    /// client it covers.
    CrlExpiresSoon,
}

/// `gate.toml:12: upstream.farm.tls.client_certificate: ... [Let's Encrypt ...]`
impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)?;
        for id in &self.facts {
            write!(f, " [{}]", facts::fact(*id))?;
        }
        Ok(())
    }
}

/// Everything worth a warning in `config`, as of `now`, in configuration order.
pub fn warnings(config: &Config, now: OffsetDateTime) -> Vec<Warning> {
    let inspector = Inspector::new(None);
    let mut out = Vec::new();
    for listener in &config.listeners {
        let Some(tls) = &listener.tls else { continue };
        // ACME certificates are renewed by farmgate itself; only files can go stale unnoticed.
        if let ListenerCerts::Files { default, sni } = &tls.certs {
            let what = format!("listener {:?} certificate", listener.name);
            certificate(&inspector, &default.certificate, &what, now, &mut out);
            for entry in sni {
                let what = format!(
                    "listener {:?} certificate for {}",
                    listener.name, entry.server_name
                );
                certificate(&inspector, &entry.cert.certificate, &what, now, &mut out);
            }
        }
        if let Some(policy) = &tls.client_auth {
            gate(&listener.name, policy, &mut out);
            for file in &policy.crl {
                crl(&listener.name, file, now, &mut out);
            }
        }
    }
    idle_races(config, &mut out);
    for upstream in &config.upstreams {
        let Some(pair) = upstream
            .tls
            .as_ref()
            .and_then(|tls| tls.client_cert.as_ref())
        else {
            continue;
        };
        let what = format!("upstream {:?} client certificate", upstream.name);
        if let Some(report) = certificate(&inspector, &pair.certificate, &what, now, &mut out) {
            client_certificate(&report, &pair.certificate, &what, &mut out);
        }
    }
    out
}

/// Upstreams whose pools keep idle connections to a listener of the same file (both roles on
/// one host) at least as long as that listener keeps them open: the edge would then reuse a
/// connection the gate may be closing, and lose a request that cannot be sent again.
fn idle_races(config: &Config, out: &mut Vec<Warning>) {
    for upstream in &config.upstreams {
        for server in &upstream.servers {
            let farmgate_config::Address::Socket(target) = server.address else {
                continue;
            };
            let reached = config.listeners.iter().find(|l| {
                l.listen.port() == target.port()
                    && (l.listen.ip() == target.ip() || l.listen.ip().is_unspecified())
            });
            let Some(listener) = reached else { continue };
            let kept = listener.timeouts.request_header.min(listener.timeouts.idle);
            if upstream.timeouts.idle < kept {
                continue;
            }
            out.push(Warning {
                kind: WarningKind::IdleRace,
                at: upstream.at.to_string(),
                message: format!(
                    "upstream {:?} keeps idle connections for {}s, and listener {:?}, which it \
                     sends to, closes them after {}s (timeouts.request_header): a request can \
                     meet a connection the listener is closing; set upstream.{}.timeouts.idle \
                     below {}s (the default, 20s, is)",
                    upstream.name,
                    upstream.timeouts.idle.as_secs(),
                    listener.name,
                    kept.as_secs(),
                    upstream.name,
                    kept.as_secs(),
                ),
                facts: Vec::new(),
            });
        }
    }
}

/// A gate's CRL file whose nextUpdate is near: within a third of its validity. An unreadable
/// or expired CRL is not warned about here: loading the configuration refuses it.
fn crl(listener: &str, file: &FileRef, now: OffsetDateTime, out: &mut Vec<Warning>) {
    let Ok(bytes) = std::fs::read(&file.path) else {
        return;
    };
    // PEM (one or more CRLs) or, failing that, one DER CRL.
    let mut ders: Vec<Vec<u8>> = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .filter_map(Result::ok)
        .map(|der| der.as_ref().to_vec())
        .collect();
    if ders.is_empty() {
        ders.push(bytes);
    }
    for der in &ders {
        let Ok((_, list)) = x509_parser::parse_x509_crl(der) else {
            continue;
        };
        let Some(next) = list.next_update() else {
            continue;
        };
        let (this_update, next_update) = (list.last_update().to_datetime(), next.to_datetime());
        let left = next_update - now;
        if left <= Duration::ZERO || left * 3 > next_update - this_update {
            continue;
        }
        out.push(Warning {
            kind: WarningKind::CrlExpiresSoon,
            at: file.at.to_string(),
            message: format!(
                "listener {listener:?} CRL {} from {} expires at {next_update} (its \
                 nextUpdate), in {}: after that the gate refuses every client certificate it \
                 covers (fail closed); publish a new CRL and replace the file (`farmgate ca crl \
                 --dir DIR --out {}` for farmgate's own CA)",
                file.path.display(),
                list.issuer(),
                span_in_words(left),
                file.path.display()
            ),
            facts: Vec::new(),
        });
    }
}

/// `2d 4h`, `5h 10m`, `12m`.
fn span_in_words(left: Duration) -> String {
    let (days, hours, minutes) = (
        left.whole_days(),
        left.whole_hours() % 24,
        left.whole_minutes() % 60,
    );
    match (days, hours) {
        (0, 0) => format!("{minutes}m"),
        (0, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
}

/// A gate's allow-list and EKU policy.
fn gate(listener: &str, policy: &farmgate_config::ClientAuth, out: &mut Vec<Warning>) {
    let at = policy.at.to_string();
    let public = policy
        .trust
        .iter()
        .any(|t| matches!(t, Trust::Mozilla | Trust::System));
    if public && policy.eku == EkuPolicy::ClientAuth {
        out.push(Warning {
            kind: WarningKind::StrictGateTrustsPublicRoots,
            at: at.clone(),
            message: format!(
                "listener {listener:?} trusts public roots with eku = \"client_auth\": public CAs \
                 no longer issue clientAuth, so no current public certificate gets in; give its \
                 clients private-CA identities (`farmgate ca issue --client NAME`), or during \
                 the move use eku = \"client_or_server_auth\" with exact dns: or spki-sha256: \
                 entries (docs/migration.md)"
            ),
            facts: vec![
                FactId::ChromeServerAuthOnly,
                FactId::LetsEncryptLastClientAuth,
            ],
        });
    }
    let cn: Vec<String> = policy
        .allow
        .rules()
        .iter()
        .filter(|rule| rule.kind() == RuleKind::Cn)
        .map(ToString::to_string)
        .collect();
    if !cn.is_empty() {
        out.push(Warning {
            kind: WarningKind::LegacyCnRule,
            at: at.clone(),
            message: format!(
                "listener {listener:?} allows {}: subject CN matching is legacy and newer public \
                 certificates have no CN; allow dns:NAME, uri:URI or spki-sha256:PIN instead \
                 (`farmgate inspect CERT` prints the entries that match a certificate)",
                cn.join(", ")
            ),
            facts: vec![
                FactId::LetsEncryptTlsServerNoCn,
                FactId::LetsEncryptShortLivedNoCn,
            ],
        });
    }
    if policy.eku == EkuPolicy::ClientOrServerAuth {
        out.push(Warning {
            kind: WarningKind::CompatibilityMode,
            at,
            message: format!(
                "listener {listener:?} runs in WebPKI compatibility mode (eku = \
                 \"client_or_server_auth\"): it admits serverAuth-only certificates for exact \
                 dns: and spki-sha256: entries, and logs and counts each; move its clients to \
                 private-CA identities and return to eku = \"client_auth\" (docs/migration.md)"
            ),
            facts: vec![FactId::ChromeServerAuthOnly],
        });
    }
}

/// Whether an upstream's client certificate will pass standard verifiers, now and after renewal.
fn client_certificate(report: &Report, file: &FileRef, what: &str, out: &mut Vec<Warning>) {
    let leaf = &report.certificates[0].summary;
    let name = leaf
        .sans
        .first()
        .map(ToString::to_string)
        .or(leaf.common_name.clone())
        .unwrap_or_else(|| leaf.subject.clone());
    let lacking: Vec<String> = report
        .certificates
        .iter()
        .filter(|cert| !cert.summary.permits(KeyPurpose::ClientAuth))
        .map(|cert| {
            let eku: Vec<&str> = cert
                .summary
                .eku
                .iter()
                .flatten()
                .map(KeyPurpose::name)
                .collect();
            format!(
                "certificate {} permits only {}",
                cert.label(),
                eku.join(", ")
            )
        })
        .collect();
    let public = report.chain.public_roots.is_yes();
    let (kind, message) = if !lacking.is_empty() {
        let from = if public {
            "a public certificate"
        } else {
            "a certificate"
        };
        (
            WarningKind::ClientCertificateLacksClientAuth,
            format!(
                "{what} {} ({name}) is {from} whose chain lacks clientAuth ({}): backends \
                 running OpenSSL (nginx, Envoy), Go or rustls will refuse it (\"unsupported \
                 certificate purpose\") since public CAs no longer issue clientAuth; present a \
                 private-CA identity instead (`farmgate ca issue --client NAME`, \
                 docs/migration.md)",
                file.path.display(),
                lacking.join("; ")
            ),
        )
    } else if public {
        (
            WarningKind::ClientCertificateFromPublicCa,
            format!(
                "{what} {} ({name}) chains to public roots: its renewal will lack clientAuth, and \
                 backends running OpenSSL (nginx, Envoy), Go or rustls will refuse it since public \
                 CAs no longer issue clientAuth; present a private-CA identity instead (`farmgate \
                 ca issue --client NAME`, docs/migration.md)",
                file.path.display()
            ),
        )
    } else {
        return;
    };
    out.push(Warning {
        kind,
        at: file.at.to_string(),
        message,
        facts: vec![
            FactId::LetsEncryptDefaultDropsClientAuth,
            FactId::ChromeServerAuthOnly,
            FactId::LetsEncryptLastClientAuth,
        ],
    });
}

/// Reads a configured certificate chain and warns about its expiry; the report, if readable.
fn certificate(
    inspector: &Inspector,
    file: &FileRef,
    what: &str,
    now: OffsetDateTime,
    out: &mut Vec<Warning>,
) -> Option<Report> {
    let path = file.path.display().to_string();
    let report = farmgate_tls::load::certificates(file)
        .map_err(|e| in_words(&e))
        .and_then(|chain| {
            inspector
                .inspect_chain(&path, &chain, now)
                .map_err(|e| in_words(&e))
        });
    let report = match report {
        Ok(report) => report,
        Err(problem) => {
            out.push(Warning {
                kind: WarningKind::Unreadable,
                at: file.at.to_string(),
                message: format!("{what} {path} could not be checked: {problem}"),
                facts: Vec::new(),
            });
            return None;
        }
    };
    let public = report.chain.public_roots.is_yes();
    for cert in &report.certificates {
        let (not_before, not_after) = (cert.summary.not_before, cert.summary.not_after);
        let left = not_after - now;
        let window = Duration::days(RENEW_WITHIN_DAYS).min((not_after - not_before) / 3);
        let (kind, message) = if left <= Duration::ZERO {
            (
                WarningKind::Expired,
                format!(
                    "{what} {path}: certificate {} expired on {}; peers refuse it: renew it",
                    cert.label(),
                    not_after.date()
                ),
            )
        } else if left <= window {
            (
                WarningKind::ExpiresSoon,
                format!(
                    "{what} {path}: certificate {} expires on {}, in {} days, the last part of \
                     its {}-day lifetime: renew it now, and automate renewal",
                    cert.label(),
                    not_after.date(),
                    left.whole_days(),
                    cert.lifetime_days
                ),
            )
        } else {
            continue;
        };
        out.push(Warning {
            kind,
            at: file.at.to_string(),
            message,
            facts: if public {
                vec![FactId::Sc081FortySevenDays]
            } else {
                Vec::new()
            },
        });
    }
    Some(report)
}

/// An error and its causes, for a warning's message: `cannot read x.pem: No such file...`.
fn in_words(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
