//! Gates built the way `farmgate run` builds them: from a TOML `client_auth` table, through
//! `Config::parse` and `ClientVerifier::new`.

use std::path::Path;

use farmgate_config::Config;
use farmgate_tls::{ClientVerifier, TlsError};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The verifier of a gate whose `[listener.tls.client_auth]` table is `client_auth` (TOML
/// lines), with its configuration written to `dir/gate.toml`. Paths in it are relative to `dir`.
pub fn verifier(dir: &Path, client_auth: &str) -> Result<ClientVerifier, TlsError> {
    let text = format!(
        r#"[[listener]]
name = "gate"
listen = "127.0.0.1:0"
[listener.tls]
certificate = "unused.pem"
private_key = "unused.key"
[listener.tls.client_auth]
{client_auth}
[[listener.route]]
upstream = "app"
[upstream.app]
servers = ["127.0.0.1:1"]
"#
    );
    let path = dir.join("gate.toml");
    std::fs::write(&path, &text).unwrap();
    let config = Config::parse(&text, &path).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let policy = config.listeners[0]
        .tls
        .as_ref()
        .and_then(|t| t.client_auth.as_ref())
        .expect("a client_auth table");
    ClientVerifier::new("gate", policy)
}

/// The certificates of a PEM chain file: the leaf, then the intermediates.
pub fn chain(path: &Path) -> (CertificateDer<'static>, Vec<CertificateDer<'static>>) {
    let mut certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let leaf = certs.remove(0);
    (leaf, certs)
}

/// A TOML string literal for `path`.
pub fn quoted(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}
