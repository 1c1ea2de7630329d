//! `ticket_keys`: a TLS 1.3 session one edge made resumes on another edge that reads the same
//! key file, not on one with other keys, and still after the file is rotated (a new key first,
//! the old one after it).

use std::path::Path;
use std::sync::Arc;

use farmgate_config::Config;
use farmgate_testkit::pki::TestPki;
use farmgate_tls::{ServerTls, TICKET_KEY_LEN};
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore, ServerConnection};

const SITE: &str = "www.example.com";

/// An edge for [`SITE`] whose `[listener.tls]` says `ticket_keys = keys` (none if `None`).
fn edge(pki: &TestPki, keys: Option<&Path>) -> ServerTls {
    let site = pki.server(SITE);
    let keys = keys.map_or(String::new(), |k| format!("ticket_keys = {k:?}\n"));
    let text = format!(
        "[[listener]]\nname = \"public\"\nlisten = \"127.0.0.1:0\"\n[listener.tls]\ncertificate = {:?}\nprivate_key = {:?}\n{keys}[[listener.route]]\nupstream = \"app\"\n[upstream.app]\nservers = [\"127.0.0.1:1\"]\n",
        site.cert, site.key
    );
    let config = Config::parse(&text, &pki.dir().join("edge.toml")).unwrap();
    ServerTls::new("public", config.listeners[0].tls.as_ref().unwrap()).unwrap()
}

/// A browser that keeps its sessions between connections, TLS 1.3 only.
fn browser(pki: &TestPki) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pki.ca_file()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = Resumption::in_memory_sessions(16);
    Arc::new(config)
}

/// One connection, in memory, to the end of the handshake and the ticket the server sends
/// after it: whether it resumed a session.
fn connect(edge: &ServerTls, browser: &Arc<ClientConfig>) -> HandshakeKind {
    let name = ServerName::try_from(SITE).unwrap();
    let mut client = ClientConnection::new(browser.clone(), name).unwrap();
    let mut server = ServerConnection::new(edge.config()).unwrap();
    let mut buf = Vec::new();
    while client.wants_write() || server.wants_write() {
        buf.clear();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        server.read_tls(&mut buf.as_slice()).unwrap();
        server.process_new_packets().unwrap();
        buf.clear();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        client.read_tls(&mut buf.as_slice()).unwrap();
        client.process_new_packets().unwrap();
    }
    assert!(!client.is_handshaking());
    client.handshake_kind().unwrap()
}

fn write_keys(path: &Path, seeds: &[u8]) {
    let bytes: Vec<u8> = seeds
        .iter()
        .flat_map(|&s| std::iter::repeat_n(s, TICKET_KEY_LEN))
        .collect();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_session_from_one_edge_resumes_on_another_with_the_same_keys() {
    let pki = TestPki::new();
    let keys = pki.dir().join("tickets.key");
    write_keys(&keys, &[1]);
    let (edge1, edge2) = (edge(&pki, Some(&keys)), edge(&pki, Some(&keys)));
    let browser = browser(&pki);
    assert_eq!(connect(&edge1, &browser), HandshakeKind::Full);
    assert_eq!(connect(&edge2, &browser), HandshakeKind::Resumed);
}

#[test]
fn edges_with_other_keys_or_none_do_not_resume_each_others_sessions() {
    let pki = TestPki::new();
    let (one, two) = (pki.dir().join("one.key"), pki.dir().join("two.key"));
    write_keys(&one, &[1]);
    write_keys(&two, &[2]);
    let browser = browser(&pki);
    assert_eq!(
        connect(&edge(&pki, Some(&one)), &browser),
        HandshakeKind::Full
    );
    assert_eq!(
        connect(&edge(&pki, Some(&two)), &browser),
        HandshakeKind::Full
    );
    // Without ticket_keys each edge has its own random keys, as before.
    let browser = self::browser(&pki);
    assert_eq!(connect(&edge(&pki, None), &browser), HandshakeKind::Full);
    assert_eq!(connect(&edge(&pki, None), &browser), HandshakeKind::Full);
}

#[test]
fn a_rotated_file_keeps_the_sessions_of_the_key_it_still_lists() {
    let pki = TestPki::new();
    let keys = pki.dir().join("tickets.key");
    write_keys(&keys, &[1]);
    let before = edge(&pki, Some(&keys));
    let browser = browser(&pki);
    assert_eq!(connect(&before, &browser), HandshakeKind::Full);
    // The rotation: the new key first, the old one after it. What a reload builds from it
    // opens the old key's tickets, and hands out tickets under the new key.
    write_keys(&keys, &[2, 1]);
    let rotated = edge(&pki, Some(&keys));
    assert_eq!(connect(&rotated, &browser), HandshakeKind::Resumed);
    // Later the old key goes: the ticket the browser got from `rotated` still resumes, a
    // ticket under the old key does not.
    write_keys(&keys, &[2]);
    let after = edge(&pki, Some(&keys));
    assert_eq!(connect(&after, &browser), HandshakeKind::Resumed);
    let late = self::browser(&pki);
    assert_eq!(connect(&before, &late), HandshakeKind::Full);
    assert_eq!(connect(&after, &late), HandshakeKind::Full);
}

#[test]
fn a_key_file_of_the_wrong_size_is_an_error_naming_file_and_key() {
    let pki = TestPki::new();
    let keys = pki.dir().join("tickets.key");
    std::fs::write(&keys, [0u8; 48]).unwrap();
    let site = pki.server(SITE);
    let text = format!(
        "[[listener]]\nname = \"public\"\nlisten = \"127.0.0.1:0\"\n[listener.tls]\ncertificate = {:?}\nprivate_key = {:?}\nticket_keys = \"tickets.key\"\n[[listener.route]]\nupstream = \"app\"\n[upstream.app]\nservers = [\"127.0.0.1:1\"]\n",
        site.cert, site.key
    );
    let config = Config::parse(&text, &pki.dir().join("edge.toml")).unwrap();
    let e = ServerTls::new("public", config.listeners[0].tls.as_ref().unwrap()).unwrap_err();
    let message = e.to_string();
    let at = format!(
        "{}:7: listener.tls.ticket_keys: ",
        pki.dir().join("edge.toml").display()
    );
    assert!(message.starts_with(&at), "{message}");
    assert!(message.contains("holds 48 bytes"), "{message}");
    std::fs::remove_file(&keys).unwrap();
    let e = ServerTls::new("public", config.listeners[0].tls.as_ref().unwrap()).unwrap_err();
    assert!(e.to_string().contains("cannot read"), "{e}");
}
