//! An ACME listener's TLS answers tls-alpn-01 validations (RFC 8737) and nothing else with its
//! challenge certificates: a handshake offering only `acme-tls/1` gets the challenge
//! certificate for its name, a browser gets the site's certificate.

use std::path::Path;
use std::sync::Arc;

use farmgate_config::{CertKey, Config};
use farmgate_testkit::acme::AnyServerCert;
use farmgate_testkit::pki::{CertFiles, TestPki};
use farmgate_tls::{ACME_TLS_ALPN, AlpnChallenges, CertStore, ServerTls, SniCerts, load};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConnection, ServerConnection};

/// What a handshake ended with: the certificate shown and the protocol agreed, or an error.
type Outcome = Result<(CertificateDer<'static>, Option<Vec<u8>>), rustls::Error>;

/// One handshake, in memory, offering `alpn` for `name`.
fn handshake(server: &ServerTls, name: &str, alpn: &[&[u8]]) -> Outcome {
    let seen = Arc::new(AnyServerCert::default());
    let config = seen.client_config(alpn);
    let mut client = ClientConnection::new(
        Arc::new(config),
        ServerName::try_from(name.to_owned()).unwrap(),
    )
    .unwrap();
    let mut srv = ServerConnection::new(server.config()).unwrap();
    let mut buf = Vec::new();
    for _ in 0..10 {
        buf.clear();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        srv.read_tls(&mut buf.as_slice()).unwrap();
        srv.process_new_packets()?;
        buf.clear();
        while srv.wants_write() {
            srv.write_tls(&mut buf).unwrap();
        }
        client.read_tls(&mut buf.as_slice()).unwrap();
        client.process_new_packets()?;
        if !client.is_handshaking() && !srv.is_handshaking() {
            let shown = seen.seen().unwrap();
            return Ok((shown, srv.alpn_protocol().map(<[u8]>::to_vec)));
        }
    }
    panic!("the handshake did not finish");
}

/// The listener `tls` table of an edge for www.example.com, parsed.
fn listener_tls(dir: &Path, tls: &str) -> farmgate_config::ListenerTls {
    let text = format!(
        "[[listener]]\nname = \"public\"\nlisten = \"127.0.0.1:0\"\ntls = {tls}\n[[listener.route]]\nupstream = \"app\"\n[[listener]]\nname = \"plain\"\nlisten = \"127.0.0.1:0\"\nredirect_https = true\n[upstream.app]\nservers = [\"127.0.0.1:1\"]\n"
    );
    let config = Config::parse(&text, &dir.join("edge.toml")).unwrap();
    config.listeners[0].tls.clone().unwrap()
}

fn key(files: &CertFiles) -> Arc<rustls::sign::CertifiedKey> {
    load::certified_key(&CertKey {
        certificate: load::file_ref(&files.cert, "certificate"),
        private_key: load::file_ref(&files.key, "private_key"),
    })
    .unwrap()
}

#[test]
fn tls_alpn_01_validations_get_the_challenge_certificate_and_browsers_the_site() {
    let pki = TestPki::new();
    let site = pki.server("www.example.com");
    let challenge = pki.server("www.example.com");
    let challenges = Arc::new(AlpnChallenges::default());
    let store = Arc::new(CertStore::with_challenges(
        SniCerts::single(key(&site)),
        challenges.clone(),
    ));
    let tls = listener_tls(
        pki.dir(),
        r#"{ acme = { domains = ["www.example.com"], challenge = "tls-alpn-01" } }"#,
    );
    let server = ServerTls::with_store("public", &tls, store, Default::default()).unwrap();

    // No validation pending: a validator gets nothing, not the site's certificate.
    assert!(handshake(&server, "www.example.com", &[ACME_TLS_ALPN]).is_err());

    challenges.insert("www.example.com", key(&challenge));
    let (shown, alpn) = handshake(&server, "www.example.com", &[ACME_TLS_ALPN]).unwrap();
    assert_eq!(shown.as_ref(), challenge.leaf_der.as_slice());
    assert_eq!(alpn.as_deref(), Some(ACME_TLS_ALPN));

    let (shown, alpn) = handshake(&server, "www.example.com", &[b"h2", b"http/1.1"]).unwrap();
    assert_eq!(
        shown.as_ref(),
        site.leaf_der.as_slice(),
        "a browser gets the site"
    );
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));

    // Another name's validation is not answered with this one's certificate.
    assert!(handshake(&server, "other.example.com", &[ACME_TLS_ALPN]).is_err());

    challenges.remove("www.example.com");
    assert!(handshake(&server, "www.example.com", &[ACME_TLS_ALPN]).is_err());
}

#[test]
fn listeners_that_do_not_answer_tls_alpn_01_do_not_speak_acme_tls() {
    let pki = TestPki::new();
    let site = pki.server("www.example.com");
    let files = format!(
        "{{ certificate = {:?}, private_key = {:?} }}",
        site.cert, site.key
    );
    let http01 = r#"{ acme = { domains = ["www.example.com"], challenge = "http-01" } }"#;
    for tls in [files.as_str(), http01] {
        let tls = listener_tls(pki.dir(), tls);
        let store = Arc::new(CertStore::with_challenges(
            SniCerts::single(key(&site)),
            Arc::new(AlpnChallenges::default()),
        ));
        let server = ServerTls::with_store("public", &tls, store, Default::default()).unwrap();
        assert!(
            !server
                .config()
                .alpn_protocols
                .iter()
                .any(|p| p == ACME_TLS_ALPN),
            "{tls:?}"
        );
    }
}
