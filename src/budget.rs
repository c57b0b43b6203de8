//! The retry budget of a pool: retries at most 20% of its requests over a sliding 10 s window,
//! plus a reserve of 3 per second of the window (30), so a dying tier is not hammered by retry
//! storms while a pool that just started, or sees little traffic, can still retry at all. This is
//! Finagle's `RetryBudget(ttl = 10s, minRetriesPerSec = 3, percentCanRetry = 0.2)`.
//!
//! Lock-free: a ring of 10 one-second buckets, each an epoch-second stamp and two counters. The
//! first writer of a new second claims its bucket with a compare-exchange and zeroes it; a count
//! racing with that reset may be lost, which makes the budget approximate by a request or two,
//! never unbounded. The common path (`record_request`) is one load and one `fetch_add`; the
//! window (ten buckets) is summed only when a retry is wanted.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const BUCKETS: u64 = 10;
/// Retries may be this share of requests over the window (1/5 = 20%).
const RATIO_DIVISOR: u64 = 5;
/// Retries allowed per second of the window whatever the request count.
const MIN_PER_SECOND: u64 = 3;

#[derive(Debug, Default)]
struct Bucket {
    /// Epoch second (of `clock::now_ms()`) this bucket counts, plus one; 0 = never used.
    second: AtomicU64,
    requests: AtomicU32,
    retries: AtomicU32,
}

/// Per-pool retry budget; times are `clock::now_ms()` values.
#[derive(Debug, Default)]
pub struct RetryBudget {
    buckets: [Bucket; BUCKETS as usize],
}

impl RetryBudget {
    /// The bucket of `second`, claimed and zeroed if it still counts an older second.
    #[inline]
    fn bucket(&self, second: u64) -> &Bucket {
        let b = &self.buckets[(second % BUCKETS) as usize];
        let seen = b.second.load(Ordering::Relaxed);
        if seen != second + 1
            && b.second
                .compare_exchange(seen, second + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            b.requests.store(0, Ordering::Relaxed);
            b.retries.store(0, Ordering::Relaxed);
        }
        b
    }

    /// Counts one client request.
    #[inline]
    pub fn record_request(&self, now_ms: u64) {
        self.bucket(now_ms / 1000)
            .requests
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Whether one more retry fits; if so it is counted.
    pub fn try_retry(&self, now_ms: u64) -> bool {
        let second = now_ms / 1000;
        let current = self.bucket(second);
        let (mut requests, mut retries) = (0u64, 0u64);
        for b in &self.buckets {
            let s = b.second.load(Ordering::Relaxed);
            if s != 0 && s - 1 + BUCKETS > second {
                requests += u64::from(b.requests.load(Ordering::Relaxed));
                retries += u64::from(b.retries.load(Ordering::Relaxed));
            }
        }
        let allowed = retries < MIN_PER_SECOND * BUCKETS + requests / RATIO_DIVISOR;
        if allowed {
            current.retries.fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::RetryBudget;

    #[test]
    fn reserve_of_three_per_second_of_the_window() {
        let b = RetryBudget::default();
        let t = 5_000;
        assert_eq!((0..100).filter(|_| b.try_retry(t)).count(), 30);
        assert!(!b.try_retry(t + 9_000), "still in the window");
        assert!(
            b.try_retry(t + 10_000),
            "the retries of second 5 left the window"
        );
    }

    #[test]
    fn twenty_percent_of_the_window() {
        let b = RetryBudget::default();
        let t = 100_000;
        for s in 0..10 {
            for _ in 0..100 {
                b.record_request(t + s * 1000);
            }
        }
        // 1000 requests in the window: 200 retries, plus the reserve of 30.
        let now = t + 9_000;
        assert_eq!((0..500).filter(|_| b.try_retry(now)).count(), 230);
    }

    #[test]
    fn old_seconds_leave_the_window() {
        let b = RetryBudget::default();
        for _ in 0..1000 {
            b.record_request(0);
        }
        assert_eq!((0..300).filter(|_| b.try_retry(500)).count(), 230);
        // 10 s later neither the requests nor the retries of second 0 count: reserve only.
        assert_eq!((0..100).filter(|_| b.try_retry(10_500)).count(), 30);
    }
}
