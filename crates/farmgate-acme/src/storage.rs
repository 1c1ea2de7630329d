//! The storage directory: account credentials, issued certificates and lock files, written
//! atomically with mode 0600 so that several edges (and a crash at any moment) never see half a
//! file.
//!
//! ```text
//! STORAGE/
//!   accounts/<host>-<hash>.json        the account for one directory URL (key and URL)
//!   accounts/<host>-<hash>.lock
//!   certificates/<domain>-<hash>.pem   private key, then the full chain
//!   certificates/<domain>-<hash>.lock
//!   challenges/http-01/<token>         key authorizations of pending validations, so that
//!   challenges/tls-alpn-01/<domain>    every edge sharing the storage can answer them
//! ```
//!
//! The hash is over what makes the file different (directory URL; profile and domains), so a
//! change of CA or of names never reads a certificate meant for another.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use farmgate_config::FileRef;
use farmgate_identity::DnsName;

use crate::AcmeError;

/// An opened storage directory.
#[derive(Debug, Clone)]
pub(crate) struct Storage {
    root: PathBuf,
}

impl Storage {
    /// Create the directory (and its subdirectories) if needed, mode 0700, and prove that it is
    /// writable by writing and removing a file: what `farmgate check` reports as "unwritable
    /// storage".
    pub(crate) fn open(config: &FileRef) -> Result<Storage, AcmeError> {
        let storage = Storage {
            root: config.path.clone(),
        };
        let fail = |path: &Path, source| AcmeError::Storage {
            at: config.at.clone(),
            path: path.to_path_buf(),
            source,
        };
        let dirs = [
            storage.root.clone(),
            storage.accounts(),
            storage.certificates(),
            storage.challenges(HTTP01),
            storage.challenges(TLS_ALPN01),
        ];
        for dir in dirs {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| fail(&dir, e))?;
        }
        let probe = storage.root.join(".farmgate-write-test");
        write_atomic(&probe, b"farmgate checks that it can write here\n")
            .and_then(|()| fs::remove_file(&probe))
            .map_err(|e| fail(&storage.root, e))?;
        Ok(storage)
    }

    /// The directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn accounts(&self) -> PathBuf {
        self.root.join("accounts")
    }

    fn certificates(&self) -> PathBuf {
        self.root.join("certificates")
    }

    fn challenges(&self, kind: &str) -> PathBuf {
        self.root.join("challenges").join(kind)
    }

    /// Where the key authorization for http-01 `token` is posted; `None` for a token that is
    /// not base64url (RFC 8555 §8.3), which no CA sends and which must not become a path.
    pub(crate) fn http01(&self, token: &str) -> Option<PathBuf> {
        let valid = !token.is_empty()
            && token.len() <= 256
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then(|| self.challenges(HTTP01).join(token))
    }

    /// Where the key authorization for a tls-alpn-01 validation of `name` is posted; `None` for
    /// a name that is not an exact DNS name, so cannot be a file name (names come from the TLS
    /// SNI).
    pub(crate) fn tls_alpn01(&self, name: &str) -> Option<PathBuf> {
        let name = DnsName::parse(name).ok().filter(|n| !n.is_wildcard())?;
        Some(self.challenges(TLS_ALPN01).join(name.as_str()))
    }

    /// The account file named `stem` (see [`account_stem`]).
    pub(crate) fn account(&self, stem: &str) -> PathBuf {
        self.accounts().join(format!("{stem}.json"))
    }

    /// The certificate file named `stem` (see [`certificate_stem`]).
    pub(crate) fn certificate(&self, stem: &str) -> PathBuf {
        self.certificates().join(format!("{stem}.pem"))
    }

    /// The lock guarding `file`.
    pub(crate) fn lock_for(file: &Path) -> PathBuf {
        file.with_extension("lock")
    }
}

const HTTP01: &str = "http-01";
const TLS_ALPN01: &str = "tls-alpn-01";

/// The account file's name for `directory`: `acme-v02.api.letsencrypt.org-1a2b3c4d5e6f`.
pub(crate) fn account_stem(directory: &str) -> String {
    let host = directory
        .strip_prefix("https://")
        .and_then(|rest| rest.split(['/', ':']).next())
        .unwrap_or_default();
    format!("{}-{}", file_safe(host), short_hash(&[directory]))
}

/// The certificate file's name for `domains` from `directory` with `profile`:
/// `www.example.com-1a2b3c4d5e6f`, the same whatever the order of `domains`.
pub(crate) fn certificate_stem(
    directory: &str,
    profile: Option<&str>,
    domains: &[String],
) -> String {
    let mut sorted: Vec<&str> = domains.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut parts = vec![directory, profile.unwrap_or("")];
    parts.extend(sorted);
    let first = domains.first().map_or("certificate", String::as_str);
    format!("{}-{}", file_safe(first), short_hash(&parts))
}

/// The first 6 bytes of the SHA-256 of `parts` (each a line), in hex.
fn short_hash(parts: &[&str]) -> String {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in parts {
        context.update(part.as_bytes());
        context.update(b"\n");
    }
    context.finish().as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn file_safe(text: &str) -> String {
    let safe: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() { "acme".into() } else { safe }
}

/// Read `path`; `Ok(None)` if it does not exist.
pub(crate) fn read(path: &Path) -> Result<Option<Vec<u8>>, AcmeError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AcmeError::File {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Replace `path` with `bytes` atomically: a new file (mode 0600) beside it, written and synced,
/// renamed over the old one, and the directory synced. Readers see the old or the new file,
/// never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
        return written;
    }
    if let Some(dir) = path.parent() {
        // Makes the rename itself durable; not every filesystem allows syncing a directory.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Write `path` atomically, as an [`AcmeError`].
pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<(), AcmeError> {
    write_atomic(path, bytes).map_err(|source| AcmeError::File {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use farmgate_config::Location;

    use super::*;

    fn file_ref(path: PathBuf) -> FileRef {
        FileRef {
            path,
            at: Location::new(Arc::from(Path::new("edge.toml")), 3, "acme.storage"),
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn storage_is_created_private_and_files_are_0600() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&file_ref(dir.path().join("acme"))).unwrap();
        assert_eq!(mode(storage.root()), 0o700);
        let file = storage.certificate("www.example.com-0123");
        write(&file, b"one").unwrap();
        write(&file, b"two").unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(read(&file).unwrap().unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left behind: {names:?}");
    }

    #[test]
    fn storage_under_a_file_is_refused_with_where_it_was_configured() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-directory");
        fs::write(&file, "x").unwrap();
        let e = Storage::open(&file_ref(file.join("acme"))).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("edge.toml:3: acme.storage: cannot keep ACME state in"),
            "{text}"
        );
    }

    #[test]
    fn file_names_say_what_they_hold_and_differ_by_what_matters() {
        let le = "https://acme-v02.api.letsencrypt.org/directory";
        let staging = "https://acme-staging-v02.api.letsencrypt.org/directory";
        let names = |d: &[&str]| d.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let a = certificate_stem(le, None, &names(&["www.example.com", "example.com"]));
        assert!(a.starts_with("www.example.com-"), "{a}");
        assert_eq!(a.len(), "www.example.com-".len() + 12);
        assert_eq!(
            a,
            certificate_stem(le, None, &names(&["www.example.com", "example.com"]))
        );
        assert_ne!(
            a,
            certificate_stem(staging, None, &names(&["www.example.com", "example.com"]))
        );
        assert_ne!(
            a,
            certificate_stem(
                le,
                Some("shortlived"),
                &names(&["www.example.com", "example.com"])
            )
        );
        assert_ne!(a, certificate_stem(le, None, &names(&["www.example.com"])));
        assert!(account_stem(le).starts_with("acme-v02.api.letsencrypt.org-"));
        assert!(account_stem("https://[::1]:14000/dir").starts_with("_-"));
    }

    #[test]
    fn challenge_files_come_only_from_plain_tokens_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&file_ref(dir.path().join("acme"))).unwrap();
        assert!(
            storage
                .http01("LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0")
                .is_some()
        );
        for bad in ["", "../accounts/x", "a/b", "a.b", &"x".repeat(300)] {
            assert!(storage.http01(bad).is_none(), "{bad:?}");
        }
        assert!(storage.tls_alpn01("www.example.com").is_some());
        for bad in ["", "..", "../x", "a/b", ".hidden", "*.example.com"] {
            assert!(storage.tls_alpn01(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_missing_file_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(&dir.path().join("absent")).unwrap().is_none());
    }
}
