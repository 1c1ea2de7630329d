//! Weighted round robin, spread smoothly (a weight-3 server is not picked three times in a row).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Weighted round robin over servers `0..weights.len()`.
///
/// The schedule is computed once with the smooth weighted algorithm (as nginx does), so picking
/// is one atomic increment.
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
        let len = self.schedule.len();
        if len == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..len)
            .map(|i| self.schedule[(start + i) % len])
            .find(|&s| eligible(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(rr: &RoundRobin, n: usize, picks: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for _ in 0..picks {
            if let Some(i) = rr.pick(|_| true) {
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
        assert_eq!(counts(&rr, 3, 400), vec![100, 100, 200]);
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
    }
}
