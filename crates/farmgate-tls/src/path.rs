//! One path validation for both verifiers (the gate's of clients, the edge's of backends):
//! rustls-webpki builds and checks the path (chain to trust under the purpose, validity dates,
//! revocation), and calls back with each candidate path it accepted; the callback checks the
//! trust anchor's validity dates and the [`profile`](crate::profile) of the path. A candidate
//! the callback refuses sends webpki on to the next one the chain allows.

use std::cell::RefCell;

use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, RevocationOptions, VerifiedPath};

use crate::TrustStore;
use crate::profile::{self, Defect, Finding};

/// Why a path was refused.
#[derive(Debug)]
pub(crate) enum PathError {
    /// rustls-webpki refused it.
    Webpki(webpki::Error),
    /// webpki accepted it, but a certificate on it breaks the profile.
    Profile(Finding),
    /// webpki accepted it, but its trust anchor has expired: the finding on the anchor, and the
    /// webpki error an expired certificate gets.
    Anchor(Finding, webpki::Error),
}

/// Validate `cert`'s path to `trust` for `usage`; `Ok` with the profile warnings of the path
/// accepted.
#[allow(clippy::too_many_arguments)] // webpki's own parameters, passed through
pub(crate) fn verify(
    cert: &EndEntityCert<'_>,
    trust: &TrustStore,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    usage: impl ExtendedKeyUsageValidator,
    revocation: Option<RevocationOptions<'_>>,
    algorithms: &[&dyn SignatureVerificationAlgorithm],
) -> Result<Vec<Finding>, PathError> {
    let refused: RefCell<Option<PathError>> = RefCell::new(None);
    let warnings: RefCell<Vec<Finding>> = RefCell::new(Vec::new());
    let callback = |path: &VerifiedPath<'_>| match judge(path, trust, now) {
        Ok(found) => {
            *warnings.borrow_mut() = found;
            Ok(())
        }
        Err(e) => {
            *refused.borrow_mut() = Some(e);
            Err(SENTINEL)
        }
    };
    let result = cert.verify_for_usage(
        algorithms,
        trust.anchors(),
        intermediates,
        now,
        usage,
        revocation,
        Some(&callback),
    );
    match result {
        Ok(_) => Ok(warnings.into_inner()),
        Err(e) => match refused.into_inner() {
            // webpki reports the most specific error of all candidate paths: ours only when
            // it outranked the others.
            Some(ours) if e == SENTINEL => Err(ours),
            _ => Err(PathError::Webpki(e)),
        },
    }
}

/// What the callback tells webpki when it refuses a path. `CaUsedAsEndEntity` concerns the end
/// entity, which webpki checks before building any path, so webpki never reports it for a
/// chain that reached the callback: when it comes back, it is ours. Its rank lets real path
/// errors (dates, revocation, signatures, purpose, name constraints) win over it.
const SENTINEL: webpki::Error = webpki::Error::CaUsedAsEndEntity;

fn judge(
    path: &VerifiedPath<'_>,
    trust: &TrustStore,
    now: UnixTime,
) -> Result<Vec<Finding>, PathError> {
    // Only expiry: a root's notBefore is no reason to refuse (webpki checks the leaf's and
    // the intermediates' own dates, and a clock a little behind a brand-new CA would refuse
    // every chain to it).
    if let Some((subject, validity)) = trust.anchor_validity(path.anchor())
        && validity.defect_at(now) == Some(Defect::Expired)
    {
        let finding = Finding {
            role: profile::Role::Anchor,
            position: path.intermediate_certificates().count() + 1,
            subject: subject.to_owned(),
            defect: Defect::Expired,
        };
        let error = webpki::Error::CertExpired {
            time: now,
            not_after: validity.not_after,
        };
        return Err(PathError::Anchor(finding, error));
    }
    let leaf = path.end_entity().der();
    let intermediates: Vec<CertificateDer<'_>> =
        path.intermediate_certificates().map(|c| c.der()).collect();
    let intermediates: Vec<&[u8]> = intermediates.iter().map(|c| c.as_ref()).collect();
    // The anchor's URI name constraints, which webpki does not evaluate (uri_constraints).
    if let Some(constraints) = trust.anchor_uri_constraints(path.anchor()) {
        let names = std::iter::once(leaf.as_ref())
            .chain(intermediates.iter().copied())
            .flat_map(uri_names);
        for uri in names {
            if !constraints.allows(&uri) {
                return Err(PathError::Webpki(webpki::Error::NameConstraintViolation));
            }
        }
    }
    profile::check_chain(leaf.as_ref(), &intermediates).map_err(PathError::Profile)
}

/// The URI subject alternative names of certificate `der` (none if it cannot be read: webpki
/// has parsed it already, and the profile check reports what is wrong with it).
fn uri_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::FromDer as _;
    let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect()
}
