//! Property tests of the parser: whatever the text, `Config::parse` returns (it never panics),
//! and every error names the file, a line of it and a key, as `FILE:LINE: KEY: ...`. Inputs
//! are the example configurations with lines deleted, repeated or given other values, and text
//! put together from TOML's pieces and farmgate's keys. `PROPTEST_CASES=N` raises the number of
//! cases (CI's interop stage).

use std::path::Path;

use farmgate_config::Config;
use proptest::prelude::*;

const FILE: &str = "/etc/farmgate/farm.toml";

/// Configurations an operator starts from.
const EXAMPLES: [&str; 3] = [
    include_str!("../../../examples/edge.toml"),
    include_str!("../../../examples/gate.toml"),
    include_str!("../../../examples/farm.toml"),
];

/// Keys farmgate knows, and some it does not.
const KEYS: &[&str] = &[
    "name",
    "listen",
    "tls",
    "certificate",
    "private_key",
    "client_auth",
    "trust",
    "allow",
    "eku",
    "crl",
    "sources",
    "route",
    "host",
    "path_prefix",
    "upstream",
    "servers",
    "balance",
    "hash_key",
    "health",
    "timeouts",
    "server_name",
    "client_certificate",
    "client_key",
    "redirect_https",
    "acme",
    "domains",
    "challenge",
    "directory",
    "contact",
    "storage",
    "eab",
    "kid",
    "hmac_key_file",
    "request_headers",
    "response_headers",
    "set",
    "remove",
    "weight",
    "address",
    "format",
    "access",
    "shutdown_grace",
    "workers",
    "protocol",
    "interval",
    "rise",
    "fall",
    "connect",
    "idle",
    "sni",
    "unknown",
    "é",
    "\"quoted key\"",
];

/// Table headers, real and not.
const TABLES: &[&str] = &[
    "[[listener]]",
    "[listener.tls]",
    "[listener.tls.client_auth]",
    "[[listener.route]]",
    "[[listener.tls.sni]]",
    "[upstream.farm]",
    "[upstream.farm.tls]",
    "[upstream.farm.health]",
    "[admin]",
    "[log]",
    "[server]",
    "[acme]",
    "[listener]",
    "[[upstream]]",
    "[x.y.z]",
    "[",
];

/// Values of every TOML type, and strings shaped like what keys take.
fn value() -> impl Strategy<Value = String> {
    let word = prop::sample::select(vec![
        "\"127.0.0.1:8443\"",
        "\"0.0.0.0:0\"",
        "\"[::1]:443\"",
        "\"host:99999\"",
        "\"30s\"",
        "\"0s\"",
        "\"7d\"",
        "\"dns:edge.example.com\"",
        "\"uri:spiffe://farm/edge\"",
        "\"spki-sha256:AAAA\"",
        "\"cn:\"",
        "\"*.example.com\"",
        "\"mozilla\"",
        "\"system\"",
        "\"\"",
        "\"round_robin\"",
        "\"hash\"",
        "\"header:x-user\"",
        "\"client_or_server_auth\"",
        "\"https://acme.example/dir\"",
        "\"http-01\"",
        "\"10.0.0.0/33\"",
        "\"/\"",
        "\"api\"",
        "0",
        "-1",
        "1",
        "1001",
        "99999999999999999999",
        "1.5",
        "true",
        "false",
        "[]",
        "[\"a\"]",
        "[1, \"a\"]",
        "{}",
        "{ address = \"10.0.0.1:1\", weight = 0 }",
        "{ set = { \"X-A\" = \"b\" } }",
        "{ set = { \"Bad Name\" = \"b\" } }",
        "1979-05-27",
        "'''multi\nline'''",
        "\"\\u00e9\"",
        "\"\\t\"",
        "\"a\\nb\"",
    ]);
    prop_oneof![
        word.prop_map(str::to_owned),
        any::<String>().prop_map(|s| format!("{s:?}")),
    ]
}

/// One line of TOML-ish text.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (prop::sample::select(KEYS), value()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => prop::sample::select(TABLES).prop_map(str::to_owned),
        1 => "[ -~]{0,40}",
        1 => any::<String>(),
    ]
}

/// An example configuration, changed.
fn mutated() -> impl Strategy<Value = String> {
    let edit = prop_oneof![
        any::<prop::sample::Index>().prop_map(Edit::Delete),
        any::<prop::sample::Index>().prop_map(Edit::Repeat),
        (any::<prop::sample::Index>(), value()).prop_map(|(i, v)| Edit::Value(i, v)),
        (any::<prop::sample::Index>(), line()).prop_map(|(i, l)| Edit::Insert(i, l)),
    ];
    (
        prop::sample::select(EXAMPLES.to_vec()),
        prop::collection::vec(edit, 1..6),
    )
        .prop_map(|(text, edits)| {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            for edit in edits {
                edit.apply(&mut lines);
            }
            lines.join("\n")
        })
}

#[derive(Debug, Clone)]
enum Edit {
    Delete(prop::sample::Index),
    Repeat(prop::sample::Index),
    /// Replace the value of a `key = value` line (or the line).
    Value(prop::sample::Index, String),
    Insert(prop::sample::Index, String),
}

impl Edit {
    fn apply(self, lines: &mut Vec<String>) {
        if lines.is_empty() {
            return;
        }
        match self {
            Edit::Delete(i) => {
                lines.remove(i.index(lines.len()));
            }
            Edit::Repeat(i) => {
                let i = i.index(lines.len());
                lines.insert(i, lines[i].clone());
            }
            Edit::Value(i, value) => {
                let i = i.index(lines.len());
                lines[i] = match lines[i].split_once('=') {
                    Some((key, _)) => format!("{key}= {value}"),
                    None => value,
                };
            }
            Edit::Insert(i, line) => {
                let i = i.index(lines.len() + 1);
                lines.insert(i, line);
            }
        }
    }
}

/// Parsing `text` returns, and every error is `FILE:LINE: KEY: ...` with a line of the file.
fn every_error_says_where(text: &str) -> Result<(), TestCaseError> {
    let Err(errors) = Config::parse(text, Path::new(FILE)) else {
        return Ok(());
    };
    let lines = text.lines().count().max(1) + 1;
    prop_assert!(errors.iter().next().is_some(), "an Err with no error");
    for e in errors.iter() {
        let at = &e.at;
        prop_assert_eq!(at.file(), Path::new(FILE));
        prop_assert!(
            (1..=lines).contains(&at.line()),
            "line {} of {}: {}",
            at.line(),
            lines,
            e
        );
        prop_assert!(!at.key().trim().is_empty(), "no key: {}", e);
        let prefix = format!("{FILE}:{}: {}: ", at.line(), at.key());
        prop_assert!(e.to_string().starts_with(&prefix), "{:?} in {}", prefix, e);
    }
    Ok(())
}

proptest! {
    #[test]
    fn changed_examples_parse_or_say_where(text in mutated()) {
        every_error_says_where(&text)?;
    }

    #[test]
    fn toml_pieces_parse_or_say_where(lines in prop::collection::vec(line(), 0..25)) {
        every_error_says_where(&lines.join("\n"))?;
    }

    #[test]
    fn any_text_parses_or_says_where(text in any::<String>()) {
        every_error_says_where(&text)?;
    }
}

#[test]
fn the_examples_parse() {
    for text in EXAMPLES {
        Config::parse(text, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}\n{text}"));
    }
}
