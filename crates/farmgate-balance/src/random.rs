//! Cheap randomness for spreading load: a per-thread xorshift generator and a 64-bit mixer.
//! Nothing here is cryptographic; it only has to be fast and evenly spread.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// A random 64-bit number from this thread's xorshift64* generator (no shared cache line).
pub(crate) fn random() -> u64 {
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// `r` scaled to an index below `n` (Lemire's multiply-shift: uniform for a uniform `r`, with a
/// bias below 2^-32 for any realistic `n`).
pub(crate) fn below(r: u64, n: usize) -> usize {
    ((u128::from(r) * n as u128) >> 64) as usize
}

/// splitmix64's finaliser: consecutive inputs give unrelated-looking outputs.
pub(crate) fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

/// A distinct, non-zero starting state for each thread.
fn seed() -> u64 {
    static THREADS: AtomicU64 = AtomicU64::new(0);
    mix(THREADS.fetch_add(1, Ordering::Relaxed)) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_stay_below_the_bound_and_cover_it() {
        let mut seen = [0; 7];
        for _ in 0..7_000 {
            seen[below(random(), 7)] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
        assert_eq!(below(u64::MAX, 7), 6);
        assert_eq!(below(0, 7), 0);
    }
}
