//! Every mistake is an error that names the file, the line and the key, and says what to do.

use std::path::Path;

use farmgate_config::Config;

pub(crate) const FILE: &str = "/etc/farmgate/edge.toml";

/// The single error for `text`, as printed.
#[track_caller]
fn error(text: &str) -> String {
    match Config::parse(text, Path::new(FILE)) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(errors) => errors.to_string(),
    }
}

/// A minimal valid gate, with `extra` spliced into its client_auth table.
fn with_client_auth(extra: &str) -> String {
    format!(
        r#"[[listener]]
name = "gate"
listen = "127.0.0.1:8443"
[listener.tls]
certificate = "c.pem"
private_key = "k.pem"
[listener.tls.client_auth]
trust = ["ca.pem"]
{extra}
[[listener.route]]
upstream = "app"
[upstream.app]
servers = ["127.0.0.1:8080"]
"#
    )
}

/// That `message` is about `key` at `line` of [`FILE`], and says `words`.
#[track_caller]
pub(crate) fn assert_at(message: &str, line: usize, key: &str, words: &str) {
    let prefix = format!("{FILE}:{line}: {key}:");
    assert!(
        message.starts_with(&prefix),
        "expected {prefix:?} in:\n{message}"
    );
    assert!(message.contains(words), "expected {words:?} in:\n{message}");
}

#[test]
fn unknown_key_is_an_error() {
    let e = error("[[listener]]\nname = \"a\"\nlisen = \"127.0.0.1:1\"\n");
    assert_at(&e, 3, "lisen", "unknown field `lisen`");
}

#[test]
fn unknown_key_in_an_inline_table_is_an_error() {
    let text = with_client_auth("allow = [\"dns:edge\"]\nekus = \"client_auth\"");
    let e = error(&text);
    assert_at(&e, 10, "ekus", "unknown field `ekus`");
}

#[test]
fn bad_duration_is_an_error() {
    let text = "[[listener]]\nname = \"p\"\nlisten = \"127.0.0.1:1\"\n[[listener.route]]\nupstream = \"farm\"\n[upstream.farm]\nservers = [\"127.0.0.1:2\"]\ntimeouts = { connect = \"2 seconds\" }\n";
    let e = error(text);
    assert_at(
        &e,
        8,
        "upstream.farm.timeouts.connect",
        "\"2 seconds\" is not a duration; write e.g. \"500ms\"",
    );
}

#[test]
fn zero_workers_is_an_error() {
    let text = "[server]\nworkers = 0\n[[listener]]\nname = \"p\"\nlisten = \"127.0.0.1:1\"\n[[listener.route]]\nupstream = \"farm\"\n[upstream.farm]\nservers = [\"127.0.0.1:2\"]\n";
    let e = error(text);
    assert_at(
        &e,
        2,
        "server.workers",
        "workers must be from 1 to 256, not 0; leave it out for one per CPU",
    );
}

#[test]
fn bad_identities_are_errors() {
    for (entry, words) in [
        ("dns:bad_name!", "dns"),
        ("uri:no-scheme", "scheme"),
        ("cn:", "empty"),
        ("spki-sha256:not-base64", "spki"),
        ("email:ops@example.com", "prefix"),
        ("edge.example.com", "dns:"),
        ("dns:*", "wildcard"),
    ] {
        let text = with_client_auth(&format!("allow = [\"{entry}\"]"));
        let e = error(&text);
        assert_at(&e, 9, "listener.tls.client_auth.allow", "invalid identity");
        assert!(e.to_lowercase().contains(words), "{entry}: {e}");
    }
}

#[test]
fn duplicate_listener_names_are_an_error() {
    let text = r#"[[listener]]
name = "edge"
listen = "127.0.0.1:1"
[[listener.route]]
upstream = "app"
[[listener]]
name = "edge"
listen = "127.0.0.1:2"
[[listener.route]]
upstream = "app"
[upstream.app]
servers = ["127.0.0.1:3"]
"#;
    let e = error(text);
    assert_at(&e, 6, "listener", "duplicate listener name \"edge\"");
}

#[test]
fn two_listeners_on_one_address_are_an_error() {
    let text = r#"[[listener]]
name = "a"
listen = "127.0.0.1:1"
[[listener.route]]
upstream = "app"
[[listener]]
name = "b"
listen = "127.0.0.1:1"
[[listener.route]]
upstream = "app"
[upstream.app]
servers = ["127.0.0.1:3"]
"#;
    assert_at(
        &error(text),
        6,
        "listener",
        "which listener \"a\" on 127.0.0.1:1 takes already",
    );
    // A wildcard address takes the port on every address.
    let wildcard = text.replacen("127.0.0.1:1", "0.0.0.0:1", 1);
    assert_at(
        &error(&wildcard),
        6,
        "listener",
        "which listener \"a\" on 0.0.0.0:1 takes already",
    );
}

#[test]
fn empty_sources_is_an_error() {
    let e = error(&with_client_auth("allow = [\"dns:edge\"]\nsources = []"));
    assert_at(
        &e,
        10,
        "listener.tls.client_auth.sources",
        "remove the key to admit every address",
    );
}

#[test]
fn route_to_unknown_upstream_is_an_error() {
    let text = "[[listener]]\nname = \"p\"\nlisten = \"127.0.0.1:1\"\n[[listener.route]]\nupstream = \"farn\"\n[upstream.farm]\nservers = [\"127.0.0.1:2\"]\n";
    assert_at(
        &error(text),
        5,
        "listener.route.upstream",
        "no upstream named \"farn\" (defined: farm)",
    );
}

#[test]
fn duplicate_server_is_an_error() {
    let text = "[[listener]]\nname = \"p\"\nlisten = \"127.0.0.1:1\"\n[[listener.route]]\nupstream = \"farm\"\n[upstream.farm]\nservers = [\"127.0.0.1:2\", { address = \"127.0.0.1:2\", weight = 3 }]\n";
    assert_at(&error(text), 7, "upstream.farm.servers", "listed twice");
}

#[test]
fn bad_server_entries_are_errors() {
    let base = "[[listener]]\nname = \"p\"\nlisten = \"127.0.0.1:1\"\n[[listener.route]]\nupstream = \"farm\"\n[upstream.farm]\n";
    for (servers, words) in [
        ("servers = []", "at least one server"),
        ("servers = [\"10.0.0.1\"]", "not a server address"),
        (
            "servers = [{ address = \"10.0.0.1:1\", weight = 0 }]",
            "weight must be a whole number from 1 to 1000",
        ),
        (
            "servers = [{ adress = \"10.0.0.1:1\" }]",
            "unknown key `adress`",
        ),
        ("servers = [42]", "not 42"),
    ] {
        let e = error(&format!("{base}{servers}\n"));
        assert_at(&e, 7, "upstream.farm.servers", words);
    }
}

#[test]
fn listen_address_must_be_ip_and_port() {
    let text = "[[listener]]\nname = \"p\"\nlisten = \"localhost:443\"\n[[listener.route]]\nupstream = \"a\"\n[upstream.a]\nservers = [\"127.0.0.1:2\"]\n";
    assert_at(&error(text), 3, "listener.listen", "write IP:PORT");
}

#[test]
fn certificate_without_key_is_an_error() {
    let text = "[[listener]]\nname = \"p\"\nlisten = \"127.0.0.1:1\"\ntls = { certificate = \"c.pem\" }\n[[listener.route]]\nupstream = \"a\"\n[upstream.a]\nservers = [\"127.0.0.1:2\"]\n";
    assert_at(
        &error(text),
        4,
        "listener.tls",
        "missing required key `private_key`",
    );
}

#[test]
fn gate_needs_trust_and_allow() {
    let text = with_client_auth("").replace("trust = [\"ca.pem\"]\n", "");
    let e = error(&text);
    assert!(e.contains("missing required key `trust`"), "{e}");
    assert!(e.contains("missing required key `allow`"), "{e}");
    let e = error(&with_client_auth("allow = []"));
    assert_at(
        &e,
        9,
        "listener.tls.client_auth.allow",
        "no client could ever get in",
    );
}

#[test]
fn unknown_eku_is_an_error() {
    let e = error(&with_client_auth("allow = [\"dns:edge\"]\neku = \"any\""));
    assert_at(
        &e,
        10,
        "listener.tls.client_auth.eku",
        "unknown eku \"any\"",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = "[[listener]]\nname = \"p\"\nlisten = \"nowhere\"\n[[listener.route]]\nupstream = \"missing\"\npath_prefix = \"api\"\n";
    let e = error(text);
    assert_eq!(e.lines().count(), 2, "{e}");
}

#[test]
fn syntax_error_names_the_line() {
    let e = error("[[listener]]\nname = \"p\nlisten = 1\n");
    assert!(e.starts_with(&format!("{FILE}:2:")), "{e}");
}
