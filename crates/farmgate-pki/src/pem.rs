//! PEM text for DER we did not get from rcgen (certificates of a CA loaded from files).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// `-----BEGIN {label}-----`, base64 in 64-column lines, `-----END {label}-----`, each line
/// ending in LF (the same layout rcgen writes on Unix).
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    // Base64 output is ASCII, so every 64-byte chunk is a whole string.
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
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
        assert_eq!(
            CertificateDer::from_pem_slice(text.as_bytes())
                .unwrap()
                .as_ref(),
            der
        );
    }
}
