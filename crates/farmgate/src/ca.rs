//! `farmgate ca`: a private CA for the farm's identities. The files and checks live in
//! `farmgate_pki::store`; this module parses arguments (names by farmgate-identity's rules, so
//! every certificate the CA issues can be named on a gate) and says what was written.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use farmgate_identity::{AllowRule, DnsName};
use farmgate_pki::CaSpec;
use farmgate_pki::store::{CaStore, IssuedFiles, Role};

/// `farmgate ca` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Create a private root CA (ECDSA P-256, ten years): DIR/ca.pem and DIR/ca.key (mode 0600).
    Init(InitArgs),
    /// Issue a client or server certificate from the CA in DIR.
    Issue(IssueArgs),
}

#[derive(Debug, clap::Args)]
struct InitArgs {
    /// Directory for the CA; created with mode 0700 if missing. An existing CA is never
    /// overwritten.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The CA's name (subject CN).
    #[arg(long, default_value = "farmgate farm CA")]
    name: String,
    /// Only allow certificates for these DNS names and the names below them (name
    /// constraints, enforced by every verifier). Repeat, or give several.
    #[arg(long = "permit-dns", value_name = "SUFFIX", num_args = 1..)]
    permit_dns: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct IssueArgs {
    /// Directory of the CA (from `farmgate ca init`).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    #[command(flatten)]
    who: Who,
    /// Lifetime in days [default: 30 for clients, 90 for servers].
    #[arg(long, value_name = "D")]
    days: Option<u32>,
    /// Write PREFIX.pem, PREFIX.fullchain.pem and PREFIX.key [default: DIR/NAME].
    #[arg(long, value_name = "PREFIX")]
    out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct Who {
    /// A client identity (clientAuth): a DNS name or IP address, e.g. an edge's name.
    #[arg(long, value_name = "NAME")]
    client: Option<String>,
    /// A server identity (serverAuth): a DNS name or IP address, e.g. a gate's name.
    #[arg(long, value_name = "NAME")]
    server: Option<String>,
    /// A client identity named by a SPIFFE ID (clientAuth, URI SAN), e.g.
    /// spiffe://farm.example/edge.
    #[arg(long, value_name = "URI")]
    spiffe: Option<String>,
}

pub fn ca(args: &Args) -> anyhow::Result<ExitCode> {
    match &args.command {
        Command::Init(init) => self::init(init),
        Command::Issue(issue) => self::issue(issue),
    }
}

fn init(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let mut spec = CaSpec::new(&args.name);
    for suffix in &args.permit_dns {
        let suffix = dns_name(suffix).context("farmgate ca init")?;
        spec = spec.permit_dns(&suffix);
    }
    let ca = CaStore::init(&args.dir, &spec).context("farmgate ca init")?;
    outln!("created a private CA in {}", ca.dir().display());
    outln!(
        "  {}  CA certificate: trust it on gates (trust = [{:?}]) and backends",
        ca.cert_path().display(),
        ca.cert_path().display().to_string()
    );
    outln!(
        "  {}  CA private key (mode 0600): keep it secret, keep it off the farm",
        ca.key_path().display()
    );
    outln!(
        "  subject {}, ECDSA P-256, valid until {}",
        ca.authority().subject(),
        ca.not_after().date()
    );
    match ca.permitted_dns() {
        [] => outln!("  may certify any name"),
        names => outln!(
            "  may certify only {} and the names below them",
            names.join(", ")
        ),
    }
    let example = match ca.permitted_dns().first() {
        Some(suffix) => format!("edge.{suffix}"),
        None => "edge.example.com".to_owned(),
    };
    outln!(
        "next: farmgate ca issue --dir {} --client {example}",
        ca.dir().display()
    );
    Ok(ExitCode::SUCCESS)
}

fn issue(args: &IssueArgs) -> anyhow::Result<ExitCode> {
    let in_words = |what: &str, name: &str| format!("farmgate ca issue: {what} {name}");
    let role = match (&args.who.client, &args.who.server, &args.who.spiffe) {
        (Some(name), _, _) => {
            Role::Client(certificate_name(name).with_context(|| in_words("client", name))?)
        }
        (_, Some(name), _) => {
            Role::Server(certificate_name(name).with_context(|| in_words("server", name))?)
        }
        (_, _, Some(uri)) => Role::Spiffe(uri.clone()),
        // clap requires exactly one of them.
        (None, None, None) => anyhow::bail!("give --client NAME, --server NAME or --spiffe URI"),
    };
    let ca = CaStore::open(&args.dir).context("farmgate ca issue")?;
    let issued = ca
        .issue(&role, args.days, args.out.as_deref())
        .with_context(|| in_words(role.describe(), role.name()))?;
    out!("{}", describe(&issued));
    Ok(ExitCode::SUCCESS)
}

fn describe(issued: &IssuedFiles) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let (usage, config_key) = match issued.role {
        Role::Server(_) => ("serverAuth", "certificate / private_key on a listener"),
        Role::Client(_) | Role::Spiffe(_) => (
            "clientAuth",
            "client_certificate / client_key on an upstream",
        ),
    };
    let _ = writeln!(
        out,
        "issued a {} certificate for {} ({usage}), valid {} days, until {}",
        issued.role.describe(),
        issued.role.name(),
        issued.days,
        issued.not_after.date()
    );
    let _ = writeln!(
        out,
        "  {}  the certificate (and any intermediates): what it presents ({config_key})",
        issued.certificate.display()
    );
    let _ = writeln!(
        out,
        "  {}  the same, with the root",
        issued.full_chain.display()
    );
    let _ = writeln!(out, "  {}  private key (mode 0600)", issued.key.display());
    let entries: Vec<String> = allow_entries(issued)
        .iter()
        .map(|rule| format!("{:?}", rule.to_string()))
        .collect();
    match issued.role {
        Role::Server(_) => {
            let _ = writeln!(
                out,
                "edges verify it with server_name = {:?} and the CA in trust",
                issued.role.name()
            );
        }
        Role::Client(_) | Role::Spiffe(_) if entries.is_empty() => {
            let _ = writeln!(out, "allow it on a gate by its key:");
        }
        Role::Client(_) | Role::Spiffe(_) => {
            let _ = writeln!(out, "allow it on a gate: allow = [{}]", entries.join(", "));
        }
    }
    let _ = writeln!(
        out,
        "pin its key (survives renewals that keep the key): {:?}",
        AllowRule::SpkiSha256(issued.spki_sha256).to_string()
    );
    out
}

/// The allow-list entries naming what was issued (`dns:`, `uri:`); none for an IP address,
/// which allow-lists cannot name.
fn allow_entries(issued: &IssuedFiles) -> Vec<AllowRule> {
    match &issued.role {
        Role::Spiffe(uri) => vec![AllowRule::Uri(uri.clone())],
        Role::Client(_) | Role::Server(_) => issued
            .dns_names
            .iter()
            // Checked as `DnsName`s before they were issued (`certificate_name`).
            .filter_map(|name| DnsName::parse(name).ok())
            .map(AllowRule::Dns)
            .collect(),
    }
}

/// A `--client` or `--server` name as it goes into a certificate: an IP address, or a DNS name
/// as an allow-list `dns:` entry takes it.
fn certificate_name(name: &str) -> anyhow::Result<String> {
    match name.parse::<IpAddr>() {
        Ok(ip) => Ok(ip.to_string()),
        Err(_) => dns_name(name),
    }
}

/// `name` as a [`DnsName`] (lower-case, no trailing dot, `*.` only as the whole leftmost label),
/// so that a gate's allow-list can name what the CA issues.
fn dns_name(name: &str) -> anyhow::Result<String> {
    let dns = DnsName::parse(name)
        .with_context(|| format!("`{name}` is not a usable DNS name or IP address"))?;
    Ok(dns.as_str().to_owned())
}
