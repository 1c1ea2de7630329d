//! `farmgate check`: build the configuration exactly as `run` would, then summarise it, then
//! warn about trust anchors with mild defects (`farmgate_tls::AnchorWarning`) and about what is
//! valid today but will break (`farmgate_doctor::advice`). Warnings never change
//! the exit code: a valid configuration exits 0.
//!
//! With ACME, building also opens (creates) the storage directory and proves it writable, and
//! `check` then reads the ACME server's directory: an answer that is not an ACME directory, or
//! that lacks a configured profile, is an error; an unreachable server is a warning, since `run`
//! starts anyway and keeps retrying.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use farmgate_acme::{CertificateState, DirectoryCheck};
use farmgate_config::{Config, EkuPolicy, Listener, ListenerCerts, Lookup, Trust};
use farmgate_identity::PeerIdentity;
use farmgate_proxy::{Generation, LoadError};

/// Longest wait for the ACME server's directory.
const DIRECTORY_PATIENCE: Duration = Duration::from_secs(20);

pub fn check(path: &Path) -> anyhow::Result<ExitCode> {
    match Generation::load(path) {
        Ok(generation) => {
            let acme = acme_directory(generation.config())?;
            if !acme.errors.is_empty() {
                eprintln!("{}: invalid configuration", path.display());
                for e in &acme.errors {
                    eprintln!("  {e}");
                }
                return Ok(ExitCode::from(1));
            }
            out!("{}", summary(path, &generation));
            out!("{}", acme.summary);
            for warning in acme.warnings {
                outln!("warning: {warning}");
            }
            for warning in trust_warnings(generation.config()) {
                outln!("warning: {warning}");
            }
            for warning in generation.warnings() {
                outln!("warning: {warning}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}: invalid configuration", path.display());
            eprint!("{}", describe(&e));
            Ok(ExitCode::from(1))
        }
    }
}

/// What the trust-anchor lint found in every `trust` list, loaded as `run` loads them (a
/// defect that refuses an anchor already failed the build): mild defects, and system-store
/// anchors left out.
fn trust_warnings(config: &Config) -> Vec<farmgate_tls::AnchorWarning> {
    let gates = config
        .listeners
        .iter()
        .filter_map(|l| l.tls.as_ref()?.client_auth.as_ref())
        .map(|auth| (&auth.trust, &auth.at));
    let upstreams = config
        .upstreams
        .iter()
        .filter_map(|u| u.tls.as_ref())
        .map(|tls| (&tls.trust, &tls.at));
    let acme = config.acme.iter().map(|acme| (&acme.trust, &acme.at));
    gates
        .chain(upstreams)
        .chain(acme)
        .filter_map(|(trust, at)| farmgate_tls::TrustStore::load(trust, at).ok())
        .flat_map(|store| store.warnings().to_vec())
        .collect()
}

/// What reading the ACME server's directory found.
#[derive(Default)]
struct AcmeCheck {
    summary: String,
    warnings: Vec<String>,
    errors: Vec<String>,
}

/// Read the directory of `[acme]`, if ACME is configured.
fn acme_directory(config: &Config) -> anyhow::Result<AcmeCheck> {
    let mut found = AcmeCheck::default();
    let Some(settings) = &config.acme else {
        return Ok(found);
    };
    let at = format!(
        "{}:{}: acme.directory",
        settings.at.file().display(),
        settings.at.line()
    );
    if let Some(eab) = &settings.eab
        && let Err(e) = farmgate_acme::check_eab(eab)
    {
        found.errors.push(chain(&e));
    }
    let directory = &settings.directory;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let checked = runtime.block_on(async {
        tokio::time::timeout(DIRECTORY_PATIENCE, farmgate_acme::check_directory(settings)).await
    });
    match checked {
        Err(_) => found.warnings.push(format!(
            "{at}: {directory} did not answer within {DIRECTORY_PATIENCE:?}; `run` starts anyway and keeps trying"
        )),
        Ok(Err(e)) => found.errors.push(chain(&e)),
        Ok(Ok(DirectoryCheck::NotAcme(e))) => found.errors.push(format!(
            "{at}: {directory} answers, but not with an ACME directory ({}); check the URL",
            chain(&e)
        )),
        Ok(Ok(DirectoryCheck::Unreachable(e))) => found.warnings.push(format!(
            "{at}: cannot reach {directory} ({}); `run` starts anyway, serves stored or temporary certificates, and keeps trying",
            chain(&e)
        )),
        Ok(Ok(DirectoryCheck::Ok { profiles })) => {
            let offered = if profiles.is_empty() {
                "no profiles".to_owned()
            } else {
                format!("profiles {}", profiles.join(", "))
            };
            let _ = writeln!(found.summary, "  ACME directory {directory}: answers ({offered})");
            for l in &config.listeners {
                let Some(cert) = l.tls.as_ref().and_then(|t| t.acme()) else {
                    continue;
                };
                let Some(profile) = &cert.profile else {
                    continue;
                };
                if profiles.is_empty() {
                    found.warnings.push(format!(
                        "{}: {directory} lists no profiles, so profile {profile:?} is ignored and its default is ordered",
                        cert.at
                    ));
                } else if !profiles.contains(profile) {
                    found.errors.push(format!(
                        "{}: {directory} offers no profile {profile:?} (it offers {})",
                        cert.at,
                        profiles.join(", ")
                    ));
                }
            }
        }
        Ok(Ok(_)) => {}
    }
    Ok(found)
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !line.ends_with(&more) {
            let _ = write!(line, ": {more}");
        }
        source = s.source();
    }
    line
}

/// Every problem on its own line, each with its causes.
pub fn describe(e: &LoadError) -> String {
    let mut out = String::new();
    match e {
        LoadError::Config(errors) => {
            for line in errors.to_string().lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        other => {
            let _ = writeln!(out, "  {}", chain(other));
        }
    }
    out
}

fn summary(path: &Path, generation: &Generation) -> String {
    let config = generation.config();
    let mut out = String::new();
    let _ = writeln!(out, "{}: OK", path.display());
    let served = generation.served_certificates();
    for l in &config.listeners {
        let _ = write!(out, "  listener {:?} on {}: ", l.name, l.listen);
        match &l.tls {
            None if l.redirect_https => out.push_str("plain HTTP, redirects to HTTPS"),
            None => out.push_str("plain HTTP"),
            Some(tls) if tls.acme().is_some() => {
                let status = generation
                    .acme()
                    .status()
                    .into_iter()
                    .find(|s| tls.acme().is_some_and(|a| a.domains == s.domains));
                let _ = write!(
                    out,
                    "TLS via ACME for {}",
                    tls.acme().map(|a| a.domains.join(", ")).unwrap_or_default()
                );
                match status {
                    Some(s) if s.state != CertificateState::Issuing => {
                        let until = s
                            .certificate
                            .map(|c| c.not_after.date().to_string())
                            .unwrap_or_default();
                        let _ = write!(out, " (stored certificate valid until {until})");
                    }
                    _ => out.push_str(
                        " (no certificate yet: run orders one, serving a temporary self-signed certificate until then)",
                    ),
                }
            }
            Some(tls) => {
                let subject = served
                    .iter()
                    .find(|(name, _)| *name == l.name)
                    .and_then(|(_, chain)| chain.first())
                    .and_then(|leaf| PeerIdentity::from_der(leaf.as_ref()).ok())
                    .map_or_else(|| "?".to_owned(), |id| id.name());
                let _ = write!(out, "TLS as {subject}");
                match &tls.certs {
                    ListenerCerts::Files { sni, .. } if !sni.is_empty() => {
                        let _ = write!(out, " (+{} SNI certificates)", sni.len());
                    }
                    ListenerCerts::Files { .. } | ListenerCerts::Acme(_) => {}
                }
                if let Some(ca) = &tls.client_auth {
                    let allow: Vec<String> =
                        ca.allow.rules().iter().map(ToString::to_string).collect();
                    let mode = match ca.eku {
                        EkuPolicy::ClientAuth => "",
                        EkuPolicy::ClientOrServerAuth => " (WebPKI compatibility mode)",
                    };
                    let _ = write!(
                        out,
                        "; gate: trust {}; allow {}; eku {}{mode}",
                        trust(&ca.trust),
                        allow.join(", "),
                        ca.eku
                    );
                }
            }
        }
        let _ = writeln!(out, "; {} route(s)", l.routes.len());
        let _ = writeln!(out, "    {}", limits(l));
        if let Some(relaxed) = l.forwarding_relaxations() {
            let _ = writeln!(out, "    {relaxed}");
        }
    }
    for u in &config.upstreams {
        let _ = match &u.discover {
            Some(d) => write!(
                out,
                "  upstream {:?}: servers from DNS ({}, asking {}, TTL kept within {:?} to {:?}), {}",
                u.name,
                d.lookup,
                d.resolver
                    .map_or_else(|| "the system's resolver".to_owned(), |r| r.to_string()),
                d.min_ttl,
                d.max_ttl,
                u.balance
            ),
            None => write!(
                out,
                "  upstream {:?}: {} server(s), {}",
                u.name,
                u.servers.len(),
                u.balance
            ),
        };
        match u.max_connections_per_server {
            Some(n) => {
                let _ = write!(
                    out,
                    ", at most {n} request(s) in flight per server (then queued up to {:?})",
                    u.queue_timeout
                );
            }
            None => out.push_str(", no cap on requests in flight per server"),
        }
        match &u.tls {
            None => out.push_str(", plain HTTP"),
            Some(tls) => {
                // Without server_name a server is verified by the name it was found by.
                let name = match (&tls.server_name, &u.discover) {
                    (Some(name), _) => name.as_str(),
                    (None, Some(d)) => match &d.lookup {
                        Lookup::Dns { name, .. } => name.as_str(),
                        Lookup::Srv { .. } => "each SRV target",
                    },
                    (None, None) => "each server's address",
                };
                let _ = write!(out, ", TLS verifying {name} against {}", trust(&tls.trust));
                if tls.client_cert.is_some() {
                    out.push_str(", presenting a client certificate");
                }
            }
        }
        out.push('\n');
    }
    out
}

/// The limits and timeouts a listener enforces, defaults included.
fn limits(l: &Listener) -> String {
    let (limits, t) = (&l.limits, &l.timeouts);
    let rate = limits.requests_per_client.map_or_else(
        || "unlimited".to_owned(),
        |r| format!("{} per {:?} (burst {})", r.rate, r.per, r.burst),
    );
    let body = limits
        .max_request_body
        .map_or_else(|| "unlimited".to_owned(), size);
    format!(
        "limits: {} connections, {} per client, requests per client {rate}, request body {body}, \
         request header {}; timeouts: handshake {:?}, request header {:?}, request body {:?}, \
         send {:?}, idle {:?}",
        limits.max_connections,
        limits.max_connections_per_client,
        size(limits.max_request_header),
        t.handshake,
        t.request_header,
        t.request_body,
        t.send,
        t.idle,
    )
}

/// A size as configurations write it: `64KiB`, `10MiB`, or bytes.
fn size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    UNITS
        .iter()
        .find(|(unit, _)| bytes >= *unit && bytes.is_multiple_of(*unit))
        .map_or_else(
            || bytes.to_string(),
            |(unit, name)| format!("{}{name}", bytes / unit),
        )
}

fn trust(trust: &[Trust]) -> String {
    trust
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
