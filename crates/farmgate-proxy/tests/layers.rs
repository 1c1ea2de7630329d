//! The crate's layers, checked on its source: imports go one way only, `runtime → inbound →
//! generation → outbound` (docs/architecture.md), with `error` a leaf every layer may use, and
//! no two modules import each other, directly or around a circle.
//!
//! Paths are read from the text (`crate::…`, `super::…`, grouped `{…}` imports included), with
//! comments and the `#[cfg(test)]` part at the bottom of each file left out: tests may reach
//! anywhere. This is what `cargo modules dependencies --acyclic` would check, plus the layer
//! order, without a tool to install.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers from the top; a module may import its own layer and those after it.
const LAYERS: [&str; 4] = ["runtime", "inbound", "generation", "outbound"];
/// Modules every layer may import; they import nothing of the crate.
const LEAVES: [&str; 1] = ["error"];

#[test]
fn imports_go_down_the_layers_and_never_around_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&src);
    assert!(
        LAYERS
            .iter()
            .chain(&LEAVES)
            .all(|m| modules.contains_key(&format!("crate::{m}"))),
        "every layer exists: {:?}",
        modules.keys()
    );
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        for path in paths(&code(&text)) {
            let target = resolve(module, &path, &known);
            if let Some(target) = target.filter(|t| t != module) {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    let mut wrong = Vec::new();
    for (from, targets) in &edges {
        for to in targets {
            if let Some(why) = breaks_layering(from, to) {
                wrong.push(format!("{from} imports {to}: {why}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    if let Some(cycle) = find_cycle(&edges) {
        panic!("modules import each other: {}", cycle.join(" → "));
    }
}

#[test]
fn the_checker_sees_cycles_and_upward_imports() {
    let known: BTreeSet<String> = [
        "crate::outbound",
        "crate::outbound::body",
        "crate::outbound::pool",
        "crate::inbound",
    ]
    .map(String::from)
    .into();
    let text = "use super::{pool::Pool, body};\nuse crate::inbound::Shared; // crate::runtime\n";
    let found: Vec<String> = paths(&code(text))
        .iter()
        .filter_map(|p| resolve("crate::outbound::body", p, &known))
        .filter(|m| m != "crate::outbound::body")
        .collect();
    assert_eq!(found, ["crate::outbound::pool", "crate::inbound"]);
    assert!(breaks_layering("crate::outbound::body", "crate::inbound").is_some());
    assert!(breaks_layering("crate::inbound::conn", "crate::outbound").is_none());
    let edges = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert!(find_cycle(&edges).is_some());
}

/// Every module of the crate and its file: `lib.rs` is `crate`, `a/b.rs` is `crate::a::b`.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let name = if parts == ["lib"] {
                "crate".to_owned()
            } else {
                format!("crate::{}", parts.join("::"))
            };
            out.insert(name, path);
        }
    }
    out
}

/// The code of a file: comments blanked, the test module at the bottom cut off.
fn code(text: &str) -> String {
    let text = match text.find("\n#[cfg(test)]") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            rest = &rest[end..];
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(rest.len(), |e| e + 2);
            rest = &rest[end..];
        } else if let Some(len) = char_literal(rest) {
            rest = &rest[len..];
        } else if rest.starts_with('"') {
            // A string literal: skipped whole, so `"crate::x"` in a message is no import.
            let mut chars = rest.char_indices().skip(1);
            let mut end = rest.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    _ => {}
                }
            }
            rest = &rest[end..];
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The length of the char literal `rest` starts with (`'"'`, `'\''`), if it starts with one
/// (and not with a lifetime).
fn char_literal(rest: &str) -> Option<usize> {
    let mut chars = rest.char_indices();
    if chars.next()?.1 != '\'' {
        return None;
    }
    let (_, c) = chars.next()?;
    if c == '\\' {
        chars.next()?;
    }
    let (i, close) = chars.next()?;
    (close == '\'').then_some(i + 1)
}

/// Every path starting with `crate::` or `super::`, with grouped imports expanded:
/// `super::{a::B, c}` gives `super::a::B` and `super::c`.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < code.len() {
        let starts = ["crate::", "super::"]
            .iter()
            .find(|p| code[i..].starts_with(**p));
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        match starts {
            Some(prefix) if boundary => {
                let (found, end) = path_at(code, i + prefix.len(), prefix.trim_end_matches(':'));
                out.extend(found);
                i = end;
            }
            _ => i += 1,
        }
    }
    out
}

/// The path(s) starting at `at`, after `prefix` and `::`; and where they end.
fn path_at(code: &str, mut at: usize, prefix: &str) -> (Vec<String>, usize) {
    let mut path = prefix.to_owned();
    loop {
        let rest = &code[at..];
        let rest_trimmed = rest.trim_start();
        at += rest.len() - rest_trimmed.len();
        if rest_trimmed.starts_with('{') {
            let group_end = matching_brace(code, at);
            let inner = &code[at + 1..group_end];
            let mut found = Vec::new();
            for item in split_top(inner) {
                let item = item.trim();
                if item.is_empty() || item == "self" {
                    found.push(path.clone());
                    continue;
                }
                let (sub, _) = path_at(&format!("{item} "), 0, &path);
                found.extend(sub);
            }
            return (found, group_end + 1);
        }
        let ident: String = rest_trimmed
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            return (vec![path], at);
        }
        path.push_str("::");
        path.push_str(&ident);
        at += ident.len();
        if code[at..].starts_with("::") {
            at += 2;
        } else {
            return (vec![path], at);
        }
    }
}

fn matching_brace(code: &str, open: usize) -> usize {
    let mut depth = 0;
    for (i, c) in code[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return open + i;
                }
            }
            _ => {}
        }
    }
    code.len() - 1
}

fn split_top(inner: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
}

/// The module `path` (written in module `from`) refers to: the longest known module its
/// segments name.
fn resolve(from: &str, path: &str, known: &BTreeSet<String>) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").collect();
    let absolute: Vec<&str> = if segments[0] == "super" {
        let mut base: Vec<&str> = from.split("::").collect();
        while segments.first() == Some(&"super") {
            segments.remove(0);
            base.pop();
        }
        base.into_iter().chain(segments).collect()
    } else {
        segments
    };
    (1..=absolute.len())
        .rev()
        .map(|n| absolute[..n].join("::"))
        .find(|candidate| known.contains(candidate))
}

/// Why an import from `from` to `to` breaks the layering, if it does.
fn breaks_layering(from: &str, to: &str) -> Option<String> {
    let top = |m: &str| m.split("::").nth(1).unwrap_or("").to_owned();
    let (from_top, to_top) = (top(from), top(to));
    if from == "crate" {
        return None;
    }
    if to == "crate" {
        return Some("nothing imports from the crate root".to_owned());
    }
    if LEAVES.contains(&from_top.as_str()) && from_top != to_top {
        return Some(format!("{from_top} is a leaf"));
    }
    if LEAVES.contains(&to_top.as_str()) {
        return None;
    }
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    match (rank(&from_top), rank(&to_top)) {
        (Some(a), Some(b)) if a <= b => None,
        (Some(_), Some(_)) => Some(format!("{to_top} is a layer above {from_top}")),
        _ => Some("every module belongs to a layer or is a leaf".to_owned()),
    }
}

/// A circle of imports, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|start| visit(start, edges, &mut done, &mut Vec::new()))
}
