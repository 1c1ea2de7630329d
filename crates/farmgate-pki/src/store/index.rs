//! The issuance index: what a CA directory's CA has issued and revoked, in `DIR/index.json`.
//!
//! One entry per certificate issued (serial, subject, SANs, kind, validity, key pin, revocation),
//! and the number of the last CRL signed, so CRL numbers grow. The file is JSON, mode 0600,
//! and replaced atomically (a new file renamed over the old), so a crash never leaves half an
//! index. Every change is read, made and written holding an exclusive lock on `DIR/index.lock`,
//! so two `farmgate ca` commands run at once on one directory never lose each other's
//! entries. A CA made before the index existed has none: it starts empty.

use std::fs;
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{PkiError, Reason};

/// The index's file name in a CA directory.
pub const INDEX: &str = "index.json";

/// The lock file held while the index changes.
const LOCK: &str = "index.lock";

/// The index file's format; a newer one is refused rather than misread.
const VERSION: u32 = 1;

/// Everything a CA has issued and revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    /// The format, [`VERSION`].
    version: u32,
    /// The number of the last CRL signed (0: none yet).
    pub crl_number: u64,
    /// One entry per certificate, in the order issued.
    pub certificates: Vec<Entry>,
}

/// One certificate the CA issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The serial number, lower-case hex without separators, as `ca revoke --serial` takes it.
    pub serial: String,
    /// The subject distinguished name, e.g. `CN=edge.farm.test` (empty without a subject).
    pub subject: String,
    /// The subject alternative names as allow-lists write them: `dns:`, `ip:`, `uri:`.
    pub sans: Vec<String>,
    /// What it is for.
    pub kind: Kind,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// `spki-sha256:BASE64`, the key's pin (an allow-list entry).
    pub key_pin: String,
    /// Present once revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
}

/// When and why a certificate was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// When `ca revoke` ran.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The reason given, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

/// What a certificate in the index is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A TLS client (clientAuth), named by a DNS name or IP address.
    Client,
    /// A TLS server (serverAuth).
    Server,
    /// A TLS client named by a SPIFFE ID.
    Spiffe,
    /// An issuing intermediate CA (`ca init --intermediate`).
    Intermediate,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            version: VERSION,
            crl_number: 0,
            certificates: Vec::new(),
        }
    }
}

impl Index {
    /// Reads `DIR/index.json`; an empty index if there is none.
    pub fn read(dir: &Path) -> Result<Index, PkiError> {
        let path = dir.join(INDEX);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Index::default()),
            Err(source) => return Err(PkiError::Read { path, source }),
        };
        let index: Index =
            serde_json::from_slice(&bytes).map_err(|source| PkiError::IndexDamaged {
                path: path.clone(),
                source,
            })?;
        if index.version != VERSION {
            return Err(PkiError::IndexVersion {
                path,
                found: index.version,
            });
        }
        Ok(index)
    }

    /// Reads `DIR/index.json`, lets `change` change it, and writes it back if it changed, all
    /// while holding the exclusive lock on `DIR/index.lock` (waiting for another `farmgate ca`
    /// command to finish with it). An error from `change` writes nothing.
    pub fn update<T>(
        dir: &Path,
        change: impl FnOnce(&mut Index) -> Result<T, PkiError>,
    ) -> Result<T, PkiError> {
        let path = dir.join(LOCK);
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| PkiError::Write {
                path: path.clone(),
                source,
            })?;
        lock.lock()
            .map_err(|source| PkiError::Write { path, source })?;
        let mut index = Index::read(dir)?;
        let before = index.clone();
        let result = change(&mut index)?;
        if index != before {
            index.write(dir)?;
        }
        // Closing the file releases the lock.
        drop(lock);
        Ok(result)
    }

    /// Replaces `DIR/index.json` atomically (mode 0600).
    pub fn write(&self, dir: &Path) -> Result<(), PkiError> {
        let path = dir.join(INDEX);
        let json = serde_json::to_vec_pretty(self).map_err(|source| PkiError::IndexDamaged {
            path: path.clone(),
            source,
        })?;
        replace(&path, &json, 0o600)
    }

    /// The entry with this serial (lower-case hex).
    pub fn find(&self, serial: &str) -> Option<&Entry> {
        self.certificates.iter().find(|e| e.serial == serial)
    }

    /// The entry with this serial, to change.
    pub fn find_mut(&mut self, serial: &str) -> Option<&mut Entry> {
        self.certificates.iter_mut().find(|e| e.serial == serial)
    }

    /// The revoked certificates that have not yet expired: what a CRL lists.
    pub fn revoked(&self, now: OffsetDateTime) -> impl Iterator<Item = (&Entry, &Revocation)> {
        self.certificates
            .iter()
            .filter(move |e| e.not_after > now)
            .filter_map(|e| Some((e, e.revoked.as_ref()?)))
    }
}

/// A serial number as the index writes it: lower-case hex.
pub fn serial_hex(serial: &[u8]) -> String {
    serial.iter().map(|b| format!("{b:02x}")).collect()
}

/// A serial number as an operator writes it: hex, any case, optionally with `:` between bytes
/// (as `openssl x509 -serial` and `farmgate inspect` print it), and an optional `0x`.
pub fn parse_serial(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    let text = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    let digits: String = text.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(digits.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Writes `contents` to a new file beside `path` (mode `mode`), flushes it, and renames it over
/// `path`: readers see the old file or the new one, never a mix.
pub(crate) fn replace(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let write_error = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    // Beside it (a rename never crosses file systems), under a name no other writer and no
    // file a crash left behind can hold.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut file = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(write_error)?;
    file.write_all(contents)
        .and_then(|()| file.as_file().sync_all())
        .map_err(write_error)?;
    // Dropped on failure, the temporary file is removed.
    file.persist(path).map_err(|e| write_error(e.error))?;
    // The rename itself is durable once the directory is flushed (best effort: not every
    // file system lets a directory be opened for that).
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt as _;

    use time::Duration;

    use super::*;

    fn entry(serial: &str, not_after: OffsetDateTime) -> Entry {
        Entry {
            serial: serial.to_owned(),
            subject: "CN=edge.farm.test".to_owned(),
            sans: vec!["dns:edge.farm.test".to_owned()],
            kind: Kind::Client,
            not_before: not_after - Duration::days(30),
            not_after,
            key_pin: "spki-sha256:AAAA".to_owned(),
            revoked: None,
        }
    }

    #[test]
    fn serials_parse_as_operators_write_them() {
        assert_eq!(parse_serial("0a:FF:10"), Some(vec![0x0a, 0xff, 0x10]));
        assert_eq!(parse_serial("0x0aff10"), Some(vec![0x0a, 0xff, 0x10]));
        assert_eq!(parse_serial("abc"), None);
        assert_eq!(parse_serial(""), None);
        assert_eq!(parse_serial("zz"), None);
        assert_eq!(serial_hex(&[0x0a, 0xff]), "0aff");
    }

    #[test]
    fn an_index_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Index::read(dir.path()).unwrap(), Index::default());
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let mut index = Index::default();
        index
            .certificates
            .push(entry("01", now + Duration::days(1)));
        index
            .certificates
            .push(entry("02", now - Duration::days(1)));
        index.crl_number = 7;
        for e in &mut index.certificates {
            e.revoked = Some(Revocation {
                at: now,
                reason: Some(Reason::KeyCompromise),
            });
        }
        index.write(dir.path()).unwrap();
        let path = dir.path().join(INDEX);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            fs::read_to_string(&path)
                .unwrap()
                .contains("\"reason\": \"key-compromise\"")
        );
        let again = Index::read(dir.path()).unwrap();
        assert_eq!(again, index);
        // An expired certificate leaves the CRL.
        let listed: Vec<&str> = again.revoked(now).map(|(e, _)| e.serial.as_str()).collect();
        assert_eq!(listed, ["01"]);
        // Nothing but the index is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn changes_made_at_once_are_all_kept() {
        // Eight writers, as eight `farmgate ca issue` run at once, each adding 16 entries:
        // without the lock, one writer's read-change-write overwrites another's.
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        std::thread::scope(|scope| {
            for writer in 0..8 {
                let dir = dir.path();
                scope.spawn(move || {
                    for i in 0..16 {
                        Index::update(dir, |index| {
                            index
                                .certificates
                                .push(entry(&format!("{writer:02x}{i:02x}"), now));
                            Ok(())
                        })
                        .unwrap();
                    }
                });
            }
        });
        assert_eq!(Index::read(dir.path()).unwrap().certificates.len(), 8 * 16);
        // A change that fails writes nothing.
        let refused = Index::update(dir.path(), |index| {
            index.certificates.clear();
            Err::<(), _>(PkiError::CrlValidity)
        });
        assert!(refused.is_err());
        assert_eq!(Index::read(dir.path()).unwrap().certificates.len(), 8 * 16);
    }

    #[test]
    fn a_damaged_index_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(INDEX), "{ not json").unwrap();
        let e = Index::read(dir.path()).unwrap_err();
        assert!(e.to_string().contains("index.json"), "{e}");
    }
}
