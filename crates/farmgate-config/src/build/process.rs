//! `[admin]`, `[log]` and `[server]`: settings of the whole process.

use super::Builder;
use crate::raw::{RawLog, RawServer, S};
use crate::{Log, LogFormat, MAX_WORKERS, Server};

impl Builder<'_> {
    pub(super) fn log(&mut self, raw: &S<RawLog>) -> Log {
        let raw = raw.get_ref();
        let format = match raw.format.as_ref().map(|f| (f, f.get_ref().as_str())) {
            None | Some((_, "text")) => LogFormat::Text,
            Some((_, "json")) => LogFormat::Json,
            Some((f, other)) => {
                self.invalid(
                    f.span(),
                    "log.format",
                    format!("unknown log format {other:?}; expected \"text\" or \"json\""),
                );
                LogFormat::Text
            }
        };
        Log {
            format,
            access: raw.access.as_ref().is_some_and(|a| *a.get_ref()),
        }
    }

    pub(super) fn server(&mut self, s: &RawServer) -> Server {
        let workers = s.workers.as_ref().and_then(|n| {
            let value = *n.get_ref();
            if (1..=MAX_WORKERS).contains(&value) {
                Some(value)
            } else {
                self.invalid(
                    n.span(),
                    "server.workers",
                    format!("workers must be from 1 to {MAX_WORKERS}, not {value}; leave it out for one per CPU"),
                );
                None
            }
        });
        Server {
            shutdown_grace: s
                .shutdown_grace
                .as_ref()
                .and_then(|d| self.duration(d, "server.shutdown_grace"))
                .unwrap_or(Server::default().shutdown_grace),
            workers,
        }
    }
}
