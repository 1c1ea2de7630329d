//! ACME settings: `[acme]` and `listener.tls.acme` parse into typed values, and every mistake
//! is an error with file, line and key.

use std::path::Path;

use farmgate_config::{Challenge, Config, DEFAULT_STORAGE, LETS_ENCRYPT, ListenerCerts, Trust};

const FILE: &str = "/etc/farmgate/edge.toml";

/// An edge whose public listener takes its certificate from ACME with `acme` (an inline table
/// body), behind `head` (e.g. an `[acme]` table), and a plain-HTTP redirect listener.
fn edge(head: &str, acme: &str) -> String {
    format!(
        r#"{head}
[[listener]]
name = "public"
listen = "0.0.0.0:443"
tls = {{ acme = {{ {acme} }} }}
[[listener.route]]
upstream = "farm"

[[listener]]
name = "redirect"
listen = "0.0.0.0:80"
redirect_https = true

[upstream.farm]
servers = ["10.0.0.11:8443"]
"#
    )
}

fn parse(text: &str) -> Config {
    Config::parse(text, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[track_caller]
fn error(text: &str) -> String {
    match Config::parse(text, Path::new(FILE)) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(errors) => errors.to_string(),
    }
}

#[track_caller]
fn assert_at(message: &str, line: usize, key: &str, words: &str) {
    let prefix = format!("{FILE}:{line}: {key}:");
    assert!(
        message.contains(&prefix),
        "expected {prefix:?} in:\n{message}"
    );
    assert!(message.contains(words), "expected {words:?} in:\n{message}");
}

const HEAD: &str = r#"[acme]
directory = "https://acme-staging-v02.api.letsencrypt.org/directory"
contact   = ["mailto:ops@example.com"]
storage   = "acme-state"
trust     = ["certs/test-acme-ca.pem"]"#;

#[test]
fn the_issue_example_parses_into_typed_values() {
    let c = parse(&edge(
        HEAD,
        r#"domains = ["WWW.example.com", "example.com."], profile = "tlsserver", challenge = "tls-alpn-01""#,
    ));
    let acme = c.acme.as_ref().unwrap();
    assert_eq!(
        acme.directory.as_str(),
        "https://acme-staging-v02.api.letsencrypt.org/directory"
    );
    assert_eq!(acme.contact, ["mailto:ops@example.com"]);
    assert_eq!(
        acme.storage.path,
        Path::new("/etc/farmgate/acme-state"),
        "relative to the configuration file"
    );
    assert!(
        matches!(&acme.trust[..], [Trust::File(f)] if f.path == Path::new("/etc/farmgate/certs/test-acme-ca.pem"))
    );
    let tls = c.listeners[0].tls.as_ref().unwrap();
    let ListenerCerts::Acme(cert) = &tls.certs else {
        panic!("{tls:?}")
    };
    assert_eq!(cert.domains, ["www.example.com", "example.com"]);
    assert_eq!(cert.profile.as_deref(), Some("tlsserver"));
    assert_eq!(cert.challenge, Challenge::TlsAlpn01);
    assert_eq!(cert.at.line(), 9);
    assert!(
        c.files()
            .iter()
            .any(|f| f.path.ends_with("test-acme-ca.pem")),
        "a reload watches the ACME trust files"
    );
}

#[test]
fn a_listener_alone_gets_the_documented_defaults() {
    let c = parse(&edge("", r#"domains = ["www.example.com"]"#));
    let acme = c.acme.as_ref().unwrap();
    assert_eq!(acme.directory.as_str(), LETS_ENCRYPT);
    assert_eq!(acme.storage.path, Path::new(DEFAULT_STORAGE));
    assert!(acme.contact.is_empty() && acme.trust.is_empty());
    let cert = c.listeners[0].tls.as_ref().unwrap().acme().unwrap();
    assert_eq!(cert.challenge, Challenge::TlsAlpn01);
    assert_eq!(cert.profile, None);
}

#[test]
fn no_acme_anywhere_means_no_acme_settings() {
    let c = parse(
        "[[listener]]\nname = \"p\"\nlisten = \"127.0.0.1:1\"\n[[listener.route]]\nupstream = \"a\"\n[upstream.a]\nservers = [\"127.0.0.1:2\"]\n",
    );
    assert!(c.acme.is_none());
}

#[test]
fn http_01_parses() {
    let c = parse(&edge(
        "",
        r#"domains = ["www.example.com"], challenge = "http-01""#,
    ));
    let cert = c.listeners[0].tls.as_ref().unwrap().acme().unwrap();
    assert_eq!(cert.challenge, Challenge::Http01);
}

#[test]
fn files_and_acme_on_one_listener_are_an_error() {
    let text = edge("", r#"domains = ["www.example.com"]"#).replace(
        "tls = { acme",
        "tls = { certificate = \"c.pem\", private_key = \"k.pem\", acme",
    );
    let e = error(&text);
    assert_at(&e, 5, "listener.tls.acme", "never both");
}

#[test]
fn bad_directory_url_is_an_error() {
    let e = error(&edge(
        "[acme]\ndirectory = \"acme-v02.api.letsencrypt.org/directory\"",
        r#"domains = ["www.example.com"]"#,
    ));
    assert_at(
        &e,
        2,
        "acme.directory",
        "is not an ACME directory URL; write the https:// URL",
    );
    let e = error(&edge(
        "[acme]\ndirectory = \"http://acme.example.com/directory\"",
        r#"domains = ["www.example.com"]"#,
    ));
    assert_at(&e, 2, "acme.directory", "https://");
}

#[test]
fn bad_contact_is_an_error() {
    let e = error(&edge(
        "[acme]\ncontact = [\"ops@example.com\"]",
        r#"domains = ["www.example.com"]"#,
    ));
    assert_at(
        &e,
        2,
        "acme.contact",
        "write e.g. \"mailto:ops@example.com\"",
    );
}

#[test]
fn empty_storage_or_trust_is_an_error() {
    let e = error(&edge(
        "[acme]\nstorage = \"\"\ntrust = []",
        r#"domains = ["www.example.com"]"#,
    ));
    assert_at(&e, 2, "acme.storage", "must not be empty");
    assert_at(&e, 3, "acme.trust", "trust is empty");
}

#[test]
fn bad_domains_are_errors() {
    let e = error(&edge("", "domains = []"));
    assert_at(&e, 5, "listener.tls.acme.domains", "domains is empty");
    for (domain, words) in [
        ("*.example.com", "wildcard names need the dns-01 challenge"),
        ("192.0.2.7", "is an IP address"),
        ("bad name", "is not a DNS name"),
    ] {
        let e = error(&edge("", &format!("domains = [{domain:?}]")));
        assert_at(&e, 5, "listener.tls.acme.domains", words);
    }
    let e = error(&edge("", r#"domains = ["a.example.com", "A.example.com"]"#));
    assert_at(&e, 5, "listener.tls.acme.domains", "appears twice");
}

#[test]
fn unknown_challenge_is_an_error() {
    let e = error(&edge(
        "",
        r#"domains = ["www.example.com"], challenge = "dns-01""#,
    ));
    assert_at(
        &e,
        5,
        "listener.tls.acme.challenge",
        "dns-01 is not supported",
    );
    let e = error(&edge(
        "",
        r#"domains = ["www.example.com"], challenge = "http01""#,
    ));
    assert_at(
        &e,
        5,
        "listener.tls.acme.challenge",
        "unknown challenge \"http01\"",
    );
}

#[test]
fn empty_profile_is_an_error() {
    let e = error(&edge("", r#"domains = ["www.example.com"], profile = """#));
    assert_at(&e, 5, "listener.tls.acme.profile", "is not a profile name");
}

#[test]
fn unknown_acme_key_is_an_error() {
    let e = error(&edge(
        "",
        r#"domains = ["www.example.com"], profiles = "x""#,
    ));
    assert!(e.contains("unknown field `profiles`"), "{e}");
    let e = error(&edge(
        "[acme]\ndirectroy = \"https://x.example\"",
        "domains = [\"a.example.com\"]",
    ));
    assert_at(&e, 2, "directroy", "unknown field `directroy`");
}

#[test]
fn http_01_without_a_plain_listener_is_an_error() {
    let text = edge(
        "",
        r#"domains = ["www.example.com"], challenge = "http-01""#,
    );
    let without_plain = text
        .split("[[listener]]\nname = \"redirect\"")
        .next()
        .unwrap()
        .to_owned()
        + "[upstream.farm]\nservers = [\"10.0.0.11:8443\"]\n";
    let e = error(&without_plain);
    assert_at(
        &e,
        5,
        "listener.tls.acme",
        "is answered by a plain-HTTP listener (port 80), and this configuration has none",
    );
}

#[test]
fn tls_alpn_01_on_a_gate_is_an_error() {
    let text = edge("", r#"domains = ["www.example.com"]"#).replace(
        "tls = { acme = { domains = [\"www.example.com\"] } }",
        "tls = { acme = { domains = [\"www.example.com\"] }, client_auth = { trust = [\"ca.pem\"], allow = [\"dns:edge\"] } }",
    );
    let e = error(&text);
    assert_at(&e, 5, "listener.tls.acme", "use challenge = \"http-01\"");
}

#[test]
fn one_certificate_with_two_challenges_is_an_error() {
    let text = edge(
        "",
        r#"domains = ["www.example.com"], challenge = "http-01""#,
    ) + r#"
[[listener]]
name = "public6"
listen = "[::]:443"
tls = { acme = { domains = ["www.example.com"] } }
[[listener.route]]
upstream = "farm"
"#;
    let e = error(&text);
    assert_at(
        &e,
        20,
        "listener.tls.acme",
        "also ordered at line 5 with challenge = \"http-01\"",
    );
}

#[test]
fn external_account_binding_names_the_kid_and_the_key_file() {
    let config = parse(&edge(
        "[acme]\ndirectory = \"https://acme.zerossl.com/v2/DV90\"\neab = { kid = \"kid-42\", hmac_key_file = \"eab.key\" }",
        "domains = [\"www.example.com\"]",
    ));
    let eab = config.acme.unwrap().eab.unwrap();
    assert_eq!(eab.kid, "kid-42");
    assert_eq!(eab.hmac_key_file.path, Path::new("/etc/farmgate/eab.key"));
    assert_eq!(eab.hmac_key_file.at.line(), 3);

    let e = error(&edge(
        "[acme]\neab = { hmac_key_file = \"eab.key\" }",
        "domains = [\"www.example.com\"]",
    ));
    assert_at(&e, 2, "acme.eab", "missing required key `kid`");
    let e = error(&edge(
        "[acme]\neab = { kid = \"a b\", hmac_key_file = \"eab.key\" }",
        "domains = [\"www.example.com\"]",
    ));
    assert_at(&e, 2, "acme.eab.kid", "\"a b\" is not a key identifier");
    let e = error(&edge(
        "[acme]\neab = { kid = \"k\", hmac_key = \"secret\" }",
        "domains = [\"www.example.com\"]",
    ));
    assert!(e.contains("unknown field `hmac_key`"), "{e}");
}
