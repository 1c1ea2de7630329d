//! PEM text for DER we did not get from rcgen (certificates of a CA loaded from files).

use pem::{EncodeConfig, LineEnding, Pem};

/// `-----BEGIN {label}-----`, base64 in 64-column lines, `-----END {label}-----`, each line
/// ending in LF (the same layout rcgen writes on Unix).
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let config = EncodeConfig::new().set_line_ending(LineEnding::LF);
    pem::encode_config(&Pem::new(label, der), config)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;

    use super::*;

    #[test]
    fn round_trips_through_a_pem_parser() {
        let der: Vec<u8> = (0..=255).cycle().take(1000).collect();
        let text = encode("CERTIFICATE", &der);
        assert!(text.lines().all(|line| line.len() <= 64));
        assert!(!text.contains('\r'));
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(text.ends_with("\n-----END CERTIFICATE-----\n"));
        assert_eq!(
            CertificateDer::from_pem_slice(text.as_bytes())
                .unwrap()
                .as_ref(),
            der
        );
    }

    #[test]
    fn writes_what_rcgen_writes() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ca.farm.test".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(encode("CERTIFICATE", cert.der()), cert.pem());
    }
}
