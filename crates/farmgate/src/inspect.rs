//! `farmgate inspect`: what a certificate (chain) is good for. The report is built by
//! `farmgate_doctor::inspect`; this module reads the arguments and renders it as text or JSON.
//! It is a report: it exits 0 whatever the verdicts, and 1 only when the file cannot be read.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use farmgate_config::{Location, Trust};
use farmgate_doctor::facts;
use farmgate_doctor::inspect::{Inspector, Reach, Report, Verdict};
use farmgate_tls::TrustStore;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `farmgate inspect` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A certificate or chain (PEM, leaf first; or one DER certificate).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Judge the chain against this trust as well as the bundled public roots: a CA PEM
    /// file, "mozilla" or "system". Repeat for several.
    #[arg(long, value_name = "PEM|mozilla|system")]
    trust: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn inspect(args: &Args) -> anyhow::Result<ExitCode> {
    let given = if args.trust.is_empty() {
        None
    } else {
        Some((load_trust(&args.trust)?, args.trust.join(", ")))
    };
    let contents = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let file = args.file.display().to_string();
    let report = Inspector::new(given)
        .inspect(&file, &contents, OffsetDateTime::now_utc())
        .with_context(|| file.clone())?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        out!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// The trust store `--trust` names: `mozilla`, `system`, or PEM files (of `inspect` and `probe`).
pub(crate) fn load_trust(sources: &[String]) -> anyhow::Result<TrustStore> {
    let trust: Vec<Trust> = sources
        .iter()
        .map(|source| {
            Trust::builtin(source).unwrap_or_else(|| {
                Trust::File(farmgate_tls::load::file_ref(Path::new(source), "--trust"))
            })
        })
        .collect();
    // The error names `--trust` and the file.
    Ok(TrustStore::load(&trust, &Location::argument("--trust"))?)
}

/// The report as text: each certificate, where the chain leads, then the verdicts.
fn render(report: &Report) -> String {
    let mut out = String::new();
    let count = report.certificates.len();
    let _ = writeln!(
        out,
        "{}: {count} certificate{}",
        report.file,
        if count == 1 { "" } else { "s" }
    );
    for info in &report.certificates {
        let cert = &info.summary;
        let mut kind = Vec::new();
        if cert.ca {
            kind.push("CA");
        }
        if cert.self_signed {
            kind.push("self-signed");
        }
        let kind = if kind.is_empty() {
            String::new()
        } else {
            format!(" ({})", kind.join(", "))
        };
        let _ = writeln!(out, "\ncertificate #{}{kind}", info.index);
        let mut field = |name: &str, value: &str| {
            let _ = writeln!(out, "  {name:<12} {value}");
        };
        field("subject", or_none(&cert.subject, "(empty)"));
        field("SANs", or_none(&joined(&cert.sans), "(none)"));
        field("issuer", &cert.issuer);
        let left = if info.days_left < 0 {
            format!("EXPIRED {} days ago", -info.days_left)
        } else {
            format!("{} days left", info.days_left)
        };
        field(
            "validity",
            &format!(
                "{} to {} ({left}, of {} days)",
                rfc3339(cert.not_before),
                rfc3339(cert.not_after),
                info.lifetime_days
            ),
        );
        field("key", &cert.key);
        let eku = match &cert.eku {
            None => "(no extension: any purpose)".to_owned(),
            Some(list) if list.is_empty() => "(empty: no purpose)".to_owned(),
            Some(list) => joined(list),
        };
        field("EKU", &eku);
        field("spki-sha256", &cert.spki_pin());
        field("sha256", &cert.fingerprint_hex());
    }

    let chain = &report.chain;
    let mut leads = vec![format!(
        "{} the bundled public roots (mozilla)",
        reach(chain.public_roots)
    )];
    if let (Some(to_given), Some(label)) = (chain.trust, &chain.trust_label) {
        leads.push(format!("{} --trust {label}", reach(to_given)));
    }
    let _ = writeln!(out, "\nchain: {}", leads.join("; "));
    if [Some(chain.public_roots), chain.trust].contains(&Some(Reach::Unknown)) {
        let _ = writeln!(
            out,
            "  (no moment when every certificate in the file is valid, so no path can be checked)"
        );
    }

    let _ = writeln!(
        out,
        "\nverdicts (against {}, at {}):",
        chain.verdicts_against, report.inspected_at
    );
    let v = &report.verdicts;
    verdict(&mut out, "server certificate", &v.server);
    verdict(
        &mut out,
        "client certificate (OpenSSL/nginx, Go, rustls)",
        &v.client,
    );
    verdict(
        &mut out,
        "farmgate gate, eku = \"client_auth\"",
        &v.gate_strict,
    );
    verdict(
        &mut out,
        "farmgate gate, eku = \"client_or_server_auth\"",
        &v.gate_compat,
    );
    out
}

fn verdict(out: &mut String, what: &str, verdict: &Verdict) {
    let answer = if verdict.usable { "yes" } else { "no" };
    let _ = writeln!(out, "  {what}: {answer}");
    for reason in &verdict.reasons {
        let _ = writeln!(out, "    - {reason}");
    }
    if !verdict.allow.is_empty() {
        let _ = writeln!(out, "    allow any of: {}", verdict.allow.join(", "));
    }
    for note in &verdict.notes {
        let _ = writeln!(out, "    note: {note}");
    }
    for id in &verdict.facts {
        let _ = writeln!(out, "    see: {}", facts::fact(*id));
    }
}

fn reach(reach: Reach) -> &'static str {
    match reach {
        Reach::Yes => "leads to",
        Reach::No => "does not lead to",
        _ => "cannot be checked against",
    }
}

fn or_none<'a>(value: &'a str, none: &'a str) -> &'a str {
    if value.is_empty() { none } else { value }
}

/// `a, b, c`.
fn joined<T: std::fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(ToString::to_string).collect();
    items.join(", ")
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}
