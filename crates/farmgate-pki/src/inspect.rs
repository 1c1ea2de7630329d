//! [`Report`]: what a certificate (chain) is good for, as `farmgate inspect` shows it.
//!
//! For every certificate: names, issuer, validity, key and extended key usages. For the chain:
//! whether it leads to the bundled public roots (webpki-roots, `trust = ["mozilla"]`) or to the
//! trust given. Then four plain verdicts, each "no" with its reasons:
//!
//! - **server**: a TLS client would accept it as a server certificate;
//! - **client**: standard verifiers (OpenSSL and so nginx, Go, rustls) would accept it as a client
//!   certificate: every certificate in the chain that has an EKU extension must permit clientAuth;
//! - **gate strict**: a farmgate gate with `eku = "client_auth"` (the default) accepts it, and
//!   with which allow-list entries;
//! - **gate compat**: a gate with `eku = "client_or_server_auth"` accepts it, and with which
//!   entries (a chain that only permits serverAuth needs an exact `dns:` or `spki-sha256:` one).
//!
//! Path validation is never done here: the client and gate verdicts run the gate's own
//! [`ClientVerifier`], the server verdict runs rustls-webpki as the edge's upstream client does.

use std::net::IpAddr;

use farmgate_config::EkuPolicy;
use farmgate_identity::{AllowList, AllowRule, PeerIdentity};
use farmgate_tls::{ClientVerifier, RefusalReason, TrustStore};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{ExtendedKeyUsage, GeneralName};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_SIG_ED448, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer as _;

use crate::PkiError;
use crate::facts::FactId;

/// Trust to judge chains against: the bundled public roots, and optionally the operator's.
#[derive(Debug, Clone)]
pub struct Inspector {
    public: TrustStore,
    given: Option<(TrustStore, String)>,
}

/// Everything `farmgate inspect` says about one file.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// The file, as named on the command line or in the configuration.
    pub file: String,
    /// When the verdicts hold (RFC 3339).
    pub inspected_at: String,
    /// The certificates in file order: the leaf first.
    pub certificates: Vec<CertificateInfo>,
    /// Where the chain leads.
    pub chain: ChainInfo,
    /// What the certificate is good for.
    pub verdicts: Verdicts,
}

/// One certificate of the chain.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CertificateInfo {
    /// 1-based position in the file.
    pub index: usize,
    /// Subject distinguished name, e.g. `CN=edge.farm.example`.
    pub subject: String,
    /// Subject common name, if any (newer public certificates have none).
    pub common_name: Option<String>,
    /// Subject alternative names as `dns:NAME`, `ip:ADDRESS`, `uri:URI` or `email:ADDRESS`.
    pub sans: Vec<String>,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// Start of validity (RFC 3339).
    pub not_before: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// Whole days until `not_after`; negative once expired.
    pub days_left: i64,
    /// Whole days from `not_before` to `not_after`.
    pub lifetime_days: i64,
    /// Key type, e.g. `ECDSA P-256`, `RSA 2048`.
    pub key: String,
    /// Whether it is a CA certificate (basicConstraints CA:TRUE).
    pub ca: bool,
    /// Whether it is self-signed (a root).
    pub self_signed: bool,
    /// Extended key usages, e.g. `["serverAuth"]`; `None`: no EKU extension, any purpose.
    pub eku: Option<Vec<String>>,
    /// The `spki-sha256:` pin of its key (base64).
    pub spki_sha256: String,
    /// SHA-256 fingerprint of the certificate, hex.
    pub sha256: String,
    #[serde(skip)]
    validity: (OffsetDateTime, OffsetDateTime),
}

/// Where the chain leads.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ChainInfo {
    /// Whether it leads to the bundled public roots (webpki-roots, `"mozilla"`).
    pub public_roots: Reach,
    /// Whether it leads to the trust given; `None` when none was given.
    pub trust: Option<Reach>,
    /// The trust given, as named (e.g. `ca.pem`).
    pub trust_label: Option<String>,
    /// The trust the verdicts were judged against.
    pub verdicts_against: String,
}

/// Whether a chain leads to a set of trust anchors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reach {
    /// A valid path leads to one of them.
    Yes,
    /// No valid path leads to any of them.
    No,
    /// Cannot be told: there is no moment when every certificate in the file is valid (e.g. an
    /// expired leaf from an intermediate issued after it expired), so no path can be checked.
    Unknown,
}

impl Reach {
    /// Only [`Reach::Yes`].
    pub fn is_yes(self) -> bool {
        self == Reach::Yes
    }
}

/// The four verdicts.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Verdicts {
    /// As a TLS server certificate.
    pub server: Verdict,
    /// As a TLS client certificate, by OpenSSL (nginx, Envoy), Go and rustls.
    pub client: Verdict,
    /// At a farmgate gate with `eku = "client_auth"`.
    pub gate_strict: Verdict,
    /// At a farmgate gate with `eku = "client_or_server_auth"`.
    pub gate_compat: Verdict,
}

/// One verdict.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct Verdict {
    /// Yes or no.
    pub usable: bool,
    /// Why not (empty when usable).
    pub reasons: Vec<String>,
    /// For gate verdicts: the allow-list entries that would admit it.
    pub allow: Vec<String>,
    /// What else to know.
    pub notes: Vec<String>,
    /// Rows of [`FACTS`](crate::facts::FACTS) behind the verdict.
    pub facts: Vec<FactId>,
}

/// The purposes a chain can be checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Server,
    Client,
}

impl Purpose {
    fn eku(self) -> &'static str {
        match self {
            Purpose::Server => "serverAuth",
            Purpose::Client => "clientAuth",
        }
    }
}

impl Inspector {
    /// Judge chains against the bundled public roots and, if given, against `trust` (named
    /// `label` in reports, e.g. the file name).
    pub fn new(trust: Option<(TrustStore, String)>) -> Inspector {
        Inspector {
            public: public_roots(),
            given: trust,
        }
    }

    /// Reads a PEM file's certificates (or one DER certificate) and reports on them as of `now`.
    pub fn inspect(
        &self,
        file: &str,
        contents: &[u8],
        now: OffsetDateTime,
    ) -> Result<Report, PkiError> {
        let chain = read_chain(contents)?;
        self.inspect_chain(file, &chain, now)
    }

    /// Reports on a chain (leaf first) as of `now`.
    pub fn inspect_chain(
        &self,
        file: &str,
        chain: &[CertificateDer<'_>],
        now: OffsetDateTime,
    ) -> Result<Report, PkiError> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(PkiError::NoCertificate);
        };
        // Reports speak in whole seconds, as certificates do.
        let now = now.replace_nanosecond(0).unwrap_or(now);
        let certificates = chain
            .iter()
            .enumerate()
            .map(|(i, der)| describe(i + 1, der, now))
            .collect::<Result<Vec<_>, _>>()?;
        let leaf_info = &certificates[0];

        // Whether a chain leads somewhere does not depend on today's date: judge it at a
        // moment every certificate in the file is valid.
        let at = moment_within(&certificates, now);
        let public_roots = leads_to(&self.public, leaf, intermediates, at);
        let to_given = self
            .given
            .as_ref()
            .map(|(store, _)| leads_to(store, leaf, intermediates, at));
        let (anchors, against, leads) = match (&self.given, to_given) {
            (Some((store, label)), Some(Reach::Yes)) => {
                (store, format!("--trust {label}"), Reach::Yes)
            }
            _ if public_roots.is_yes() => (
                &self.public,
                "the bundled public roots (mozilla)".to_owned(),
                Reach::Yes,
            ),
            (Some((store, label)), reach) => (
                store,
                format!("--trust {label}"),
                reach.unwrap_or(Reach::No),
            ),
            (None, _) => (
                &self.public,
                "the bundled public roots (mozilla)".to_owned(),
                public_roots,
            ),
        };

        let ctx = Context {
            certificates: &certificates,
            leads,
            against: &against,
            hint: self.given.is_none(),
            now,
        };
        let identity = PeerIdentity::from_der(leaf.as_ref()).ok();
        let now_unix = unix(now);
        let client = client_verdict(
            &ctx,
            anchors,
            leaf,
            intermediates,
            now_unix,
            public_roots.is_yes(),
        );
        let gate_strict = gate_verdict(
            &ctx,
            anchors,
            (leaf, intermediates),
            now_unix,
            identity.as_ref(),
            EkuPolicy::ClientAuth,
        );
        let gate_compat = gate_verdict(
            &ctx,
            anchors,
            (leaf, intermediates),
            now_unix,
            identity.as_ref(),
            EkuPolicy::ClientOrServerAuth,
        );
        let server = server_verdict(&ctx, anchors, leaf, intermediates, now_unix, leaf_info);

        Ok(Report {
            file: file.to_owned(),
            inspected_at: rfc3339(now),
            chain: ChainInfo {
                public_roots,
                trust: to_given,
                trust_label: self.given.as_ref().map(|(_, label)| label.clone()),
                verdicts_against: against.clone(),
            },
            verdicts: Verdicts {
                server,
                client,
                gate_strict,
                gate_compat,
            },
            certificates,
        })
    }
}

impl CertificateInfo {
    /// Whether the certificate permits `eku` (`serverAuth`, `clientAuth`): it has no EKU
    /// extension, or lists it or anyExtendedKeyUsage.
    pub fn permits(&self, eku: &str) -> bool {
        self.eku
            .as_ref()
            .is_none_or(|list| list.iter().any(|e| e == eku || e == "anyExtendedKeyUsage"))
    }

    /// Start and end of validity.
    pub fn validity(&self) -> (OffsetDateTime, OffsetDateTime) {
        self.validity
    }

    /// `#2 (CN=farm issuing CA)`: how reasons refer to it; by its first SAN when its subject
    /// is empty, as in newer public certificates.
    pub fn label(&self) -> String {
        let name = match (self.subject.is_empty(), self.sans.first()) {
            (false, _) => &self.subject,
            (true, Some(san)) => san,
            (true, None) => "empty subject",
        };
        format!("#{} ({name})", self.index)
    }
}

/// Every certificate in a PEM file, or the single certificate of a DER file.
pub fn read_chain(contents: &[u8]) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let is_pem = contents
        .windows(b"-----BEGIN".len())
        .any(|w| w == b"-----BEGIN");
    let chain = if is_pem {
        CertificateDer::pem_slice_iter(contents)
            .collect::<Result<Vec<_>, _>>()
            .map_err(PkiError::Pem)?
    } else if contents.is_empty() {
        Vec::new()
    } else {
        vec![CertificateDer::from(contents.to_vec())]
    };
    if chain.is_empty() {
        return Err(PkiError::NoCertificate);
    }
    Ok(chain)
}

/// The bundled Mozilla roots, as a gate with `trust = ["mozilla"]` has them.
pub(crate) fn public_roots() -> TrustStore {
    let at = farmgate_config::Location::new(
        std::sync::Arc::from(std::path::Path::new("<bundled>")),
        0,
        "trust",
    );
    // Loading the bundled roots reads no file and cannot fail; an empty store would only
    // make every "leads to public roots" answer no.
    TrustStore::load(&[farmgate_config::Trust::Mozilla], &at).unwrap_or_default()
}

/// What every verdict needs to word its reasons.
struct Context<'a> {
    certificates: &'a [CertificateInfo],
    /// Whether the chain leads to the anchors the verdicts use.
    leads: Reach,
    against: &'a str,
    /// Whether to suggest `--trust` (none was given).
    hint: bool,
    now: OffsetDateTime,
}

impl Context<'_> {
    /// Reasons that hold whatever the purpose: the chain leads nowhere trusted, a certificate
    /// is out of its validity, the leaf is a CA.
    fn common_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.certificates[0].ca {
            reasons.push(format!(
                "certificate {} is a CA certificate, which signs certificates and is never \
                 presented as a server or client certificate",
                self.certificates[0].label()
            ));
        }
        for cert in self.certificates {
            let (not_before, not_after) = cert.validity;
            if not_after < self.now {
                reasons.push(format!(
                    "certificate {} expired on {} ({} days ago)",
                    cert.label(),
                    day(not_after),
                    -cert.days_left
                ));
            } else if not_before > self.now {
                reasons.push(format!(
                    "certificate {} is not valid before {}",
                    cert.label(),
                    day(not_before)
                ));
            }
        }
        if self.leads == Reach::No {
            let hint = if self.hint {
                " (for a private CA, give --trust CA.pem)"
            } else {
                ""
            };
            reasons.push(format!("its chain does not lead to {}{hint}", self.against));
        }
        reasons
    }

    /// The certificates whose EKU extension leaves out `purpose`.
    fn eku_reasons(&self, purpose: Purpose) -> Vec<String> {
        self.certificates
            .iter()
            .filter(|cert| !cert.permits(purpose.eku()))
            .map(|cert| {
                let listed = cert.eku.as_deref().unwrap_or_default().join(", ");
                let listed = if listed.is_empty() {
                    "nothing"
                } else {
                    &listed
                };
                format!(
                    "certificate {} does not permit {}: its extended key usage lists only {listed}",
                    cert.label(),
                    purpose.eku()
                )
            })
            .collect()
    }

    /// `reasons`, or `fallback` when they explain nothing.
    fn or_else(reasons: Vec<String>, fallback: impl FnOnce() -> String) -> Vec<String> {
        if reasons.is_empty() {
            vec![fallback()]
        } else {
            reasons
        }
    }
}

fn server_verdict(
    ctx: &Context<'_>,
    anchors: &TrustStore,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    leaf_info: &CertificateInfo,
) -> Verdict {
    let algorithms = farmgate_tls::provider().signature_verification_algorithms;
    let path = webpki::EndEntityCert::try_from(leaf).and_then(|cert| {
        cert.verify_for_usage(
            algorithms.all,
            anchors.anchors(),
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map(|_| ())
    });
    let named = leaf_info
        .sans
        .iter()
        .any(|san| san.starts_with("dns:") || san.starts_with("ip:"));
    let mut verdict = Verdict::default();
    match path {
        Ok(()) if named => verdict.usable = true,
        Ok(()) => {}
        Err(e) => {
            let mut reasons = ctx.common_reasons();
            reasons.extend(ctx.eku_reasons(Purpose::Server));
            verdict.reasons = Context::or_else(reasons, || e.to_string());
        }
    }
    if !named {
        verdict.reasons.push(
            "it names no DNS name or IP address in its subject alternative names, and TLS \
             clients never match the subject CN"
                .to_owned(),
        );
    }
    if verdict.usable {
        let names: Vec<&str> = leaf_info
            .sans
            .iter()
            .filter_map(|san| san.strip_prefix("dns:").or(san.strip_prefix("ip:")))
            .collect();
        verdict
            .notes
            .push(format!("valid for {}", names.join(", ")));
    }
    verdict
}

fn client_verdict(
    ctx: &Context<'_>,
    anchors: &TrustStore,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    public_roots: bool,
) -> Verdict {
    // Standard verifiers check the chain only; names are the application's business. A gate
    // that allows this exact key is the same check.
    let pin = PeerIdentity::from_der(leaf.as_ref())
        .map(|id| vec![AllowRule::SpkiSha256(*id.spki_sha256())])
        .unwrap_or_default();
    let verifier = ClientVerifier::from_parts(
        "inspect",
        anchors.clone(),
        AllowList::new(pin),
        EkuPolicy::ClientAuth,
        Vec::new(),
    );
    let mut verdict = Verdict::default();
    match verifier.check(leaf, intermediates, now) {
        Ok(_) => verdict.usable = true,
        Err(refusal) => {
            let mut reasons = ctx.common_reasons();
            let eku = ctx.eku_reasons(Purpose::Client);
            if !eku.is_empty() {
                reasons.extend(eku);
                reasons.push(
                    "OpenSSL (nginx, Envoy), Go and rustls refuse it: \"unsupported certificate \
                     purpose\""
                        .to_owned(),
                );
                if public_roots {
                    verdict.facts = vec![
                        FactId::LetsEncryptDefaultDropsClientAuth,
                        FactId::ChromeServerAuthOnly,
                        FactId::LetsEncryptLastClientAuth,
                    ];
                }
            }
            verdict.reasons = Context::or_else(reasons, || refusal.detail.clone());
        }
    }
    if verdict.usable && public_roots {
        verdict.notes.push(
            "it chains to public roots, and public CAs no longer issue clientAuth: its renewal \
             will not be usable as a client certificate"
                .to_owned(),
        );
        verdict.facts = vec![
            FactId::ChromeServerAuthOnly,
            FactId::LetsEncryptLastClientAuth,
        ];
    }
    verdict
}

fn gate_verdict(
    ctx: &Context<'_>,
    anchors: &TrustStore,
    (leaf, intermediates): (&CertificateDer<'_>, &[CertificateDer<'_>]),
    now: UnixTime,
    identity: Option<&PeerIdentity>,
    eku: EkuPolicy,
) -> Verdict {
    let entries = identity.map(allow_entries).unwrap_or_default();
    let verifier = ClientVerifier::from_parts(
        "inspect",
        anchors.clone(),
        AllowList::new(entries.clone()),
        eku,
        Vec::new(),
    );
    let mut verdict = Verdict::default();
    match verifier.check(leaf, intermediates, now) {
        Ok(accepted) if accepted.relaxed => {
            verdict.usable = true;
            verdict.allow = entries
                .iter()
                .filter(|rule| compat_entry(rule))
                .map(ToString::to_string)
                .collect();
            verdict.notes.push(
                "only because of compatibility mode: its chain permits serverAuth, not \
                 clientAuth, so only an exact dns: or spki-sha256: entry admits it; the gate \
                 logs and counts every such connection"
                    .to_owned(),
            );
        }
        Ok(_) => {
            verdict.usable = true;
            verdict.allow = entries.iter().map(ToString::to_string).collect();
            if eku == EkuPolicy::ClientOrServerAuth {
                verdict
                    .notes
                    .push("as in strict mode: its chain permits clientAuth".to_owned());
            }
        }
        Err(refusal) => {
            let mut reasons = ctx.common_reasons();
            match (refusal.reason, eku) {
                (RefusalReason::Purpose, EkuPolicy::ClientAuth) => {
                    reasons.extend(ctx.eku_reasons(Purpose::Client));
                }
                (RefusalReason::Purpose, _) => {
                    reasons.push("its chain permits neither clientAuth nor serverAuth".to_owned());
                    reasons.extend(ctx.eku_reasons(Purpose::Server));
                }
                (RefusalReason::NotAllowed, _) => reasons.push(refusal.detail.clone()),
                _ => {}
            }
            verdict.reasons = Context::or_else(reasons, || refusal.detail.clone());
        }
    }
    if verdict.usable && verdict.allow.iter().any(|e| e.starts_with("cn:")) {
        verdict.notes.push(
            "cn: entries are legacy: newer certificates have no subject CN; prefer dns:, uri: or \
             spki-sha256:"
                .to_owned(),
        );
    }
    verdict
}

/// The allow-list entries that name this identity: its DNS and URI SANs, its key, and its CN
/// (legacy).
fn allow_entries(id: &PeerIdentity) -> Vec<AllowRule> {
    let dns = id
        .dns_names()
        .iter()
        .filter_map(|name| format!("dns:{name}").parse().ok());
    let uri = id.uris().iter().map(|uri| AllowRule::Uri(uri.clone()));
    let pin = std::iter::once(AllowRule::SpkiSha256(*id.spki_sha256()));
    let cn = id.common_name().map(|cn| AllowRule::Cn(cn.to_owned()));
    dns.chain(uri).chain(pin).chain(cn).collect()
}

/// Entries that admit a chain accepted only under serverAuth: exact DNS names and key pins.
fn compat_entry(rule: &AllowRule) -> bool {
    match rule {
        AllowRule::Dns(_) => !rule.is_wildcard(),
        AllowRule::SpkiSha256(_) => true,
        _ => false,
    }
}

/// Whether the chain leads to `store`: the gate's verifier, in compatibility mode with an
/// empty allow-list, gets as far as the allow-list.
fn leads_to(
    store: &TrustStore,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    at: OffsetDateTime,
) -> Reach {
    let verifier = ClientVerifier::from_parts(
        "inspect",
        store.clone(),
        AllowList::default(),
        EkuPolicy::ClientOrServerAuth,
        Vec::new(),
    );
    match verifier.check(leaf, intermediates, unix(at)) {
        Ok(_) => Reach::Yes,
        Err(refusal) => match refusal.reason {
            RefusalReason::NotAllowed => Reach::Yes,
            // `at` is a moment every certificate is valid, if there is one.
            RefusalReason::Expired | RefusalReason::NotYetValid => Reach::Unknown,
            _ => Reach::No,
        },
    }
}

/// `now` if every certificate is valid then, else the middle of the time they are all valid.
fn moment_within(certificates: &[CertificateInfo], now: OffsetDateTime) -> OffsetDateTime {
    let from = certificates.iter().map(|c| c.validity.0).max();
    let until = certificates.iter().map(|c| c.validity.1).min();
    match (from, until) {
        (Some(from), Some(until)) if from <= until => {
            if (from..=until).contains(&now) {
                now
            } else {
                from + (until - from) / 2
            }
        }
        _ => now,
    }
}

fn describe(
    index: usize,
    der: &CertificateDer<'_>,
    now: OffsetDateTime,
) -> Result<CertificateInfo, PkiError> {
    let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| PkiError::Der {
        index,
        source: match e {
            x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
            x509_parser::nom::Err::Incomplete(_) => {
                x509_parser::error::X509Error::InvalidCertificate
            }
        },
    })?;
    let registry = x509_parser::objects::oid_registry();
    let subject = cert
        .subject()
        .to_string_with_registry(registry)
        .unwrap_or_else(|_| cert.subject().to_string());
    let issuer = cert
        .issuer()
        .to_string_with_registry(registry)
        .unwrap_or_else(|_| cert.issuer().to_string());
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    let mut sans = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => sans.push(format!("dns:{dns}")),
                GeneralName::URI(uri) => sans.push(format!("uri:{uri}")),
                GeneralName::RFC822Name(mail) => sans.push(format!("email:{mail}")),
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_address(bytes) {
                        sans.push(format!("ip:{ip}"));
                    }
                }
                _ => {}
            }
        }
    }
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    let eku = match cert.extended_key_usage() {
        Ok(Some(eku)) => Some(eku_names(eku.value)),
        // A malformed EKU extension permits nothing a verifier would accept.
        Err(_) => Some(Vec::new()),
        Ok(None) => None,
    };
    let identity = PeerIdentity::from_der(der.as_ref()).ok();
    Ok(CertificateInfo {
        index,
        subject,
        common_name,
        sans,
        issuer,
        serial: cert.raw_serial_as_string(),
        not_before: rfc3339(not_before),
        not_after: rfc3339(not_after),
        days_left: (not_after - now).whole_days(),
        lifetime_days: (not_after - not_before).whole_days(),
        key: key_type(&cert),
        ca: cert.is_ca(),
        self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
        eku,
        spki_sha256: identity
            .as_ref()
            .map(PeerIdentity::spki_pin)
            .unwrap_or_default(),
        sha256: identity
            .as_ref()
            .map(PeerIdentity::fingerprint_hex)
            .unwrap_or_default(),
        validity: (not_before, not_after),
    })
}

fn eku_names(eku: &ExtendedKeyUsage<'_>) -> Vec<String> {
    let known = [
        (eku.server_auth, "serverAuth"),
        (eku.client_auth, "clientAuth"),
        (eku.code_signing, "codeSigning"),
        (eku.email_protection, "emailProtection"),
        (eku.time_stamping, "timeStamping"),
        (eku.ocsp_signing, "OCSPSigning"),
        (eku.any, "anyExtendedKeyUsage"),
    ];
    known
        .into_iter()
        .filter(|(present, _)| *present)
        .map(|(_, name)| name.to_owned())
        .chain(eku.other.iter().map(ToString::to_string))
        .collect()
}

fn key_type(cert: &X509Certificate<'_>) -> String {
    let spki = cert.public_key();
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        let name = match curve {
            Some(c) if c == OID_EC_P256 => "P-256".to_owned(),
            Some(c) if c == OID_NIST_EC_P384 => "P-384".to_owned(),
            Some(c) if c == OID_NIST_EC_P521 => "P-521".to_owned(),
            Some(c) => c.to_id_string(),
            None => "(unnamed curve)".to_owned(),
        };
        format!("ECDSA {name}")
    } else if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let bits = spki.parsed().map(|key| key.key_size()).unwrap_or(0);
        format!("RSA {bits}")
    } else if *algorithm == OID_SIG_ED25519 {
        "Ed25519".to_owned()
    } else if *algorithm == OID_SIG_ED448 {
        "Ed448".to_owned()
    } else {
        format!("unknown ({})", algorithm.to_id_string())
    }
}

fn ip_address(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

pub(crate) fn unix(at: OffsetDateTime) -> UnixTime {
    let seconds = u64::try_from(at.unix_timestamp()).unwrap_or(0);
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds))
}

pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// `2026-10-06`.
pub(crate) fn day(at: OffsetDateTime) -> String {
    at.date().to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use time::Duration;

    use super::*;
    use crate::{Authority, CaSpec, CertSpec, Usage};

    fn store(root: &Authority) -> TrustStore {
        // A PEM file is how trust arrives from configuration; write one.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, root.cert_pem()).unwrap();
        let file = farmgate_tls::load::file_ref(&path, "trust");
        let at = file.at.clone();
        TrustStore::load(&[farmgate_config::Trust::File(file)], &at).unwrap()
    }

    fn report(root: &Authority, chain_pem: &str) -> Report {
        let inspector = Inspector::new(Some((store(root), "ca.pem".into())));
        inspector
            .inspect("leaf.pem", chain_pem.as_bytes(), OffsetDateTime::now_utc())
            .unwrap()
    }

    #[test]
    fn private_client_is_a_client_everywhere_and_no_server() {
        let root = Authority::new_root(&CaSpec::new("root")).unwrap();
        let leaf = root.issue(&CertSpec::client("edge.farm.test")).unwrap();
        let r = report(&root, &leaf.chain_pem);
        assert_eq!(r.chain.trust, Some(Reach::Yes));
        assert_eq!(r.chain.public_roots, Reach::No);
        assert!(r.verdicts.client.usable);
        assert!(r.verdicts.gate_strict.usable);
        assert!(
            r.verdicts
                .gate_strict
                .allow
                .contains(&"dns:edge.farm.test".to_owned())
        );
        assert!(!r.verdicts.server.usable);
        assert!(
            r.verdicts.server.reasons[0].contains("does not permit serverAuth"),
            "{:?}",
            r.verdicts.server.reasons
        );
        assert_eq!(r.certificates[0].key, "ECDSA P-256");
        assert_eq!(
            r.certificates[0].eku.as_deref(),
            Some(&["clientAuth".to_owned()][..])
        );
    }

    #[test]
    fn server_auth_only_chain_passes_only_the_compatibility_gate() {
        let root = Authority::new_root(&CaSpec::new("root")).unwrap();
        let public_like = root
            .intermediate(&CaSpec::new("issuing").usages(&[Usage::ServerAuth]))
            .unwrap();
        let leaf = public_like
            .issue(&CertSpec::server("www.example.com").no_common_name())
            .unwrap();
        let r = report(&root, &leaf.chain_pem);
        assert!(r.verdicts.server.usable);
        assert!(!r.verdicts.client.usable);
        assert!(!r.verdicts.gate_strict.usable);
        assert!(r.verdicts.gate_compat.usable);
        let allow = &r.verdicts.gate_compat.allow;
        assert_eq!(allow[0], "dns:www.example.com");
        assert!(allow[1].starts_with("spki-sha256:"));
        assert_eq!(allow.len(), 2);
    }

    #[test]
    fn expired_certificate_says_when() {
        let root = Authority::new_root(&CaSpec::new("root")).unwrap();
        let now = OffsetDateTime::now_utc();
        let spec =
            CertSpec::client("old").valid(now - Duration::days(40), now - Duration::days(10));
        let leaf = root.issue(&spec).unwrap();
        let r = report(&root, &leaf.chain_pem);
        assert_eq!(r.chain.trust, Some(Reach::Yes), "it still leads to the CA");
        assert!(!r.verdicts.client.usable);
        assert!(
            r.verdicts.client.reasons[0].contains("expired on"),
            "{:?}",
            r.verdicts.client
        );
        assert_eq!(r.certificates[0].days_left, -10);
    }

    #[test]
    fn unknown_ca_leads_nowhere() {
        let root = Authority::new_root(&CaSpec::new("root")).unwrap();
        let other = Authority::new_root(&CaSpec::new("root")).unwrap();
        let leaf = other.issue(&CertSpec::client("edge")).unwrap();
        let r = report(&root, &leaf.chain_pem);
        assert_eq!(r.chain.trust, Some(Reach::No));
        assert!(!r.verdicts.gate_strict.usable);
        assert!(
            r.verdicts.gate_strict.reasons[0].contains("does not lead to --trust ca.pem"),
            "{:?}",
            r.verdicts.gate_strict
        );
    }

    #[test]
    fn garbage_is_an_error() {
        let inspector = Inspector::new(None);
        let now = OffsetDateTime::now_utc();
        assert!(matches!(
            inspector.inspect("x", b"", now),
            Err(PkiError::NoCertificate)
        ));
        assert!(matches!(
            inspector.inspect("x", b"not der", now),
            Err(PkiError::Der { index: 1, .. })
        ));
    }
}
