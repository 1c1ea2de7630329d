//! ACME: where a listener's certificate comes from when it is not a file (`[acme]`,
//! `listener.tls.acme`).

use std::fmt;

use crate::spelling::spelled;
use crate::{FileRef, Location, Trust};

/// Let's Encrypt's production directory: the default `acme.directory`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The most names a public CA puts on one certificate (Let's Encrypt's limit), so the most
/// `domains` a listener may list.
pub const MAX_ACME_DOMAINS: usize = 100;

/// Where the ACME state lives when `acme.storage` is not set.
pub const DEFAULT_STORAGE: &str = "/var/lib/farmgate/acme";

/// The `[acme]` table: which ACME server issues the certificates and where farmgate keeps its
/// account, certificates and locks. Present in a [`Config`](crate::Config) whenever a listener
/// takes its certificate from ACME (with the defaults when the table is absent) or the table is
/// written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acme {
    /// The ACME server's directory URL.
    pub directory: DirectoryUrl,
    /// Contact URLs for the account (`mailto:`), possibly none.
    pub contact: Vec<String>,
    /// The directory holding the account key, certificates and lock files.
    pub storage: FileRef,
    /// Extra trust anchors for the ACME server's own HTTPS certificate, added to the bundled
    /// Mozilla roots (a test or private CA).
    pub trust: Vec<Trust>,
    /// External Account Binding (RFC 8555 §7.3.4), for CAs that register only accounts bound
    /// to an account with them (ZeroSSL, Google Trust Services, Sectigo).
    pub eab: Option<Eab>,
    /// Where the table is defined (the first ACME listener when the table is absent).
    pub at: Location,
}

/// `eab = { kid = "...", hmac_key_file = "eab.key" }`: the key identifier and MAC key a CA
/// hands out to bind a new ACME account to an account with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eab {
    /// The key identifier, as the CA gives it.
    pub kid: String,
    /// The file holding the HMAC key as the CA gives it (base64url); read when the account is
    /// registered, so the secret stays out of the configuration file.
    pub hmac_key_file: FileRef,
}

/// An ACME server's directory URL: `https://HOST[:PORT]/PATH`, checked when parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DirectoryUrl(String);

impl DirectoryUrl {
    /// Parse `text`: an `https://` URL with a host. `None` if it is not one.
    pub fn parse(text: &str) -> Option<DirectoryUrl> {
        let rest = text.strip_prefix("https://")?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
        };
        let port_ok = match authority.rsplit_once(':') {
            Some((_, port)) if !authority.ends_with(']') => port.parse::<u16>().is_ok(),
            _ => true,
        };
        let clean = text.bytes().all(|b| b.is_ascii_graphic());
        (!host.is_empty() && !authority.contains('@') && port_ok && clean)
            .then(|| DirectoryUrl(text.to_owned()))
    }

    /// The URL as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DirectoryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `listener.tls.acme`: the certificate a listener gets from the ACME server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeCert {
    /// The DNS names on the certificate, lower-case, unique, in the order written; at least one.
    pub domains: Vec<String>,
    /// The ACME profile to order (e.g. Let's Encrypt's `"tlsserver"`, `"shortlived"`); `None`
    /// takes the CA's default.
    pub profile: Option<String>,
    /// How the CA checks that we control the names.
    pub challenge: Challenge,
    /// Where it is defined.
    pub at: Location,
}

spelled! {
    /// The ACME challenge farmgate answers to prove it controls a name (`challenge`); the
    /// spellings are ACME's too.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Challenge (what: "challenge", quoted: true) {
        /// `tls-alpn-01` (RFC 8737), answered by the TLS listener itself (port 443). The
        /// default.
        TlsAlpn01 = "tls-alpn-01" ("default"),
        /// `http-01`, answered by the plain-HTTP listeners (port 80) under
        /// `/.well-known/acme-challenge/`.
        Http01 = "http-01",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_urls() {
        for good in [
            LETS_ENCRYPT,
            "https://127.0.0.1:14000/dir",
            "https://[::1]:14000/dir",
            "https://acme.internal",
        ] {
            assert!(DirectoryUrl::parse(good).is_some(), "{good}");
        }
        for bad in [
            "http://acme.example.com/directory",
            "acme.example.com/directory",
            "https:///directory",
            "https://user@acme.example.com/",
            "https://acme.example.com:port/",
            "https://acme example.com/",
            "",
        ] {
            assert!(DirectoryUrl::parse(bad).is_none(), "{bad}");
        }
    }
}
