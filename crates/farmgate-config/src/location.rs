//! Where a configuration value came from: file, line and key.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The place in a configuration file a value was read from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    file: Arc<Path>,
    line: usize,
    key: String,
}

impl Location {
    /// A location in `file`, at 1-based `line`, for the dotted `key` (e.g. `listener.tls.certificate`).
    pub fn new(file: Arc<Path>, line: usize, key: impl Into<String>) -> Self {
        Location {
            file,
            line,
            key: key.into(),
        }
    }

    /// A value given on the command line as `flag` (e.g. `--trust`), not read from a file:
    /// shown as the flag alone.
    pub fn argument(flag: impl Into<String>) -> Self {
        Location::new(Arc::from(Path::new("<command line>")), 0, flag)
    }

    /// The configuration file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The 1-based line number.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The dotted key, e.g. `upstream.farm.tls.client_certificate`.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // Line numbers start at 1: 0 is a command-line argument.
            return f.write_str(&self.key);
        }
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.key)
    }
}

/// The text of a configuration file, able to turn byte spans into line numbers.
#[derive(Debug)]
pub(crate) struct Source<'a> {
    pub(crate) path: Arc<Path>,
    pub(crate) text: &'a str,
}

impl Source<'_> {
    /// The 1-based line holding byte offset `at`.
    pub(crate) fn line_of(&self, at: usize) -> usize {
        let at = at.min(self.text.len());
        self.text.as_bytes()[..at]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    pub(crate) fn at(&self, span: Range<usize>, key: impl Into<String>) -> Location {
        Location::new(self.path.clone(), self.line_of(span.start), key)
    }

    /// The key written before the value at `span`, e.g. `weight` for `weight = "two"`, if the span
    /// is in a `key = value` pair. Used for serde errors, which carry a span but no key.
    pub(crate) fn key_before(&self, span: &Range<usize>) -> Option<String> {
        let start = span.start.min(self.text.len());
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        let line = &self.text[line_start..line_end];
        let before = &self.text[line_start..start];
        // The span may point at the key itself (unknown field) or at the value.
        let candidate = match before.rfind('=') {
            Some(eq) => before[..eq].trim_end(),
            None => {
                let rest = &line[start - line_start..];
                rest.split(['=', ' ', ']']).next().unwrap_or("").trim()
            }
        };
        let key = candidate
            .rsplit([',', '{', '['])
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        (!key.is_empty()).then(|| key.to_owned())
    }

    /// The table a span lies in, as a dotted key (`listener.route` for a span under
    /// `[[listener.route]]`), or `top level` before any table header: where a syntax error
    /// with no key of its own is.
    pub(crate) fn table_at(&self, span: &Range<usize>) -> String {
        let mut start = span.start.min(self.text.len());
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        let line_end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        let upto = &self.text[..line_end];
        let header = upto
            .lines()
            .rev()
            .map(str::trim)
            .find(|line| line.starts_with('['))
            .map(|line| {
                let line = line.split('#').next().unwrap_or("");
                line.trim_matches(|c: char| c == '[' || c == ']' || c.is_whitespace())
                    .to_owned()
            })
            .filter(|table| !table.is_empty() && !table.contains(['[', ']']));
        header.unwrap_or_else(|| "top level".to_owned())
    }

    /// Resolve a path written in the configuration: relative paths are relative to the directory
    /// holding the configuration file.
    pub(crate) fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            return path.to_path_buf();
        }
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(path),
            _ => path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source<'_> {
        Source {
            path: Arc::from(Path::new("/etc/farmgate/edge.toml")),
            text,
        }
    }

    #[test]
    fn lines_are_one_based() {
        let s = source("a = 1\nb = 2\n");
        assert_eq!(s.line_of(0), 1);
        assert_eq!(s.line_of(6), 2);
    }

    #[test]
    fn table_at_names_the_table_a_span_is_in() {
        let text = "!\n[[listener.route]] # a route\nhost = \n[upstream.farm]\nx";
        let s = source(text);
        assert_eq!(s.table_at(&(0..1)), "top level");
        let host = text.find("host").unwrap_or_default();
        assert_eq!(s.table_at(&(host..host + 4)), "listener.route");
        assert_eq!(s.table_at(&(text.len()..text.len())), "upstream.farm");
    }

    #[test]
    fn key_before_value_and_at_key() {
        let text = "[x]\nweight = \"two\"\nlisen = 3\n";
        let s = source(text);
        let value = text.find("\"two\"").unwrap_or_default();
        assert_eq!(s.key_before(&(value..value + 5)).as_deref(), Some("weight"));
        let key = text.find("lisen").unwrap_or_default();
        assert_eq!(s.key_before(&(key..key + 5)).as_deref(), Some("lisen"));
        let inline = "tls = { certificate = 3 }";
        let v = inline.find('3').unwrap_or_default();
        assert_eq!(
            source(inline).key_before(&(v..v + 1)).as_deref(),
            Some("certificate")
        );
    }

    #[test]
    fn relative_paths_resolve_next_to_the_config() {
        let s = source("");
        assert_eq!(
            s.resolve("certs/a.pem"),
            PathBuf::from("/etc/farmgate/certs/a.pem")
        );
        assert_eq!(s.resolve("/abs/a.pem"), PathBuf::from("/abs/a.pem"));
    }
}
