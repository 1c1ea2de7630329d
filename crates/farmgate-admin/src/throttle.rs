//! Log lines about events that can come in floods (refused clients, failed accepts, a
//! saturated upstream): at most one a second, each saying how many went unlogged before it.
//! Lock-free: under attack, every refusal passes here.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// At most one line per this many milliseconds.
const EVERY_MS: u64 = 1_000;

/// Decides which events of a kind get a log line.
#[derive(Debug, Default)]
pub struct Throttle {
    /// When a line was last logged, in [`now_ms`] plus one (0: never).
    last: AtomicU64,
    /// Events that got no line since the last one.
    unlogged: AtomicU64,
}

impl Throttle {
    /// Whether this event gets a line now; if so, how many events went unlogged since the
    /// last line.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(now_ms() + 1)
    }

    fn admit_at(&self, now: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= EVERY_MS;
        if !due
            || self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.unlogged.swap(0, Ordering::Relaxed))
    }
}

/// `" (N more since the last such line)"`, or nothing for 0.
pub fn unlogged(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more since the last such line)")
    }
}

/// Milliseconds since the first call in this process.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_gets_one_line_and_the_next_line_counts_the_rest() {
        let throttle = Throttle::default();
        assert_eq!(throttle.admit_at(5_000), Some(0));
        for i in 0..1000 {
            assert_eq!(throttle.admit_at(5_000 + i % 999), None);
        }
        assert_eq!(throttle.admit_at(6_000), Some(1000));
        assert_eq!(throttle.admit_at(6_001), None);
        assert_eq!(throttle.admit_at(7_000), Some(1));
        assert_eq!(
            Throttle::default().admit_at(1),
            Some(0),
            "at the clock's start"
        );
        assert_eq!(unlogged(0), "");
        assert_eq!(unlogged(3), " (3 more since the last such line)");
    }
}
