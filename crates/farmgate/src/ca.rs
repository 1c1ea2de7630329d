//! `farmgate ca`: a private CA for the farm's identities. The files and checks live in
//! `farmgate_pki::store`; this module parses arguments (names by farmgate-identity's rules, so
//! every certificate the CA issues can be named on a gate) and says what was written.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use farmgate_identity::{AllowRule, DnsName};
use farmgate_pki::store::index::{INDEX, parse_serial};
use farmgate_pki::store::{CaStore, IssuedFiles, ROOT_CERT, Request, Role, Target, trust_domain};
use farmgate_pki::{CaSpec, PublicKey, Reason};

/// `farmgate ca` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Create a private root CA (ECDSA P-256, ten years): DIR/ca.pem and DIR/ca.key (mode 0600);
    /// or, with --intermediate, an issuing CA signed by the root in --root-dir.
    Init(InitArgs),
    /// Issue a client or server certificate from the CA in DIR, or renew one.
    Issue(IssueArgs),
    /// Revoke a certificate the CA in DIR issued; the next `ca crl` lists it.
    Revoke(RevokeArgs),
    /// Sign a CRL of every certificate the CA in DIR revoked, for gates (`crl = [...]`),
    /// nginx (`ssl_crl`) and OpenSSL.
    Crl(CrlArgs),
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
    /// Only allow IP address names within these ranges (name constraints), e.g. 10.0.0.0/8.
    /// Repeat, or give several.
    #[arg(long = "permit-ip", value_name = "CIDR", num_args = 1..)]
    permit_ip: Vec<ipnet::IpNet>,
    /// Only allow URI names (SPIFFE IDs) whose host is this trust domain, e.g.
    /// spiffe://farm.internal (name constraints; root CAs only). Repeat, or give several.
    #[arg(long = "permit-uri", value_name = "URI", num_args = 1..)]
    permit_uri: Vec<String>,
    /// Create an issuing intermediate CA, signed by the root CA in --root-dir (which can then
    /// stay offline). It constrains no extended key usage, so client certificates below it
    /// work with Go and OpenSSL verifiers too.
    #[arg(long, requires = "root_dir")]
    intermediate: bool,
    /// The root CA's directory (from `farmgate ca init`), with --intermediate.
    #[arg(long, value_name = "ROOT", requires = "intermediate")]
    root_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct IssueArgs {
    /// Directory of the CA (from `farmgate ca init`).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    #[command(flatten)]
    who: Who,
    /// Lifetime in days [default: 30 for clients, 90 for servers; a renewal: as before].
    #[arg(long, value_name = "D")]
    days: Option<u32>,
    /// Write PREFIX.pem, PREFIX.fullchain.pem and PREFIX.key [default: DIR/NAME; a renewal:
    /// in place, beside FILE].
    #[arg(long, value_name = "PREFIX")]
    out: Option<PathBuf>,
    /// Certify this existing key (a PUBLIC KEY or private key PEM) instead of making one:
    /// for keys generated where they live. No key file is written.
    #[arg(long, value_name = "FILE", conflicts_with = "renew")]
    key: Option<PathBuf>,
    /// Put this CRL distribution point (an http:// URL where the CA's CRL is published) in
    /// the certificate.
    #[arg(long = "crl-url", value_name = "URL")]
    crl_url: Option<String>,
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
    /// Renew the certificate in FILE: same names, kind and key (its spki-sha256 pin
    /// survives), a new serial and dates. Replaces FILE and its .fullchain.pem in place
    /// unless --out says otherwise; the key file is never touched.
    #[arg(long, value_name = "FILE")]
    renew: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct RevokeArgs {
    /// Directory of the CA that issued the certificate.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    #[command(flatten)]
    which: Which,
    /// Why (RFC 5280 reason code).
    #[arg(long, value_name = "R", value_parser = reason)]
    reason: Option<Reason>,
}

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct Which {
    /// The certificate's serial number in hex (colons allowed), as the index and `farmgate
    /// inspect` show it.
    #[arg(long, value_name = "S")]
    serial: Option<String>,
    /// The certificate file (PEM; the first certificate in it).
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct CrlArgs {
    /// Directory of the CA.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The CRL file to write (PEM), replaced atomically: point gates' `crl` at it.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// How long the CRL is valid (its nextUpdate); publish a new one well before.
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = crl_validity)]
    valid: time::Duration,
}

pub fn ca(args: &Args) -> anyhow::Result<ExitCode> {
    match &args.command {
        Command::Init(init) => self::init(init),
        Command::Issue(issue) => self::issue(issue),
        Command::Revoke(revoke) => self::revoke(revoke),
        Command::Crl(crl) => self::crl(crl),
    }
}

fn init(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let mut spec = CaSpec::new(&args.name);
    for suffix in &args.permit_dns {
        let suffix = dns_name(suffix).context("farmgate ca init")?;
        spec = spec.permit_dns(&suffix);
    }
    for range in &args.permit_ip {
        spec = spec.permit_ip(*range);
    }
    for uri in &args.permit_uri {
        // `spiffe://farm.internal` or `farm.internal`: the host is what a URI constraint names.
        let host = trust_domain(uri).unwrap_or(uri.trim_end_matches('/'));
        let host =
            dns_name(host).with_context(|| format!("farmgate ca init: --permit-uri {uri}"))?;
        spec = spec.permit_uri_host(&host);
    }
    let (ca, root) = match &args.root_dir {
        Some(root_dir) if args.intermediate => {
            let root = CaStore::open(root_dir).context("farmgate ca init --intermediate")?;
            let ca = CaStore::init_intermediate(&args.dir, &spec, &root)
                .context("farmgate ca init --intermediate")?;
            (ca, Some(root))
        }
        _ => (
            CaStore::init(&args.dir, &spec).context("farmgate ca init")?,
            None,
        ),
    };
    let quoted = |path: PathBuf| format!("{:?}", path.display().to_string());
    match &root {
        None => {
            outln!("created a private CA in {}", ca.dir().display());
            outln!(
                "  {}  CA certificate: trust it on gates (trust = [{}]) and backends",
                ca.cert_path().display(),
                quoted(ca.cert_path())
            );
        }
        Some(root) => {
            let root_pem = ca.dir().join(ROOT_CERT);
            outln!(
                "created an issuing intermediate CA in {}, signed by the root in {}",
                ca.dir().display(),
                root.dir().display()
            );
            outln!(
                "  {}  the intermediate, then the root: what this CA's certificates chain through",
                ca.cert_path().display()
            );
            outln!(
                "  {}  the root: trust it on gates (trust = [{}]) and backends; never trust the \
                 intermediate itself (a trust anchor cannot be revoked)",
                root_pem.display(),
                quoted(root_pem.clone())
            );
            outln!(
                "  no extended key usage on the intermediate, so client certificates below it \
                 pass Go and OpenSSL verifiers too; path length 0"
            );
            outln!(
                "  recorded in {}: `farmgate ca revoke --dir {} --cert {}` revokes it",
                root.dir().join(INDEX).display(),
                root.dir().display(),
                ca.cert_path().display()
            );
        }
    }
    outln!(
        "  {}  CA private key (mode 0600): keep it secret, keep it off the farm",
        ca.key_path().display()
    );
    outln!(
        "  subject {}, ECDSA P-256, valid until {}",
        ca.authority().subject(),
        ca.not_after().date()
    );
    match (
        ca.permitted_dns(),
        ca.permitted_ips(),
        ca.permitted_uri_hosts(),
    ) {
        ([], [], []) => outln!("  may certify any name"),
        (names, ranges, hosts) => {
            let mut all: Vec<String> = names.to_vec();
            all.extend(ranges.iter().map(ToString::to_string));
            all.extend(hosts.iter().map(|h| format!("URIs of host {h}")));
            outln!(
                "  may certify only {} (and the names below them)",
                all.join(", ")
            );
        }
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
    let ca = CaStore::open(&args.dir).context("farmgate ca issue")?;
    if let Some(file) = &args.who.renew {
        let issued = ca
            .renew(
                file,
                args.days,
                args.out.as_deref(),
                args.crl_url.as_deref(),
            )
            .with_context(|| format!("farmgate ca issue --renew {}", file.display()))?;
        out!("{}", describe(&issued, true));
        return Ok(ExitCode::SUCCESS);
    }
    let role = match (&args.who.client, &args.who.server, &args.who.spiffe) {
        (Some(name), _, _) => {
            Role::Client(certificate_name(name).with_context(|| in_words("client", name))?)
        }
        (_, Some(name), _) => {
            Role::Server(certificate_name(name).with_context(|| in_words("server", name))?)
        }
        (_, _, Some(uri)) => Role::Spiffe(uri.clone()),
        // clap requires exactly one of them.
        (None, None, None) => {
            anyhow::bail!("give --client NAME, --server NAME, --spiffe URI or --renew FILE")
        }
    };
    let mut request = Request::new(role.clone());
    request.days = args.days;
    request.out = args.out.clone();
    request.crl_url = args.crl_url.clone();
    if let Some(file) = &args.key {
        let pem = std::fs::read_to_string(file)
            .with_context(|| format!("farmgate ca issue: cannot read {}", file.display()))?;
        let key = PublicKey::from_pem(&pem)
            .with_context(|| format!("farmgate ca issue --key {}", file.display()))?;
        request.key = Some(key);
    }
    let issued = ca
        .issue_with(&request)
        .with_context(|| in_words(role.describe(), role.name()))?;
    out!("{}", describe(&issued, false));
    Ok(ExitCode::SUCCESS)
}

fn revoke(args: &RevokeArgs) -> anyhow::Result<ExitCode> {
    let target = match (&args.which.serial, &args.which.cert) {
        (Some(serial), _) => Target::Serial(parse_serial(serial).with_context(|| {
            format!("farmgate ca revoke: `{serial}` is not a serial number; write it in hex")
        })?),
        (None, Some(file)) => Target::Certificate(file.clone()),
        // clap requires exactly one of them.
        (None, None) => anyhow::bail!("give --serial S or --cert FILE"),
    };
    let ca = CaStore::open(&args.dir).context("farmgate ca revoke")?;
    let entry = ca
        .revoke(&target, args.reason)
        .context("farmgate ca revoke")?;
    let reason = args.reason.map_or(String::new(), |r| format!(" ({r})"));
    outln!(
        "revoked certificate {} of {} [{}]{reason}",
        entry.serial,
        if entry.subject.is_empty() {
            "(no subject)"
        } else {
            &entry.subject
        },
        entry.sans.join(", ")
    );
    outln!(
        "next: publish a new CRL: farmgate ca crl --dir {} --out CRL-FILE",
        ca.dir().display()
    );
    Ok(ExitCode::SUCCESS)
}

fn crl(args: &CrlArgs) -> anyhow::Result<ExitCode> {
    let ca = CaStore::open(&args.dir).context("farmgate ca crl")?;
    let published = ca
        .publish_crl(&args.out, args.valid)
        .context("farmgate ca crl")?;
    outln!(
        "wrote CRL number {} of {} to {}: {} revoked certificate{}",
        published.number,
        ca.authority().subject(),
        published.path.display(),
        published.revoked,
        if published.revoked == 1 { "" } else { "s" }
    );
    outln!(
        "  valid until {} (nextUpdate): publish the next one well before, e.g. daily",
        published.next_update
    );
    if published.with_ca_certificate {
        outln!(
            "  followed by the intermediate's certificate, so gates that trust only the root \
             can check who signed it"
        );
    }
    outln!(
        "gates: crl = [{:?}] in [listener.tls.client_auth]; nginx: ssl_crl {};",
        published.path.display().to_string(),
        published.path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `--reason`: an RFC 5280 reason as `farmgate_pki::Reason` spells it.
fn reason(text: &str) -> Result<Reason, String> {
    Reason::parse(text).ok_or_else(|| {
        let all: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        format!("expected one of {}", all.join(", "))
    })
}

/// `--valid`: a duration such as `7d`, `36h`.
fn crl_validity(text: &str) -> Result<time::Duration, String> {
    farmgate_config::parse_duration(text)
        .filter(|d| !d.is_zero())
        .and_then(|d| time::Duration::try_from(d).ok())
        .ok_or_else(|| "expected a duration such as 7d, 36h or 90m".to_owned())
}

fn describe(issued: &IssuedFiles, renewed: bool) -> String {
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
        "{} a {} certificate for {} ({usage}), valid {} days, until {}, serial {}",
        if renewed { "renewed" } else { "issued" },
        issued.role.describe(),
        issued.role.name(),
        issued.days,
        issued.not_after.date(),
        issued.serial
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
    match &issued.key {
        Some(key) => {
            let _ = writeln!(out, "  {}  private key (mode 0600)", key.display());
        }
        None => {
            let _ = writeln!(out, "  the key is the one it had: no key file written");
        }
    }
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
