//! Session tickets every edge of a farm can open: `ticket_keys`, a file of one or more raw
//! 80-byte keys one after another (nginx's `ssl_session_ticket_key` format, so
//! `openssl rand 80 > tickets.key` makes one). The first key encrypts; every key decrypts, so
//! an operator rotates by writing a new key first and keeping the old one after it until the
//! tickets it encrypted have expired.
//!
//! Each key is, as nginx reads an 80-byte key, a 16-byte key name, a 32-byte HMAC-SHA256 key
//! and a 32-byte AES-256 key. A ticket is RFC 5077's recommended construction, as rustls's own
//! ticketer builds it: key name, IV, the session state under AES-256-CBC (PKCS#7 padding), and
//! an HMAC-SHA256 over all of these. The key file is compatible with nginx's; the tickets are
//! not meant to be (nginx's MAC covers other bytes), so edges and nginx servers behind one
//! balancer do not resume each other's sessions.

use std::fmt;

use aws_lc_rs::cipher::{
    AES_256, AES_CBC_IV_LEN, DecryptionContext, PaddedBlockDecryptingKey, PaddedBlockEncryptingKey,
    UnboundCipherKey,
};
use aws_lc_rs::{hmac, iv};
use farmgate_config::FileRef;
use rustls::server::ProducesTickets;

use crate::{TlsError, TlsErrorKind, load};

/// The size of one key in a `ticket_keys` file.
pub const TICKET_KEY_LEN: usize = 80;

/// The lifetime tickets carry, as a hint to clients (rustls's own ticketer's). A ticket is
/// accepted as long as the key that encrypted it is in the file.
const LIFETIME_SECONDS: u32 = 12 * 60 * 60;

/// The length of a key name.
const NAME_LEN: usize = 16;

/// The length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// The longest ticket accepted: far above any session state rustls encrypts (a few hundred
/// bytes, more with a client certificate chain), so that a forged one costs no large copy.
const MAX_TICKET_LEN: usize = 16 * 1024;

/// The keys of one `ticket_keys` file: a rustls ticketer that every process reading the same
/// file agrees with.
pub struct TicketKeys {
    /// In file order: the first encrypts.
    keys: Vec<TicketKey>,
}

struct TicketKey {
    name: [u8; NAME_LEN],
    mac: hmac::Key,
    encrypt: PaddedBlockEncryptingKey,
    decrypt: PaddedBlockDecryptingKey,
}

impl TicketKeys {
    /// Read the keys of `file` (the configuration's `ticket_keys`).
    pub fn load(file: &FileRef) -> Result<TicketKeys, TlsError> {
        TicketKeys::from_bytes(&load::read(file)?, file)
    }

    /// The keys in `bytes`, the contents of `file`: a non-empty multiple of 80 bytes.
    pub fn from_bytes(bytes: &[u8], file: &FileRef) -> Result<TicketKeys, TlsError> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(TICKET_KEY_LEN) {
            return Err(TlsErrorKind::TicketKeysSize {
                at: file.at.clone(),
                path: file.path.clone(),
                len: bytes.len(),
            }
            .into());
        }
        let keys = bytes
            .chunks_exact(TICKET_KEY_LEN)
            .enumerate()
            .map(|(i, raw)| {
                TicketKey::new(raw).ok_or_else(|| {
                    TlsError::from(TlsErrorKind::TicketKeyUnusable {
                        at: file.at.clone(),
                        path: file.path.clone(),
                        index: i + 1,
                    })
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TicketKeys { keys })
    }

    /// How many keys the file holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the file holds no key (never: such a file is refused).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key whose name a ticket starts with.
    fn named(&self, name: &[u8]) -> Option<&TicketKey> {
        self.keys.iter().find(|k| k.name == name)
    }
}

impl TicketKey {
    /// An 80-byte key: name, HMAC key, AES key.
    fn new(raw: &[u8]) -> Option<TicketKey> {
        let (name, keys) = raw.split_at_checked(NAME_LEN)?;
        let (mac, aes) = keys.split_at_checked(32)?;
        let cipher = || UnboundCipherKey::new(&AES_256, aes).ok();
        Some(TicketKey {
            name: name.try_into().ok()?,
            mac: hmac::Key::new(hmac::HMAC_SHA256, mac),
            encrypt: PaddedBlockEncryptingKey::cbc_pkcs7(cipher()?).ok()?,
            decrypt: PaddedBlockDecryptingKey::cbc_pkcs7(cipher()?).ok()?,
        })
    }

    /// What the MAC covers: key name, IV, the state's length (2 bytes) and the state, as RFC
    /// 5077 §4 recommends.
    fn mac_input(name: &[u8], iv: &[u8], state: &[u8]) -> Option<Vec<u8>> {
        let len = u16::try_from(state.len()).ok()?;
        let mut input = Vec::with_capacity(name.len() + iv.len() + 2 + state.len());
        input.extend_from_slice(name);
        input.extend_from_slice(iv);
        input.extend_from_slice(&len.to_be_bytes());
        input.extend_from_slice(state);
        Some(input)
    }
}

impl ProducesTickets for TicketKeys {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        LIFETIME_SECONDS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let key = self.keys.first()?;
        let mut state = plain.to_vec();
        // aws-lc-rs draws a random IV and hands it back.
        let context = key.encrypt.encrypt(&mut state).ok()?;
        let iv: &[u8] = (&context).try_into().ok()?;
        let tag = hmac::sign(&key.mac, &TicketKey::mac_input(&key.name, iv, &state)?);
        let mut ticket = Vec::with_capacity(NAME_LEN + iv.len() + state.len() + TAG_LEN);
        ticket.extend_from_slice(&key.name);
        ticket.extend_from_slice(iv);
        ticket.extend_from_slice(&state);
        ticket.extend_from_slice(tag.as_ref());
        Some(ticket)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() > MAX_TICKET_LEN {
            return None;
        }
        let (name, rest) = ticket.split_at_checked(NAME_LEN)?;
        let (iv, rest) = rest.split_at_checked(AES_CBC_IV_LEN)?;
        let (state, tag) = rest.split_at_checked(rest.len().checked_sub(TAG_LEN)?)?;
        let key = self.named(name)?;
        // Constant-time comparison of the tag, before any decryption.
        hmac::verify(&key.mac, &TicketKey::mac_input(name, iv, state)?, tag).ok()?;
        let context = DecryptionContext::Iv128(iv::FixedLength::try_from(iv).ok()?);
        let mut out = state.to_vec();
        let plain = key.decrypt.decrypt(&mut out, context).ok()?;
        Some(plain.to_vec())
    }
}

/// Never the keys themselves.
impl fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketKeys")
            .field("keys", &self.keys.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use farmgate_config::Location;

    use super::*;

    fn file() -> FileRef {
        FileRef {
            path: PathBuf::from("/etc/farmgate/tickets.key"),
            at: Location::new(
                Arc::from(Path::new("edge.toml")),
                9,
                "listener.tls.ticket_keys",
            ),
        }
    }

    /// Keys whose bytes are `seeds`, one byte repeated per key.
    fn keys(seeds: &[u8]) -> TicketKeys {
        let bytes: Vec<u8> = seeds
            .iter()
            .flat_map(|&s| std::iter::repeat_n(s, TICKET_KEY_LEN))
            .collect();
        TicketKeys::from_bytes(&bytes, &file()).unwrap()
    }

    #[test]
    fn a_ticket_from_one_process_opens_in_another_with_the_same_file() {
        let (edge1, edge2) = (keys(&[1]), keys(&[1]));
        let ticket = edge1.encrypt(b"session state").unwrap();
        assert_eq!(edge2.decrypt(&ticket).unwrap(), b"session state");
        assert_ne!(
            edge1.encrypt(b"session state").unwrap(),
            ticket,
            "a fresh IV each time"
        );
    }

    #[test]
    fn other_keys_open_nothing() {
        let ticket = keys(&[1]).encrypt(b"session state").unwrap();
        assert_eq!(keys(&[2]).decrypt(&ticket), None);
    }

    #[test]
    fn the_first_key_encrypts_and_every_key_decrypts() {
        let old = keys(&[1]).encrypt(b"before the rotation").unwrap();
        let rotated = keys(&[2, 1]);
        assert_eq!(rotated.decrypt(&old).unwrap(), b"before the rotation");
        let new = rotated.encrypt(b"after").unwrap();
        assert_eq!(&new[..NAME_LEN], &[2; NAME_LEN], "named by the first key");
        assert_eq!(keys(&[2]).decrypt(&new).unwrap(), b"after");
        assert_eq!(keys(&[1]).decrypt(&new), None, "the old key alone cannot");
    }

    #[test]
    fn a_tampered_or_truncated_ticket_is_refused() {
        let keys = keys(&[1]);
        let ticket = keys.encrypt(b"session state").unwrap();
        for i in [0, NAME_LEN, NAME_LEN + AES_CBC_IV_LEN, ticket.len() - 1] {
            let mut forged = ticket.clone();
            forged[i] ^= 1;
            assert_eq!(keys.decrypt(&forged), None, "byte {i} changed");
        }
        for len in [
            0,
            NAME_LEN,
            NAME_LEN + AES_CBC_IV_LEN + TAG_LEN - 1,
            ticket.len() - 1,
        ] {
            assert_eq!(keys.decrypt(&ticket[..len]), None, "{len} bytes");
        }
        assert_eq!(keys.decrypt(&vec![1; MAX_TICKET_LEN + 1]), None);
    }

    #[test]
    fn a_file_that_is_not_whole_keys_is_refused_with_its_size() {
        for len in [0, 79, 81, 159] {
            let e = TicketKeys::from_bytes(&vec![7; len], &file()).unwrap_err();
            let message = e.to_string();
            assert!(
                message.starts_with("edge.toml:9: listener.tls.ticket_keys: ")
                    && message.contains("/etc/farmgate/tickets.key")
                    && message.contains(&format!("holds {len} bytes"))
                    && message.contains("openssl rand 80"),
                "{message}"
            );
        }
        assert_eq!(keys(&[1, 2, 3]).len(), 3);
    }

    #[test]
    fn debug_shows_no_key() {
        assert_eq!(format!("{:?}", keys(&[0xAB])), "TicketKeys { keys: 1 }");
    }
}
