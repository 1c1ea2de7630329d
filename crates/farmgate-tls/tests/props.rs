//! Property tests: what farmgate-tls reads from files (certificate PEM, CRL files) and from
//! peers (certificates, through the profile checks) never makes it panic, whatever the bytes.
//! Inputs are random bytes, random bytes in PEM armour, and real certificates and CRLs with
//! random bytes changed. `PROPTEST_CASES=N` raises the number of cases (CI's interop stage).

use std::sync::OnceLock;

use farmgate_config::Trust;
use farmgate_testkit::pki::TestPki;
use farmgate_tls::profile::{self, Role};
use farmgate_tls::{TrustStore, crl, load};
use proptest::prelude::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};

/// A test PKI's trust, and one real certificate and CRL (DER) to mutate.
struct Samples {
    trust: TrustStore,
    certificate: Vec<u8>,
    crl: Vec<u8>,
}

fn samples() -> &'static Samples {
    static SAMPLES: OnceLock<Samples> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let pki = TestPki::new();
        let leaf = pki.client("edge.farm.test");
        let crl_path = pki.crl(&[&leaf]);
        let crl = CertificateRevocationListDer::from_pem_file(&crl_path)
            .unwrap()
            .to_vec();
        let at = farmgate_config::Location::new(std::sync::Arc::from(pki.dir()), 0, "trust");
        let trust =
            TrustStore::load(&[Trust::File(load::file_ref(&pki.ca_file(), "trust"))], &at).unwrap();
        Samples {
            certificate: leaf.leaf_der.clone(),
            trust,
            crl,
        }
    })
}

/// `der` with up to eight bytes replaced and, sometimes, cut short.
fn mutated(der: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = der.len();
    (
        prop::collection::vec((0..len, any::<u8>()), 1..8),
        prop::option::of(0..len),
    )
        .prop_map(move |(changes, cut)| {
            let mut bytes = der.clone();
            for (at, byte) in changes {
                bytes[at] = byte;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut);
            }
            bytes
        })
}

fn armoured(label: &'static str, body: Vec<u8>) -> Vec<u8> {
    use base64::Engine as _;
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        base64::engine::general_purpose::STANDARD.encode(body)
    )
    .into_bytes()
}

/// Random bytes, bare or in `label` PEM armour, and `real` mutated, bare or armoured.
fn bytes_like(real: Vec<u8>, label: &'static str) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        mutated(real.clone()),
        mutated(real).prop_map(move |der| armoured(label, der)),
        prop::collection::vec(any::<u8>(), 0..256).prop_map(move |b| armoured(label, b)),
    ]
}

fn certificate_bytes() -> impl Strategy<Value = Vec<u8>> {
    bytes_like(samples().certificate.clone(), "CERTIFICATE")
}

fn crl_bytes() -> impl Strategy<Value = Vec<u8>> {
    bytes_like(samples().crl.clone(), "X509 CRL")
}

proptest! {
    #[test]
    fn pem_certificate_loading_never_panics(bytes in certificate_bytes()) {
        let file = load::file_ref(std::path::Path::new("certs/any.pem"), "certificate");
        if let Ok(certs) = load::certificates_from_pem(&bytes, &file) {
            prop_assert!(!certs.is_empty());
        }
    }

    #[test]
    fn crl_loading_never_panics(bytes in crl_bytes()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("any.crl");
        std::fs::write(&path, &bytes).unwrap();
        let _ = crl::load(&[load::file_ref(&path, "crl")], &samples().trust, UnixTime::now());
    }

    #[test]
    fn profile_checks_and_the_anchor_lint_never_panic(bytes in certificate_bytes()) {
        let der = CertificateDer::from_pem_slice(&bytes).map_or(bytes.clone(), |c| c.to_vec());
        for role in [Role::EndEntity, Role::Intermediate, Role::Anchor] {
            let (subject, _) = profile::inspect(&der, role);
            prop_assert!(subject.is_ascii());
        }
        let _ = profile::check_chain(&der, &[&der]);
    }
}
