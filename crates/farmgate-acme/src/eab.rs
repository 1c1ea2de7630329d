//! External Account Binding (RFC 8555 §7.3.4): the key a CA hands out (ZeroSSL, Google Trust
//! Services, Sectigo) to bind a new ACME account to an account with it. instant-acme signs the
//! binding (an HS256 JWS over the account key, with the CA's key identifier); this module reads
//! the key from its file.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use farmgate_config::Eab;
use instant_acme::ExternalAccountKey;

use crate::AcmeError;

/// The binding key of `eab`, read from its `hmac_key_file`: the key as CAs print it, base64url
/// (padded or not; standard base64 is taken too), surrounding whitespace ignored.
pub(crate) fn key(eab: &Eab) -> Result<ExternalAccountKey, AcmeError> {
    let bytes = read(eab)?;
    Ok(ExternalAccountKey::new(eab.kid.clone(), &bytes))
}

/// Reads and decodes the key without using it: what `farmgate check` verifies.
pub fn check_eab(eab: &Eab) -> Result<(), AcmeError> {
    read(eab).map(drop)
}

fn read(eab: &Eab) -> Result<Vec<u8>, AcmeError> {
    let file = &eab.hmac_key_file;
    let text = std::fs::read_to_string(&file.path).map_err(|source| AcmeError::EabKey {
        at: file.at.clone(),
        path: file.path.clone(),
        source,
    })?;
    decode(&text).ok_or_else(|| AcmeError::EabKeyEncoding {
        at: file.at.clone(),
        path: file.path.clone(),
    })
}

/// The key bytes of `text`; `None` if it is not base64(url) of at least one byte.
fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim().trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .ok()
        .filter(|key| !key.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_as_cas_print_them() {
        let key: Vec<u8> = (0u8..32).map(|b| b.wrapping_mul(37) ^ 0xfb).collect();
        for text in [
            URL_SAFE_NO_PAD.encode(&key),
            format!(
                "{}=\n",
                base64::engine::general_purpose::URL_SAFE.encode(&key)
            ),
            format!(
                "  {}  ",
                base64::engine::general_purpose::STANDARD.encode(&key)
            ),
        ] {
            assert_eq!(decode(&text).as_deref(), Some(key.as_slice()), "{text:?}");
        }
        for bad in ["", "   ", "not base64!", "a"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
