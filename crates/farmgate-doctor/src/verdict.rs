//! [`Verdicts`]: the four answers of an inspection (server, client, gate strict, gate compat),
//! each "no" with its [`Reason`]s, judged by rustls-webpki and the gate's own verifier.

use farmgate_config::EkuPolicy;
use farmgate_identity::{AllowList, AllowRule, KeyPurpose, PeerIdentity};
use farmgate_tls::{ClientVerifier, RefusalReason, TrustStore};
use rustls_pki_types::CertificateDer;
use serde::{Serialize, Serializer};
use time::OffsetDateTime;

use crate::facts::FactId;
use crate::inspect::{CertificateInfo, Reach, unix};
use crate::reason::{Purpose, Reason};

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

/// One verdict. Serialised with `reasons` as the sentences and `reason_codes` as their codes,
/// in the same order.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Verdict {
    /// Yes or no.
    pub usable: bool,
    /// Why not (empty when usable).
    pub reasons: Vec<Reason>,
    /// For gate verdicts: the allow-list entries that would admit it.
    pub allow: Vec<String>,
    /// What else to know.
    pub notes: Vec<String>,
    /// Rows of [`FACTS`](crate::facts::FACTS) behind the verdict.
    pub facts: Vec<FactId>,
}

impl Serialize for Verdict {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            usable: bool,
            reasons: Vec<String>,
            reason_codes: Vec<&'static str>,
            allow: &'a [String],
            notes: &'a [String],
            facts: &'a [FactId],
        }
        Json {
            usable: self.usable,
            reasons: self.reasons.iter().map(ToString::to_string).collect(),
            reason_codes: self.reasons.iter().map(Reason::code).collect(),
            allow: &self.allow,
            notes: &self.notes,
            facts: &self.facts,
        }
        .serialize(serializer)
    }
}

/// What every verdict needs: the chain, read and raw, and the trust it is judged against.
pub(crate) struct Context<'a> {
    pub(crate) certificates: &'a [CertificateInfo],
    pub(crate) chain: (&'a CertificateDer<'a>, &'a [CertificateDer<'a>]),
    pub(crate) anchors: &'a TrustStore,
    /// Whether the chain leads to `anchors`.
    pub(crate) leads: Reach,
    /// `anchors`, in words.
    pub(crate) against: &'a str,
    /// Whether to suggest `--trust` (none was given).
    pub(crate) suggest_trust: bool,
    pub(crate) now: OffsetDateTime,
    /// Whether the chain leads to the bundled public roots.
    pub(crate) public_roots: bool,
}

impl Context<'_> {
    pub(crate) fn verdicts(&self) -> Verdicts {
        let identity = PeerIdentity::from_der(self.chain.0.as_ref()).ok();
        Verdicts {
            server: self.server(),
            client: self.client(identity.as_ref()),
            gate_strict: self.gate(identity.as_ref(), EkuPolicy::ClientAuth),
            gate_compat: self.gate(identity.as_ref(), EkuPolicy::ClientOrServerAuth),
        }
    }

    fn server(&self) -> Verdict {
        let (leaf, intermediates) = self.chain;
        let algorithms = farmgate_tls::provider().signature_verification_algorithms;
        let path = webpki::EndEntityCert::try_from(leaf).and_then(|cert| {
            cert.verify_for_usage(
                algorithms.all,
                self.anchors.anchors(),
                intermediates,
                unix(self.now),
                webpki::KeyUsage::server_auth(),
                None,
                None,
            )
            .map(|_| ())
        });
        let leaf = &self.certificates[0].summary;
        let names: Vec<String> = leaf
            .dns_names()
            .map(str::to_owned)
            .chain(leaf.ip_addresses().map(|ip| ip.to_string()))
            .collect();
        let mut verdict = Verdict::default();
        match path {
            Ok(()) if !names.is_empty() => verdict.usable = true,
            Ok(()) => {}
            Err(e) => {
                let mut reasons = self.common_reasons();
                reasons.extend(self.eku_reasons(Purpose::ServerAuth));
                verdict.reasons = or_else(reasons, || Reason::Invalid {
                    detail: e.to_string(),
                });
            }
        }
        if names.is_empty() {
            verdict.reasons.push(Reason::NoServerName);
        }
        if verdict.usable {
            verdict
                .notes
                .push(format!("valid for {}", names.join(", ")));
        }
        verdict
    }

    fn client(&self, identity: Option<&PeerIdentity>) -> Verdict {
        let (leaf, intermediates) = self.chain;
        // Standard verifiers check the chain only; names are the application's business. A gate
        // that allows this exact key is the same check.
        let pin = identity
            .map(|id| vec![AllowRule::SpkiSha256(*id.spki_sha256())])
            .unwrap_or_default();
        let verifier = ClientVerifier::from_parts(
            "inspect",
            self.anchors.clone(),
            AllowList::new(pin),
            EkuPolicy::ClientAuth,
            Vec::new(),
        );
        let mut verdict = Verdict::default();
        match verifier.check(leaf, intermediates, unix(self.now)) {
            Ok(_) => verdict.usable = true,
            Err(refusal) => {
                let mut reasons = self.common_reasons();
                let eku = self.eku_reasons(Purpose::ClientAuth);
                if !eku.is_empty() {
                    reasons.extend(eku);
                    reasons.push(Reason::UnsupportedPurpose);
                    if self.public_roots {
                        verdict.facts = vec![
                            FactId::LetsEncryptDefaultDropsClientAuth,
                            FactId::ChromeServerAuthOnly,
                            FactId::LetsEncryptLastClientAuth,
                        ];
                    }
                }
                verdict.reasons = or_else(reasons, || Reason::Refused {
                    reason: refusal.reason,
                    detail: refusal.detail.clone(),
                });
            }
        }
        verdict.notes.extend(self.ca_eku_note());
        if verdict.usable && self.public_roots {
            verdict.notes.push(
                "it chains to public roots, and public CAs no longer issue clientAuth: its \
                 renewal will not be usable as a client certificate"
                    .to_owned(),
            );
            verdict.facts = vec![
                FactId::ChromeServerAuthOnly,
                FactId::LetsEncryptLastClientAuth,
            ];
        }
        verdict
    }

    fn gate(&self, identity: Option<&PeerIdentity>, eku: EkuPolicy) -> Verdict {
        let (leaf, intermediates) = self.chain;
        let entries = identity.map(allow_entries).unwrap_or_default();
        let verifier = ClientVerifier::from_parts(
            "inspect",
            self.anchors.clone(),
            AllowList::new(entries.clone()),
            eku,
            Vec::new(),
        );
        let mut verdict = Verdict::default();
        match verifier.check(leaf, intermediates, unix(self.now)) {
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
                let mut reasons = self.common_reasons();
                match (refusal.reason, eku) {
                    (RefusalReason::Purpose, EkuPolicy::ClientAuth) => {
                        reasons.extend(self.eku_reasons(Purpose::ClientAuth));
                    }
                    (RefusalReason::Purpose, EkuPolicy::ClientOrServerAuth) => {
                        reasons.push(Reason::LacksClientAndServerAuth);
                        reasons.extend(self.eku_reasons(Purpose::ServerAuth));
                    }
                    (RefusalReason::NotAllowed, _) => reasons.push(Reason::Refused {
                        reason: refusal.reason,
                        detail: refusal.detail.clone(),
                    }),
                    // The common reasons say why, or the fallback below does.
                    _ => {}
                }
                verdict.reasons = or_else(reasons, || Reason::Refused {
                    reason: refusal.reason,
                    detail: refusal.detail.clone(),
                });
            }
        }
        if eku == EkuPolicy::ClientAuth {
            verdict.notes.extend(self.ca_eku_note());
        }
        if verdict.usable && verdict.allow.iter().any(|e| e.starts_with("cn:")) {
            verdict.notes.push(
                "cn: entries are legacy: newer certificates have no subject CN; prefer dns:, uri: \
                 or spki-sha256:"
                    .to_owned(),
            );
        }
        verdict
    }

    /// Reasons that hold whatever the purpose: the chain leads nowhere trusted, a certificate
    /// is out of its validity, the leaf is a CA.
    fn common_reasons(&self) -> Vec<Reason> {
        let mut reasons = Vec::new();
        let leaf = &self.certificates[0];
        if leaf.summary.ca {
            reasons.push(Reason::LeafIsCa { leaf: leaf.label() });
        }
        for cert in self.certificates {
            let summary = &cert.summary;
            if summary.not_after < self.now {
                reasons.push(Reason::Expired {
                    certificate: cert.label(),
                    on: summary.not_after.date(),
                    days_ago: (self.now - summary.not_after).whole_days(),
                });
            } else if summary.not_before > self.now {
                reasons.push(Reason::NotYetValid {
                    certificate: cert.label(),
                    from: summary.not_before.date(),
                });
            }
        }
        if self.leads == Reach::No {
            reasons.push(Reason::UnknownCa {
                against: self.against.to_owned(),
                suggest_trust: self.suggest_trust,
            });
        }
        reasons
    }

    /// What to say when a CA certificate of the chain has an extended key usage without
    /// clientAuth: Go and OpenSSL check the EKU of every CA of a chain, so no client
    /// certificate below such a CA works with them, whatever the leaf says.
    fn ca_eku_note(&self) -> Option<String> {
        let cas: Vec<String> = self
            .certificates
            .iter()
            .skip(1)
            .filter(|cert| cert.summary.ca && !cert.summary.permits(KeyPurpose::ClientAuth))
            .map(|cert| cert.label().to_string())
            .collect();
        (!cas.is_empty()).then(|| {
            format!(
                "CA certificate {} constrains its extended key usage to exclude clientAuth: Go \
                 (\"x509: certificate specifies an incompatible key usage\") and OpenSSL \
                 (error 26, \"unsupported certificate purpose\") check the EKU of every CA of a \
                 chain, so no client certificate below it works; issue client certificates from \
                 a CA without an EKU (`farmgate ca init --intermediate` makes one)",
                cas.join(", ")
            )
        })
    }

    /// The certificates whose EKU extension leaves out `purpose`.
    fn eku_reasons(&self, purpose: Purpose) -> Vec<Reason> {
        self.certificates
            .iter()
            .filter(|cert| !cert.summary.permits(purpose.key_purpose()))
            .map(|cert| Reason::LacksPurpose {
                certificate: cert.label(),
                purpose,
                listed: cert.summary.eku.clone().unwrap_or_default(),
            })
            .collect()
    }
}

/// `reasons`, or `fallback` when they explain nothing.
fn or_else(reasons: Vec<Reason>, fallback: impl FnOnce() -> Reason) -> Vec<Reason> {
    if reasons.is_empty() {
        vec![fallback()]
    } else {
        reasons
    }
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
