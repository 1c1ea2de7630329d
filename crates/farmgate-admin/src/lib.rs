//! farmgate's admin endpoint: the metrics registry and the small HTTP server that exposes it.
//!
//! - [`Metrics`] holds the counters and histograms the request path updates (cheap atomics,
//!   resolved once per route or connection, never per request) and, at scrape time, asks a
//!   [`Source`] for everything that is a view of current state (health, pools, certificates,
//!   gate counters).
//! - [`serve`] answers `/metrics` (Prometheus text format), `/status` (JSON), `/healthz` and `/`
//!   (a dashboard that renders `/status`), and takes servers out of rotation and back
//!   (`GET /upstreams`, `POST /upstreams/NAME/servers/ADDR/drain` and `.../undrain`). With a
//!   [`Token`] (from `[admin] token_file`) every path but `/healthz` and the static page at `/`
//!   needs `Authorization: Bearer TOKEN`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth;
mod http;
mod idle;
mod metrics;
mod throttle;
mod token;

pub use crate::http::{Admin, DASHBOARD, DrainAction, DrainRequest, Limits, serve};
pub use crate::metrics::{
    Counts, Histogram, Kind, Metrics, RouteMetrics, Sample, Source, StatusClass,
};
pub use crate::throttle::{Throttle, unlogged};
pub use crate::token::{Token, TokenError};
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::gauge::Gauge;

/// One unit of a gauge (an open connection, an open tunnel), given back when dropped: the
/// count stays right through early returns and futures dropped half-way.
#[derive(Debug)]
pub struct Raised(Gauge);

impl Raised {
    /// Raise `gauge` by one until the result is dropped.
    pub fn new(gauge: Gauge) -> Raised {
        gauge.inc();
        Raised(gauge)
    }
}

impl Drop for Raised {
    fn drop(&mut self) {
        self.0.dec();
    }
}
