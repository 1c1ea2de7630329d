//! Chains shaped like the ones a farm meets, minted at test time: the public CAs behind the
//! bundled Mozilla roots (Let's Encrypt, ZeroSSL, Google Trust Services, DigiCert) and the usual
//! private CAs (cert-manager, step-ca, Vault PKI, `openssl req -x509` with OpenSSL 3 and 1.1
//! leaves, EasyRSA). Nothing is fetched: each certificate carries the extensions, criticality,
//! serial length and subject shape of its model, with fresh keys and names.
//!
//! The profile checks (farmgate-tls) must accept every one of them; their tests hold each
//! shape up against the trust-anchor lint, an upstream handshake and, for client-capable
//! leaves, a gate.
//!
//! ```
//! let chains = farmgate_testkit::lookalike::all();
//! assert!(chains.iter().any(|c| c.name == "lets-encrypt"));
//! assert!(chains.iter().all(|c| c.trust.exists() && c.chain.exists() && c.key.exists()));
//! ```
// Test-only code: failing to mint a certificate or write a file in the temporary directory
// means the test environment is broken, and a panic with a message is the right report.
#![allow(clippy::expect_used)]

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer as _;

/// One minted chain: its trust anchor, what the peer presents, and its key.
#[derive(Debug, Clone)]
pub struct LookAlike {
    /// Which real-world issuer it mimics, e.g. `lets-encrypt`, `cert-manager`.
    pub name: &'static str,
    /// The root (the trust anchor), PEM.
    pub trust: PathBuf,
    /// The leaf then the intermediates it is served with, PEM.
    pub chain: PathBuf,
    /// The leaf's private key, PKCS#8 PEM.
    pub key: PathBuf,
    /// The DNS name on the leaf.
    pub dns_name: String,
    /// Whether the leaf may authenticate a TLS client (clientAuth, or no EKU at all).
    pub client: bool,
    /// Whether the leaf may authenticate a TLS server.
    pub server: bool,
    _dir: Arc<TempDir>,
}

/// Every shape, each in its own files.
pub fn all() -> Vec<LookAlike> {
    let dir = Arc::new(
        tempfile::Builder::new()
            .prefix("farmgate-lookalikes-")
            .tempdir()
            .expect("look-alikes: create a temporary directory"),
    );
    [
        lets_encrypt(),
        lets_encrypt_tlsserver_cross_signed(),
        zerossl(),
        google_trust_services(),
        digicert(),
        cert_manager(),
        step_ca(),
        vault(),
        openssl_req_x509(false),
        openssl_req_x509(true),
        easy_rsa(),
    ]
    .into_iter()
    .map(|shape| shape.write(&dir))
    .collect()
}

/// A chain before it is written: root, intermediates (closest to the root first), leaf.
struct Shape {
    name: &'static str,
    root: Minted,
    intermediates: Vec<Minted>,
    leaf: Minted,
    dns_name: String,
    ekus: Vec<ExtendedKeyUsagePurpose>,
}

struct Minted {
    pem: String,
    key: KeyPair,
}

impl Shape {
    fn write(self, dir: &Arc<TempDir>) -> LookAlike {
        let write = |suffix: &str, contents: &str| {
            let path = dir.path().join(format!("{}-{suffix}", self.name));
            fs::write(&path, contents).expect("look-alikes: write a file");
            path
        };
        let mut chain = self.leaf.pem.clone();
        for ca in self.intermediates.iter().rev() {
            chain.push_str(&ca.pem);
        }
        let any = self.ekus.is_empty();
        LookAlike {
            name: self.name,
            trust: write("root.pem", &self.root.pem),
            chain: write("chain.pem", &chain),
            key: write("leaf.key", &self.leaf.key.serialize_pem()),
            client: any || self.ekus.contains(&ExtendedKeyUsagePurpose::ClientAuth),
            server: any || self.ekus.contains(&ExtendedKeyUsagePurpose::ServerAuth),
            dns_name: self.dns_name,
            _dir: Arc::clone(dir),
        }
    }
}

/// What one certificate carries. Basic constraints and key identifiers are written by hand
/// (rcgen always marks them its own way), everything else through rcgen.
#[derive(Clone)]
struct Spec {
    subject: Vec<(DnType, &'static str)>,
    serial_len: usize,
    /// `Some((critical, path_len))` for a CA; leaves may still carry `cA=FALSE`.
    ca: Option<(bool, Option<u8>)>,
    leaf_basic_constraints: bool,
    ski: bool,
    aki: Aki,
    key_usages: Vec<KeyUsagePurpose>,
    ekus: Vec<ExtendedKeyUsagePurpose>,
    dns: Vec<String>,
    /// Permitted DNS subtrees, and whether the extension is critical.
    name_constraints: Option<(Vec<&'static str>, bool)>,
    /// Public-CA trimmings: AIA (caIssuers, OCSP), CRL distribution point, policies.
    public: bool,
    days: i64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Aki {
    None,
    KeyId,
    /// keyIdentifier, authorityCertIssuer and authorityCertSerialNumber (EasyRSA).
    KeyIdIssuerSerial,
}

impl Spec {
    fn root(cn: &'static str) -> Spec {
        Spec {
            subject: vec![
                (DnType::CountryName, "US"),
                (DnType::OrganizationName, "Look-alike Trust"),
                (DnType::CommonName, cn),
            ],
            serial_len: 16,
            ca: Some((true, None)),
            leaf_basic_constraints: false,
            ski: true,
            aki: Aki::None,
            key_usages: vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
            ekus: Vec::new(),
            dns: Vec::new(),
            name_constraints: None,
            public: false,
            days: 3650,
        }
    }

    fn intermediate(cn: &'static str) -> Spec {
        Spec {
            ca: Some((true, Some(0))),
            aki: Aki::KeyId,
            key_usages: vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
            ],
            ekus: vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            public: true,
            days: 1095,
            ..Spec::root(cn)
        }
    }

    fn leaf(name: &str) -> Spec {
        Spec {
            subject: vec![(DnType::CommonName, leak(name))],
            serial_len: 18,
            ca: None,
            leaf_basic_constraints: true,
            ski: true,
            aki: Aki::KeyId,
            key_usages: vec![KeyUsagePurpose::DigitalSignature],
            ekus: vec![ExtendedKeyUsagePurpose::ServerAuth],
            dns: vec![name.to_owned()],
            name_constraints: None,
            public: true,
            days: 90,
        }
    }

    fn mint(
        &self,
        issuer: Option<(&CertificateParams, &KeyPair, &[u8])>,
    ) -> (Minted, CertificateParams) {
        let key = KeyPair::generate().expect("look-alikes: generate a key");
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        for (kind, value) in &self.subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        let serial = serial(self.serial_len);
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(self.days);
        params.is_ca = IsCa::NoCa;
        params.key_usages = self.key_usages.clone();
        params.extended_key_usages = self.ekus.clone();
        for name in &self.dns {
            let name = name.clone().try_into().expect("look-alikes: a DNS name");
            params.subject_alt_names.push(SanType::DnsName(name));
        }
        let mut extensions = Vec::new();
        match self.ca {
            Some((critical, path_len)) => {
                let mut content = der(0x01, &[0xff]);
                if let Some(len) = path_len {
                    content.extend(der(0x02, &[len]));
                }
                extensions.push(extension(&[2, 5, 29, 19], der(0x30, &content), critical));
            }
            None if self.leaf_basic_constraints => {
                extensions.push(extension(&[2, 5, 29, 19], der(0x30, &[]), true));
            }
            None => {}
        }
        if self.ski {
            let id = params.key_identifier(&key);
            extensions.push(extension(&[2, 5, 29, 14], der(0x04, &id), false));
        }
        let (issuer_params, issuer_key, issuer_serial) = match issuer {
            Some((params, key, serial)) => (params, key, serial.to_vec()),
            None => (&params, &key, serial.clone()),
        };
        let key_id = issuer_params.key_identifier(issuer_key);
        match self.aki {
            Aki::None => {}
            Aki::KeyId => {
                let content = der(0x30, &der(0x80, &key_id));
                extensions.push(extension(&[2, 5, 29, 35], content, false));
            }
            Aki::KeyIdIssuerSerial => {
                let issuer_name = issuer_params.distinguished_name.clone();
                let name_der = name_der(&issuer_name, issuer_key);
                let mut content = der(0x80, &key_id);
                content.extend(der(0xa1, &der(0xa4, &name_der)));
                content.extend(der(0x82, &issuer_serial));
                extensions.push(extension(&[2, 5, 29, 35], der(0x30, &content), false));
            }
        }
        if let Some((names, critical)) = &self.name_constraints {
            let subtrees: Vec<u8> = names
                .iter()
                .flat_map(|n| der(0x30, &der(0x82, n.as_bytes())))
                .collect();
            let content = der(0x30, &der(0xa0, &subtrees));
            extensions.push(extension(&[2, 5, 29, 30], content, *critical));
        }
        if self.public {
            let ca_issuers = der(
                0x30,
                &[
                    der(0x06, &[0x2b, 6, 1, 5, 5, 7, 48, 2]),
                    der(0x86, b"http://look-alike.test/ca.der"),
                ]
                .concat(),
            );
            let ocsp = der(
                0x30,
                &[
                    der(0x06, &[0x2b, 6, 1, 5, 5, 7, 48, 1]),
                    der(0x86, b"http://ocsp.look-alike.test"),
                ]
                .concat(),
            );
            let aia = der(0x30, &[ocsp, ca_issuers].concat());
            extensions.push(extension(&[1, 3, 6, 1, 5, 5, 7, 1, 1], aia, false));
            // certificatePolicies: the CA/B Forum domain-validated policy.
            let policy = der(0x30, &der(0x30, &der(0x06, &[0x67, 0x81, 0x0c, 1, 2, 1])));
            extensions.push(extension(&[2, 5, 29, 32], policy, false));
            params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: vec!["http://crl.look-alike.test/ca.crl".to_owned()],
            }];
        }
        params.custom_extensions = extensions;
        let cert = match issuer {
            Some((issuer_params, issuer_key, _)) => params
                .signed_by(&key, &Issuer::from_params(issuer_params, issuer_key))
                .expect("look-alikes: sign a certificate"),
            None => params
                .self_signed(&key)
                .expect("look-alikes: self-sign a root"),
        };
        (
            Minted {
                pem: cert.pem(),
                key,
            },
            params,
        )
    }
}

/// A chain from `specs` (root first, leaf last), each signed by the one before.
fn chain(name: &'static str, dns_name: &str, specs: &[Spec]) -> Shape {
    let mut minted: Vec<(Minted, CertificateParams, Vec<u8>)> = Vec::new();
    for spec in specs {
        let issuer = minted
            .last()
            .map(|(m, params, serial)| (params, &m.key, serial.as_slice()));
        let (cert, params) = spec.mint(issuer);
        let serial = params
            .serial_number
            .as_ref()
            .map(|s| s.to_bytes())
            .unwrap_or_default();
        minted.push((cert, params, serial));
    }
    let ekus = specs.last().map(|s| s.ekus.clone()).unwrap_or_default();
    let mut certs = minted.into_iter().map(|(m, _, _)| m);
    let root = certs.next().expect("look-alikes: a root");
    let mut rest: Vec<Minted> = certs.collect();
    let leaf = rest.pop().expect("look-alikes: a leaf");
    Shape {
        name,
        root,
        intermediates: rest,
        leaf,
        dns_name: dns_name.to_owned(),
        ekus,
    }
}

fn lets_encrypt() -> Shape {
    let name = "www.le.look-alike.test";
    let mut root = Spec::root("ISRG Root X1 look-alike");
    root.subject[1] = (DnType::OrganizationName, "Internet Security Research Group");
    let mut e5 = Spec::intermediate("E5 look-alike");
    e5.subject = vec![
        (DnType::CountryName, "US"),
        (DnType::OrganizationName, "Let's Encrypt"),
        (DnType::CommonName, "E5 look-alike"),
    ];
    chain("lets-encrypt", name, &[root, e5, Spec::leaf(name)])
}

/// The `tlsserver` profile: no subject at all (so a critical SAN), no SKI, under the ECDSA root
/// served cross-signed by the RSA root.
fn lets_encrypt_tlsserver_cross_signed() -> Shape {
    let name = "api.le.look-alike.test";
    let x1 = Spec::root("ISRG Root X1 look-alike");
    let mut x2_by_x1 = Spec::intermediate("ISRG Root X2 look-alike");
    x2_by_x1.ca = Some((true, None));
    x2_by_x1.ekus = Vec::new();
    let e6 = Spec::intermediate("E6 look-alike");
    let mut leaf = Spec::leaf(name);
    leaf.subject = Vec::new();
    leaf.ski = false;
    leaf.days = 6;
    chain("lets-encrypt-tlsserver", name, &[x1, x2_by_x1, e6, leaf])
}

fn zerossl() -> Shape {
    let name = "shop.zerossl.look-alike.test";
    let root = Spec::root("USERTrust ECC Certification Authority look-alike");
    let mut ca = Spec::intermediate("ZeroSSL ECC Domain Secure Site CA look-alike");
    ca.serial_len = 16;
    let mut leaf = Spec::leaf(name);
    leaf.ekus.push(ExtendedKeyUsagePurpose::ClientAuth);
    chain("zerossl", name, &[root, ca, leaf])
}

/// GTS Root R4 under GlobalSign Root CA (an old root with an 11-byte serial), then WE1.
fn google_trust_services() -> Shape {
    let name = "mail.gts.look-alike.test";
    let mut r1 = Spec::root("GlobalSign Root CA look-alike");
    r1.serial_len = 11;
    let mut r4 = Spec::intermediate("GTS Root R4 look-alike");
    r4.ca = Some((true, None));
    r4.ekus = Vec::new();
    let we1 = Spec::intermediate("WE1 look-alike");
    chain(
        "google-trust-services",
        name,
        &[r1, r4, we1, Spec::leaf(name)],
    )
}

/// DigiCert Global Root CA carries an AKI equal to its SKI; the leaf is RSA-style
/// (keyEncipherment) with both TLS EKUs.
fn digicert() -> Shape {
    let name = "portal.digicert.look-alike.test";
    let mut root = Spec::root("DigiCert Global Root CA look-alike");
    root.aki = Aki::KeyId;
    root.key_usages.insert(0, KeyUsagePurpose::DigitalSignature);
    let ca = Spec::intermediate("DigiCert Global G2 TLS RSA SHA256 2020 CA1 look-alike");
    let mut leaf = Spec::leaf(name);
    leaf.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    leaf.ekus.push(ExtendedKeyUsagePurpose::ClientAuth);
    leaf.subject = vec![
        (DnType::CountryName, "US"),
        (DnType::StateOrProvinceName, "California"),
        (DnType::OrganizationName, "Look-alike Inc."),
        (DnType::CommonName, leak(name)),
    ];
    chain("digicert", name, &[root, ca, leaf])
}

/// Go's crypto/x509 (cert-manager's CA issuer): a root without AKI, name constraints marked
/// non-critical (Go's default), leaves without subject, SKI or public trimmings.
fn cert_manager() -> Shape {
    let name = "api.farm.internal";
    let mut root = Spec::root("cert-manager look-alike CA");
    root.subject = vec![(DnType::CommonName, "cert-manager look-alike CA")];
    root.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyCertSign,
    ];
    root.name_constraints = Some((vec!["farm.internal"], false));
    let mut leaf = Spec::leaf(name);
    leaf.subject = Vec::new();
    leaf.ski = false;
    leaf.public = false;
    leaf.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    leaf.ekus.push(ExtendedKeyUsagePurpose::ClientAuth);
    leaf.serial_len = 16;
    chain("cert-manager", name, &[root, leaf])
}

/// smallstep's step-ca: root (path length 1) and intermediate, short-lived leaves with both TLS
/// EKUs and no basic constraints.
fn step_ca() -> Shape {
    let name = "edge.step.farm.internal";
    let mut root = Spec::root("step-ca look-alike Root CA");
    root.ca = Some((true, Some(1)));
    let mut ca = Spec::intermediate("step-ca look-alike Intermediate CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.ekus = Vec::new();
    ca.public = false;
    let mut leaf = Spec::leaf(name);
    leaf.leaf_basic_constraints = false;
    leaf.public = false;
    leaf.ekus.push(ExtendedKeyUsagePurpose::ClientAuth);
    leaf.serial_len = 16;
    leaf.days = 1;
    chain("step-ca", name, &[root, ca, leaf])
}

/// HashiCorp Vault PKI: a root whose AKI repeats its SKI and whose permitted DNS domains are a
/// non-critical name constraint; leaves with the CN among the SANs.
fn vault() -> Shape {
    let name = "db.vault.farm.internal";
    let mut root = Spec::root("Vault look-alike Root");
    root.subject = vec![(DnType::CommonName, "Vault look-alike Root")];
    root.aki = Aki::KeyId;
    root.serial_len = 20;
    root.name_constraints = Some((vec!["farm.internal"], false));
    let mut leaf = Spec::leaf(name);
    leaf.public = false;
    leaf.serial_len = 20;
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyAgreement,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.ekus.push(ExtendedKeyUsagePurpose::ClientAuth);
    chain("vault", name, &[root, leaf])
}

/// `openssl req -x509` with Debian's openssl.cnf (`v3_ca`: SKI, AKI equal to it, critical
/// basicConstraints, no keyUsage) and a leaf from `openssl x509 -req -extfile` holding only a
/// subjectAltName: OpenSSL 3 adds SKI and AKI to it, OpenSSL 1.1 (`old`) adds nothing.
fn openssl_req_x509(old: bool) -> Shape {
    let name = "backend.openssl.farm.internal";
    let mut root = Spec::root("My CA");
    root.subject = vec![(DnType::CommonName, "My CA")];
    root.aki = Aki::KeyId;
    root.key_usages = Vec::new();
    root.serial_len = 20;
    let mut leaf = Spec::leaf(name);
    leaf.leaf_basic_constraints = false;
    leaf.public = false;
    leaf.key_usages = Vec::new();
    leaf.ekus = Vec::new();
    leaf.serial_len = 20;
    if old {
        leaf.ski = false;
        leaf.aki = Aki::None;
        chain("openssl-1.1-leaf", name, &[root, leaf])
    } else {
        chain("openssl-req-x509", name, &[root, leaf])
    }
}

/// EasyRSA 3: `basicConstraints = CA:TRUE` (not critical) and an AKI with the issuer's name and
/// serial, on the CA and on its leaves.
fn easy_rsa() -> Shape {
    let name = "vpn.farm.internal";
    let mut root = Spec::root("Easy-RSA CA");
    root.subject = vec![(DnType::CommonName, "Easy-RSA CA")];
    root.ca = Some((false, None));
    root.aki = Aki::KeyIdIssuerSerial;
    root.serial_len = 20;
    let mut leaf = Spec::leaf(name);
    leaf.public = false;
    leaf.aki = Aki::KeyIdIssuerSerial;
    leaf.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    leaf.serial_len = 16;
    chain("easy-rsa", name, &[root, leaf])
}

/// `len` random-looking bytes, positive, with a non-zero first byte (so DER keeps them all).
fn serial(len: usize) -> Vec<u8> {
    let key = KeyPair::generate().expect("look-alikes: generate randomness");
    let mut bytes: Vec<u8> = key
        .public_key_raw()
        .iter()
        .rev()
        .take(len)
        .copied()
        .collect();
    if let Some(first) = bytes.first_mut() {
        *first = (*first & 0x7f).max(1);
    }
    bytes
}

/// One DER TLV.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn extension(oid: &[u64], content: Vec<u8>, critical: bool) -> CustomExtension {
    let mut ext = CustomExtension::from_oid_content(oid, content);
    ext.set_criticality(critical);
    ext
}

/// The DER of `name` as rcgen writes it: mint a throwaway certificate with that subject and take
/// its subject from the bytes (rcgen does not expose its name encoder).
fn name_der(name: &DistinguishedName, key: &KeyPair) -> Vec<u8> {
    let mut params = CertificateParams::default();
    params.distinguished_name = name.clone();
    let cert = params.self_signed(key).expect("look-alikes: encode a name");
    let (_, parsed) = X509Certificate::from_der(cert.der()).expect("look-alikes: parse a name");
    parsed.subject().as_raw().to_vec()
}

/// Names live as long as the test; leaking a few short strings keeps the specs simple.
fn leak(name: &str) -> &'static str {
    Box::leak(name.to_owned().into_boxed_str())
}
