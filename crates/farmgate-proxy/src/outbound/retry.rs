//! The retry budget of an upstream: retries stay a small share of its requests, so a failing
//! farm is not hammered with amplified load (Finagle's and linkerd's retry budgets work the
//! same way).

use std::sync::atomic::{AtomicI64, Ordering};

/// Most attempts a replayable request gets: the first and two retries on other servers.
pub(crate) const MAX_ATTEMPTS: usize = 3;

/// Budget in tenths of a retry: each request deposits [`DEPOSIT`], each retry costs
/// [`RETRY_COST`]. So retries stay below about one in five requests, with a reserve of ten
/// retries for a quiet upstream, and no more than a hundred saved up.
const DEPOSIT: i64 = 2;
const RETRY_COST: i64 = 10;
const RESERVE: i64 = 100;
const CAP: i64 = 1_000;

/// An upstream's retry budget, shared by every request to it.
#[derive(Debug)]
pub(crate) struct RetryBudget(AtomicI64);

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget(AtomicI64::new(RESERVE))
    }
}

impl RetryBudget {
    /// A request starts: it adds to the budget, up to the cap.
    pub(crate) fn deposit(&self) {
        let before = self.0.fetch_add(DEPOSIT, Ordering::Relaxed);
        if before > CAP {
            self.0.fetch_sub(DEPOSIT, Ordering::Relaxed);
        }
    }

    /// A retry wants to go: true if the budget pays for it (and is charged).
    pub(crate) fn withdraw(&self) -> bool {
        let before = self.0.fetch_sub(RETRY_COST, Ordering::Relaxed);
        if before >= RETRY_COST {
            return true;
        }
        self.0.fetch_add(RETRY_COST, Ordering::Relaxed);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_upstream_has_ten_retries_in_reserve() {
        let budget = RetryBudget::default();
        let granted = std::iter::repeat_with(|| budget.withdraw())
            .take(20)
            .filter(|ok| *ok)
            .count();
        assert_eq!(granted, 10);
    }

    #[test]
    fn under_load_about_one_retry_in_five_requests() {
        let budget = RetryBudget::default();
        // Spend the reserve, then count what 1,000 requests buy.
        while budget.withdraw() {}
        let mut granted = 0;
        for _ in 0..1_000 {
            budget.deposit();
            if budget.withdraw() {
                granted += 1;
            }
        }
        assert_eq!(granted, 200);
    }

    #[test]
    fn savings_are_capped() {
        let budget = RetryBudget::default();
        for _ in 0..100_000 {
            budget.deposit();
        }
        let granted = std::iter::repeat_with(|| budget.withdraw())
            .take(1_000)
            .filter(|ok| *ok)
            .count();
        assert_eq!(
            granted, 100,
            "a long quiet spell saves at most a hundred retries"
        );
    }
}
