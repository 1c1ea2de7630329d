//! `farmgate probe`: try a (m)TLS handshake and explain the outcome.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use farmgate_config::CertKey;
use farmgate_identity::CertificateSummary;
use farmgate_tls::load;
use farmgate_tls::probe::{CertificateError, Outcome, ProbeReport, ProbeRequest, ServerName};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How long the probe waits for the server at each step (connect, each read): a bound for a
/// server that never answers, not a pause.
const TIMEOUT: Duration = Duration::from_secs(10);

/// `farmgate probe` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The server, HOST:PORT.
    #[arg(value_name = "HOST:PORT")]
    address: String,
    /// The name sent as SNI and verified on the server's certificate.
    #[arg(long, value_name = "NAME")]
    server_name: String,
    /// A client certificate chain (PEM) to present when the server asks for one.
    #[arg(long, value_name = "C", requires = "key")]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "K", requires = "cert")]
    key: Option<PathBuf>,
    /// Trust for the server's certificate: a PEM file of CA certificates, "mozilla" (the bundled
    /// public roots) or "system" (the operating system's store). Repeat for several. Default:
    /// mozilla.
    #[arg(
        long,
        value_name = "T",
        default_value = "mozilla",
        hide_default_value = true
    )]
    trust: Vec<String>,
}

/// Probe, print the report; exit 0 if the server accepted us, 1 if it refused or the attempt
/// failed, 2 if the arguments are unusable.
pub fn probe(args: &Args) -> anyhow::Result<ExitCode> {
    let Ok(server_name) = ServerName::try_from(args.server_name.clone()) else {
        eprintln!(
            "error: --server-name {:?} is not a DNS name or IP address",
            args.server_name
        );
        return Ok(ExitCode::from(2));
    };
    let trust = crate::inspect::load_trust(&args.trust)?;
    let identity = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => Some(
            load::certified_key(&CertKey {
                certificate: load::file_ref(cert, "--cert"),
                private_key: load::file_ref(key, "--key"),
            })
            .context("cannot use --cert/--key")?,
        ),
        _ => None,
    };
    let report = farmgate_tls::probe::probe(&ProbeRequest {
        address: &args.address,
        server_name,
        trust: &trust,
        identity,
        timeout: TIMEOUT,
    })?;
    out!("{}", render(args, &report));
    Ok(if report.outcome.is_accepted() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The report as operators read it.
fn render(args: &Args, report: &ProbeReport) -> String {
    let mut out = String::new();
    let peer = report.peer.map_or_else(String::new, |p| format!(" ({p})"));
    let _ = writeln!(
        out,
        "probe {}{peer} as {:?}, trusting {}",
        args.address,
        args.server_name,
        args.trust.join(", ")
    );
    if !report.server_chain.is_empty() {
        let _ = writeln!(out, "server certificate chain, as sent:");
        let now = OffsetDateTime::now_utc();
        for (i, cert) in report.server_chain.iter().enumerate() {
            let cert = match cert {
                Ok(cert) => cert,
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "  {}. (a certificate that cannot be parsed: {e})",
                        i + 1
                    );
                    continue;
                }
            };
            let _ = writeln!(out, "  {}. subject  {}", i + 1, cert.subject);
            if !cert.sans.is_empty() {
                let _ = writeln!(out, "     names    {}", names(cert));
            }
            let _ = writeln!(out, "     issuer   {}", cert.issuer);
            let left = match cert.days_left(now) {
                d if d < 0 => format!("expired {} days ago", -d),
                d => format!("{d} days left"),
            };
            let expires = cert
                .not_after
                .format(&Rfc3339)
                .unwrap_or_else(|_| cert.not_after.to_string());
            let _ = writeln!(out, "     expires  {expires} ({left})");
        }
    }
    match &report.server_verdict {
        Some(Ok(())) => {
            let _ = writeln!(
                out,
                "server certificate: trusted, valid for {:?}",
                args.server_name
            );
        }
        Some(Err(_)) => {
            let _ = writeln!(out, "server certificate: refused (see outcome)");
        }
        None => {}
    }
    match (&report.client_auth, &report.protocol) {
        (Some(asked), _) => {
            let names = if asked.ca_names.is_empty() {
                "none (any CA)".to_owned()
            } else {
                asked.ca_names.join("; ")
            };
            let _ = writeln!(
                out,
                "client certificate: requested; CA names advertised: {names}"
            );
            let sent = match (&args.cert, asked.sent) {
                (Some(cert), true) => format!("sent {}", cert.display()),
                (Some(_), false) => {
                    "none sent: the server accepts none of our key's signature schemes".to_owned()
                }
                (None, _) => "none sent (no --cert given)".to_owned(),
            };
            let _ = writeln!(out, "                    {sent}");
        }
        (None, Some(_)) => {
            let _ = writeln!(out, "client certificate: not requested");
        }
        (None, None) => {}
    }
    if let (Some(protocol), Some(suite)) = (&report.protocol, &report.cipher_suite) {
        let _ = writeln!(out, "protocol: {protocol}, {suite}");
    }
    let outcome = match &report.outcome {
        Outcome::Accepted if report.client_auth.as_ref().is_some_and(|a| a.sent) => {
            "ACCEPTED: the handshake completed and the server accepted our client certificate"
                .to_owned()
        }
        Outcome::Accepted => "ACCEPTED: the handshake completed".to_owned(),
        Outcome::Refused { alert, explanation } => {
            format!("REFUSED: {explanation} (TLS alert {alert:?})")
        }
        Outcome::ServerCertificateRefused { error, explanation } => {
            let mut text = format!("FAILED: {explanation}");
            match error {
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    let leaf = report.server_chain.first().and_then(|l| l.as_ref().ok());
                    if let Some(leaf) = leaf.filter(|l| !l.sans.is_empty()) {
                        let _ = write!(text, "; it is valid for {}", names(leaf));
                    }
                }
                CertificateError::UnknownIssuer => {
                    let _ = write!(
                        text,
                        "; trusted: {} (a private CA needs --trust CA.pem)",
                        args.trust.join(", ")
                    );
                }
                _ => {}
            }
            text
        }
        Outcome::Failed { explanation } => format!("FAILED: {explanation}"),
        _ => "FAILED".to_owned(),
    };
    let _ = writeln!(out, "outcome: {outcome}");
    out
}

/// `dns:a, ip:b`: the names a certificate is valid for.
fn names(cert: &CertificateSummary) -> String {
    let names: Vec<String> = cert.sans.iter().map(ToString::to_string).collect();
    names.join(", ")
}
