//! [`Crl`]: a signed certificate revocation list.

use rcgen::{
    CertificateRevocationListParams, Issuer, KeyIdMethod, RevokedCertParams, SerialNumber,
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
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from_slice(&number),
        issuing_distribution_point: None,
        revoked_certs: serials
            .into_iter()
            .map(|serial| RevokedCertParams {
                serial_number: SerialNumber::from_slice(serial.as_ref()),
                revocation_time: this_update,
                reason_code: None,
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
