//! Weighted round robin, spread smoothly (a weight-3 server is not picked three times in a row).

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::random::{below, mix};

/// Turns re-drawn at random before walking the schedule, when a turn's server is ineligible.
const REDRAWS: usize = 8;

/// Weighted round robin over servers `0..weights.len()`.
///
/// The schedule is computed once with the smooth weighted algorithm (as nginx does), so picking
/// is one atomic increment. The turn of an ineligible server goes to a pseudo-random other turn,
/// so its share is spread over the eligible servers by weight rather than all given to the server
/// after it.
///
/// [`Balancer`](crate::Balancer) with [`Policy::RoundRobin`](crate::Policy::RoundRobin) wraps this
/// with in-flight bookkeeping; prefer it.
#[derive(Debug)]
pub struct RoundRobin {
    schedule: Vec<usize>,
    next: AtomicUsize,
}

impl RoundRobin {
    /// A balancer over servers with these weights (each ≥ 1; a weight of 0 is treated as 1).
    pub fn new(weights: &[u32]) -> RoundRobin {
        let weights: Vec<i64> = weights.iter().map(|&w| i64::from(w.max(1))).collect();
        let total: i64 = weights.iter().sum();
        let mut current = vec![0i64; weights.len()];
        let mut schedule = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for _ in 0..total {
            let mut best = 0;
            for (i, w) in weights.iter().enumerate() {
                current[i] += w;
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            schedule.push(best);
        }
        RoundRobin {
            schedule,
            next: AtomicUsize::new(0),
        }
    }

    /// The next server for which `eligible` holds, or `None` if none does.
    pub fn pick(&self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        self.pick_at(self.turn(), eligible)
    }

    /// Take the next turn.
    pub(crate) fn turn(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The server for `turn`, or the eligible server of a turn drawn at random from it.
    pub(crate) fn pick_at(&self, turn: usize, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.schedule.len();
        if len == 0 {
            return None;
        }
        let server = self.schedule[turn % len];
        if eligible(server) {
            return Some(server);
        }
        // Rejection sampling: each redraw lands on a server with probability proportional to its
        // weight. If most servers are out, the walk below finishes the job (slightly unevenly).
        let mut draw = turn as u64;
        for _ in 0..REDRAWS {
            draw = mix(draw);
            let server = self.schedule[below(draw, len)];
            if eligible(server) {
                return Some(server);
            }
        }
        let start = below(draw, len);
        (0..len)
            .map(|i| self.schedule[(start + i) % len])
            .find(|&s| eligible(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(
        rr: &RoundRobin,
        n: usize,
        picks: usize,
        eligible: impl Fn(usize) -> bool,
    ) -> Vec<usize> {
        let mut c = vec![0; n];
        for _ in 0..picks {
            if let Some(i) = rr.pick(&eligible) {
                c[i] += 1;
            }
        }
        c
    }

    #[test]
    fn equal_weights_take_turns() {
        let rr = RoundRobin::new(&[1, 1, 1]);
        let first: Vec<_> = (0..6).filter_map(|_| rr.pick(|_| true)).collect();
        assert_eq!(first, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weights_are_respected_and_spread() {
        let rr = RoundRobin::new(&[1, 1, 2]);
        assert_eq!(counts(&rr, 3, 400, |_| true), vec![100, 100, 200]);
        let rr = RoundRobin::new(&[5, 1]);
        let seq: Vec<_> = (0..6).filter_map(|_| rr.pick(|_| true)).collect();
        // Smooth: the light server is not pushed to the end of the cycle.
        assert_eq!(seq, vec![0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn ineligible_servers_are_skipped() {
        let rr = RoundRobin::new(&[1, 1, 1]);
        let picks: Vec<_> = (0..4).filter_map(|_| rr.pick(|s| s != 1)).collect();
        assert!(picks.iter().all(|&p| p != 1));
        assert_eq!(rr.pick(|_| false), None);
        assert_eq!(RoundRobin::new(&[]).pick(|_| true), None);
    }

    #[test]
    fn the_share_of_a_server_that_is_out_is_spread_by_weight() {
        // Server 0 is out: its third of the turns goes to 1 and 2 in the ratio 1:2, not all to 1.
        let rr = RoundRobin::new(&[1, 1, 2]);
        let c = counts(&rr, 3, 12_000, |s| s != 0);
        assert_eq!(c[0], 0);
        assert!(c[1].abs_diff(4_000) < 200, "{c:?}");
        assert!(c[2].abs_diff(8_000) < 200, "{c:?}");
    }

    #[test]
    fn most_servers_out_still_finds_the_one_left() {
        let rr = RoundRobin::new(&[1; 50]);
        let c = counts(&rr, 50, 1_000, |s| s == 37);
        assert_eq!(c[37], 1_000);
    }
}
