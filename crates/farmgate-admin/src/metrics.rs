//! The metrics registry: live counters for the request path, and scrape-time samples.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Upper bounds of the latency histograms, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram updated with atomics only (no lock on the request path). Clones share
/// the same series.
#[derive(Debug, Default, Clone)]
pub struct Histogram(Arc<HistogramInner>);

#[derive(Debug, Default)]
struct HistogramInner {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    count: AtomicU64,
    /// Sum of observations in nanoseconds.
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Record one observation.
    pub fn observe(&self, duration: std::time::Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(BUCKETS.len());
        self.0.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.0.count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }

    /// Every bucket's count now, for windows and quantiles ([`Counts::since`],
    /// [`Counts::quantile`]).
    pub fn counts(&self) -> Counts {
        Counts(std::array::from_fn(|i| {
            self.0.buckets[i].load(Ordering::Relaxed)
        }))
    }
}

/// A histogram's bucket counts at one moment (not cumulative: each bucket counts the
/// observations between the bound below it and its own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts([u64; BUCKETS.len() + 1]);

impl Counts {
    /// Observations counted.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The observations made after `earlier` was read (bucket by bucket; a bucket never
    /// goes down, so a smaller `self` counts as 0).
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts(std::array::from_fn(|i| {
            self.0[i].saturating_sub(earlier.0[i])
        }))
    }

    /// The `q`-quantile (0 < q ≤ 1), interpolated linearly within its bucket as Prometheus'
    /// `histogram_quantile` does; the largest finite bound when it falls in the last,
    /// unbounded bucket; `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<std::time::Duration> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, &count) in self.0.iter().enumerate() {
            if count > 0 && (below + count) as f64 >= rank {
                let Some(&upper) = BUCKETS.get(i) else {
                    break;
                };
                let lower = if i == 0 { 0.0 } else { BUCKETS[i - 1] };
                let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
                return Some(std::time::Duration::from_secs_f64(
                    lower + (upper - lower) * within,
                ));
            }
            below += count;
        }
        BUCKETS
            .last()
            .map(|&b| std::time::Duration::from_secs_f64(b))
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.0.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        let sum = self.0.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            sum,
            self.0.count.load(Ordering::Relaxed),
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// The class of an HTTP status code, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 1xx
    Informational,
    /// 2xx
    Success,
    /// 3xx
    Redirection,
    /// 4xx
    ClientError,
    /// 5xx
    ServerError,
}

impl StatusClass {
    /// The class of `status`.
    pub fn of(status: u16) -> StatusClass {
        match status {
            0..=199 => StatusClass::Informational,
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirection,
            400..=499 => StatusClass::ClientError,
            _ => StatusClass::ServerError,
        }
    }

    /// `"2xx"` and so on.
    pub fn label(self) -> &'static str {
        match self {
            StatusClass::Informational => "1xx",
            StatusClass::Success => "2xx",
            StatusClass::Redirection => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
        }
    }

    const ALL: [StatusClass; 5] = [
        StatusClass::Informational,
        StatusClass::Success,
        StatusClass::Redirection,
        StatusClass::ClientError,
        StatusClass::ServerError,
    ];
}

/// Whether a scraped sample is a counter or a gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets on restart).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One value read at scrape time.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Metric name, e.g. `farmgate_server_up`.
    pub name: &'static str,
    /// Help text.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// Label pairs.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

/// What the proxy reports at scrape time: state rather than events.
pub trait Source: Send + Sync + std::fmt::Debug {
    /// Append the current samples.
    fn collect(&self, out: &mut Vec<Sample>);
}

/// Counters of one route: requests by status class and the time to the response header.
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    by_class: [Counter; 5],
    /// Time from receiving the request to sending the response header.
    pub seconds: Histogram,
}

impl RouteMetrics {
    /// Count a request that was answered with `status` after `elapsed`.
    pub fn record(&self, status: u16, elapsed: std::time::Duration) {
        let class = StatusClass::of(status);
        let i = StatusClass::ALL
            .iter()
            .position(|c| *c == class)
            .unwrap_or(4);
        self.by_class[i].inc();
        self.seconds.observe(elapsed);
    }
}

/// farmgate's metrics registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    request_seconds: Family<Labels, Histogram>,
    upstream_seconds: Family<Labels, Histogram>,
    upstream_errors: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    open_connections: Family<Labels, Gauge>,
    forwarded_kept: Family<Labels, Counter>,
    tunnels_open: Family<Labels, Gauge>,
    limited: Family<Labels, Counter>,
    queued: Family<Labels, Gauge>,
    queue_seconds: Family<Labels, Histogram>,
    queue_timeouts: Family<Labels, Counter>,
    reloads: Family<Labels, Counter>,
    admin_unauthorized: Family<Labels, Counter>,
    drains: Family<Labels, Counter>,
    source: Arc<OnceLock<Arc<dyn Source>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry with farmgate's metric families.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<Labels, Counter>::default();
        let request_seconds = Family::<Labels, Histogram>::default();
        let upstream_seconds = Family::<Labels, Histogram>::default();
        let upstream_errors = Family::<Labels, Counter>::default();
        let retries = Family::<Labels, Counter>::default();
        let open_connections = Family::<Labels, Gauge>::default();
        let forwarded_kept = Family::<Labels, Counter>::default();
        let tunnels_open = Family::<Labels, Gauge>::default();
        let limited = Family::<Labels, Counter>::default();
        let queued = Family::<Labels, Gauge>::default();
        let queue_seconds = Family::<Labels, Histogram>::default();
        let queue_timeouts = Family::<Labels, Counter>::default();
        let reloads = Family::<Labels, Counter>::default();
        let admin_unauthorized = Family::<Labels, Counter>::default();
        let drains = Family::<Labels, Counter>::default();
        registry.register(
            "farmgate_requests",
            "Requests answered, by listener, route, upstream and status class",
            requests.clone(),
        );
        registry.register(
            "farmgate_request_duration_seconds",
            "Time from receiving a request to sending its response header",
            request_seconds.clone(),
        );
        registry.register(
            "farmgate_upstream_response_seconds",
            "Time from sending a request upstream to receiving its response header",
            upstream_seconds.clone(),
        );
        registry.register(
            "farmgate_upstream_errors",
            "Failed attempts to reach a backend, by upstream and reason",
            upstream_errors.clone(),
        );
        registry.register(
            "farmgate_upstream_retries",
            "Requests retried on another server, by upstream",
            retries.clone(),
        );
        registry.register(
            "farmgate_open_connections",
            "Client connections open now, by listener",
            open_connections.clone(),
        );
        registry.register(
            "farmgate_forwarded_kept",
            "Requests whose client-supplied X-Forwarded-For or Forwarded was kept because the client is in trusted_proxies, by listener",
            forwarded_kept.clone(),
        );
        registry.register(
            "farmgate_tunnels_open",
            "Tunnels (WebSocket) open now, by upstream",
            tunnels_open.clone(),
        );
        registry.register(
            "farmgate_limited",
            "Connections and requests a listener's limits refused, by listener and limit",
            limited.clone(),
        );
        registry.register(
            "farmgate_upstream_queue",
            "Requests waiting now for a server below max_connections_per_server, by upstream",
            queued.clone(),
        );
        registry.register(
            "farmgate_upstream_queue_seconds",
            "Time requests waited for a server below max_connections_per_server, by upstream",
            queue_seconds.clone(),
        );
        registry.register(
            "farmgate_upstream_queue_timeouts",
            "Requests answered 503 after waiting queue_timeout for a server, by upstream",
            queue_timeouts.clone(),
        );
        registry.register(
            "farmgate_reloads",
            "Configuration reloads, by result",
            reloads.clone(),
        );
        registry.register(
            "farmgate_admin_unauthorized",
            "Requests the admin endpoint refused for want of its bearer token, by reason",
            admin_unauthorized.clone(),
        );
        registry.register(
            "farmgate_server_drains",
            "Servers taken out of rotation (drain) or put back (undrain) through the admin endpoint, by upstream, server and action",
            drains.clone(),
        );
        let source = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(Scraped(source.clone())));
        Metrics {
            registry,
            requests,
            request_seconds,
            upstream_seconds,
            upstream_errors,
            retries,
            open_connections,
            forwarded_kept,
            tunnels_open,
            limited,
            queued,
            queue_seconds,
            queue_timeouts,
            reloads,
            admin_unauthorized,
            drains,
            source,
        }
    }

    /// Where scrape-time samples come from (set once; later calls are ignored).
    pub fn set_source(&self, source: Arc<dyn Source>) {
        let _ = self.source.set(source);
    }

    /// The handles of one route, resolved once and kept by the caller.
    pub fn route(&self, listener: &str, route: &str, upstream: &str) -> RouteMetrics {
        let labels = |class: StatusClass| -> Labels {
            vec![
                ("listener", listener.to_owned()),
                ("route", route.to_owned()),
                ("upstream", upstream.to_owned()),
                ("status", class.label().to_owned()),
            ]
        };
        let by_class = StatusClass::ALL.map(|c| self.requests.get_or_create(&labels(c)).clone());
        let seconds = self
            .request_seconds
            .get_or_create(&vec![
                ("listener", listener.to_owned()),
                ("upstream", upstream.to_owned()),
            ])
            .clone();
        RouteMetrics { by_class, seconds }
    }

    /// The upstream response-time histogram of `upstream`.
    pub fn upstream_seconds(&self, upstream: &str) -> Histogram {
        self.upstream_seconds
            .get_or_create(&vec![("upstream", upstream.to_owned())])
            .clone()
    }

    /// Count a failed attempt to reach a server of `upstream`.
    pub fn upstream_error(&self, upstream: &str, reason: &'static str) {
        self.upstream_errors
            .get_or_create(&vec![
                ("upstream", upstream.to_owned()),
                ("reason", reason.to_owned()),
            ])
            .inc();
    }

    /// Count a retry on `upstream`.
    pub fn retry(&self, upstream: &str) {
        self.retries
            .get_or_create(&vec![("upstream", upstream.to_owned())])
            .inc();
    }

    /// The open-connections gauge of `listener`.
    pub fn open_connections(&self, listener: &str) -> Gauge {
        self.open_connections
            .get_or_create(&vec![("listener", listener.to_owned())])
            .clone()
    }

    /// The counter of requests whose forwarding headers `listener` kept for a client in its
    /// `trusted_proxies` (`farmgate_forwarded_kept_total`).
    pub fn forwarded_kept(&self, listener: &str) -> Counter {
        self.forwarded_kept
            .get_or_create(&vec![("listener", listener.to_owned())])
            .clone()
    }

    /// The open-tunnels gauge of `upstream`.
    pub fn tunnels_open(&self, upstream: &str) -> Gauge {
        self.tunnels_open
            .get_or_create(&vec![("upstream", upstream.to_owned())])
            .clone()
    }

    /// The counter of refusals by `limit` on `listener` (`farmgate_limited_total`).
    pub fn limited(&self, listener: &str, limit: &str) -> Counter {
        self.limited
            .get_or_create(&vec![
                ("listener", listener.to_owned()),
                ("limit", limit.to_owned()),
            ])
            .clone()
    }

    /// The handles of `upstream`'s queue: waiting now, time waited, timeouts.
    pub fn queue(&self, upstream: &str) -> (Gauge, Histogram, Counter) {
        let labels = vec![("upstream", upstream.to_owned())];
        (
            self.queued.get_or_create(&labels).clone(),
            self.queue_seconds.get_or_create(&labels).clone(),
            self.queue_timeouts.get_or_create(&labels).clone(),
        )
    }

    /// Count a reload.
    pub fn reload(&self, succeeded: bool) {
        let result = if succeeded { "success" } else { "failure" };
        self.reloads
            .get_or_create(&vec![("result", result.to_owned())])
            .inc();
    }

    /// Count a request the admin endpoint refused (`reason`: missing, wrong, unconfigured).
    pub(crate) fn admin_unauthorized(&self, reason: &'static str) {
        self.admin_unauthorized
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }

    /// Count a drain or an undrain of `server` of `upstream` that changed it.
    pub fn server_drain(&self, upstream: &str, server: &str, action: crate::DrainAction) {
        self.drains
            .get_or_create(&vec![
                ("upstream", upstream.to_owned()),
                ("server", server.to_owned()),
                ("action", action.as_str().to_owned()),
            ])
            .inc();
    }

    /// Everything, in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
            out.push_str("# encoding the metrics failed\n");
        }
        out
    }
}

/// The collector that turns a [`Source`]'s samples into metric families at scrape time.
#[derive(Debug)]
struct Scraped(Arc<OnceLock<Arc<dyn Source>>>);

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(source) = self.0.get() else {
            return Ok(());
        };
        let mut samples = Vec::new();
        source.collect(&mut samples);
        samples.sort_by_key(|s| s.name);
        for group in samples.chunk_by(|a, b| a.name == b.name) {
            let first = &group[0];
            let (name, kind) = match first.kind {
                // The text encoder adds `_total` to counters.
                Kind::Counter => (first.name.trim_end_matches("_total"), MetricType::Counter),
                Kind::Gauge => (first.name, MetricType::Gauge),
            };
            let mut family = encoder.encode_descriptor(name, first.help, None, kind)?;
            for sample in group {
                let labels = sample.labels.clone();
                let metric = family.encode_family(&labels)?;
                // Whole numbers print as such ("3", not "3.0").
                let whole = sample.value.fract() == 0.0 && sample.value.abs() < 9.0e15;
                match (sample.kind, whole) {
                    (Kind::Counter, true) => {
                        ConstCounter::new(sample.value as u64).encode(metric)?
                    }
                    (Kind::Counter, false) => ConstCounter::new(sample.value).encode(metric)?,
                    (Kind::Gauge, true) => ConstGauge::new(sample.value as i64).encode(metric)?,
                    (Kind::Gauge, false) => ConstGauge::new(sample.value).encode(metric)?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    #[derive(Debug)]
    struct Fixed;

    impl Source for Fixed {
        fn collect(&self, out: &mut Vec<Sample>) {
            for (server, up) in [("10.0.0.1:8443", 1.0), ("10.0.0.2:8443", 0.0)] {
                out.push(Sample {
                    name: "farmgate_server_up",
                    help: "1 if the server takes traffic",
                    kind: Kind::Gauge,
                    labels: vec![("upstream", "farm".into()), ("server", server.into())],
                    value: up,
                });
            }
        }
    }

    #[test]
    fn quantiles_come_from_the_buckets_of_a_window() {
        let h = Histogram::default();
        assert_eq!(h.counts().quantile(0.5), None, "nothing observed");
        for _ in 0..90 {
            h.observe(Duration::from_micros(800)); // (0.5 ms, 1 ms]
        }
        let before = h.counts();
        for _ in 0..98 {
            h.observe(Duration::from_millis(3)); // (2.5 ms, 5 ms]
        }
        h.observe(Duration::from_millis(40)); // (25 ms, 50 ms]
        h.observe(Duration::from_secs(60)); // beyond the last bound
        let window = h.counts().since(&before);
        assert_eq!(window.total(), 100);
        let ms = |q| window.quantile(q).unwrap().as_secs_f64() * 1e3;
        // The 50th of 98 observations in (2.5, 5]: 2.5 + 2.5 * 50/98.
        assert!(
            (ms(0.5) - (2.5 + 2.5 * 50.0 / 98.0)).abs() < 1e-6,
            "{}",
            ms(0.5)
        );
        // The 99th observation is the one in (25, 50]: its bucket's upper bound.
        assert!((ms(0.99) - 50.0).abs() < 1e-6, "{}", ms(0.99));
        // The last one is beyond every bound: the largest bound stands for it.
        assert!((ms(1.0) - 10_000.0).abs() < 1e-6, "{}", ms(1.0));
        assert_eq!(h.counts().total(), 190);
    }

    #[test]
    fn request_path_metrics_and_scraped_state_are_encoded() {
        let metrics = Metrics::new();
        metrics.set_source(Arc::new(Fixed));
        let route = metrics.route("public", "*/", "farm");
        route.record(200, Duration::from_millis(3));
        route.record(502, Duration::from_millis(40));
        metrics.upstream_error("farm", "connect_refused");
        metrics.reload(true);
        let text = metrics.encode();
        assert!(text.contains(r#"farmgate_requests_total{listener="public",route="*/",upstream="farm",status="2xx"} 1"#), "{text}");
        assert!(text.contains(r#"status="5xx"} 1"#), "{text}");
        assert!(text.contains(r#"farmgate_request_duration_seconds_bucket{le="0.005",listener="public",upstream="farm"} 1"#), "{text}");
        assert!(
            text.contains(
                r#"farmgate_request_duration_seconds_count{listener="public",upstream="farm"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"farmgate_upstream_errors_total{upstream="farm",reason="connect_refused"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"farmgate_server_up{upstream="farm",server="10.0.0.2:8443"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"farmgate_reloads_total{result="success"} 1"#),
            "{text}"
        );
    }
}
