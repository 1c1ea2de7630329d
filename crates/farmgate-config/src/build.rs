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
use crate::{
    Admin, CertKey, Config, ConfigError, ConfigErrors, FileRef, Listener, Location, Log, Problem,
    Server, Trust, UpstreamId, parse_duration,
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
            let key = b.src.key_before(&span).unwrap_or_default();
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

    fn invalid(&mut self, span: Range<usize>, key: &str, message: String) {
        self.problem(span, key, Problem::Invalid(message));
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let upstream_ids: HashMap<String, UpstreamId> = raw
            .upstream
            .keys()
            .enumerate()
            .map(|(i, name)| (name.get_ref().clone(), UpstreamId(i)))
            .collect();
        let upstreams = raw
            .upstream
            .iter()
            .map(|(name, up)| self.upstream(name, up))
            .collect();
        if raw.listener.is_empty() {
            self.invalid(
                0..0,
                "listener",
                "no [[listener]] is defined; farmgate needs at least one place to listen".into(),
            );
        }
        let listeners: Vec<Listener> = raw
            .listener
            .iter()
            .filter_map(|l| self.listener(l, &upstream_ids))
            .collect();
        self.unique_listeners(&listeners);

        let admin = raw.admin.as_ref().and_then(|a| {
            let listen = self.socket_addr(&a.get_ref().listen, "admin.listen")?;
            Some(Admin {
                listen,
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
        (prefix, cert_key, key_key): (&str, &str, &str),
    ) -> Option<CertKey> {
        match (cert, key) {
            (Some(c), Some(k)) => Some(CertKey {
                certificate: self.file(c, &format!("{prefix}.{cert_key}")),
                private_key: self.file(k, &format!("{prefix}.{key_key}")),
            }),
            (Some(_), None) | (None, Some(_)) | (None, None) => {
                let missing = if cert.is_none() { cert_key } else { key_key };
                self.invalid(table, prefix, format!("missing required key `{missing}`: a certificate needs both `{cert_key}` and `{key_key}`"));
                None
            }
        }
    }

    fn trust(&mut self, list: &S<Vec<S<String>>>, key: &str) -> Vec<Trust> {
        list.get_ref()
            .iter()
            .map(|t| match t.get_ref().as_str() {
                "mozilla" => Trust::Mozilla,
                "system" => Trust::System,
                _ => Trust::File(self.file(t, key)),
            })
            .collect()
    }

    fn file(&mut self, value: &S<String>, key: &str) -> FileRef {
        if value.get_ref().trim().is_empty() {
            self.invalid(value.span(), key, "a file path must not be empty".into());
        }
        FileRef {
            path: self.src.resolve(value.get_ref()),
            at: self.at(value.span(), key),
        }
    }

    fn duration(&mut self, value: &S<String>, key: &str) -> Option<Duration> {
        match parse_duration(value.get_ref()) {
            Some(d) if d.is_zero() => {
                self.invalid(
                    value.span(),
                    key,
                    "a duration must be greater than zero".into(),
                );
                None
            }
            Some(d) => Some(d),
            None => {
                self.invalid(
                    value.span(),
                    key,
                    format!(
                        "{:?} is not a duration; write e.g. \"500ms\", \"30s\", \"5m\" or \"1h\"",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn socket_addr(&mut self, value: &S<String>, key: &str) -> Option<SocketAddr> {
        let parsed = value.get_ref().parse::<SocketAddr>().ok();
        if parsed.is_none() {
            self.invalid(value.span(), key, format!("{:?} is not an address to listen on; write IP:PORT, e.g. \"0.0.0.0:443\" or \"[::]:443\"", value.get_ref()));
        }
        parsed
    }
}
