//! Power of two choices over peak-EWMA latency: of two random eligible servers, the cheaper.
//!
//! A server's cost is its latency estimate times the requests it would then have in flight
//! (`ewma × (in_flight + 1)`), divided by its weight. A server that has never answered costs
//! nothing while idle, so a new server is tried at once; once it has a request in flight and no
//! answer yet it costs more than any measured server, so a burst is not all sent to an unknown.

use std::sync::atomic::Ordering;

use crate::Server;
use crate::random::{below, random};

/// The cost of a server that has not answered yet while it has requests in flight: above any
/// estimate (which is capped at a minute), below infinity so such servers still compare by load.
const UNMEASURED_BUSY_NS: f64 = 1e15;

/// The cheaper of two distinct eligible servers drawn at random; `now` is the estimates' clock.
pub(crate) fn pick(
    servers: &[Server],
    now: u32,
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    let n = servers.len();
    if n < 2 {
        return (n == 1 && eligible(0)).then_some(0);
    }
    let (a, b) = two_distinct(n);
    let (a, b) = if eligible(a) && eligible(b) {
        (a, b)
    } else {
        // Uncommon: redraw among the eligible only, which keeps every eligible pair equally
        // likely overall.
        let m = (0..n).filter(|&i| eligible(i)).count();
        let nth = |k: usize| (0..n).filter(|&i| eligible(i)).nth(k);
        match m {
            0 => return None,
            1 => return nth(0),
            _ => {
                let (a, b) = two_distinct(m);
                (nth(a)?, nth(b)?)
            }
        }
    };
    Some(if cost(&servers[a], now) <= cost(&servers[b], now) {
        a
    } else {
        b
    })
}

fn cost(server: &Server, now: u32) -> f64 {
    let in_flight = server.load.in_flight.load(Ordering::Relaxed) as f64;
    let cost = match server.load.latency.estimate(now) {
        Some(estimate) => estimate * (in_flight + 1.0),
        None if in_flight == 0.0 => 0.0,
        None => UNMEASURED_BUSY_NS + in_flight,
    };
    cost / f64::from(server.weight)
}

/// Two distinct indices below `n` (at least 2), uniformly.
fn two_distinct(n: usize) -> (usize, usize) {
    let a = below(random(), n);
    let b = below(random(), n - 1);
    (a, if b >= a { b + 1 } else { b })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{Balancer, Policy};

    /// Simulate `steps` requests one millisecond apart, each answered at once by server `i` in
    /// `latency[i]`; returns how many each server got.
    fn run(b: &Balancer, latency: &[Duration], steps: usize) -> Vec<usize> {
        let mut counts = vec![0; b.len()];
        for _ in 0..steps {
            b.clock.advance(Duration::from_millis(1));
            if let Some(ticket) = b.pick(None, |_| true) {
                counts[ticket.server()] += 1;
                let latency = latency[ticket.server()];
                ticket.finish(latency, false);
            }
        }
        counts
    }

    /// Server `i` answers one request, a millisecond from now, in `latency`.
    fn answer(b: &Balancer, i: usize, latency: Duration) {
        b.clock.advance(Duration::from_millis(1));
        if let Some(t) = b.pick(None, |s| s == i) {
            t.finish(latency, false);
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_slow_server_gets_less_traffic() {
        let b = Balancer::with_manual_clock(Policy::P2cEwma, &[1, 1, 1]);
        let counts = run(&b, &[ms(5), ms(5), ms(100)], 10_000);
        // After its first answer it loses every comparison until its estimate decays (~30 s).
        assert!(counts[2] <= 3, "{counts:?}");
        assert!(counts[0].abs_diff(counts[1]) < 1_000, "{counts:?}");
    }

    #[test]
    fn a_slow_server_is_tried_again_once_its_estimate_decays() {
        let b = Balancer::with_manual_clock(Policy::P2cEwma, &[1, 1, 1]);
        let latency = [ms(5), ms(5), ms(100)];
        run(&b, &latency, 1_000);
        // 100 ms decays below 5 ms after τ·ln 20 ≈ 30 s, then one answer raises it again.
        let counts = run(&b, &latency, 35_000);
        assert!((1..=3).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn a_recovered_server_wins_its_traffic_back() {
        let b = Balancer::with_manual_clock(Policy::P2cEwma, &[1, 1]);
        run(&b, &[ms(5), ms(100)], 1_000);
        // Server 1 becomes the faster one; it must be tried again to find out.
        let latency = [ms(50), ms(5)];
        run(&b, &latency, 30_000);
        let counts = run(&b, &latency, 10_000);
        assert!(counts[0] < 100, "{counts:?}");
    }

    #[test]
    fn a_new_server_gets_traffic_at_once() {
        let b = Balancer::with_manual_clock(Policy::P2cEwma, &[1, 1]);
        answer(&b, 0, ms(5));
        assert_eq!(b.pick(None, |_| true).map(|t| t.server()), Some(1));
    }

    #[test]
    fn an_unanswered_new_server_is_not_flooded() {
        let b = Balancer::with_manual_clock(Policy::P2cEwma, &[1, 1]);
        answer(&b, 0, ms(5));
        let _waiting = b.pick(None, |i| i == 1);
        let counts = run(&b, &[ms(5), ms(5)], 100);
        assert_eq!(counts, vec![100, 0]);
    }

    #[test]
    fn requests_in_flight_raise_the_cost() {
        let b = Balancer::with_manual_clock(Policy::P2cEwma, &[1, 1]);
        run(&b, &[ms(5), ms(5)], 100);
        let _held = b.pick(None, |i| i == 0);
        // Equal estimates: the server with one in flight costs twice as much.
        let counts = run(&b, &[ms(5), ms(5)], 100);
        assert_eq!(counts, vec![0, 100]);
    }

    #[test]
    fn a_server_failing_fast_does_not_attract_traffic() {
        let b = Balancer::with_manual_clock(Policy::P2cEwma, &[1, 1]);
        let mut counts = [0; 2];
        for _ in 0..1_000 {
            b.clock.advance(ms(1));
            if let Some(t) = b.pick(None, |_| true) {
                counts[t.server()] += 1;
                let (latency, failed) = match t.server() {
                    0 => (ms(5), false),
                    _ => (Duration::from_micros(100), true),
                };
                t.finish(latency, failed);
            }
        }
        assert!(counts[1] <= 5, "{counts:?}");
    }

    #[test]
    fn weight_divides_the_cost() {
        let b = Balancer::with_manual_clock(Policy::P2cEwma, &[1, 4]);
        // Server 1 is three times slower but has four times the weight.
        let counts = run(&b, &[ms(5), ms(15)], 1_000);
        assert!(counts[1] > 900, "{counts:?}");
    }

    #[test]
    fn every_eligible_pair_is_drawn() {
        // With server 1 out, servers 0 and 2 still both get traffic.
        let b = Balancer::with_manual_clock(Policy::P2cEwma, &[1, 1, 1]);
        let mut counts = [0; 3];
        for _ in 0..1_000 {
            if let Some(t) = b.pick(None, |i| i != 1) {
                counts[t.server()] += 1;
            }
        }
        assert_eq!(counts[1], 0);
        assert!(counts[0] > 300 && counts[2] > 300, "{counts:?}");
    }
}
