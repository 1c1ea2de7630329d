//! `[admin]`, `[log]` and `[server]`: settings of the whole process.

use super::Builder;
use crate::raw::{RawLog, RawServer, S};
use crate::{Log, MAX_WORKERS, OutOfRange, Problem, Server};

impl Builder<'_> {
    pub(super) fn log(&mut self, raw: &S<RawLog>) -> Log {
        let raw = raw.get_ref();
        let format = raw
            .format
            .as_ref()
            .and_then(|f| self.word(f, "log.format"))
            .unwrap_or_default();
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
                let problem = OutOfRange::Workers { found: value };
                self.problem(n.span(), "server.workers", Problem::OutOfRange(problem));
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
