//! Passive ejection from real traffic.
//!
//! The proxy reports every attempt's outcome: a connect error, a timeout or a 5xx answer is a
//! failure, anything else a success. `consecutive_failures` failures in a row eject the backend
//! for `eject_for`; each repeat ejection doubles that, up to 5 minutes; the first success after
//! the backend returns resets the doubling. A success costs two relaxed loads (and a store only
//! when a streak was running); a failure one `fetch_add`. Only crossing the threshold (rare)
//! does more: a compare-exchange, a look at the pool's other backends, and a log line.
//!
//! Ejection never takes the last available backend of a pool out of service: when no other
//! backend is up, not draining and not ejected, the failing one stays (it may be failing because
//! of the traffic, and a pool with one struggling server serves more than an empty one). Racing
//! ejections on several workers could still eject the last two together; `select.rs` covers that
//! by ignoring ejection when it would leave the pool empty. A backend that is also actively down
//! is out of service anyway: active checks decide.

use std::fmt::Display;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::backend::{Backend, Condition};
use crate::config::{BackendId, MAX_EJECTION};
use crate::pool::Pool;

/// The length of the `ejections`-th ejection in a row (0-based): `eject_for * 2^n`, capped.
pub fn ejection_length(eject_for: Duration, ejections: u32) -> Duration {
    let factor = 1u32.checked_shl(ejections.min(20)).unwrap_or(u32::MAX);
    eject_for.saturating_mul(factor).min(MAX_EJECTION)
}

/// A successful attempt on `backend`.
#[inline]
pub fn success(backend: &Backend, now: u64) {
    let s = &backend.state;
    if s.failures.load(Ordering::Relaxed) != 0 {
        s.failures.store(0, Ordering::Relaxed);
    }
    if s.ejections.load(Ordering::Relaxed) != 0 && !s.is_ejected(now) {
        s.ejections.store(0, Ordering::Relaxed);
    }
}

/// A failed attempt on backend `id` of `pool`; may eject it. Returns whether it is the first
/// failure since the backend last succeeded (the caller logs that one loudly, the rest of the
/// streak quietly: once per backend per change).
#[inline]
pub fn failure(pool: &Pool, id: BackendId, now: u64, what: &dyn Display) -> bool {
    let index = id.index();
    let limit = pool.passive.consecutive_failures;
    let backend = &pool.backends[index];
    let failures = backend.state.failures.fetch_add(1, Ordering::Relaxed) + 1;
    if limit == 0 || failures < limit || backend.state.is_ejected(now) {
        return failures == 1;
    }
    eject(pool, index, now, failures, what);
    failures == 1
}

#[cold]
fn eject(pool: &Pool, index: usize, now: u64, failures: u32, what: &dyn Display) {
    let backend = &pool.backends[index];
    let s = &backend.state;
    let others = pool
        .backends
        .iter()
        .enumerate()
        .any(|(i, b)| i != index && b.state.is_available() && !b.state.is_ejected(now));
    if !others {
        if failures == pool.passive.consecutive_failures {
            tracing::warn!(
                "pool {}: {} not ejected after {failures} failures ({what}): it is the last available backend",
                pool.name,
                backend.label
            );
        }
        return;
    }
    let ejections = s.ejections.load(Ordering::Relaxed);
    let length = ejection_length(pool.passive.eject_for, ejections);
    let until = now + u64::try_from(length.as_millis()).unwrap_or(u64::MAX / 2);
    let before = s.ejected_until.load(Ordering::Relaxed);
    // One worker wins the ejection; the others see it ejected and stop.
    if before > now
        || s.ejected_until
            .compare_exchange(before, until, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    s.ejections.store(ejections + 1, Ordering::Relaxed);
    s.failures.store(0, Ordering::Relaxed);
    super::report(
        &pool.name,
        &backend.label,
        s,
        Condition::Ejected,
        format!(
            "{failures} requests failed in a row (last: {what}); for {}",
            humantime::format_duration(length)
        ),
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::ejection_length;

    #[test]
    fn ejection_doubles_up_to_five_minutes() {
        let base = Duration::from_secs(10);
        let lengths: Vec<u64> = (0..7).map(|n| ejection_length(base, n).as_secs()).collect();
        assert_eq!(lengths, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(ejection_length(base, u32::MAX).as_secs(), 300);
        assert_eq!(
            ejection_length(Duration::from_millis(200), 2),
            Duration::from_millis(800)
        );
    }
}
