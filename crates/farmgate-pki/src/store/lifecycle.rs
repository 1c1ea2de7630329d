//! A certificate's life after issue: renewal that keeps the key, revocation, and the CRL that
//! publishes revocations (`farmgate ca issue --renew`, `ca revoke`, `ca crl`).

use std::fs;
use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};

use super::index::{self, Entry, Index, Kind, Revocation};
use super::{
    CERT_MODE, CaStore, IssuedFiles, Names, Role, checked_crl_url, entry_for, kind_of, spki_sha256,
    with_suffix,
};
use crate::{CertSpec, PkiError, PublicKey, Reason, Revoked};

/// Which certificate `ca revoke` revokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// By serial number (big-endian bytes), as the index lists it.
    Serial(Vec<u8>),
    /// The first certificate in this PEM file.
    Certificate(PathBuf),
}

/// What [`CaStore::publish_crl`] wrote.
#[derive(Debug, Clone)]
pub struct PublishedCrl {
    /// The CRL file.
    pub path: PathBuf,
    /// Its CRL number.
    pub number: u64,
    /// Its thisUpdate.
    pub this_update: OffsetDateTime,
    /// Its nextUpdate: publish a new one well before.
    pub next_update: OffsetDateTime,
    /// How many certificates it lists.
    pub revoked: usize,
    /// Whether the CA's own certificate follows the CRL in the file (an intermediate's, so
    /// that a gate trusting only the root can tell who signed it).
    pub with_ca_certificate: bool,
}

impl CaStore {
    /// Renews the certificate in `file`, which this CA issued: the same names, kind and key
    /// (so its `spki-sha256:` pin survives), a new serial, and new dates — `days` long, or as
    /// long as the old one. The CRL distribution point is `crl_url`, or the old one's.
    ///
    /// Without `out`, the certificate is renewed in place: `PREFIX.pem` and
    /// `PREFIX.fullchain.pem` beside `file` (`PREFIX` is `file` without `.pem`) are replaced
    /// atomically, and the key file is never touched. With `out`, the new files are created
    /// there and must not exist.
    pub fn renew(
        &self,
        file: &Path,
        days: Option<u32>,
        out: Option<&Path>,
        crl_url: Option<&str>,
    ) -> Result<IssuedFiles, PkiError> {
        let der = first_certificate(file)?;
        let old = self.issued_here(&der, file)?;
        let names = Names::of(&old);
        let serial = index::serial_hex(old.raw_serial());
        let kind = match self.index()?.find(&serial) {
            Some(entry) => entry.kind,
            None => kind_of(&old, &names),
        };
        let role = match (
            kind,
            names.dns.first(),
            names.ips.first(),
            names.uris.first(),
        ) {
            (Kind::Intermediate, ..) => {
                return Err(PkiError::RenewCa {
                    path: file.to_path_buf(),
                });
            }
            (Kind::Spiffe, _, _, Some(uri)) => Role::Spiffe(uri.clone()),
            (Kind::Server, Some(dns), ..) => Role::Server(dns.clone()),
            (Kind::Server, None, Some(ip), _) => Role::Server(ip.to_string()),
            (_, Some(dns), ..) => Role::Client(dns.clone()),
            (_, None, Some(ip), _) => Role::Client(ip.to_string()),
            (_, None, None, Some(uri)) => Role::Spiffe(uri.clone()),
            (_, None, None, None) => {
                return Err(PkiError::RenewNameless {
                    path: file.to_path_buf(),
                });
            }
        };
        for name in &names.dns {
            self.check_constraints(name.trim_start_matches("*."), name)?;
        }
        for ip in &names.ips {
            self.check_constraints(&ip.to_string(), &ip.to_string())?;
        }
        for uri in &names.uris {
            self.check_uri_constraints(uri)?;
        }

        let usage = role.usage();
        let mut spec = CertSpec::spiffe("").usages(&[usage]);
        spec.uris = names.uris.clone();
        spec.dns_names = names.dns.clone();
        spec.ip_addresses = names.ips.clone();
        spec.common_name = names.common_name.clone();
        let validity = old.validity();
        let lifetime = validity.not_after.to_datetime() - validity.not_before.to_datetime();
        let days = match days {
            Some(days) => days,
            None => u32::try_from(lifetime.whole_days().max(1)).unwrap_or(1),
        };
        self.set_lifetime(&mut spec, days)?;
        spec.crl_urls = match crl_url {
            Some(url) => vec![checked_crl_url(url)?],
            None => crl_urls(&old),
        };
        let key = PublicKey::from_spki_der(old.public_key().raw)?;
        let certified = self.authority.certify(&spec, &key)?;
        let full = format!("{}{}", certified.chain_pem, self.roots_pem);
        // In the index before it is in any file: a renewal whose files fail to be written
        // leaves an entry for a certificate nobody holds, never a certificate the CA cannot
        // revoke by serial.
        let entry = self.record(&certified.cert_der, Some(kind))?;

        let (certificate, full_chain) = match out {
            Some(prefix) => {
                let files = (
                    with_suffix(prefix, ".pem"),
                    with_suffix(prefix, ".fullchain.pem"),
                );
                super::write_all_new(&[
                    (&files.0, &certified.chain_pem, CERT_MODE),
                    (&files.1, &full, CERT_MODE),
                ])?;
                files
            }
            None => {
                // Given either file of a pair `ca issue` wrote (NAME.pem, NAME.fullchain.pem),
                // renew both.
                let name = file.to_str().unwrap_or_default();
                let (certificate, full_chain) = match name.strip_suffix(".fullchain.pem") {
                    Some(stem) => (PathBuf::from(format!("{stem}.pem")), file.to_path_buf()),
                    None => {
                        let stem = name.strip_suffix(".pem").map_or(file, Path::new);
                        (file.to_path_buf(), with_suffix(stem, ".fullchain.pem"))
                    }
                };
                index::replace(&certificate, certified.chain_pem.as_bytes(), CERT_MODE)?;
                index::replace(&full_chain, full.as_bytes(), CERT_MODE)?;
                (certificate, full_chain)
            }
        };
        Ok(IssuedFiles {
            role,
            certificate,
            full_chain,
            key: None,
            not_after: spec.not_after,
            days,
            dns_names: spec.dns_names,
            spki_sha256: spki_sha256(old.public_key().raw),
            serial: entry.serial,
        })
    }

    /// Revokes `target`, which this CA issued, for `reason`, now: the index says so, and the
    /// next CRL lists it. Refuses a certificate already revoked, and a serial the index does
    /// not know (give the certificate file instead).
    pub fn revoke(&self, target: &Target, reason: Option<Reason>) -> Result<Entry, PkiError> {
        Index::update(&self.dir, |index| self.revoke_in(index, target, reason))
    }

    fn revoke_in(
        &self,
        index: &mut Index,
        target: &Target,
        reason: Option<Reason>,
    ) -> Result<Entry, PkiError> {
        let serial = match target {
            Target::Serial(bytes) => {
                let serial = index::serial_hex(bytes);
                if index.find(&serial).is_none() {
                    return Err(PkiError::UnknownSerial {
                        serial,
                        index: self.dir.join(index::INDEX),
                    });
                }
                serial
            }
            Target::Certificate(path) => {
                let der = first_certificate(path)?;
                let cert = self.issued_here(&der, path)?;
                let serial = index::serial_hex(cert.raw_serial());
                // A certificate issued before the CA kept an index joins it now.
                if index.find(&serial).is_none() {
                    index.certificates.push(entry_for(&der, None)?);
                }
                serial
            }
        };
        // Found or added just above.
        let Some(entry) = index.find_mut(&serial) else {
            return Err(PkiError::UnknownSerial {
                serial,
                index: self.dir.join(index::INDEX),
            });
        };
        if let Some(done) = &entry.revoked {
            return Err(PkiError::AlreadyRevoked {
                serial,
                at: done.at,
            });
        }
        entry.revoked = Some(Revocation { at: now(), reason });
        Ok(entry.clone())
    }

    /// Signs a CRL of every revoked certificate that has not expired, valid `valid` from now,
    /// with the next CRL number, and writes it to `out` (PEM, replaced atomically so a gate
    /// watching it never reads half a file). An intermediate's CRL is followed by the
    /// intermediate's certificate (docs/revocation.md, "Who may sign a CRL").
    pub fn publish_crl(&self, out: &Path, valid: Duration) -> Result<PublishedCrl, PkiError> {
        if valid <= Duration::ZERO {
            return Err(PkiError::CrlValidity);
        }
        let this_update = now();
        let next_update = this_update.checked_add(valid).ok_or(PkiError::CrlTooLong)?;
        // The number is spent before the CRL exists: a crash in between skips a number,
        // which is harmless, rather than signing two CRLs with the same one.
        let (revoked, number) = Index::update(&self.dir, |index| {
            let revoked: Vec<Revoked> = index
                .revoked(this_update)
                .filter_map(|(entry, revocation)| {
                    Some(Revoked {
                        serial: index::parse_serial(&entry.serial)?,
                        at: revocation.at,
                        reason: revocation.reason,
                    })
                })
                .collect();
            index.crl_number += 1;
            Ok((revoked, index.crl_number))
        })?;
        let crl = self
            .authority
            .crl_numbered(&revoked, number, this_update, next_update)?;
        let with_ca_certificate = !self.is_root();
        let mut contents = crl.pem().to_owned();
        if with_ca_certificate {
            contents.push_str(self.authority.cert_pem());
        }
        if let Some(parent) = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty() && !p.exists())
        {
            super::create_dir(parent)?;
        }
        index::replace(out, contents.as_bytes(), CERT_MODE)?;
        Ok(PublishedCrl {
            path: out.to_path_buf(),
            number,
            this_update,
            next_update,
            revoked: revoked.len(),
            with_ca_certificate,
        })
    }

    /// `der` (read from `path`) parsed, if this CA issued it: its issuer is this CA's subject
    /// and its authority key identifier, when present, is this CA's key.
    fn issued_here<'d>(&self, der: &'d [u8], path: &Path) -> Result<X509Certificate<'d>, PkiError> {
        let unreadable = |_| PkiError::CertFile {
            path: path.to_path_buf(),
        };
        let cert = super::parse_cert(der).map_err(unreadable)?;
        let ca = super::parse_cert(self.authority.cert_der())?;
        let ca_key_id = ca
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0),
                _ => None,
            });
        let key_id = cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    aki.key_identifier.as_ref().map(|id| id.0)
                }
                _ => None,
            });
        let same_key = match (key_id, ca_key_id) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        if cert.issuer().as_raw() != ca.subject().as_raw() || !same_key {
            return Err(PkiError::NotIssuedHere {
                path: path.to_path_buf(),
                issuer: cert.issuer().to_string(),
                ca: self.authority.subject().to_owned(),
            });
        }
        Ok(cert)
    }
}

/// The DER of the first certificate in PEM file `path`.
fn first_certificate(path: &Path) -> Result<Vec<u8>, PkiError> {
    let text = fs::read(path).map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    CertificateDer::pem_slice_iter(&text)
        .next()
        .and_then(Result::ok)
        .map(|der| der.as_ref().to_vec())
        .ok_or_else(|| PkiError::CertFile {
            path: path.to_path_buf(),
        })
}

/// The URIs of a certificate's CRL distribution points.
fn crl_urls(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut urls = Vec::new();
    for ext in cert.iter_extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
            for point in points.iter() {
                if let Some(DistributionPointName::FullName(names)) = &point.distribution_point {
                    for name in names {
                        if let GeneralName::URI(uri) = name {
                            urls.push((*uri).to_owned());
                        }
                    }
                }
            }
        }
    }
    urls
}

/// Now, to the second: what certificates and CRLs can hold.
fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use rustls_pki_types::UnixTime;
    use webpki::{
        CertRevocationList, EndEntityCert, KeyUsage, OwnedCertRevocationList, RevocationCheckDepth,
        RevocationOptionsBuilder,
    };

    use super::*;
    use crate::CaSpec;
    use crate::store::Request;

    fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_file_iter(path)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// webpki's verdict on the chain in `chain` against the root in `root`, with the CRLs in
    /// `crl` (every certificate of the path checked).
    fn verify(root: &Path, chain: &Path, crl: Option<&Path>) -> Result<(), webpki::Error> {
        let presented = certs(chain);
        let root = certs(root).pop().unwrap();
        let anchors = [webpki::anchor_from_trusted_cert(&root).unwrap()];
        let crls: Vec<CertRevocationList<'_>> = crl
            .map(|path| {
                let der =
                    rustls_pki_types::CertificateRevocationListDer::from_pem_file(path).unwrap();
                OwnedCertRevocationList::from_der(der.as_ref())
                    .unwrap()
                    .into()
            })
            .into_iter()
            .collect();
        let refs: Vec<&CertRevocationList<'_>> = crls.iter().collect();
        let revocation = (!refs.is_empty()).then(|| {
            RevocationOptionsBuilder::new(&refs)
                .unwrap()
                .with_depth(RevocationCheckDepth::Chain)
                .with_status_policy(webpki::UnknownStatusPolicy::Allow)
                .build()
        });
        EndEntityCert::try_from(&presented[0])
            .unwrap()
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                &presented[1..],
                UnixTime::now(),
                KeyUsage::client_auth(),
                revocation,
                None,
            )
            .map(|_| ())
    }

    fn x509_der(path: &Path) -> Vec<u8> {
        certs(path)[0].as_ref().to_vec()
    }

    #[test]
    fn renewal_keeps_names_kind_and_key_with_a_new_serial_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CaStore::init(dir.path(), &CaSpec::new("farm CA")).unwrap();
        let mut request = Request::new(Role::Client("edge.farm.test".into()));
        request.days = Some(7);
        request.crl_url = Some("http://pki.farm.test/farm.crl".into());
        let first = ca.issue_with(&request).unwrap();
        let key_before = fs::read(first.key.as_ref().unwrap()).unwrap();
        let der_before = x509_der(&first.certificate);

        let renewed = ca.renew(&first.certificate, None, None, None).unwrap();
        assert_eq!(renewed.certificate, first.certificate);
        assert_eq!(renewed.full_chain, first.full_chain);
        assert_eq!(renewed.key, None, "the key file is not touched");
        assert_eq!(fs::read(first.key.as_ref().unwrap()).unwrap(), key_before);
        assert_eq!(renewed.spki_sha256, first.spki_sha256);
        assert_eq!(renewed.days, 7, "as long as the old one");
        assert_ne!(renewed.serial, first.serial);
        assert_eq!(renewed.role, Role::Client("edge.farm.test".into()));

        let der_after = x509_der(&renewed.certificate);
        let (before, after) = (
            super::super::parse_cert(&der_before).unwrap(),
            super::super::parse_cert(&der_after).unwrap(),
        );
        assert_eq!(before.public_key().raw, after.public_key().raw);
        assert_eq!(before.subject().as_raw(), after.subject().as_raw());
        assert_eq!(crl_urls(&after), ["http://pki.farm.test/farm.crl"]);
        assert!(
            after
                .extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .client_auth
        );
        let index = ca.index().unwrap();
        assert_eq!(index.certificates.len(), 2);
        assert_eq!(index.certificates[0].key_pin, index.certificates[1].key_pin);

        // Elsewhere, with --out: new files, never over existing ones.
        let out = dir.path().join("elsewhere");
        let moved = ca
            .renew(&first.certificate, Some(3), Some(&out), None)
            .unwrap();
        assert_eq!(moved.days, 3);
        assert!(matches!(
            ca.renew(&first.certificate, None, Some(&out), None),
            Err(PkiError::FileExists { .. })
        ));
    }

    #[test]
    fn an_existing_key_is_certified_without_writing_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CaStore::init(dir.path(), &CaSpec::new("farm CA")).unwrap();
        let key = crate::KeyPair::generate().unwrap();
        let public_pem = crate::pem::encode("PUBLIC KEY", &key.spki_der());
        for (stem, pem) in [("from-public", public_pem), ("from-private", key.to_pem())] {
            let mut request = Request::new(Role::Server(format!("{stem}.farm.test")));
            request.key = Some(PublicKey::from_pem(&pem).unwrap());
            let issued = ca.issue_with(&request).unwrap();
            assert_eq!(issued.key, None);
            assert!(!dir.path().join(format!("{stem}.farm.test.key")).exists());
            assert_eq!(issued.spki_sha256, spki_sha256(&key.spki_der()));
        }
        assert!(matches!(
            PublicKey::from_pem("not a key"),
            Err(PkiError::NoPublicKey)
        ));
    }

    #[test]
    fn revoked_certificates_are_listed_by_the_next_crl_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CaStore::init(dir.path(), &CaSpec::new("farm CA")).unwrap();
        let bad = ca
            .issue(&Role::Client("bad.farm.test".into()), None, None)
            .unwrap();
        let good = ca
            .issue(&Role::Client("good.farm.test".into()), None, None)
            .unwrap();
        let root = ca.cert_path();

        let entry = ca
            .revoke(
                &Target::Serial(index::parse_serial(&bad.serial).unwrap()),
                Some(Reason::KeyCompromise),
            )
            .unwrap();
        assert_eq!(
            entry.revoked.as_ref().unwrap().reason,
            Some(Reason::KeyCompromise)
        );
        assert!(matches!(
            ca.revoke(&Target::Certificate(bad.certificate.clone()), None),
            Err(PkiError::AlreadyRevoked { .. })
        ));
        assert!(matches!(
            ca.revoke(&Target::Serial(vec![1, 2, 3]), None),
            Err(PkiError::UnknownSerial { .. })
        ));

        let crl_path = dir.path().join("crl").join("farm.crl");
        let first = ca.publish_crl(&crl_path, Duration::days(7)).unwrap();
        assert_eq!((first.number, first.revoked), (1, 1));
        assert!(!first.with_ca_certificate);
        assert_eq!(first.next_update - first.this_update, Duration::days(7));
        assert_eq!(
            verify(&root, &bad.certificate, Some(&crl_path)),
            Err(webpki::Error::CertRevoked)
        );
        assert_eq!(verify(&root, &good.certificate, Some(&crl_path)), Ok(()));

        let crl_der =
            rustls_pki_types::CertificateRevocationListDer::from_pem_file(&crl_path).unwrap();
        let (_, parsed) = x509_parser::parse_x509_crl(crl_der.as_ref()).unwrap();
        assert_eq!(parsed.crl_number().map(|n| n.to_string()), Some("1".into()));
        assert!(parsed.next_update().is_some());
        let has_aki = parsed.extensions().iter().any(|e| {
            matches!(
                e.parsed_extension(),
                ParsedExtension::AuthorityKeyIdentifier(_)
            )
        });
        assert!(has_aki);

        // Revoking by certificate file, then a second CRL with a larger number.
        ca.revoke(&Target::Certificate(good.certificate.clone()), None)
            .unwrap();
        let second = ca.publish_crl(&crl_path, Duration::hours(1)).unwrap();
        assert_eq!((second.number, second.revoked), (2, 2));
        assert_eq!(
            verify(&root, &good.certificate, Some(&crl_path)),
            Err(webpki::Error::CertRevoked)
        );
    }

    #[test]
    fn another_cas_certificate_is_neither_renewed_nor_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let ours = CaStore::init(&dir.path().join("ours"), &CaSpec::new("farm CA")).unwrap();
        let theirs = CaStore::init(&dir.path().join("theirs"), &CaSpec::new("farm CA")).unwrap();
        let foreign = theirs
            .issue(&Role::Client("edge.farm.test".into()), None, None)
            .unwrap();
        let e = ours
            .renew(&foreign.certificate, None, None, None)
            .unwrap_err();
        assert!(matches!(e, PkiError::NotIssuedHere { .. }), "{e}");
        let e = ours
            .revoke(&Target::Certificate(foreign.certificate.clone()), None)
            .unwrap_err();
        assert!(matches!(e, PkiError::NotIssuedHere { .. }), "{e}");
    }

    #[test]
    fn an_intermediate_under_an_offline_root_issues_revokes_and_is_revocable() {
        let dir = tempfile::tempdir().unwrap();
        let root = CaStore::init(&dir.path().join("root"), &CaSpec::new("farm root")).unwrap();
        let issuing = CaStore::init_intermediate(
            &dir.path().join("issuing"),
            &CaSpec::new("farm issuing CA"),
            &root,
        )
        .unwrap();
        assert!(!issuing.is_root());
        let root_pem = issuing.dir().join(super::super::ROOT_CERT);
        assert_eq!(
            fs::read_to_string(&root_pem).unwrap(),
            root.authority().cert_pem()
        );
        let cert = super::super::parse_cert(issuing.authority().cert_der()).unwrap();
        assert!(
            cert.extended_key_usage().unwrap().is_none(),
            "an intermediate constrains no purpose"
        );
        let bc = cert.basic_constraints().unwrap().unwrap().value.clone();
        assert_eq!(bc.path_len_constraint, Some(0));
        assert_eq!(
            root.index().unwrap().certificates[0].kind,
            Kind::Intermediate
        );

        let edge = issuing
            .issue(&Role::Client("edge.farm.test".into()), None, None)
            .unwrap();
        assert_eq!(certs(&edge.certificate).len(), 2, "leaf and intermediate");
        assert_eq!(verify(&root_pem, &edge.certificate, None), Ok(()));

        issuing
            .revoke(&Target::Certificate(edge.certificate.clone()), None)
            .unwrap();
        let crl = dir.path().join("issuing.crl");
        let published = issuing.publish_crl(&crl, Duration::days(1)).unwrap();
        assert!(published.with_ca_certificate);
        assert!(
            fs::read_to_string(&crl)
                .unwrap()
                .ends_with(issuing.authority().cert_pem())
        );
        assert_eq!(
            verify(&root_pem, &edge.certificate, Some(&crl)),
            Err(webpki::Error::CertRevoked)
        );

        // The root revokes the intermediate: everything below it is refused.
        let other = issuing
            .issue(&Role::Client("other.farm.test".into()), None, None)
            .unwrap();
        root.revoke(
            &Target::Certificate(issuing.cert_path()),
            Some(Reason::CaCompromise),
        )
        .unwrap();
        let root_crl = dir.path().join("root.crl");
        root.publish_crl(&root_crl, Duration::days(30)).unwrap();
        assert_eq!(
            verify(&root_pem, &other.certificate, Some(&root_crl)),
            Err(webpki::Error::CertRevoked)
        );
    }
}
