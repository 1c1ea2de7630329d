//! What each server did: requests, errors and response times, counted on the request path
//! with atomics only, and the last minute of it, sampled off the request path.
//!
//! [`ServerStats::record`] is all a request pays: a histogram observation (three relaxed atomic
//! additions) and one more for a 5xx. A failed attempt also notes its reason in words, behind a
//! lock: failures already log and count with allocations, successes never take it. Every few
//! seconds the runtime calls [`ServerStats::sample`], which copies the cumulative counters into
//! a small ring; [`ServerStats::last_minute`] compares the counters now with the oldest sample
//! still within the minute. A server's stats outlive generations (`generation::Lasting` hands
//! the same ones to every generation for the same upstream and address), so they never go
//! down and never count twice across reloads.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use farmgate_admin::{Counts, Histogram};
use parking_lot::Mutex;

use super::failure::{Chain, UpstreamFailure};
use super::health::now_ms;

/// How much history [`ServerStats::last_minute`] covers.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// How often the runtime samples the counters: the resolution of the window.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Samples kept: enough to reach one window back, plus the one just beyond it.
const SAMPLES: usize = (WINDOW.as_secs() / SAMPLE_EVERY.as_secs()) as usize + 1;

/// The counters of one server (one upstream name and address), shared by every generation.
#[derive(Debug)]
pub(crate) struct ServerStats {
    /// Time to the response header of every response it sent.
    latency: Histogram,
    /// Attempts that got no response: connect or TLS failure, reset, timeout.
    failed: AtomicU64,
    /// Responses with a 5xx status.
    server_errors: AtomicU64,
    /// The last failure, in words (taken on failures only).
    last_failure: Mutex<Option<LastFailure>>,
    /// The counters every [`SAMPLE_EVERY`], oldest first (taken by the sampler and `/status`).
    samples: Mutex<VecDeque<Sample>>,
}

/// The last thing that went wrong with a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LastFailure {
    /// When, in Unix seconds.
    pub(crate) at: u64,
    /// The metric label: `connect_refused`, `client_cert_refused`..., `status_5xx`, or
    /// `health_check` (an active check failed).
    pub(crate) reason: &'static str,
    /// What happened, in words, as logged.
    pub(crate) message: String,
}

/// A server's traffic over the last minute (or since its stats began, if that is shorter).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LastMinute {
    /// Requests sent to it (responses and failed attempts), per second (over one second at
    /// least, so a burst just after the start is not extrapolated).
    pub(crate) requests_per_second: f64,
    /// Share of those that failed or were answered 5xx, from 0 to 1 (0 without requests).
    pub(crate) error_rate: f64,
    /// Median time to the response header; `None` without responses.
    pub(crate) p50: Option<Duration>,
    /// 99th percentile time to the response header; `None` without responses.
    pub(crate) p99: Option<Duration>,
    /// Requests per second in each sampling interval, oldest first, the current partial one
    /// last: a sparkline's points.
    pub(crate) history: Vec<f64>,
}

/// The cumulative counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    /// [`now_ms`].
    at: u64,
    latency: Counts,
    failed: u64,
    server_errors: u64,
}

impl Sample {
    fn requests(&self) -> u64 {
        self.latency.total() + self.failed
    }

    fn errors(&self) -> u64 {
        self.failed + self.server_errors
    }
}

impl Default for ServerStats {
    fn default() -> Self {
        let start = Sample {
            at: now_ms(),
            ..Sample::default()
        };
        ServerStats {
            latency: Histogram::default(),
            failed: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            samples: Mutex::new(VecDeque::from([start])),
        }
    }
}

impl ServerStats {
    /// Count one attempt on this server: its response after `elapsed`, or its failure.
    pub(crate) fn record(
        &self,
        outcome: Result<http::StatusCode, &UpstreamFailure>,
        elapsed: Duration,
    ) {
        match outcome {
            Ok(status) => {
                self.latency.observe(elapsed);
                if status.is_server_error() {
                    self.server_errors.fetch_add(1, Ordering::Relaxed);
                    self.note_failure("status_5xx", format!("answered {status}"));
                }
            }
            Err(failure) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.note_failure(failure.label(), Chain(failure).to_string());
            }
        }
    }

    /// An active health check failed, for `why` (not counted as a request).
    pub(crate) fn failed_check(&self, why: String) {
        self.note_failure("health_check", why);
    }

    /// Requests sent to this server so far: responses and failed attempts.
    pub(crate) fn requests(&self) -> u64 {
        self.now().requests()
    }

    /// Failed attempts and 5xx responses so far.
    pub(crate) fn errors(&self) -> u64 {
        self.now().errors()
    }

    /// The last failure, if any.
    pub(crate) fn last_failure(&self) -> Option<LastFailure> {
        self.last_failure.lock().clone()
    }

    /// Keep the counters as they are now, for [`ServerStats::last_minute`]; the runtime calls
    /// this every [`SAMPLE_EVERY`].
    pub(crate) fn sample(&self) {
        let now = self.now();
        let mut samples = self.samples.lock();
        samples.push_back(now);
        while samples.len() > SAMPLES {
            samples.pop_front();
        }
    }

    /// Traffic over the last minute: the counters now against the oldest sample within it.
    pub(crate) fn last_minute(&self) -> LastMinute {
        let now = self.now();
        let samples = self.samples.lock();
        let window_ms = u64::try_from(WINDOW.as_millis()).unwrap_or(u64::MAX);
        // The oldest sample at most a window old; the ring always holds one (the start).
        let oldest = samples
            .iter()
            .find(|s| now.at.saturating_sub(s.at) <= window_ms)
            .or(samples.back())
            .copied()
            .unwrap_or_default();
        let seconds = rate_seconds(oldest.at, now.at);
        let requests = now.requests().saturating_sub(oldest.requests());
        let errors = now.errors().saturating_sub(oldest.errors());
        let latency = now.latency.since(&oldest.latency);
        let points: Vec<Sample> = samples
            .iter()
            .filter(|s| s.at >= oldest.at)
            .copied()
            .chain(std::iter::once(now))
            .collect();
        let history = points
            .windows(2)
            .map(|pair| {
                let seconds = rate_seconds(pair[0].at, pair[1].at);
                pair[1].requests().saturating_sub(pair[0].requests()) as f64 / seconds
            })
            .collect();
        LastMinute {
            requests_per_second: requests as f64 / seconds,
            error_rate: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            p50: latency.quantile(0.5),
            p99: latency.quantile(0.99),
            history,
        }
    }

    fn now(&self) -> Sample {
        Sample {
            at: now_ms(),
            latency: self.latency.counts(),
            failed: self.failed.load(Ordering::Relaxed),
            server_errors: self.server_errors.load(Ordering::Relaxed),
        }
    }

    fn note_failure(&self, reason: &'static str, message: String) {
        let at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        *self.last_failure.lock() = Some(LastFailure {
            at,
            reason,
            message,
        });
    }
}

/// The seconds to divide a count by, from `from` to `to` ([`now_ms`]): at least one, so that
/// the first requests after a start are not extrapolated to thousands per second.
fn rate_seconds(from: u64, to: u64) -> f64 {
    (to.saturating_sub(from).max(1_000)) as f64 / 1e3
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use super::*;

    #[test]
    fn counts_requests_errors_and_latency_of_the_last_minute() {
        let stats = ServerStats::default();
        for _ in 0..8 {
            stats.record(Ok(http::StatusCode::OK), Duration::from_millis(3));
        }
        stats.record(Ok(http::StatusCode::BAD_GATEWAY), Duration::from_millis(40));
        let refused = UpstreamFailure::NoHealthyServer {
            upstream: Arc::from("farm"),
        };
        stats.record(Err(&refused), Duration::from_millis(1));
        assert_eq!(stats.requests(), 10);
        assert_eq!(stats.errors(), 2);
        let failure = stats.last_failure().unwrap();
        assert_eq!(failure.reason, "no_healthy_server");
        assert!(failure.message.contains("farm"), "{}", failure.message);

        let minute = stats.last_minute();
        assert!(minute.requests_per_second > 0.0);
        assert!((minute.error_rate - 0.2).abs() < 1e-9, "{minute:?}");
        let p50 = minute.p50.unwrap();
        assert!(p50 > Duration::from_micros(2500) && p50 <= Duration::from_millis(5));
        // The 99th percentile of 9 responses falls in the bucket of the 40 ms one.
        let p99 = minute.p99.unwrap();
        assert!(p99 > Duration::from_millis(25) && p99 <= Duration::from_millis(50));
        assert_eq!(minute.history.len(), 1, "one partial interval so far");

        // Sampling keeps the counts; what came before a sample is still in the window.
        stats.sample();
        stats.sample();
        let minute = stats.last_minute();
        assert_eq!(minute.history.len(), 3);
        assert!((minute.error_rate - 0.2).abs() < 1e-9);
    }

    #[test]
    fn the_ring_keeps_one_window_of_samples() {
        let stats = ServerStats::default();
        for _ in 0..3 * SAMPLES {
            stats.sample();
        }
        assert_eq!(stats.samples.lock().len(), SAMPLES);
    }
}
