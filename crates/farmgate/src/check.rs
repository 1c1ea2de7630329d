//! `farmgate check`: build the configuration exactly as `run` would, then summarise it, then
//! warn about what is valid today but will break (`farmgate_pki::advice`). Warnings never change
//! the exit code: a valid configuration exits 0.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use farmgate_config::{Balance, EkuPolicy, ListenerCerts, Trust};
use farmgate_identity::PeerIdentity;
use farmgate_pki::advice;
use farmgate_proxy::{Generation, LoadError};
use time::OffsetDateTime;

pub fn check(path: &Path) -> anyhow::Result<ExitCode> {
    match Generation::load(path) {
        Ok(generation) => {
            print!("{}", summary(path, &generation));
            for warning in advice::warnings(generation.config(), OffsetDateTime::now_utc()) {
                println!("warning: {warning}");
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
            let mut line = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                let _ = write!(line, ": {s}");
                source = s.source();
            }
            let _ = writeln!(out, "  {line}");
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
                    ListenerCerts::Acme(acme) => {
                        let _ = write!(
                            out,
                            " (ACME for {}, {})",
                            acme.domains.join(", "),
                            acme.challenge
                        );
                    }
                    _ => {}
                }
                if let Some(ca) = &tls.client_auth {
                    let allow: Vec<String> =
                        ca.allow.rules().iter().map(ToString::to_string).collect();
                    let eku = match ca.eku {
                        EkuPolicy::ClientAuth => "client_auth",
                        EkuPolicy::ClientOrServerAuth => {
                            "client_or_server_auth (WebPKI compatibility mode)"
                        }
                    };
                    let _ = write!(
                        out,
                        "; gate: trust {}; allow {}; eku {eku}",
                        trust(&ca.trust),
                        allow.join(", ")
                    );
                }
            }
        }
        let _ = writeln!(out, "; {} route(s)", l.routes.len());
    }
    for u in &config.upstreams {
        let balance = match &u.balance {
            Balance::RoundRobin => "round_robin",
            Balance::LeastRequests => "least_requests",
            Balance::P2cEwma => "p2c_ewma",
            Balance::Hash(_) => "hash",
            _ => "other",
        };
        let _ = write!(
            out,
            "  upstream {:?}: {} server(s), {balance}",
            u.name,
            u.servers.len()
        );
        match &u.tls {
            None => out.push_str(", plain HTTP"),
            Some(tls) => {
                let name = tls
                    .server_name
                    .as_deref()
                    .unwrap_or("each server's address");
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

fn trust(trust: &[Trust]) -> String {
    trust
        .iter()
        .map(|t| match t {
            Trust::Mozilla => "mozilla".to_owned(),
            Trust::System => "system".to_owned(),
            Trust::File(f) => f.path.display().to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
