//! [`CaStore`]: a private CA kept as files in a directory, as `farmgate ca` uses it.
//!
//! `DIR/ca.pem` is the CA certificate (for an intermediate, followed by its chain up to the
//! root; give the root to whoever verifies: a gate's `trust`, an nginx
//! `ssl_client_certificate`); `DIR/ca.key` is its private key, mode 0600; `DIR/index.json`
//! records every certificate issued and revoked ([`index`]). Certificates, chains and keys are
//! created anew, and an existing file is an error that names it; only a renewal in place
//! replaces a certificate (never a key), and `ca crl` replaces its CRL file, each atomically.
//!
//! ```
//! use farmgate_pki::CaSpec;
//! use farmgate_pki::store::{CaStore, Role};
//!
//! let dir = tempfile::tempdir()?;
//! let ca = CaStore::init(&dir.path().join("farm-ca"), &CaSpec::new("farm CA").permit_dns("farm.example"))?;
//! let edge = ca.issue(&Role::Client("edge.farm.example".into()), None, None)?;
//! assert_eq!(edge.dns_names, ["edge.farm.example"]);
//! assert!(ca.issue(&Role::Client("edge.elsewhere.example".into()), None, None).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod index;
mod lifecycle;

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ipnet::IpNet;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer as _;

use crate::{Authority, CaSpec, CertSpec, PkiError, PublicKey, Usage, pem};
use index::{Entry, Index, Kind};

pub use lifecycle::{PublishedCrl, Target};

/// The CA certificate's file name in a CA directory.
pub const CA_CERT: &str = "ca.pem";
/// The CA private key's file name in a CA directory.
pub const CA_KEY: &str = "ca.key";
/// In an intermediate's directory, the root it chains to: what gates trust.
pub const ROOT_CERT: &str = "root.pem";

/// Mode of private key files.
const KEY_MODE: u32 = 0o600;
/// Mode of certificate files: public.
const CERT_MODE: u32 = 0o644;
/// Mode of a CA directory `init` creates.
const DIR_MODE: u32 = 0o700;
/// How long an intermediate from [`CaStore::init_intermediate`] lives, at most (and never
/// beyond its root).
const INTERMEDIATE_DAYS: i64 = 1825;

/// A CA loaded from (or just written to) a directory, ready to issue.
#[derive(Debug)]
pub struct CaStore {
    dir: PathBuf,
    authority: Authority,
    /// PEM of the self-signed certificates in `ca.pem`: what completes a full chain.
    roots_pem: String,
    /// The name constraints of each certificate in `ca.pem` that has some, the CA's own
    /// first: a name must be inside all of them.
    constraints: Vec<Constraints>,
    not_after: OffsetDateTime,
}

/// The permitted subtrees of one CA certificate's name constraints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Constraints {
    /// DNS names (and the names below them); empty: DNS names are not constrained.
    pub dns: Vec<String>,
    /// IP address ranges; empty: IP addresses are not constrained.
    pub ips: Vec<IpNet>,
    /// URI hosts (`farm.internal`, or `.farm.internal` for the hosts below it); empty: URIs
    /// are not constrained.
    pub uri_hosts: Vec<String>,
}

/// Who a certificate from [`CaStore::issue`] is for.
///
/// A client's or server's name is an IP address or a DNS name in the syntax allow-lists accept
/// (letters, digits, hyphens and dots; `*.` only as the whole leftmost label): the caller
/// parses it, as `farmgate ca` does with farmgate-identity's rules, so that every certificate
/// the CA issues can be named on a gate. Here it is only lower-cased, freed of a trailing dot,
/// and checked against the CA's name constraints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A TLS client (an edge towards its gates): clientAuth, DNS (or IP) SAN and CN.
    Client(String),
    /// A TLS server (a gate, a backend): serverAuth, DNS (or IP) SAN and CN.
    Server(String),
    /// A TLS client named by a SPIFFE ID: clientAuth, URI SAN, no CN.
    Spiffe(String),
}

impl Role {
    /// The name or URI as given.
    pub fn name(&self) -> &str {
        match self {
            Role::Client(name) | Role::Server(name) | Role::Spiffe(name) => name,
        }
    }

    /// `client`, `server` or `SPIFFE client`.
    pub fn describe(&self) -> &'static str {
        match self {
            Role::Client(_) => "client",
            Role::Server(_) => "server",
            Role::Spiffe(_) => "SPIFFE client",
        }
    }

    /// The extended key usage the certificate carries.
    pub fn usage(&self) -> Usage {
        match self {
            Role::Server(_) => Usage::ServerAuth,
            Role::Client(_) | Role::Spiffe(_) => Usage::ClientAuth,
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Role::Client(_) => Kind::Client,
            Role::Server(_) => Kind::Server,
            Role::Spiffe(_) => Kind::Spiffe,
        }
    }
}

/// What to issue with [`CaStore::issue_with`]: beyond the role, all optional.
#[derive(Debug, Clone)]
pub struct Request {
    /// Who it is for.
    pub role: Role,
    /// Lifetime in days; default 30 for clients, 90 for servers.
    pub days: Option<u32>,
    /// Where to write (`PREFIX.pem`, ...); default the name in the CA directory.
    pub out: Option<PathBuf>,
    /// A CRL distribution point URL to put in the certificate (`http://` or `https://`).
    pub crl_url: Option<String>,
    /// Certify this existing key instead of generating one (no key file is written).
    pub key: Option<PublicKey>,
}

impl Request {
    /// A certificate for `role` with every default.
    pub fn new(role: Role) -> Self {
        Request {
            role,
            days: None,
            out: None,
            crl_url: None,
            key: None,
        }
    }
}

/// The files one [`CaStore::issue`] (or [`CaStore::renew`]) wrote, and what names the
/// identity on a gate.
#[derive(Debug, Clone)]
pub struct IssuedFiles {
    /// Who it is for.
    pub role: Role,
    /// The leaf then any intermediates, without the root: what the client or server presents
    /// (`certificate`, `client_certificate`, curl's `--cert`).
    pub certificate: PathBuf,
    /// The leaf, any intermediates and the root.
    pub full_chain: PathBuf,
    /// The private key written, PKCS#8 PEM, mode 0600; `None` when an existing key was
    /// certified (`--key`, `--renew`) and no key file was written.
    pub key: Option<PathBuf>,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Lifetime in days.
    pub days: u32,
    /// The DNS names certified, lower-case (a gate allows them as `dns:NAME`); empty for an IP
    /// address or a SPIFFE ID (which a gate allows as `uri:` + the role's name).
    pub dns_names: Vec<String>,
    /// SHA-256 of the key's SubjectPublicKeyInfo: the `spki-sha256:` pin, which survives
    /// renewals that keep the key.
    pub spki_sha256: [u8; 32],
    /// The serial number, lower-case hex, as the index and `ca revoke --serial` write it.
    pub serial: String,
}

impl CaStore {
    /// Creates a root CA as described by `spec` in `dir` (created with mode 0700 if missing):
    /// `ca.key` (mode 0600) and `ca.pem`. Refuses if either file exists.
    pub fn init(dir: &Path, spec: &CaSpec) -> Result<CaStore, PkiError> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        refuse_existing_ca(&[&cert_path, &key_path])?;
        let spec = normalized(spec)?;
        let authority = Authority::new_root(&spec)?;
        create_dir(dir)?;
        write_all_new(&[
            (&key_path, &authority.key_pem(), KEY_MODE),
            (&cert_path, authority.cert_pem(), CERT_MODE),
        ])?;
        Ok(CaStore {
            dir: dir.to_path_buf(),
            roots_pem: authority.cert_pem().to_owned(),
            constraints: own_constraints(&spec),
            not_after: spec.not_after,
            authority,
        })
    }

    /// Creates an issuing intermediate CA in `dir`, signed by the CA `root` (which can then go
    /// back offline): `ca.key` (mode 0600), `ca.pem` (the intermediate, then its chain to the
    /// root) and `root.pem` (the root: what gates trust). The intermediate carries no extended
    /// key usage, so it constrains nothing: Go and OpenSSL check the EKU of every CA of a
    /// chain, and an intermediate limited to serverAuth would break every client certificate
    /// below it. It may sign no further CA (path length 0) unless `spec` says otherwise, lives
    /// five years or as long as its root, and is recorded in the root's index, so the root can
    /// revoke it.
    pub fn init_intermediate(
        dir: &Path,
        spec: &CaSpec,
        root: &CaStore,
    ) -> Result<CaStore, PkiError> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        let root_path = dir.join(ROOT_CERT);
        refuse_existing_ca(&[&cert_path, &key_path, &root_path])?;
        if !spec.permitted_uri_hosts.is_empty() {
            return Err(PkiError::UriConstraintOnIntermediate);
        }
        let mut spec = normalized(spec)?;
        spec.usages.clear();
        if spec.path_len.is_none() {
            spec.path_len = Some(0);
        }
        spec.not_after = spec
            .not_after
            .min(spec.not_before + Duration::days(INTERMEDIATE_DAYS))
            .min(root.not_after);
        for name in &spec.permitted_dns {
            root.check_constraints(name, name)?;
        }
        for range in &spec.permitted_ips {
            root.check_range(range)?;
        }
        let authority = root.authority.intermediate(&spec)?;
        let chain = format!("{}{}", authority.chain_pem(), root.roots_pem);
        create_dir(dir)?;
        write_all_new(&[
            (&key_path, &authority.key_pem(), KEY_MODE),
            (&cert_path, &chain, CERT_MODE),
            (&root_path, &root.roots_pem, CERT_MODE),
        ])?;
        let recorded = root.record(authority.cert_der(), Some(Kind::Intermediate));
        if let Err(e) = recorded {
            for path in [&key_path, &cert_path, &root_path] {
                let _ = fs::remove_file(path);
            }
            return Err(e);
        }
        CaStore::open(dir)
    }

    /// Loads the CA in `dir`.
    pub fn open(dir: &Path) -> Result<CaStore, PkiError> {
        let cert_path = dir.join(CA_CERT);
        if !cert_path.exists() {
            return Err(PkiError::NoCa {
                dir: dir.to_path_buf(),
            });
        }
        let cert_pem = read(&cert_path)?;
        let key_pem = read(&dir.join(CA_KEY))?;
        let in_dir = |source| PkiError::CaFiles {
            dir: dir.to_path_buf(),
            source: Box::new(source),
        };
        let authority = Authority::from_pem(&cert_pem, &key_pem).map_err(in_dir)?;
        let (roots_pem, constraints, not_after) = describe_ca(&cert_pem).map_err(in_dir)?;
        Ok(CaStore {
            dir: dir.to_path_buf(),
            authority,
            roots_pem,
            constraints,
            not_after,
        })
    }

    /// Issues a certificate for `role`, valid `days` (default: 30 for clients, 90 for servers),
    /// and writes `PREFIX.pem` (leaf and intermediates), `PREFIX.fullchain.pem` (with the root)
    /// and `PREFIX.key` (mode 0600). `out` is the prefix; by default the name in the CA
    /// directory. Refuses names the CA's constraints exclude and files that exist.
    pub fn issue(
        &self,
        role: &Role,
        days: Option<u32>,
        out: Option<&Path>,
    ) -> Result<IssuedFiles, PkiError> {
        let mut request = Request::new(role.clone());
        request.days = days;
        request.out = out.map(Path::to_path_buf);
        self.issue_with(&request)
    }

    /// Issues what `request` describes (see [`issue`](Self::issue)), recording it in the index.
    /// With `request.key`, that key is certified and no key file is written.
    pub fn issue_with(&self, request: &Request) -> Result<IssuedFiles, PkiError> {
        let role = &request.role;
        let mut spec = self.spec(role)?;
        let days = match request.days {
            Some(days) => days,
            // Default lifetimes are whole days (spec.rs).
            None => u32::try_from((spec.not_after - spec.not_before).whole_days()).unwrap_or(1),
        };
        self.set_lifetime(&mut spec, days)?;
        if let Some(url) = &request.crl_url {
            spec = spec.crl_url(&checked_crl_url(url)?);
        }

        let prefix = match &request.out {
            Some(prefix) => prefix.clone(),
            None => self.dir.join(file_stem(role.name())),
        };
        let certificate = with_suffix(&prefix, ".pem");
        let full_chain = with_suffix(&prefix, ".fullchain.pem");
        let key = request.key.is_none().then(|| with_suffix(&prefix, ".key"));
        for path in [Some(&certificate), Some(&full_chain), key.as_ref()]
            .into_iter()
            .flatten()
        {
            if path.exists() {
                return Err(PkiError::FileExists { path: path.clone() });
            }
        }

        let (cert_der, chain_pem, spki, key_pem) = match &request.key {
            Some(public) => {
                let certified = self.authority.certify(&spec, public)?;
                (
                    certified.cert_der,
                    certified.chain_pem,
                    public.spki_der(),
                    None,
                )
            }
            None => {
                let issued = self.authority.issue(&spec)?;
                let spki = issued.key.spki_der();
                (
                    issued.cert_der,
                    issued.chain_pem,
                    spki,
                    Some(issued.key_pem),
                )
            }
        };
        let full = format!("{chain_pem}{}", self.roots_pem);
        let mut files = vec![
            (&certificate, chain_pem.as_str(), CERT_MODE),
            (&full_chain, full.as_str(), CERT_MODE),
        ];
        if let (Some(path), Some(pem)) = (&key, &key_pem) {
            files.insert(0, (path, pem.as_str(), KEY_MODE));
        }
        write_all_new(&files)?;
        let entry = match self.record(&cert_der, Some(role.kind())) {
            Ok(entry) => entry,
            Err(e) => {
                for (path, _, _) in &files {
                    let _ = fs::remove_file(path);
                }
                return Err(e);
            }
        };

        Ok(IssuedFiles {
            role: role.clone(),
            certificate,
            full_chain,
            key,
            not_after: spec.not_after,
            days,
            // Names lower-cased by `checked_name`.
            dns_names: spec.dns_names.clone(),
            spki_sha256: spki_sha256(&spki),
            serial: entry.serial,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `DIR/ca.pem`.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT)
    }

    /// `DIR/ca.key`.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(CA_KEY)
    }

    /// The CA itself.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Whether this CA is a root (self-signed), not an intermediate.
    pub fn is_root(&self) -> bool {
        self.authority.chain_pem().is_empty()
    }

    /// The DNS names (and their subdomains) the CA's own certificate permits; empty: any.
    pub fn permitted_dns(&self) -> &[String] {
        self.constraints.first().map_or(&[], |c| c.dns.as_slice())
    }

    /// The IP address ranges the CA's own certificate permits; empty: any.
    pub fn permitted_ips(&self) -> &[IpNet] {
        self.constraints.first().map_or(&[], |c| c.ips.as_slice())
    }

    /// The URI hosts the CA's own certificate permits; empty: any.
    pub fn permitted_uri_hosts(&self) -> &[String] {
        self.constraints
            .first()
            .map_or(&[], |c| c.uri_hosts.as_slice())
    }

    /// When the CA expires.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// The issuance index.
    pub fn index(&self) -> Result<Index, PkiError> {
        Index::read(&self.dir)
    }

    /// What to mint for `role`, once its name is checked.
    fn spec(&self, role: &Role) -> Result<CertSpec, PkiError> {
        let spec = match role {
            Role::Spiffe(uri) => {
                check_spiffe(uri)?;
                self.check_uri_constraints(uri)?;
                return Ok(CertSpec::spiffe(uri));
            }
            Role::Client(name) => CertSpec::client(&self.checked_name(name, role)?),
            Role::Server(name) => CertSpec::server(&self.checked_name(name, role)?),
        };
        // An IP address is named by its IP SAN. OpenSSL would check an address-like CN
        // against DNS name constraints as if it were a host name, so leave the CN out.
        Ok(if spec.ip_addresses.is_empty() {
            spec
        } else {
            spec.no_common_name()
        })
    }

    /// Sets `spec`'s lifetime to `days` from its start, within the CA's.
    fn set_lifetime(&self, spec: &mut CertSpec, days: u32) -> Result<(), PkiError> {
        if days == 0 {
            return Err(PkiError::ZeroDays);
        }
        // Past the year 9999 (`--days 3000000`) is past the CA too.
        match spec.not_before.checked_add(Duration::days(i64::from(days))) {
            Some(not_after) if not_after <= self.not_after => {
                spec.not_after = not_after;
                Ok(())
            }
            _ => Err(PkiError::OutlivesCa {
                days,
                ca_not_after: self.not_after,
            }),
        }
    }

    /// `name` as it goes into the certificate: an IP address, or a lower-case DNS name inside
    /// the CA's constraints.
    fn checked_name(&self, name: &str, role: &Role) -> Result<String, PkiError> {
        if let Ok(ip) = name.parse::<IpAddr>() {
            let ip = ip.to_string();
            self.check_constraints(&ip, name)?;
            return Ok(ip);
        }
        let normalized = dns_name(name);
        if normalized.starts_with("*.") && matches!(role, Role::Client(_)) {
            return Err(PkiError::Wildcard {
                name: name.to_owned(),
                what: "a client identity",
            });
        }
        let bare = normalized.strip_prefix("*.").unwrap_or(&normalized);
        self.check_constraints(bare, name)?;
        Ok(normalized)
    }

    /// Refuses `name` (an IP address or a lower-case DNS name; `given` as the operator wrote
    /// it) unless it is inside the name constraints of every certificate of the CA's chain.
    fn check_constraints(&self, name: &str, given: &str) -> Result<(), PkiError> {
        let ip = name.parse::<IpAddr>().ok();
        for c in &self.constraints {
            let (inside, permitted) = match ip {
                Some(_) if c.ips.is_empty() => continue,
                Some(ip) => (
                    c.ips.iter().any(|range| range.contains(&ip)),
                    c.ips.iter().map(ToString::to_string).collect(),
                ),
                None if c.dns.is_empty() => continue,
                None => (
                    c.dns.iter().any(|suffix| within(name, suffix)),
                    c.dns.clone(),
                ),
            };
            if !inside {
                return Err(PkiError::OutsideConstraints {
                    name: given.to_owned(),
                    permitted,
                });
            }
        }
        Ok(())
    }

    /// Refuses an intermediate's permitted address `range` unless it lies inside the IP name
    /// constraints of every certificate of this CA's chain: what it certifies beyond them no
    /// verifier would accept.
    fn check_range(&self, range: &IpNet) -> Result<(), PkiError> {
        for c in self.constraints.iter().filter(|c| !c.ips.is_empty()) {
            if !c.ips.iter().any(|outer| outer.contains(range)) {
                return Err(PkiError::OutsideConstraints {
                    name: range.to_string(),
                    permitted: c.ips.iter().map(ToString::to_string).collect(),
                });
            }
        }
        Ok(())
    }

    /// Refuses URI `uri` unless its host is inside the URI name constraints of every
    /// certificate of the CA's chain (RFC 5280 4.2.1.10: a constraint names a host, or with a
    /// leading period the hosts below a domain).
    fn check_uri_constraints(&self, uri: &str) -> Result<(), PkiError> {
        let host = trust_domain(uri).map(str::to_ascii_lowercase);
        for c in self.constraints.iter().filter(|c| !c.uri_hosts.is_empty()) {
            let inside = host.as_deref().is_some_and(|host| {
                c.uri_hosts.iter().any(|base| match base.strip_prefix('.') {
                    Some(domain) => host.len() > domain.len() + 1 && within(host, domain),
                    None => host.eq_ignore_ascii_case(base),
                })
            });
            if !inside {
                return Err(PkiError::OutsideConstraints {
                    name: uri.to_owned(),
                    permitted: c
                        .uri_hosts
                        .iter()
                        .map(|h| format!("uri host {h}"))
                        .collect(),
                });
            }
        }
        Ok(())
    }

    /// Adds the certificate `der` this CA just issued to the index (`kind`, or as read from
    /// the certificate), and returns its entry.
    fn record(&self, der: &[u8], kind: Option<Kind>) -> Result<Entry, PkiError> {
        let entry = entry_for(der, kind)?;
        Index::update(&self.dir, |index| {
            if index.find(&entry.serial).is_none() {
                index.certificates.push(entry.clone());
            }
            Ok(())
        })?;
        Ok(entry)
    }
}

/// A spec's constraints, normalized: DNS suffixes lower-case, wildcards refused.
fn normalized(spec: &CaSpec) -> Result<CaSpec, PkiError> {
    let mut spec = spec.clone();
    spec.permitted_dns = spec
        .permitted_dns
        .iter()
        .map(|name| permitted_suffix(name))
        .collect::<Result<_, _>>()?;
    spec.permitted_ips = spec.permitted_ips.iter().map(IpNet::trunc).collect();
    spec.permitted_uri_hosts = spec
        .permitted_uri_hosts
        .iter()
        .map(|host| host.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    Ok(spec)
}

fn own_constraints(spec: &CaSpec) -> Vec<Constraints> {
    let own = Constraints {
        dns: spec.permitted_dns.clone(),
        ips: spec.permitted_ips.clone(),
        uri_hosts: spec.permitted_uri_hosts.clone(),
    };
    if own == Constraints::default() {
        Vec::new()
    } else {
        vec![own]
    }
}

fn refuse_existing_ca(paths: &[&PathBuf]) -> Result<(), PkiError> {
    match paths.iter().find(|path| path.exists()) {
        Some(path) => Err(PkiError::CaExists {
            path: (*path).clone(),
        }),
        None => Ok(()),
    }
}

/// A `--crl-url`: an `http://` or `https://` URL of visible ASCII with a host.
fn checked_crl_url(url: &str) -> Result<String, PkiError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let host = rest.and_then(|r| r.split(['/', '?', '#']).next());
    let visible = url
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if host.is_some_and(|h| !h.is_empty()) && visible {
        Ok(url.to_owned())
    } else {
        Err(PkiError::CrlUrl {
            url: url.to_owned(),
        })
    }
}

/// The index entry of certificate `der`: its serial, names, validity and pin, and `kind` (or
/// what the certificate says it is for).
fn entry_for(der: &[u8], kind: Option<Kind>) -> Result<Entry, PkiError> {
    let cert = parse_cert(der)?;
    let names = Names::of(&cert);
    let kind = kind.unwrap_or_else(|| kind_of(&cert, &names));
    let mut sans: Vec<String> = names.dns.iter().map(|n| format!("dns:{n}")).collect();
    sans.extend(names.ips.iter().map(|ip| format!("ip:{ip}")));
    sans.extend(names.uris.iter().map(|u| format!("uri:{u}")));
    Ok(Entry {
        serial: index::serial_hex(cert.raw_serial()),
        subject: cert.subject().to_string(),
        sans,
        kind,
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        key_pin: format!(
            "spki-sha256:{}",
            STANDARD.encode(spki_sha256(cert.public_key().raw))
        ),
        revoked: None,
    })
}

/// The names a certificate holds.
#[derive(Debug, Default)]
struct Names {
    common_name: Option<String>,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    uris: Vec<String>,
}

impl Names {
    fn of(cert: &X509Certificate<'_>) -> Names {
        let mut names = Names {
            common_name: cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
            ..Names::default()
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => names.dns.push((*n).to_owned()),
                    GeneralName::URI(u) => names.uris.push((*u).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            names.ips.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        names
    }
}

/// What a certificate is for, read from it: a CA, a server (serverAuth without clientAuth), a
/// SPIFFE client (only URI names), else a client.
fn kind_of(cert: &X509Certificate<'_>, names: &Names) -> Kind {
    let eku = cert.extended_key_usage().ok().flatten().map(|e| e.value);
    if cert.is_ca() {
        Kind::Intermediate
    } else if eku.is_some_and(|e| e.server_auth && !e.client_auth) {
        Kind::Server
    } else if !names.uris.is_empty() && names.dns.is_empty() && names.ips.is_empty() {
        Kind::Spiffe
    } else {
        Kind::Client
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, PkiError> {
    match X509Certificate::from_der(der) {
        Ok((_, cert)) => Ok(cert),
        Err(x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e)) => {
            Err(PkiError::CaDer(e))
        }
        Err(x509_parser::nom::Err::Incomplete(_)) => Err(PkiError::CaDer(
            x509_parser::error::X509Error::InvalidCertificate,
        )),
    }
}

/// The trust domain of SPIFFE ID `uri` (`spiffe://DOMAIN/PATH`): the host a URI name constraint
/// names. `None` for another kind of URI.
pub fn trust_domain(uri: &str) -> Option<&str> {
    let rest = uri.strip_prefix("spiffe://")?;
    let domain = rest.split('/').next()?;
    (!domain.is_empty()).then_some(domain)
}

/// A `--permit-dns` suffix, lower-case, refused if a wildcard.
fn permitted_suffix(name: &str) -> Result<String, PkiError> {
    let normalized = dns_name(name);
    if normalized.starts_with("*.") {
        return Err(PkiError::Wildcard {
            name: name.to_owned(),
            what: "a name constraint (it permits the name and all names below it)",
        });
    }
    Ok(normalized)
}

/// A DNS name as certificates and allow-lists write it: lower-case, no trailing dot.
fn dns_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

fn spki_sha256(spki_der: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    // A SHA-256 digest is always 32 bytes long.
    out.copy_from_slice(digest(&SHA256, spki_der).as_ref());
    out
}

/// Whether DNS name `name` is `suffix` or below it (RFC 5280 name constraint semantics),
/// case-insensitively.
fn within(name: &str, suffix: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let suffix = suffix.trim_end_matches('.').to_ascii_lowercase();
    name == suffix || name.ends_with(&format!(".{suffix}"))
}

fn check_spiffe(uri: &str) -> Result<(), PkiError> {
    let not_spiffe = || PkiError::NotSpiffe {
        uri: uri.to_owned(),
    };
    let rest = uri.strip_prefix("spiffe://").ok_or_else(not_spiffe)?;
    let (domain, path) = rest.split_once('/').unwrap_or((rest, ""));
    let domain_ok = !domain.is_empty()
        && domain
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'));
    let path_ok = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'));
    if domain_ok && path_ok && !path.ends_with('/') {
        Ok(())
    } else {
        Err(not_spiffe())
    }
}

/// The self-signed certificates in a CA PEM, each certificate's permitted subtrees (DNS names,
/// IP ranges) and the CA's expiry.
fn describe_ca(cert_pem: &str) -> Result<(String, Vec<Constraints>, OffsetDateTime), PkiError> {
    let ders = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(PkiError::CaPem)?;
    let mut roots = String::new();
    let mut constraints = Vec::new();
    let mut not_after = None;
    for der in &ders {
        let cert = parse_cert(der)?;
        if cert.subject().as_raw() == cert.issuer().as_raw() {
            roots.push_str(&pem::encode("CERTIFICATE", der));
        }
        let expires = cert.validity().not_after.to_datetime();
        // The CA's usable life ends when the first certificate of its chain expires.
        not_after = Some(not_after.map_or(expires, |t: OffsetDateTime| t.min(expires)));
        if let Ok(Some(nc)) = cert.name_constraints() {
            let mut own = Constraints::default();
            for subtree in nc.value.permitted_subtrees.iter().flatten() {
                match subtree.base {
                    GeneralName::DNSName(name) => own.dns.push(name.to_ascii_lowercase()),
                    GeneralName::IPAddress(bytes) => own.ips.extend(ip_range(bytes)),
                    GeneralName::URI(host) => own.uri_hosts.push(host.to_ascii_lowercase()),
                    _ => {}
                }
            }
            if own != Constraints::default() {
                constraints.push(own);
            }
        }
    }
    let not_after = not_after.ok_or(PkiError::NoCaCertificate)?;
    Ok((roots, constraints, not_after))
}

/// An IP name constraint's address and mask (8 or 32 bytes) as a range.
fn ip_range(bytes: &[u8]) -> Option<IpNet> {
    let half = bytes.len() / 2;
    let (address, mask) = (ip_from_bytes(bytes.get(..half)?)?, bytes.get(half..)?);
    let prefix: u32 = mask.iter().map(|b| b.count_ones()).sum();
    IpNet::new(address, u8::try_from(prefix).ok()?).ok()
}

/// A file name for `name`: letters, digits, `.`, `-` and `_` kept, anything else `_`; a
/// SPIFFE ID loses its scheme (`spiffe://farm/edge` → `farm_edge`).
fn file_stem(name: &str) -> String {
    let name = name.strip_prefix("spiffe://").unwrap_or(name);
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    stem.trim_start_matches('.').to_owned()
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(prefix.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(dir).map_err(|source| PkiError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })
}

/// Creates every file, none of which may exist; if one fails, removes those already written,
/// so a failed `init` or `issue` leaves nothing half done.
fn write_all_new(files: &[(&PathBuf, &str, u32)]) -> Result<(), PkiError> {
    // `--out certs/edge` may name a directory that does not exist yet.
    for (path, _, _) in files {
        if let Some(parent) = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty() && !p.exists())
        {
            create_dir(parent)?;
        }
    }
    for (done, (path, contents, mode)) in files.iter().enumerate() {
        if let Err(e) = write_new(path, contents, *mode) {
            for (written, _, _) in &files[..done] {
                let _ = fs::remove_file(written);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Creates `path`, which must not exist, with permissions `mode`.
fn open_new(path: &Path, mode: u32) -> std::io::Result<fs::File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path)
}

fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let mut file = open_new(path, mode).map_err(|source| match source.kind() {
        ErrorKind::AlreadyExists => PkiError::FileExists {
            path: path.to_path_buf(),
        },
        _ => PkiError::Write {
            path: path.to_path_buf(),
            source,
        },
    })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| {
            let _ = fs::remove_file(path);
            PkiError::Write {
                path: path.to_path_buf(),
                source,
            }
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn ekus(path: &Path) -> (bool, bool) {
        let der = CertificateDer::from_pem_file(path).unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value.clone();
        (eku.server_auth, eku.client_auth)
    }

    #[test]
    fn init_writes_a_private_key_only_the_owner_reads() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("new").join("farm-ca");
        let ca = CaStore::init(&ca_dir, &CaSpec::new("farm CA")).unwrap();
        assert_eq!(mode(&ca.key_path()), 0o600);
        assert_eq!(mode(&ca_dir), 0o700);
        assert!(ca.permitted_dns().is_empty());
        let again = CaStore::open(&ca_dir).unwrap();
        assert_eq!(again.authority().cert_der(), ca.authority().cert_der());
        assert_eq!(
            again.not_after().unix_timestamp(),
            ca.not_after().unix_timestamp()
        );
    }

    #[test]
    fn init_refuses_to_overwrite_even_half_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CA_KEY), "precious").unwrap();
        let e = CaStore::init(dir.path(), &CaSpec::new("farm CA")).unwrap_err();
        assert!(
            matches!(&e, PkiError::CaExists { path } if path.ends_with(CA_KEY)),
            "{e}"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join(CA_KEY)).unwrap(),
            "precious"
        );
        assert!(!dir.path().join(CA_CERT).exists());
    }

    #[test]
    fn issue_writes_certificate_chain_and_key_with_the_right_purpose() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CaStore::init(dir.path(), &CaSpec::new("farm CA")).unwrap();
        let edge = ca
            .issue(&Role::Client("Edge.Farm.Test".into()), None, None)
            .unwrap();
        assert_eq!(edge.certificate, dir.path().join("Edge.Farm.Test.pem"));
        assert_eq!(edge.days, 30);
        assert_eq!(mode(edge.key.as_ref().unwrap()), 0o600);
        assert_eq!(ekus(&edge.certificate), (false, true));
        assert_eq!(edge.dns_names, ["edge.farm.test"]);
        let key_pem = fs::read_to_string(edge.key.as_ref().unwrap()).unwrap();
        let key = crate::KeyPair::from_pem(&key_pem).unwrap();
        assert_eq!(edge.spki_sha256, spki_sha256(&key.spki_der()));
        let full = fs::read_to_string(&edge.full_chain).unwrap();
        assert!(full.ends_with(ca.authority().cert_pem()));
        assert_eq!(full.matches("BEGIN CERTIFICATE").count(), 2);
        let presented = fs::read_to_string(&edge.certificate).unwrap();
        assert_eq!(presented.matches("BEGIN CERTIFICATE").count(), 1);

        let backend = ca
            .issue(&Role::Server("10.0.0.11".into()), Some(7), None)
            .unwrap();
        assert_eq!(ekus(&backend.certificate), (true, false));
        assert_eq!(backend.days, 7);
        assert!(backend.dns_names.is_empty(), "an IP has no DNS name");
        let spiffe = ca
            .issue(&Role::Spiffe("spiffe://farm.test/edge".into()), None, None)
            .unwrap();
        assert_eq!(spiffe.certificate, dir.path().join("farm.test_edge.pem"));
        assert!(spiffe.dns_names.is_empty(), "a SPIFFE ID has no DNS name");
    }

    #[test]
    fn issue_refuses_to_overwrite_and_leaves_the_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CaStore::init(dir.path(), &CaSpec::new("farm CA")).unwrap();
        let first = ca.issue(&Role::Client("edge".into()), None, None).unwrap();
        let key = fs::read_to_string(first.key.as_ref().unwrap()).unwrap();
        let e = ca
            .issue(&Role::Client("edge".into()), None, None)
            .unwrap_err();
        assert!(matches!(e, PkiError::FileExists { .. }), "{e}");
        assert_eq!(
            fs::read_to_string(first.key.as_ref().unwrap()).unwrap(),
            key
        );
    }

    #[test]
    fn names_outside_the_constraints_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let spec = CaSpec::new("farm CA").permit_dns("Farm.Test");
        let ca = CaStore::init(dir.path(), &spec).unwrap();
        let ca = CaStore::open(ca.dir()).unwrap();
        assert_eq!(ca.permitted_dns(), ["farm.test"]);
        for inside in ["farm.test", "edge.farm.test", "a.b.farm.test"] {
            ca.issue(&Role::Client(inside.into()), None, None).unwrap();
        }
        for outside in ["evilfarm.test", "farm.test.evil", "example.com"] {
            let e = ca
                .issue(&Role::Server(outside.into()), None, None)
                .unwrap_err();
            assert!(matches!(e, PkiError::OutsideConstraints { .. }), "{e}");
            assert!(!dir.path().join(format!("{outside}.key")).exists());
        }
    }

    #[test]
    fn ip_constraints_are_in_the_ca_and_refuse_addresses_outside_them() {
        let dir = tempfile::tempdir().unwrap();
        let spec = CaSpec::new("farm CA")
            .permit_dns("farm.test")
            .permit_ip("10.1.2.3/8".parse().unwrap());
        CaStore::init(dir.path(), &spec).unwrap();
        let ca = CaStore::open(dir.path()).unwrap();
        assert_eq!(ca.permitted_ips(), ["10.0.0.0/8".parse::<IpNet>().unwrap()]);
        assert_eq!(ca.permitted_dns(), ["farm.test"]);
        ca.issue(&Role::Server("10.0.0.11".into()), None, None)
            .unwrap();
        ca.issue(&Role::Client("edge.farm.test".into()), None, None)
            .unwrap();
        for outside in ["192.168.1.1", "::1"] {
            let e = ca
                .issue(&Role::Client(outside.into()), None, None)
                .unwrap_err();
            assert!(
                matches!(&e, PkiError::OutsideConstraints { permitted, .. } if permitted == &["10.0.0.0/8"]),
                "{e}"
            );
        }
    }

    #[test]
    fn uri_constraints_are_in_the_ca_and_refuse_other_trust_domains() {
        let dir = tempfile::tempdir().unwrap();
        let spec = CaSpec::new("farm CA")
            .permit_dns("farm.internal")
            .permit_uri_host("Farm.Internal");
        CaStore::init(dir.path(), &spec).unwrap();
        let ca = CaStore::open(dir.path()).unwrap();
        assert_eq!(ca.permitted_uri_hosts(), ["farm.internal"]);
        assert_eq!(ca.permitted_dns(), ["farm.internal"]);
        ca.issue(
            &Role::Spiffe("spiffe://farm.internal/edge".into()),
            None,
            None,
        )
        .unwrap();
        for outside in [
            "spiffe://evil.internal/edge",
            "spiffe://sub.farm.internal/edge",
        ] {
            let e = ca
                .issue(&Role::Spiffe(outside.into()), None, None)
                .unwrap_err();
            assert!(
                matches!(&e, PkiError::OutsideConstraints { permitted, .. } if permitted == &["uri host farm.internal"]),
                "{e}"
            );
        }
        // A DNS name is not a URI: only the DNS constraint applies to it.
        ca.issue(&Role::Client("edge.farm.internal".into()), None, None)
            .unwrap();
        // An intermediate's address ranges lie within the root's.
        let ranged_dir = dir.path().join("ranged");
        let ranged = CaStore::init(
            &ranged_dir,
            &CaSpec::new("r").permit_ip("10.0.0.0/8".parse().unwrap()),
        )
        .unwrap();
        let outside = CaStore::init_intermediate(
            &dir.path().join("outside"),
            &CaSpec::new("o").permit_ip("192.168.0.0/16".parse().unwrap()),
            &ranged,
        );
        assert!(
            matches!(&outside, Err(PkiError::OutsideConstraints { permitted, .. }) if permitted == &["10.0.0.0/8"]),
            "{outside:?}"
        );
        CaStore::init_intermediate(
            &dir.path().join("inside"),
            &CaSpec::new("i").permit_ip("10.1.0.0/16".parse().unwrap()),
            &ranged,
        )
        .unwrap();
        // Never on an intermediate: webpki would refuse every URI name below it.
        assert!(matches!(
            CaStore::init_intermediate(
                &dir.path().join("issuing"),
                &CaSpec::new("i").permit_uri_host("farm.internal"),
                &ca
            ),
            Err(PkiError::UriConstraintOnIntermediate)
        ));
        assert_eq!(
            trust_domain("spiffe://farm.internal/x"),
            Some("farm.internal")
        );
        assert_eq!(trust_domain("urn:x"), None);
    }

    #[test]
    fn bad_names_and_lifetimes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CaStore::init(dir.path(), &CaSpec::new("farm CA")).unwrap();
        let refuse = |role: Role, days| ca.issue(&role, days, None).unwrap_err();
        assert!(matches!(
            refuse(Role::Client("*.farm.test".into()), None),
            PkiError::Wildcard { .. }
        ));
        assert!(matches!(
            refuse(Role::Spiffe("https://farm.test/edge".into()), None),
            PkiError::NotSpiffe { .. }
        ));
        assert!(matches!(
            refuse(Role::Client("edge".into()), Some(0)),
            PkiError::ZeroDays
        ));
        assert!(matches!(
            refuse(Role::Client("edge".into()), Some(3651)),
            PkiError::OutlivesCa { .. }
        ));
        assert!(matches!(
            CaStore::init(
                &dir.path().join("x"),
                &CaSpec::new("x").permit_dns("*.farm.test")
            ),
            Err(PkiError::Wildcard { .. })
        ));
    }

    #[test]
    fn open_without_a_ca_says_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let e = CaStore::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("farmgate ca init --dir"), "{e}");
    }

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(file_stem("edge.farm.test"), "edge.farm.test");
        assert_eq!(file_stem("spiffe://farm.test/ns/edge"), "farm.test_ns_edge");
        assert_eq!(file_stem("::1"), "__1");
        assert_eq!(file_stem("../x"), "_x");
    }
}
