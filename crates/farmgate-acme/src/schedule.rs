//! When to renew, and when to try again after a failure. Pure functions of times and a jitter
//! value in `[0, 1)`, so they are tested without clocks or sleeps.
//!
//! - With ACME Renewal Information (RFC 9773) the CA suggests a window; we renew at a uniformly
//!   random point in it (RFC 9773 §4.2), and at once when that point, or the whole window, has
//!   passed.
//! - Without it, at two thirds of the certificate's lifetime, brought forward by up to a
//!   fifteenth of the lifetime so edges that got their certificates together do not all renew
//!   in the same second (Let's Encrypt's 90 days: day 54 to 60; 160 hours: hour 96 to 107).
//! - After a failure, retries back off exponentially. Failures to reach the CA start at 5 s and
//!   grow to 10 minutes; answers where the CA said no (a failed validation, a refused order)
//!   start at 10 minutes and grow to 6 hours, to stay clear of the CA's rate limits. Each delay
//!   varies by ±10 %. The current certificate is served all along.

use std::time::{Duration, SystemTime};

/// What decided the next renewal time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenewalBasis {
    /// The CA's renewal information (ARI, RFC 9773).
    RenewalInfo,
    /// Two thirds of the certificate's lifetime (the CA offers no renewal information).
    Lifetime,
    /// A retry after a failed attempt.
    Retry,
    /// No certificate from the CA yet: order now.
    FirstIssue,
    /// Asked for by an operator ([`Acme::renew_now`](crate::Acme::renew_now)).
    Requested,
}

impl RenewalBasis {
    /// A word for logs and status pages.
    pub fn as_str(&self) -> &'static str {
        match self {
            RenewalBasis::RenewalInfo => "renewal_info",
            RenewalBasis::Lifetime => "lifetime",
            RenewalBasis::Retry => "retry",
            RenewalBasis::FirstIssue => "first_issue",
            RenewalBasis::Requested => "requested",
        }
    }
}

/// The share of the lifetime after which a certificate is renewed without ARI.
const RENEW_AT: f64 = 2.0 / 3.0;
/// The share of the lifetime by which jitter may bring that forward.
const JITTER_SHARE: f64 = 1.0 / 15.0;

/// Without renewal information: two thirds into the lifetime, minus up to a fifteenth of it.
pub(crate) fn lifetime_renewal(
    not_before: SystemTime,
    not_after: SystemTime,
    jitter: f64,
) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    let share = RENEW_AT - JITTER_SHARE * jitter.clamp(0.0, 1.0);
    not_before + lifetime.mul_f64(share)
}

/// With renewal information: a point in the suggested window chosen by `jitter`, and never
/// before `now` (a window that has begun or passed means "renew now").
pub(crate) fn window_renewal(
    start: SystemTime,
    end: SystemTime,
    now: SystemTime,
    jitter: f64,
) -> SystemTime {
    let width = end.duration_since(start).unwrap_or_default();
    let point = start + width.mul_f64(jitter.clamp(0.0, 1.0));
    point.max(now)
}

/// How long to wait before the next attempt after `failures` consecutive failures (at least 1).
pub(crate) fn retry_delay(failures: u32, refused_by_ca: bool, jitter: f64) -> Duration {
    let (first, most) = if refused_by_ca {
        (Duration::from_secs(600), Duration::from_secs(6 * 3600))
    } else {
        (Duration::from_secs(5), Duration::from_secs(600))
    };
    let doublings = failures.saturating_sub(1).min(20);
    let delay = first.saturating_mul(1 << doublings).min(most);
    delay.mul_f64(0.9 + 0.2 * jitter.clamp(0.0, 1.0))
}

/// How long to wait before asking for renewal information again, given the server's
/// `Retry-After` (RFC 9773 §4.3): at least a minute, at most a day.
pub(crate) fn recheck_after(retry_after: Duration) -> Duration {
    retry_after.clamp(Duration::from_secs(60), Duration::from_secs(24 * 3600))
}

/// A jitter value in `[0, 1)` from the system's random source.
pub(crate) fn jitter() -> f64 {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // Jitter spreads load; without randomness the middle of the range is as good.
        return 0.5;
    }
    // 53 random bits: every value is exact in an f64.
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn at(days: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + days * DAY)
    }

    fn days_between(a: SystemTime, b: SystemTime) -> f64 {
        b.duration_since(a).unwrap_or_default().as_secs_f64() / DAY as f64
    }

    #[test]
    fn ninety_day_certificate_renews_between_day_54_and_60() {
        let (issued, expires) = (at(0), at(90));
        let latest = lifetime_renewal(issued, expires, 0.0);
        let earliest = lifetime_renewal(issued, expires, 1.0);
        assert!((days_between(issued, latest) - 60.0).abs() < 1e-6);
        assert!((days_between(issued, earliest) - 54.0).abs() < 1e-6);
        let middle = lifetime_renewal(issued, expires, 0.5);
        assert!(earliest < middle && middle < latest);
    }

    #[test]
    fn short_lived_certificate_renews_with_days_to_spare() {
        let issued = at(0);
        let expires = issued + Duration::from_secs(160 * 3600);
        let renew = lifetime_renewal(issued, expires, 0.99);
        let left = expires.duration_since(renew).unwrap_or_default();
        assert!(left >= Duration::from_secs(53 * 3600), "{left:?}");
    }

    #[test]
    fn a_certificate_with_a_backwards_lifetime_renews_at_once() {
        assert_eq!(lifetime_renewal(at(10), at(5), 0.3), at(10));
    }

    #[test]
    fn renewal_window_is_honoured_within_its_bounds() {
        let now = at(0);
        let (start, end) = (at(30), at(32));
        assert_eq!(window_renewal(start, end, now, 0.0), start);
        assert_eq!(window_renewal(start, end, now, 0.5), at(31));
        assert!(window_renewal(start, end, now, 0.999) < end);
    }

    #[test]
    fn a_window_in_the_past_means_now() {
        let now = at(40);
        assert_eq!(window_renewal(at(30), at(32), now, 0.7), now);
        assert_eq!(window_renewal(at(39), at(41), now, 0.0), now);
    }

    #[test]
    fn unreachable_ca_is_retried_soon_then_less_often() {
        let delays: Vec<u64> = (1..=10)
            .map(|n| retry_delay(n, false, 0.5).as_secs())
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
        assert!(retry_delay(u32::MAX, false, 0.5) == Duration::from_secs(600));
    }

    #[test]
    fn a_refusal_backs_off_to_spare_the_rate_limits() {
        assert_eq!(retry_delay(1, true, 0.5), Duration::from_secs(600));
        assert_eq!(retry_delay(3, true, 0.5), Duration::from_secs(2400));
        assert_eq!(retry_delay(50, true, 0.5), Duration::from_secs(6 * 3600));
    }

    #[test]
    fn retry_jitter_is_ten_percent_either_way() {
        assert_eq!(retry_delay(2, false, 0.0), Duration::from_secs(9));
        assert_eq!(retry_delay(2, false, 1.0), Duration::from_secs(11));
    }

    #[test]
    fn renewal_information_is_rechecked_between_a_minute_and_a_day() {
        assert_eq!(recheck_after(Duration::ZERO), Duration::from_secs(60));
        assert_eq!(
            recheck_after(Duration::from_secs(6 * 3600)),
            Duration::from_secs(6 * 3600)
        );
        assert_eq!(
            recheck_after(Duration::from_secs(90 * DAY)),
            Duration::from_secs(DAY)
        );
    }

    #[test]
    fn jitter_is_a_fraction() {
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }
}
