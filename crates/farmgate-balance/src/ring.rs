//! Consistent hashing on a ring of virtual nodes (Karger et al.; the layout of ketama and of
//! nginx's `hash ... consistent`).
//!
//! Each server owns points on a 64-bit ring, about [`POINTS_PER_SERVER`] for a server of average
//! weight and proportionally more or fewer for heavier or lighter ones. Server `name`'s points are
//! `xxh64("{name}-{v}")` for `v` in `0..points`. A key belongs to the first point at or after
//! `xxh64(key)`, wrapping around; if that point's server is not eligible, the walk goes on to the
//! next point whose server is. So:
//!
//! - while the set of servers is unchanged, a key always lands on the same server, on every edge
//!   and across restarts (the layout depends only on the names, weights and this algorithm);
//! - when a server becomes ineligible, only its own keys move, and they spread over the others in
//!   proportion to their points instead of all falling on one neighbour;
//! - when a server is removed from (or added to) the list, only its keys move, provided the
//!   servers are named by something stable such as their address (see `Balancer::with_names`).
//!   With unequal weights, the other servers' point counts shift slightly with the average weight.

/// XXH64 with seed 0. The ring's layout is a contract: every edge of a farm, before and after
/// an upgrade, must send a key to the same server. XXH64 is a published algorithm (any tool
/// reproduces it: `xxhsum -H1`), and the reference vectors in the tests below pin it, whatever
/// crate computes it.
fn xxh64(input: &[u8]) -> u64 {
    xxhash_rust::xxh64::xxh64(input, 0)
}

/// Virtual nodes of a server of average weight: enough for shares within about ±10 %.
const POINTS_PER_SERVER: u64 = 160;

/// The ring: points sorted by position, each with the index of the server owning it.
#[derive(Debug)]
pub(crate) struct Ring {
    points: Box<[(u64, usize)]>,
}

impl Ring {
    /// The ring of `servers`, given as (name, weight ≥ 1).
    pub(crate) fn new(servers: &[(impl AsRef<[u8]>, u32)]) -> Ring {
        let n = servers.len() as u64;
        let total: u64 = servers.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut points = Vec::new();
        let mut label = Vec::new();
        for (server, (name, weight)) in servers.iter().enumerate() {
            // Rounded to nearest; at least one point, however light the server.
            let count =
                (2 * POINTS_PER_SERVER * n * u64::from(*weight) + total) / (2 * total.max(1));
            for v in 0..count.max(1) {
                label.clear();
                label.extend_from_slice(name.as_ref());
                label.push(b'-');
                label.extend_from_slice(v.to_string().as_bytes());
                points.push((xxh64(&label), server));
            }
        }
        // Ties (two servers on one position, vanishingly rare) are broken by index.
        points.sort_unstable();
        Ring {
            points: points.into_boxed_slice(),
        }
    }

    /// The server owning `key`: the first eligible one from the key's position on.
    ///
    /// When no server is eligible this walks the whole ring once before answering `None`.
    pub(crate) fn pick(&self, key: &[u8], eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let position = xxh64(key);
        let start = self.points.partition_point(|&(p, _)| p < position);
        self.points[start..]
            .iter()
            .chain(&self.points[..start])
            .map(|&(_, server)| server)
            .find(|&server| eligible(server))
    }
}

#[cfg(test)]
mod tests {
    use super::xxh64;
    use crate::{Balancer, Policy};

    #[test]
    fn matches_the_reference_vectors() {
        // Published by xxHash's bindings (python-xxhash README, Fastly's VCL reference).
        assert_eq!(xxh64(b""), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxh64(b"abc"), 0x44BC_2CF5_AD77_0999);
        assert_eq!(xxh64(b"xxhash"), 0x32DD_3895_2C4B_C720);
        // 31 bytes: the 8-, 4- and 1-byte tails.
        assert_eq!(
            xxh64(b"I want an unsigned 64-bit seed!"),
            0xD4CB_0A70_A2B8_C7C1
        );
        // 39 bytes: the 32-byte stripe loop.
        assert_eq!(
            xxh64(b"Nobody inspects the spammish repetition"),
            0xFBCE_A83C_8A37_8BF1
        );
    }

    const KEYS: usize = 10_000;

    fn key(i: usize) -> Vec<u8> {
        format!("user-{i}").into_bytes()
    }

    /// The server of each of the test keys.
    fn owners(b: &Balancer, eligible: impl Fn(usize) -> bool) -> Vec<usize> {
        (0..KEYS)
            .filter_map(|i| b.pick(Some(&key(i)), &eligible).map(|t| t.server()))
            .collect()
    }

    fn shares(owners: &[usize], n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for &o in owners {
            counts[o] += 1;
        }
        counts
    }

    #[test]
    fn a_key_always_lands_on_the_same_server() {
        let b = Balancer::new(Policy::Hash, &[1, 1, 1, 1]);
        let again = Balancer::new(Policy::Hash, &[1, 1, 1, 1]);
        let first = owners(&b, |_| true);
        assert_eq!(owners(&b, |_| true), first);
        assert_eq!(owners(&again, |_| true), first);
    }

    #[test]
    fn the_layout_does_not_change_between_versions() {
        // Every edge of a farm, old and new, must agree. If this fails, the ring's layout changed:
        // a rolling upgrade would move most keys.
        let b = Balancer::with_names(
            Policy::Hash,
            [
                ("10.0.0.11:8443", 1),
                ("10.0.0.12:8443", 1),
                ("10.0.0.13:8443", 2),
            ],
        );
        let servers: Vec<_> = ["alice", "bob", "carol", "dave", "erin", "frank"]
            .iter()
            .filter_map(|k| b.pick(Some(k.as_bytes()), |_| true).map(|t| t.server()))
            .collect();
        assert_eq!(servers, vec![0, 2, 0, 2, 0, 1]);
    }

    #[test]
    fn keys_spread_evenly() {
        let b = Balancer::new(Policy::Hash, &[1; 5]);
        let counts = shares(&owners(&b, |_| true), 5);
        for &c in &counts {
            assert!(c.abs_diff(KEYS / 5) < KEYS / 5 / 5, "{counts:?}");
        }
    }

    #[test]
    fn keys_spread_by_weight() {
        let b = Balancer::new(Policy::Hash, &[1, 3]);
        let counts = shares(&owners(&b, |_| true), 2);
        assert!(counts[0].abs_diff(KEYS / 4) < KEYS / 4 / 5, "{counts:?}");
    }

    #[test]
    fn when_a_server_goes_down_only_its_keys_move() {
        let n = 5;
        let b = Balancer::new(Policy::Hash, &[1; 5]);
        let before = owners(&b, |_| true);
        let after = owners(&b, |s| s != 2);
        let mut moved_to = vec![0; n];
        for (&was, &now) in before.iter().zip(&after) {
            if was == 2 {
                moved_to[now] += 1;
            } else {
                assert_eq!(was, now, "a key of a healthy server moved");
            }
        }
        let moved: usize = moved_to.iter().sum();
        assert!(moved.abs_diff(KEYS / n) < KEYS / n / 5, "{moved}");
        // Spread over the others, not dumped on one neighbour.
        for (s, &m) in moved_to.iter().enumerate().filter(|&(s, _)| s != 2) {
            assert!(m > moved / (n - 1) / 2, "server {s} took {m} of {moved}");
        }
        // And back when it returns.
        assert_eq!(owners(&b, |_| true), before);
    }

    #[test]
    fn when_a_server_is_removed_from_the_list_only_its_keys_move() {
        let names = [
            "10.0.0.1:443",
            "10.0.0.2:443",
            "10.0.0.3:443",
            "10.0.0.4:443",
        ];
        let all = Balancer::with_names(Policy::Hash, names.map(|n| (n, 1)));
        let without_second = Balancer::with_names(
            Policy::Hash,
            names.iter().filter(|&&n| n != names[1]).map(|&n| (n, 1)),
        );
        let before = owners(&all, |_| true);
        let after = owners(&without_second, |_| true);
        let mut moved = 0usize;
        for (&was, &now) in before.iter().zip(&after) {
            if was == 1 {
                moved += 1;
            } else {
                // Indices after the removed server shift down by one.
                assert_eq!(names[was], names[if now >= 1 { now + 1 } else { now }]);
            }
        }
        assert!(moved.abs_diff(KEYS / 4) < KEYS / 4 / 5, "{moved}");
    }
}
