//! Peak-EWMA latency estimate of one server, as in Finagle and linkerd.
//!
//! The estimate is an exponentially weighted moving average with a time constant
//! ([`DECAY`]): a sample taken `dt` after the previous one moves the estimate by `1 - e^(-dt/τ)`
//! of the way towards itself. It is *peak*-sensitive: a sample slower than the estimate replaces it
//! at once, so a server that turns slow is shunned on its next response, while recovery is gradual.
//! Between samples the estimate decays towards zero, so a server shunned for being slow is tried
//! again after a while instead of being starved forever.
//!
//! A failure is recorded as twice the slower of its latency and the current estimate (and at least
//! [`FAILURE_FLOOR`] doubled), so a server that fails fast does not look fast.
//!
//! The estimate and the time of its last sample share one `AtomicU64`, updated by compare-and-swap:
//! no lock, and a sample is never half-applied.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[cfg(test)]
use std::sync::atomic::AtomicU32;

/// The time constant τ of the moving average (linkerd's and Finagle's default).
pub(crate) const DECAY: Duration = Duration::from_secs(10);

/// The least latency a failure counts as, before doubling.
pub(crate) const FAILURE_FLOOR: Duration = Duration::from_millis(1);

/// No estimate above this is kept (one minute, in nanoseconds): it keeps repeated failures finite.
const CEILING_NS: f64 = 60e9;

/// The word of a server that has not answered yet (the estimate's bits would be a NaN).
const UNMEASURED: u64 = u64::MAX;

/// A server's latency estimate in nanoseconds, with the millisecond it was last updated.
#[derive(Debug)]
pub(crate) struct PeakEwma {
    /// High 32 bits: the estimate as `f32` bits; low 32 bits: [`Clock`] milliseconds.
    word: AtomicU64,
}

impl PeakEwma {
    pub(crate) fn new() -> PeakEwma {
        PeakEwma {
            word: AtomicU64::new(UNMEASURED),
        }
    }

    /// The estimate at `now` in nanoseconds, decayed since the last sample; `None` if the server
    /// has never answered.
    pub(crate) fn estimate(&self, now: u32) -> Option<f64> {
        let word = self.word.load(Ordering::Relaxed);
        (word != UNMEASURED).then(|| {
            let (estimate, stamp) = unpack(word);
            estimate * weight_of_past(stamp, now)
        })
    }

    /// Record one response that took `latency` and finished at `now`.
    pub(crate) fn observe(&self, latency: Duration, failed: bool, now: u32) {
        let latency = latency.as_nanos() as f64;
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            let next = if word == UNMEASURED {
                let sample = if failed {
                    penalty(latency, 0.0)
                } else {
                    latency
                };
                pack(sample, now)
            } else {
                let (estimate, stamp) = unpack(word);
                let sample = if failed {
                    penalty(latency, estimate)
                } else {
                    latency
                };
                let estimate = if sample > estimate {
                    sample
                } else {
                    let w = weight_of_past(stamp, now);
                    estimate * w + sample * (1.0 - w)
                };
                // Another thread may have read the clock later than we did and stored first.
                pack(estimate, later(stamp, now))
            };
            match self
                .word
                .compare_exchange_weak(word, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(current) => word = current,
            }
        }
    }
}

/// Milliseconds since a balancer was built: the time base of its estimates.
///
/// The count wraps after 49 days; only differences of less than 24 days are ever taken, which
/// covers any realistic gap between two responses of one server (and a longer gap only means a
/// stale estimate decays less than it should).
#[derive(Debug)]
pub(crate) enum Clock {
    /// The monotonic clock, counted from this instant.
    System(Instant),
    /// Time that moves only when a test says so.
    #[cfg(test)]
    Manual(AtomicU32),
}

impl Clock {
    pub(crate) fn system() -> Clock {
        Clock::System(Instant::now())
    }

    /// A clock with the same time base, for a balancer that carries estimates made on this
    /// one's.
    pub(crate) fn same(&self) -> Clock {
        match self {
            Clock::System(epoch) => Clock::System(*epoch),
            #[cfg(test)]
            Clock::Manual(ms) => Clock::Manual(AtomicU32::new(ms.load(Ordering::Relaxed))),
        }
    }

    pub(crate) fn now(&self) -> u32 {
        match self {
            // Truncation is the intended wrap-around.
            Clock::System(epoch) => epoch.elapsed().as_millis() as u32,
            #[cfg(test)]
            Clock::Manual(ms) => ms.load(Ordering::Relaxed),
        }
    }

    #[cfg(test)]
    pub(crate) fn advance(&self, by: Duration) {
        if let Clock::Manual(ms) = self {
            ms.fetch_add(by.as_millis() as u32, Ordering::Relaxed);
        }
    }
}

/// How much of an estimate made at `stamp` survives at `now`: `e^(-dt/τ)`.
fn weight_of_past(stamp: u32, now: u32) -> f64 {
    let dt = elapsed(stamp, now);
    if dt == 0 {
        1.0
    } else {
        (-f64::from(dt) / DECAY.as_millis() as f64).exp()
    }
}

/// Milliseconds from `stamp` to `now` across the wrap-around; zero if `now` is (slightly) earlier.
fn elapsed(stamp: u32, now: u32) -> u32 {
    let dt = now.wrapping_sub(stamp);
    if dt > u32::MAX / 2 { 0 } else { dt }
}

fn later(stamp: u32, now: u32) -> u32 {
    if elapsed(stamp, now) == 0 { stamp } else { now }
}

fn penalty(latency: f64, estimate: f64) -> f64 {
    let floor = FAILURE_FLOOR.as_nanos() as f64;
    2.0 * latency.max(estimate).max(floor)
}

fn pack(estimate: f64, stamp: u32) -> u64 {
    let estimate = estimate.clamp(0.0, CEILING_NS) as f32;
    (u64::from(estimate.to_bits()) << 32) | u64::from(stamp)
}

fn unpack(word: u64) -> (f64, u32) {
    let estimate = f32::from_bits((word >> 32) as u32);
    (f64::from(estimate), word as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1e6;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn close(actual: Option<f64>, expected: f64) -> bool {
        actual.is_some_and(|a| (a - expected).abs() <= expected * 1e-4)
    }

    #[test]
    fn a_new_server_has_no_estimate() {
        assert_eq!(PeakEwma::new().estimate(0), None);
    }

    #[test]
    fn a_slower_sample_raises_the_estimate_at_once() {
        let e = PeakEwma::new();
        e.observe(ms(5), false, 1_000);
        e.observe(ms(100), false, 1_001);
        assert!(close(e.estimate(1_001), 100.0 * MS));
    }

    #[test]
    fn a_faster_sample_pulls_the_estimate_down_by_the_time_constant() {
        let e = PeakEwma::new();
        e.observe(ms(100), false, 0);
        // One time constant later, the old estimate keeps a weight of 1/e.
        e.observe(ms(10), false, 10_000);
        let w = (-1.0f64).exp();
        let expected = 100.0 * MS * w + 10.0 * MS * (1.0 - w);
        assert!(close(e.estimate(10_000), expected));
        // Samples within the same millisecond carry no weight of time: the estimate holds.
        e.observe(ms(0), false, 10_000);
        assert!(close(e.estimate(10_000), expected));
    }

    #[test]
    fn an_idle_estimate_decays_towards_zero() {
        let e = PeakEwma::new();
        e.observe(ms(100), false, 0);
        assert!(close(e.estimate(10_000), 100.0 * MS * (-1.0f64).exp()));
        assert!(close(e.estimate(20_000), 100.0 * MS * (-2.0f64).exp()));
    }

    #[test]
    fn a_clock_read_slightly_earlier_by_another_thread_is_harmless() {
        let e = PeakEwma::new();
        e.observe(ms(50), false, 5_000);
        // A thread that read the clock at 4_999 stores after the one that read 5_000.
        e.observe(ms(10), false, 4_999);
        assert!(close(e.estimate(5_000), 50.0 * MS));
        assert_eq!(unpack(e.word.load(Ordering::Relaxed)).1, 5_000);
    }

    #[test]
    fn the_clock_may_wrap() {
        let e = PeakEwma::new();
        e.observe(ms(100), false, u32::MAX - 4_999);
        assert!(close(e.estimate(5_000), 100.0 * MS * (-1.0f64).exp()));
    }

    #[test]
    fn a_fast_failure_counts_as_slow() {
        let e = PeakEwma::new();
        e.observe(Duration::from_micros(50), true, 0);
        assert!(close(e.estimate(0), 2.0 * MS));
        e.observe(ms(5), false, 1);
        e.observe(Duration::from_micros(50), true, 2);
        // Twice the estimate, which the 5 ms sample had raised to 5 ms.
        assert!(close(e.estimate(2), 10.0 * MS));
    }

    #[test]
    fn repeated_failures_stay_finite() {
        let e = PeakEwma::new();
        for now in 0..200 {
            e.observe(ms(1), true, now);
        }
        assert!(close(e.estimate(199), CEILING_NS));
    }
}
