//! [`Reason`]: why a verdict of `farmgate inspect` is "no", as an English sentence for people and
//! a stable snake_case [`code`](Reason::code) for scripts (`inspect --json` carries both).
//!
//! The codes are documented in docs/troubleshooting.md (a test keeps the list complete). Where a
//! reason is the gate's own refusal, its code is the gate's refusal label (`not_allowed`,
//! `revoked`, ...), the same word its log lines and metrics use.

use std::fmt;

use farmgate_identity::KeyPurpose;
use farmgate_tls::RefusalReason;
use time::Date;

/// One reason a certificate chain is not usable for a purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The leaf is a CA certificate, which signs certificates and is never presented.
    LeafIsCa {
        /// The leaf.
        leaf: CertLabel,
    },
    /// A certificate of the chain has expired.
    Expired {
        /// Which one.
        certificate: CertLabel,
        /// The day its validity ended.
        on: Date,
        /// Whole days since then.
        days_ago: i64,
    },
    /// A certificate of the chain is not valid yet.
    NotYetValid {
        /// Which one.
        certificate: CertLabel,
        /// The day its validity starts.
        from: Date,
    },
    /// The chain does not lead to the trust the verdicts are judged against.
    UnknownCa {
        /// That trust, in words (`--trust ca.pem`, `the bundled public roots (mozilla)`).
        against: String,
        /// Whether to suggest giving `--trust` (none was given).
        suggest_trust: bool,
    },
    /// A certificate's extended key usage leaves out the purpose.
    LacksPurpose {
        /// Which certificate.
        certificate: CertLabel,
        /// The purpose it lacks.
        purpose: Purpose,
        /// What it lists instead.
        listed: Vec<KeyPurpose>,
    },
    /// Standard verifiers refuse a client chain without clientAuth ("unsupported certificate
    /// purpose", OpenSSL error 26).
    UnsupportedPurpose,
    /// For a gate in compatibility mode: the chain permits neither clientAuth nor serverAuth.
    LacksClientAndServerAuth,
    /// Not usable as a server certificate: no DNS name or IP address among its SANs.
    NoServerName,
    /// The gate's verifier refused it for a reason the sentences above do not explain.
    Refused {
        /// The gate's refusal reason (its label is the code).
        reason: RefusalReason,
        /// What the verifier said.
        detail: String,
    },
    /// Path validation refused it as a server certificate for a reason the sentences above do
    /// not explain (a bad signature, name constraints, path length...).
    Invalid {
        /// What rustls-webpki said.
        detail: String,
    },
}

/// The TLS purposes a chain is judged for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// As a TLS server certificate.
    ServerAuth,
    /// As a TLS client certificate.
    ClientAuth,
}

/// How a reason names a certificate of the chain: `#2 (CN=farm issuing CA)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertLabel {
    /// 1-based position in the file.
    pub index: usize,
    /// Its subject, or its first SAN when the subject is empty.
    pub name: String,
}

impl Reason {
    /// The stable snake_case code, e.g. `expired`, `lacks_client_auth`, `not_allowed`.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::LeafIsCa { .. } => "leaf_is_ca",
            Reason::Expired { .. } => "expired",
            Reason::NotYetValid { .. } => "not_yet_valid",
            Reason::UnknownCa { .. } => "unknown_ca",
            Reason::LacksPurpose {
                purpose: Purpose::ServerAuth,
                ..
            } => "lacks_server_auth",
            Reason::LacksPurpose {
                purpose: Purpose::ClientAuth,
                ..
            } => "lacks_client_auth",
            Reason::UnsupportedPurpose => "unsupported_certificate_purpose",
            Reason::LacksClientAndServerAuth => "lacks_client_and_server_auth",
            Reason::NoServerName => "no_server_name",
            Reason::Refused { reason, .. } => reason.label(),
            Reason::Invalid { .. } => "invalid",
        }
    }
}

/// The sentence, e.g. `certificate #1 (CN=old) expired on 2026-10-06 (10 days ago)`.
impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::LeafIsCa { leaf } => write!(
                f,
                "certificate {leaf} is a CA certificate, which signs certificates and is never \
                 presented as a server or client certificate"
            ),
            Reason::Expired {
                certificate,
                on,
                days_ago,
            } => write!(
                f,
                "certificate {certificate} expired on {on} ({days_ago} days ago)"
            ),
            Reason::NotYetValid { certificate, from } => {
                write!(f, "certificate {certificate} is not valid before {from}")
            }
            Reason::UnknownCa {
                against,
                suggest_trust,
            } => {
                write!(f, "its chain does not lead to {against}")?;
                if *suggest_trust {
                    f.write_str(" (for a private CA, give --trust CA.pem)")?;
                }
                Ok(())
            }
            Reason::LacksPurpose {
                certificate,
                purpose,
                listed,
            } => {
                let listed: Vec<&str> = listed.iter().map(KeyPurpose::name).collect();
                let listed = if listed.is_empty() {
                    "nothing".to_owned()
                } else {
                    listed.join(", ")
                };
                write!(
                    f,
                    "certificate {certificate} does not permit {purpose}: its extended key usage \
                     lists only {listed}"
                )
            }
            Reason::UnsupportedPurpose => f.write_str(
                "OpenSSL (nginx, Envoy), Go and rustls refuse it: \"unsupported certificate \
                 purpose\"",
            ),
            Reason::LacksClientAndServerAuth => {
                f.write_str("its chain permits neither clientAuth nor serverAuth")
            }
            Reason::NoServerName => f.write_str(
                "it names no DNS name or IP address in its subject alternative names, and TLS \
                 clients never match the subject CN",
            ),
            Reason::Refused { detail, .. } | Reason::Invalid { detail } => f.write_str(detail),
        }
    }
}

impl Purpose {
    /// The extended key usage that grants it.
    pub fn key_purpose(self) -> KeyPurpose {
        match self {
            Purpose::ServerAuth => KeyPurpose::ServerAuth,
            Purpose::ClientAuth => KeyPurpose::ClientAuth,
        }
    }
}

/// `serverAuth` or `clientAuth`.
impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key_purpose().name())
    }
}

/// `#2 (CN=farm issuing CA)`.
impl fmt::Display for CertLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} ({})", self.index, self.name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use std::collections::HashSet;

    use time::macros::date;

    use super::*;

    fn label() -> CertLabel {
        CertLabel {
            index: 2,
            name: "CN=farm issuing CA".to_owned(),
        }
    }

    /// One reason of each kind, and each gate refusal: every code `inspect` can give.
    fn every_kind() -> Vec<Reason> {
        let mut all = vec![
            Reason::LeafIsCa { leaf: label() },
            Reason::Expired {
                certificate: label(),
                on: date!(2026 - 10 - 06),
                days_ago: 10,
            },
            Reason::NotYetValid {
                certificate: label(),
                from: date!(2027 - 01 - 01),
            },
            Reason::UnknownCa {
                against: "--trust ca.pem".to_owned(),
                suggest_trust: false,
            },
            Reason::LacksPurpose {
                certificate: label(),
                purpose: Purpose::ServerAuth,
                listed: vec![KeyPurpose::ClientAuth],
            },
            Reason::LacksPurpose {
                certificate: label(),
                purpose: Purpose::ClientAuth,
                listed: vec![KeyPurpose::ServerAuth],
            },
            Reason::UnsupportedPurpose,
            Reason::LacksClientAndServerAuth,
            Reason::NoServerName,
            Reason::Invalid {
                detail: "UnknownIssuer".to_owned(),
            },
        ];
        all.extend(RefusalReason::ALL.map(|reason| Reason::Refused {
            reason,
            detail: "the gate says no".to_owned(),
        }));
        // A new kind of reason must be added above: this match has no catch-all.
        for reason in &all {
            match reason {
                Reason::LeafIsCa { .. }
                | Reason::Expired { .. }
                | Reason::NotYetValid { .. }
                | Reason::UnknownCa { .. }
                | Reason::LacksPurpose { .. }
                | Reason::UnsupportedPurpose
                | Reason::LacksClientAndServerAuth
                | Reason::NoServerName
                | Reason::Refused { .. }
                | Reason::Invalid { .. } => {}
            }
        }
        all
    }

    #[test]
    fn codes_are_snake_case() {
        for reason in every_kind() {
            let code = reason.code();
            assert!(
                !code.is_empty()
                    && code
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{code}"
            );
        }
    }

    #[test]
    fn each_kind_of_reason_has_its_own_code_or_shares_the_gate_label_that_means_it() {
        let ours: Vec<&str> = every_kind()
            .iter()
            .filter(|r| !matches!(r, Reason::Refused { .. }))
            .map(Reason::code)
            .collect();
        let distinct: HashSet<&str> = ours.iter().copied().collect();
        assert_eq!(distinct.len(), ours.len(), "{ours:?}");
        // Shared on purpose: the same rule, whether inspect words it or the gate does.
        let labels: HashSet<&str> = RefusalReason::ALL.iter().map(|r| r.label()).collect();
        let shared: HashSet<&str> = distinct.intersection(&labels).copied().collect();
        assert_eq!(
            shared,
            HashSet::from(["expired", "not_yet_valid", "unknown_ca", "invalid"])
        );
    }

    #[test]
    fn every_code_of_our_own_is_documented_for_operators() {
        let docs = include_str!("../../../docs/troubleshooting.md");
        let section = docs
            .split("## `farmgate inspect` verdicts and their codes")
            .nth(1)
            .expect("docs/troubleshooting.md has the section on inspect's codes");
        for reason in every_kind() {
            if matches!(reason, Reason::Refused { .. }) {
                // The gate's refusal labels have their own table.
                continue;
            }
            let row = format!("| `{}` |", reason.code());
            assert!(section.contains(&row), "no row {row} in the docs");
        }
    }

    #[test]
    fn sentences_name_the_certificate_and_what_to_do() {
        let reason = Reason::LacksPurpose {
            certificate: label(),
            purpose: Purpose::ClientAuth,
            listed: vec![KeyPurpose::ServerAuth],
        };
        assert_eq!(
            reason.to_string(),
            "certificate #2 (CN=farm issuing CA) does not permit clientAuth: its extended key \
             usage lists only serverAuth"
        );
        let empty = Reason::LacksPurpose {
            certificate: label(),
            purpose: Purpose::ServerAuth,
            listed: Vec::new(),
        };
        assert!(empty.to_string().ends_with("lists only nothing"));
        let unknown = Reason::UnknownCa {
            against: "the bundled public roots (mozilla)".to_owned(),
            suggest_trust: true,
        };
        assert_eq!(
            unknown.to_string(),
            "its chain does not lead to the bundled public roots (mozilla) (for a private CA, \
             give --trust CA.pem)"
        );
    }
}
