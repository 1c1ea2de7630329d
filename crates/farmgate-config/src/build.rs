//! From raw serde structs to the typed [`Config`], collecting every problem with its location.

//!
//! One module per section of the file: [`process`] (`[admin]`, `[log]`, `[server]`),
//! [`listener`] (`[[listener]]`, its TLS and routes), [`gate`] (`client_auth`), [`acme`]
//! (`[acme]` and `listener.tls.acme`) and [`upstream`] (`[upstream.NAME]`). This file holds the
//! [`Builder`] they share and the values every section writes the same way: durations,
//! addresses, files, trust and certificate pairs.

mod acme;
mod gate;
mod listener;
mod process;
mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::location::Source;
use crate::raw::{RawConfig, S};
use crate::spelling::Spelled;
use crate::{
    Admin, CertKey, Config, ConfigError, ConfigErrors, Empty, FileRef, Form, Incomplete, IpRange,
    Listener, Location, Log, OutOfRange, Problem, Rule, Server, Trust, UpstreamId, parse_duration,
    parse_size,
};

pub(crate) fn build(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let mut b = Builder {
        src: Source {
            path: Arc::from(path),
            text,
        },
        errors: Vec::new(),
    };
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let key = b
                .src
                .key_before(&span)
                .unwrap_or_else(|| b.src.table_at(&span));
            let message = e.message().trim_end().to_owned();
            b.problem(span, key, Problem::Syntax(message));
            return Err(ConfigErrors(b.errors));
        }
    };
    let config = b.config(raw);
    if b.errors.is_empty() {
        Ok(config)
    } else {
        b.errors.sort_by_key(|e| e.at.line());
        Err(ConfigErrors(b.errors))
    }
}

struct Builder<'a> {
    src: Source<'a>,
    errors: Vec<ConfigError>,
}

impl Builder<'_> {
    fn at(&self, span: Range<usize>, key: &str) -> Location {
        self.src.at(span, key)
    }

    fn problem(&mut self, span: Range<usize>, key: impl Into<String>, problem: Problem) {
        let at = self.src.at(span, key);
        self.errors.push(ConfigError { at, problem });
    }

    /// `value` is not of the form `key` takes.
    fn malformed(&mut self, value: &S<String>, key: &str, expected: Form) {
        let found = value.get_ref().clone();
        self.problem(value.span(), key, Problem::Malformed { found, expected });
    }

    /// The value a spelled enum's key names; an unknown word is a problem, and `None`.
    fn word<T: Spelled>(&mut self, value: &S<String>, key: &str) -> Option<T> {
        let word = T::parse(value.get_ref());
        if word.is_none() {
            let problem = Problem::UnknownVariant {
                what: T::WHAT,
                found: value.get_ref().clone(),
                expected: T::expected(),
            };
            self.problem(value.span(), key, problem);
        }
        word
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let upstream_ids: HashMap<String, UpstreamId> = raw
            .upstream
            .keys()
            .enumerate()
            .map(|(i, name)| (name.get_ref().clone(), UpstreamId::new(i)))
            .collect();
        let upstreams = raw
            .upstream
            .iter()
            .map(|(name, up)| self.upstream(name, up))
            .collect();
        if raw.listener.is_empty() {
            self.problem(0..0, "listener", Problem::Empty(Empty::Listeners));
        }
        let listeners: Vec<Listener> = raw
            .listener
            .iter()
            .filter_map(|l| self.listener(l, &upstream_ids))
            .collect();
        self.unique_listeners(&listeners);

        let admin = raw.admin.as_ref().and_then(|a| {
            let listen = self.socket_addr(&a.get_ref().listen, "admin.listen")?;
            let token_file = a
                .get_ref()
                .token_file
                .as_ref()
                .map(|f| self.file(f, "admin.token_file"));
            if token_file.is_none() && !listen.ip().is_loopback() {
                let problem = Problem::Rule(Rule::AdminTokenRequired);
                self.problem(a.get_ref().listen.span(), "admin.listen", problem);
            }
            Some(Admin {
                listen,
                token_file,
                at: self.at(a.span(), "admin"),
            })
        });
        let log = raw.log.as_ref().map_or_else(Log::default, |l| self.log(l));
        let server = raw
            .server
            .as_ref()
            .map_or_else(Server::default, |s| self.server(s.get_ref()));
        let acme = self.acme(raw.acme.as_ref(), &listeners);
        Config {
            file: self.src.path.clone(),
            admin,
            log,
            server,
            acme,
            listeners,
            upstreams,
        }
    }

    fn cert_key(
        &mut self,
        table: Range<usize>,
        cert: Option<&S<String>>,
        key: Option<&S<String>>,
        (prefix, cert_key, key_key): (&str, &'static str, &'static str),
    ) -> Option<CertKey> {
        match (cert, key) {
            (Some(c), Some(k)) => Some(CertKey {
                certificate: self.file(c, &format!("{prefix}.{cert_key}")),
                private_key: self.file(k, &format!("{prefix}.{key_key}")),
            }),
            (Some(_), None) | (None, Some(_)) | (None, None) => {
                let missing = if cert.is_none() { cert_key } else { key_key };
                let problem = Incomplete::CertificatePair {
                    missing,
                    certificate: cert_key,
                    key: key_key,
                };
                self.problem(table, prefix, Problem::Incomplete(problem));
                None
            }
        }
    }

    fn trust(&mut self, list: &S<Vec<S<String>>>, key: &str) -> Vec<Trust> {
        list.get_ref()
            .iter()
            .map(|t| Trust::builtin(t.get_ref()).unwrap_or_else(|| Trust::File(self.file(t, key))))
            .collect()
    }

    fn file(&mut self, value: &S<String>, key: &str) -> FileRef {
        if value.get_ref().trim().is_empty() {
            self.problem(value.span(), key, Problem::Empty(Empty::FilePath));
        }
        FileRef {
            path: self.src.resolve(value.get_ref()),
            at: self.at(value.span(), key),
        }
    }

    /// A size in bytes (`"64KiB"`, `"10MiB"`, `"1GiB"`, `"0"`).
    fn size(&mut self, value: &S<String>, key: &str) -> Option<u64> {
        let size = parse_size(value.get_ref());
        if size.is_none() {
            self.malformed(value, key, Form::Size);
        }
        size
    }

    /// A whole number from 1 to `max`.
    fn count(&mut self, value: &S<i64>, key: &str, max: u32) -> Option<u32> {
        let found = *value.get_ref();
        match u32::try_from(found) {
            Ok(n) if (1..=max).contains(&n) => Some(n),
            _ => {
                let problem = OutOfRange::Count {
                    key: key.rsplit('.').next().unwrap_or(key).to_owned(),
                    found,
                    max,
                };
                self.problem(value.span(), key, Problem::OutOfRange(problem));
                None
            }
        }
    }

    fn duration(&mut self, value: &S<String>, key: &str) -> Option<Duration> {
        match parse_duration(value.get_ref()) {
            Some(d) if d.is_zero() => {
                self.problem(value.span(), key, Problem::ZeroDuration);
                None
            }
            Some(d) => Some(d),
            None => {
                self.malformed(value, key, Form::Duration);
                None
            }
        }
    }

    /// Address ranges (`sources`, `proxy_protocol.from`, `trusted_proxies`); an empty list is
    /// `empty`, each malformed entry reported.
    fn ranges(&mut self, list: &S<Vec<S<String>>>, key: &str, empty: Empty) -> Vec<IpRange> {
        if list.get_ref().is_empty() {
            self.problem(list.span(), key, Problem::Empty(empty));
        }
        list.get_ref()
            .iter()
            .filter_map(|r| {
                let range = IpRange::parse(r.get_ref().trim());
                if range.is_none() {
                    self.malformed(r, key, Form::AddressRange);
                }
                range
            })
            .collect()
    }

    fn socket_addr(&mut self, value: &S<String>, key: &str) -> Option<SocketAddr> {
        let parsed = value.get_ref().parse::<SocketAddr>().ok();
        if parsed.is_none() {
            self.malformed(value, key, Form::ListenAddress);
        }
        parsed
    }
}
