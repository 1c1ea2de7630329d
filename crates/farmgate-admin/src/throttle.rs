//! Log lines about events that can come in floods (refused requests, failed accepts): at most
//! one a second, each saying how many went unlogged before it.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// At most one line per this long.
const EVERY: Duration = Duration::from_secs(1);

/// Decides which events of a kind get a log line.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    /// When a line was last logged, and how many events went unlogged since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    /// Whether this event gets a line now; if so, how many events went unlogged since the
    /// last line.
    pub(crate) fn admit(&self) -> Option<u64> {
        let now = Instant::now();
        let mut state = self.state.lock();
        let (last, unlogged) = &mut *state;
        if last.is_some_and(|t| now.duration_since(t) < EVERY) {
            *unlogged += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(unlogged))
    }
}

/// `" (N more since the last such line)"`, or nothing for 0.
pub(crate) fn unlogged(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more since the last such line)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_gets_one_line_and_the_next_line_counts_the_rest() {
        let throttle = Throttle::default();
        assert_eq!(throttle.admit(), Some(0));
        for _ in 0..1000 {
            assert_eq!(throttle.admit(), None);
        }
        // A second later (moved back by hand rather than waited for).
        throttle.state.lock().0 = Instant::now().checked_sub(EVERY);
        assert_eq!(throttle.admit(), Some(1000));
        assert_eq!(throttle.admit(), None);
        assert_eq!(unlogged(0), "");
        assert_eq!(unlogged(3), " (3 more since the last such line)");
    }
}
