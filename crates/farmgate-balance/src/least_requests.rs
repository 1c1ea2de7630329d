//! Least requests: the eligible server with the fewest requests in flight per unit of weight.

use std::cmp::Ordering as Cmp;
use std::sync::atomic::Ordering;

use crate::Server;
use crate::random::{below, mix};
use crate::round_robin::RoundRobin;

/// The eligible server with the least `in_flight / weight`.
///
/// Ties go to the round robin's server for this turn when it is among them, so idle servers share
/// requests by weight; otherwise to one of the tied servers drawn from the turn, so a busy or
/// ineligible server's share does not all fall on the server after it.
pub(crate) fn pick(
    servers: &[Server],
    round_robin: &RoundRobin,
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    let turn = round_robin.turn();
    let preferred = round_robin.pick_at(turn, &eligible)?;
    let mut best: Option<Load> = None;
    let mut tied = 0;
    let mut preferred_load = None;
    for (i, server) in servers.iter().enumerate() {
        if !eligible(i) {
            continue;
        }
        let load = Load::of(i, server);
        if i == preferred {
            preferred_load = Some(load);
        }
        match best.map(|b| load.cmp(&b)) {
            None | Some(Cmp::Less) => {
                best = Some(load);
                tied = 1;
            }
            Some(Cmp::Equal) => tied += 1,
            Some(Cmp::Greater) => {}
        }
    }
    let best = best?;
    if preferred_load.is_some_and(|p| p.cmp(&best) == Cmp::Equal) {
        return Some(preferred);
    }
    if tied == 1 {
        return Some(best.server);
    }
    // Loads may have moved since the first pass; then the first least-loaded server will do.
    let nth = below(mix(turn as u64), tied);
    let again = (0..servers.len())
        .filter(|&i| eligible(i) && Load::of(i, &servers[i]).cmp(&best) == Cmp::Equal)
        .nth(nth);
    Some(again.unwrap_or(best.server))
}

/// A server's requests in flight and weight, ordered by `in_flight / weight`.
#[derive(Clone, Copy)]
struct Load {
    server: usize,
    in_flight: u64,
    weight: u64,
}

impl Load {
    fn of(index: usize, server: &Server) -> Load {
        Load {
            server: index,
            in_flight: server.load.in_flight.load(Ordering::Relaxed) as u64,
            weight: u64::from(server.weight),
        }
    }

    /// Compare `in_flight / weight` without dividing.
    fn cmp(&self, other: &Load) -> Cmp {
        let a = self.in_flight.saturating_mul(other.weight);
        let b = other.in_flight.saturating_mul(self.weight);
        a.cmp(&b)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Balancer, Policy};

    fn counts(balancer: &Balancer, picks: usize) -> Vec<usize> {
        let mut counts = vec![0; balancer.len()];
        for _ in 0..picks {
            if let Some(ticket) = balancer.pick(None, |_| true) {
                counts[ticket.server()] += 1;
            }
        }
        counts
    }

    #[test]
    fn idle_servers_share_requests_by_weight() {
        let b = Balancer::new(Policy::LeastRequests, &[1, 1, 2]);
        assert_eq!(counts(&b, 400), vec![100, 100, 200]);
    }

    #[test]
    fn ties_do_not_all_go_to_the_first_server() {
        let b = Balancer::new(Policy::LeastRequests, &[1, 1, 1]);
        assert_eq!(counts(&b, 3), vec![1, 1, 1]);
    }

    #[test]
    fn requests_in_flight_spread_by_weight() {
        let b = Balancer::new(Policy::LeastRequests, &[1, 2, 3]);
        let held: Vec<_> = (0..600).filter_map(|_| b.pick(None, |_| true)).collect();
        assert_eq!(held.len(), 600);
        let in_flight: Vec<_> = (0..3).map(|i| b.in_flight(i)).collect();
        assert_eq!(in_flight, vec![100, 200, 300]);
    }

    #[test]
    fn a_server_with_many_requests_in_flight_is_avoided() {
        let b = Balancer::new(Policy::LeastRequests, &[1, 1, 1]);
        let _slow: Vec<_> = (0..10).filter_map(|_| b.pick(None, |i| i == 0)).collect();
        assert_eq!(b.in_flight(0), 10);
        let c = counts(&b, 3_000);
        assert_eq!(c[0], 0);
        // Server 0's turns are shared, not all handed to server 1.
        assert!(c[1].abs_diff(1_500) < 100, "{c:?}");
    }

    #[test]
    fn a_heavier_server_takes_more_before_it_counts_as_busy() {
        // Server 1 (weight 4) with 3 in flight is less loaded than server 0 (weight 1) with 1.
        let b = Balancer::new(Policy::LeastRequests, &[1, 4]);
        let _a = b.pick(None, |i| i == 0);
        let _b: Vec<_> = (0..3).filter_map(|_| b.pick(None, |i| i == 1)).collect();
        let next = b.pick(None, |_| true).map(|t| t.server());
        assert_eq!(next, Some(1));
    }
}
