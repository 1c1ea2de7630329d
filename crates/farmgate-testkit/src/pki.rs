//! The test PKI every end-to-end test uses: a root CA, an issuing intermediate, and leaf
//! certificates written as PEM files into a temporary directory.
//!
//! [`TestPki::new`] mimics a private farm CA: root → intermediate (no EKU constraint) → leaves.
//! [`TestPki::public_like`] mimics the public hierarchy since clientAuth was dropped: its
//! intermediate carries serverAuth only, so no certificate below it passes as a TLS client
//! under standard verifiers. An unknown CA is simply a second `TestPki`: its CAs have the same
//! names but other keys, so webpki refuses its certificates with a bad signature.
//!
//! ```
//! use farmgate_pki::CertSpec;
//! use farmgate_testkit::pki::TestPki;
//! use time::{Duration, OffsetDateTime};
//!
//! let pki = TestPki::new();
//! let edge = pki.client("edge.farm.test");
//! let backend = pki.server("backend.farm.test");
//! let now = OffsetDateTime::now_utc();
//! let expired = pki.issue(
//!     "expired",
//!     &CertSpec::client("edge.farm.test").valid(now - Duration::days(9), now - Duration::days(1)),
//! );
//! let crl = pki.crl(&[&edge]);
//! assert!(pki.ca_file().exists() && expired.cert.exists() && crl.exists());
//! # let _ = backend;
//! ```
// Test-only code: failing to mint a certificate or write a file in the temporary directory
// means the test environment is broken, and a panic with a message is the right report.
#![allow(clippy::expect_used)]

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use farmgate_identity::PeerIdentity;
use farmgate_pki::{Authority, CaSpec, CertSpec, KeyPair, Usage};
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};

/// A throwaway CA hierarchy whose files live in a temporary directory, removed when the
/// `TestPki` and every [`CertFiles`] from it are dropped.
#[derive(Debug)]
pub struct TestPki {
    dir: Arc<TempDir>,
    root: Authority,
    intermediate: Authority,
    /// Counts CRL files, so each [`TestPki::crl`] gets its own.
    crls: AtomicUsize,
}

/// The files of one issued leaf certificate. They stay on disk while this value or its
/// [`TestPki`] lives.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// Full chain PEM: the leaf, then the intermediate (not the root).
    pub cert: PathBuf,
    /// The leaf's private key, PKCS#8 PEM.
    pub key: PathBuf,
    /// The leaf certificate, DER.
    pub leaf_der: Vec<u8>,
    /// The leaf's serial number, as written in the certificate and listed in CRLs.
    pub serial: Vec<u8>,
    /// Keeps the temporary directory alive as long as these files are in use.
    _dir: Arc<TempDir>,
}

impl TestPki {
    /// "farm test root CA" → "farm test intermediate" → leaves; neither CA constrains EKUs.
    pub fn new() -> Self {
        Self::build("farm test root CA", CaSpec::new("farm test intermediate"))
    }

    /// Mimics the public hierarchy after clientAuth was removed: root → an intermediate whose
    /// EKU is serverAuth only → leaves. Use it with [`server_only_leaf`](Self::server_only_leaf).
    pub fn public_like() -> Self {
        let intermediate =
            CaSpec::new("public-like test intermediate").usages(&[Usage::ServerAuth]);
        Self::build("public-like test root CA", intermediate)
    }

    /// Another private CA, with other names and keys: its certificates chain to nothing a
    /// [`TestPki::new`] trusts ("unknown CA").
    pub fn other() -> Self {
        Self::build("other test root CA", CaSpec::new("other test intermediate"))
    }

    /// The directory holding every file of this PKI.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The root CA certificate PEM: what a gate's `trust` or an upstream's `trust` points at.
    pub fn ca_file(&self) -> PathBuf {
        self.dir().join("ca.pem")
    }

    /// The root CA.
    pub fn root(&self) -> &Authority {
        &self.root
    }

    /// The intermediate CA that issues every leaf and CRL.
    pub fn intermediate(&self) -> &Authority {
        &self.intermediate
    }

    /// A clientAuth leaf with CN and DNS SAN `name`, issued by the intermediate.
    pub fn client(&self, name: &str) -> CertFiles {
        self.issue(&format!("client-{name}"), &CertSpec::client(name))
    }

    /// A serverAuth leaf with CN `name`, SAN `name` and IP SAN 127.0.0.1.
    pub fn server(&self, name: &str) -> CertFiles {
        let mut spec = CertSpec::server(name);
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        if !spec.ip_addresses.contains(&loopback) {
            spec = spec.ip(loopback);
        }
        self.issue(&format!("server-{name}"), &spec)
    }

    /// A serverAuth-only leaf without subject CN and with DNS SAN `name`: what Let's Encrypt
    /// issues now. Meant for [`public_like`](Self::public_like).
    pub fn server_only_leaf(&self, name: &str) -> CertFiles {
        let spec = CertSpec::server(name).no_common_name();
        self.issue(&format!("server-only-{name}"), &spec)
    }

    /// Issues any other leaf from the intermediate: expired, not yet valid, wrong SAN with the
    /// right CN, CN only, serverAuth only, SPIFFE, a renewal with the same key...
    ///
    /// The files are `<file_stem>.pem` and `<file_stem>.key` (characters other than letters,
    /// digits, `.`, `-` and `_` become `_`); a number is appended if the stem is taken, so
    /// earlier files are never overwritten.
    pub fn issue(&self, file_stem: &str, spec: &CertSpec) -> CertFiles {
        let issued = self
            .intermediate
            .issue(spec)
            .expect("test PKI: issue a leaf certificate");
        let stem = self.free_stem(file_stem, "pem");
        let cert = self.write(&format!("{stem}.pem"), &issued.chain_pem);
        let key = self.write(&format!("{stem}.key"), &issued.key_pem);
        CertFiles {
            cert,
            key,
            leaf_der: issued.cert_der,
            serial: issued.serial,
            _dir: Arc::clone(&self.dir),
        }
    }

    /// A CRL signed by the intermediate, revoking these certificates, in a new PEM file that
    /// lives as long as this `TestPki`. Valid from a minute ago for a week.
    pub fn crl(&self, revoked: &[&CertFiles]) -> PathBuf {
        let now = OffsetDateTime::now_utc();
        let crl = self
            .intermediate
            .crl(
                revoked.iter().map(|files| &files.serial),
                now - Duration::minutes(1),
                now + Duration::days(7),
            )
            .expect("test PKI: sign a CRL");
        let number = self.crls.fetch_add(1, Ordering::Relaxed) + 1;
        self.write(&format!("crl-{number}.pem"), crl.pem())
    }

    /// `DIR/edge.toml`: an edge whose listener "public" serves `site` in front of upstream
    /// "farm", one gate at 127.0.0.1:9443 named `backend.farm.test`, trusting this PKI's root
    /// and presented `client` (its `client_certificate` is on line 10). For tests that build or
    /// check a configuration; nothing listens at the gate's address.
    pub fn edge_config(&self, site: &CertFiles, client: &CertFiles) -> PathBuf {
        let text = format!(
            r#"
[[listener]]
name = "public"
listen = "127.0.0.1:0"
tls = {{ certificate = {site:?}, private_key = {site_key:?} }}
[[listener.route]]
upstream = "farm"
[upstream.farm]
servers = ["127.0.0.1:9443"]
tls = {{ server_name = "backend.farm.test", trust = [{ca:?}], client_certificate = {cert:?}, client_key = {key:?} }}
"#,
            site = site.cert,
            site_key = site.key,
            ca = self.ca_file(),
            cert = client.cert,
            key = client.key,
        );
        self.write("edge.toml", &text)
    }

    fn build(root_name: &str, intermediate: CaSpec) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("farmgate-test-pki-")
            .tempdir()
            .expect("test PKI: create a temporary directory");
        let root = Authority::new_root(&CaSpec::new(root_name)).expect("test PKI: root CA");
        let intermediate = root
            .intermediate(&intermediate)
            .expect("test PKI: intermediate CA");
        let pki = Self {
            dir: Arc::new(dir),
            root,
            intermediate,
            crls: AtomicUsize::new(0),
        };
        pki.write("ca.pem", pki.root.cert_pem());
        pki
    }

    fn write(&self, file_name: &str, contents: &str) -> PathBuf {
        let path = self.dir().join(file_name);
        fs::write(&path, contents).expect("test PKI: write a file");
        path
    }

    /// `stem`, made safe for a file name, with a number appended if `<stem>.<ext>` exists.
    fn free_stem(&self, stem: &str, ext: &str) -> String {
        let safe: String = stem
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let taken = |candidate: &str| self.dir().join(format!("{candidate}.{ext}")).exists();
        if !taken(&safe) {
            return safe;
        }
        (2..)
            .map(|n| format!("{safe}-{n}"))
            .find(|candidate| !taken(candidate))
            .expect("an unbounded range always yields a free name")
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

impl CertFiles {
    /// The leaf's identity, as a gate sees it.
    pub fn identity(&self) -> PeerIdentity {
        PeerIdentity::from_der(&self.leaf_der).expect("test PKI: read a leaf's identity")
    }

    /// The leaf's key, for a renewal that keeps it ([`CertSpec::with_key`]).
    pub fn key_pair(&self) -> KeyPair {
        let pem = fs::read_to_string(&self.key).expect("test PKI: read a key file");
        KeyPair::from_pem(&pem).expect("test PKI: parse a key file")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use farmgate_identity::AllowRule;
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
    use webpki::{
        CertRevocationList, EndEntityCert, Error, KeyUsage, OwnedCertRevocationList,
        RevocationCheckDepth, RevocationOptionsBuilder,
    };

    use super::*;

    /// webpki's verdict on `leaf`'s chain file against `pki`'s root, as a gate (client_auth)
    /// or an edge (server_auth) would check it.
    fn verify(
        pki: &TestPki,
        leaf: &CertFiles,
        usage: KeyUsage,
        crl: Option<&Path>,
    ) -> Result<(), Error> {
        let root = CertificateDer::from_pem_file(pki.ca_file()).unwrap();
        let anchors = [webpki::anchor_from_trusted_cert(&root).unwrap()];
        let chain: Vec<CertificateDer<'_>> = CertificateDer::pem_file_iter(&leaf.cert)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(chain[0].as_ref(), leaf.leaf_der);
        let crls: Vec<CertRevocationList<'_>> = crl
            .map(|path| {
                let der = CertificateRevocationListDer::from_pem_file(path).unwrap();
                OwnedCertRevocationList::from_der(&der).unwrap().into()
            })
            .into_iter()
            .collect();
        let crl_refs: Vec<&CertRevocationList<'_>> = crls.iter().collect();
        let revocation = (!crl_refs.is_empty()).then(|| {
            RevocationOptionsBuilder::new(&crl_refs)
                .unwrap()
                .with_depth(RevocationCheckDepth::EndEntity)
                .build()
        });
        EndEntityCert::try_from(&chain[0])
            .unwrap()
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                &chain[1..],
                UnixTime::now(),
                usage,
                revocation,
                None,
            )
            .map(|_| ())
    }

    fn allows(rule: &str, leaf: &CertFiles) -> bool {
        rule.parse::<AllowRule>().unwrap().matches(&leaf.identity())
    }

    fn is_missing_eku(result: Result<(), Error>) -> bool {
        matches!(result, Err(Error::RequiredEkuNotFoundContext(_)))
    }

    #[test]
    fn client_verifies_as_a_client_only() {
        let pki = TestPki::new();
        let edge = pki.client("edge.farm.test");
        assert_eq!(verify(&pki, &edge, KeyUsage::client_auth(), None), Ok(()));
        assert!(is_missing_eku(verify(
            &pki,
            &edge,
            KeyUsage::server_auth(),
            None
        )));
        assert!(allows("dns:edge.farm.test", &edge));
        assert!(allows("cn:edge.farm.test", &edge));
        assert_eq!(edge.identity().name(), "edge.farm.test");
    }

    #[test]
    fn server_verifies_as_a_server_for_its_name_and_loopback() {
        let pki = TestPki::new();
        let backend = pki.server("backend.farm.test");
        assert_eq!(
            verify(&pki, &backend, KeyUsage::server_auth(), None),
            Ok(())
        );
        assert!(is_missing_eku(verify(
            &pki,
            &backend,
            KeyUsage::client_auth(),
            None
        )));
        let der = CertificateDer::from(backend.leaf_der.as_slice());
        let leaf = EndEntityCert::try_from(&der).unwrap();
        for name in ["backend.farm.test", "127.0.0.1"] {
            let name = ServerName::try_from(name).unwrap();
            assert_eq!(leaf.verify_is_valid_for_subject_name(&name), Ok(()));
        }
        let other = ServerName::try_from("other.farm.test").unwrap();
        assert!(leaf.verify_is_valid_for_subject_name(&other).is_err());
    }

    #[test]
    fn expired_and_not_yet_valid_are_refused() {
        let pki = TestPki::new();
        let now = OffsetDateTime::now_utc();
        let spec = CertSpec::client("edge.farm.test");
        let expired = pki.issue(
            "expired",
            &spec
                .clone()
                .valid(now - Duration::days(10), now - Duration::days(1)),
        );
        let future = pki.issue(
            "not-yet-valid",
            &spec.valid(now + Duration::days(1), now + Duration::days(10)),
        );
        assert!(matches!(
            verify(&pki, &expired, KeyUsage::client_auth(), None),
            Err(Error::CertExpired { .. })
        ));
        assert!(matches!(
            verify(&pki, &future, KeyUsage::client_auth(), None),
            Err(Error::CertNotValidYet { .. })
        ));
    }

    #[test]
    fn chain_is_valid_but_identity_differs_for_wrong_san_and_cn_only() {
        let pki = TestPki::new();
        let wrong_san = pki.issue(
            "wrong-san",
            &CertSpec::client("edge.farm.test")
                .no_dns()
                .dns("other.farm.test"),
        );
        assert_eq!(
            verify(&pki, &wrong_san, KeyUsage::client_auth(), None),
            Ok(())
        );
        assert!(!allows("dns:edge.farm.test", &wrong_san));
        assert!(allows("cn:edge.farm.test", &wrong_san));

        let cn_only = pki.issue("cn-only", &CertSpec::client("edge.farm.test").no_dns());
        assert_eq!(
            verify(&pki, &cn_only, KeyUsage::client_auth(), None),
            Ok(())
        );
        assert!(cn_only.identity().dns_names().is_empty());
        assert!(!allows("dns:edge.farm.test", &cn_only));
        assert!(allows("cn:edge.farm.test", &cn_only));
    }

    #[test]
    fn server_auth_only_client_is_refused_as_a_client() {
        let pki = TestPki::new();
        let spec = CertSpec::client("edge.farm.test").usages(&[Usage::ServerAuth]);
        let leaf = pki.issue("server-auth-only", &spec);
        assert!(is_missing_eku(verify(
            &pki,
            &leaf,
            KeyUsage::client_auth(),
            None
        )));
        assert_eq!(verify(&pki, &leaf, KeyUsage::server_auth(), None), Ok(()));
    }

    #[test]
    fn spiffe_client_is_named_by_its_uri() {
        let pki = TestPki::new();
        let leaf = pki.issue("spiffe-edge", &CertSpec::spiffe("spiffe://farm.test/edge"));
        assert_eq!(verify(&pki, &leaf, KeyUsage::client_auth(), None), Ok(()));
        assert!(allows("uri:spiffe://farm.test/edge", &leaf));
        assert_eq!(leaf.identity().common_name(), None);
    }

    #[test]
    fn renewal_with_the_same_key_keeps_the_pin() {
        let pki = TestPki::new();
        let first = pki.client("edge.farm.test");
        let renewed = pki.issue(
            "client-edge.farm.test",
            &CertSpec::client("edge.farm.test").with_key(first.key_pair()),
        );
        assert_ne!(first.cert, renewed.cert, "the first files are kept");
        assert_ne!(first.leaf_der, renewed.leaf_der);
        let pin = format!("spki-sha256:{}", first.identity().spki_pin());
        assert!(allows(&pin, &renewed));
        assert!(!allows(&pin, &pki.client("edge.farm.test")));
    }

    #[test]
    fn revoked_certificate_is_refused_with_the_crl() {
        let pki = TestPki::new();
        let revoked = pki.client("revoked.farm.test");
        let kept = pki.client("kept.farm.test");
        let crl = pki.crl(&[&revoked]);
        assert_eq!(
            verify(&pki, &revoked, KeyUsage::client_auth(), None),
            Ok(())
        );
        assert_eq!(
            verify(&pki, &revoked, KeyUsage::client_auth(), Some(&crl)),
            Err(Error::CertRevoked)
        );
        assert_eq!(
            verify(&pki, &kept, KeyUsage::client_auth(), Some(&crl)),
            Ok(())
        );
        assert_ne!(pki.crl(&[]), crl, "each CRL gets its own file");
    }

    #[test]
    fn certificate_from_another_ca_is_refused() {
        let pki = TestPki::new();
        let other = TestPki::new();
        let stranger = other.client("edge.farm.test");
        // The other PKI's CAs have the same names but different keys: an impostor CA.
        assert_eq!(
            verify(&pki, &stranger, KeyUsage::client_auth(), None),
            Err(Error::InvalidSignatureForPublicKey)
        );
    }

    #[test]
    fn public_like_leaves_are_servers_only_and_have_no_cn() {
        let pki = TestPki::public_like();
        let leaf = pki.server_only_leaf("edge.example.com");
        assert_eq!(verify(&pki, &leaf, KeyUsage::server_auth(), None), Ok(()));
        assert!(is_missing_eku(verify(
            &pki,
            &leaf,
            KeyUsage::client_auth(),
            None
        )));
        let identity = leaf.identity();
        assert_eq!(identity.common_name(), None);
        assert_eq!(identity.dns_names(), ["edge.example.com"]);
        assert!(allows("dns:edge.example.com", &leaf));

        // Even a leaf asking for clientAuth fails: the intermediate's EKU constrains the chain.
        let client = pki.client("edge.example.com");
        assert!(is_missing_eku(verify(
            &pki,
            &client,
            KeyUsage::client_auth(),
            None
        )));
    }
}
