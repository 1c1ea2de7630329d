//! [`Crl`]: a signed certificate revocation list.

use rcgen::{
    CertificateRevocationListParams, Issuer, KeyIdMethod, RevocationReason, RevokedCertParams,
    SerialNumber,
};
use time::OffsetDateTime;

use crate::KeyPair;

/// A certificate revocation list from [`Authority::crl`](crate::Authority::crl).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crl {
    der: Vec<u8>,
    pem: String,
}

impl Crl {
    /// The CRL, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The CRL, PEM (`X509 CRL`), as `crl = [...]` files hold it.
    pub fn pem(&self) -> &str {
        &self.pem
    }
}

/// A certificate a CRL lists: its serial, when it was revoked and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// The serial number, big-endian, as written in the certificate.
    pub serial: Vec<u8>,
    /// When it was revoked.
    pub at: OffsetDateTime,
    /// Why (RFC 5280 5.3.1); `None` leaves the reason code out.
    pub reason: Option<Reason>,
}

/// Why a certificate was revoked: the CRL reason codes of RFC 5280 5.3.1 an operator may give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `unspecified`.
    Unspecified,
    /// `key-compromise`: the private key is known or suspected to be in other hands.
    KeyCompromise,
    /// `ca-compromise`: the key of a CA (of a revoked intermediate) is compromised.
    CaCompromise,
    /// `affiliation-changed`: the subject's name or role changed.
    AffiliationChanged,
    /// `superseded`: replaced by another certificate.
    Superseded,
    /// `cessation-of-operation`: the host or service is gone.
    CessationOfOperation,
    /// `privilege-withdrawn`: the subject may no longer hold it.
    PrivilegeWithdrawn,
}

impl Reason {
    /// Every reason, in RFC 5280 code order.
    pub const ALL: [Reason; 7] = [
        Reason::Unspecified,
        Reason::KeyCompromise,
        Reason::CaCompromise,
        Reason::AffiliationChanged,
        Reason::Superseded,
        Reason::CessationOfOperation,
        Reason::PrivilegeWithdrawn,
    ];

    /// The reason as `ca revoke --reason` and the issuance index spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unspecified => "unspecified",
            Reason::KeyCompromise => "key-compromise",
            Reason::CaCompromise => "ca-compromise",
            Reason::AffiliationChanged => "affiliation-changed",
            Reason::Superseded => "superseded",
            Reason::CessationOfOperation => "cessation-of-operation",
            Reason::PrivilegeWithdrawn => "privilege-withdrawn",
        }
    }

    /// The reason spelled `text` (as [`as_str`](Self::as_str) writes it).
    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }

    fn code(self) -> RevocationReason {
        match self {
            Reason::Unspecified => RevocationReason::Unspecified,
            Reason::KeyCompromise => RevocationReason::KeyCompromise,
            Reason::CaCompromise => RevocationReason::CaCompromise,
            Reason::AffiliationChanged => RevocationReason::AffiliationChanged,
            Reason::Superseded => RevocationReason::Superseded,
            Reason::CessationOfOperation => RevocationReason::CessationOfOperation,
            Reason::PrivilegeWithdrawn => RevocationReason::PrivilegeWithdrawn,
        }
    }
}

impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Reason::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown revocation reason {text:?}")))
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Signs CRL number `number` (big-endian) listing `revoked`.
pub(crate) fn sign_numbered(
    issuer: &Issuer<'_, KeyPair>,
    key_id: &KeyIdMethod,
    revoked: &[Revoked],
    number: &[u8],
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<Crl, rcgen::Error> {
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from_slice(number),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|r| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&r.serial),
                revocation_time: r.at,
                reason_code: r.reason.map(Reason::code),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: key_id.clone(),
    };
    let crl = params.signed_by(issuer)?;
    Ok(Crl {
        der: crl.der().to_vec(),
        pem: crl.pem()?,
    })
}

/// Signs a CRL revoking `serials` as of `this_update`, numbered by `this_update` in
/// nanoseconds since the Unix epoch (a CRL number must grow from one CRL to the next).
pub(crate) fn sign(
    issuer: &Issuer<'_, KeyPair>,
    key_id: &KeyIdMethod,
    serials: impl IntoIterator<Item = impl AsRef<[u8]>>,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<Crl, rcgen::Error> {
    let number = this_update.unix_timestamp_nanos().max(0).to_be_bytes();
    let revoked: Vec<Revoked> = serials
        .into_iter()
        .map(|serial| Revoked {
            serial: serial.as_ref().to_vec(),
            at: this_update,
            reason: None,
        })
        .collect();
    sign_numbered(issuer, key_id, &revoked, &number, this_update, next_update)
}
