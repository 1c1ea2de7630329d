//! farmgate's admin endpoint: the metrics registry and the small HTTP server that exposes it.
//!
//! - [`Metrics`] holds the counters and histograms the request path updates (cheap atomics,
//!   resolved once per route or connection, never per request) and, at scrape time, asks a
//!   [`Source`] for everything that is a view of current state (health, pools, certificates,
//!   gate counters).
//! - [`serve`] answers `/metrics` (Prometheus text format), `/status` (JSON), `/healthz` and `/`
//!   (a dashboard that renders `/status`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod http;
mod metrics;

pub use crate::http::{Admin, DASHBOARD, serve};
pub use crate::metrics::{
    Counts, Histogram, Kind, Metrics, RouteMetrics, Sample, Source, StatusClass,
};
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::gauge::Gauge;
