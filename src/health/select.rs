//! Which backend takes the next attempt: eligibility tiers, the backup chain and fail-open.
//!
//! Tiers, first that yields a backend wins (each one is a `Balancer::pick` with a predicate, so
//! every balancer works unchanged; the later tiers only run when the earlier ones found none):
//! 1. up (active), not draining, not ejected, and admitted by slow start;
//! 2. the same without slow start (a ramping backend is better than none);
//! 3. up and not draining, ejected or not: ejection never empties a pool (see `passive.rs`);
//! 4. the same, in the `backup` pool, then its backup, and so on (validation forbids cycles);
//! 5. `fail_open = true`: every backend of the first pool that is not draining, down or not.
//!
//! Slow start: a backend back in service for `elapsed < slow_start` is skipped with probability
//! `1 - elapsed / slow_start` (admitted at least 5% of the time), so its share ramps linearly
//! from small to its full weight without touching the balancers' precomputed state.
//!
//! "Never the same backend twice in a row" is the `avoid` argument. `affinity` (consistent hash,
//! sticky cookie) is followed in every tier; a sticky backend index only in the first pool,
//! whose backend it names.

use std::sync::atomic::Ordering;

use crate::backend::{Backend, Pool};
use crate::balance::Affinity;

/// `(pool index, backend index)` in a snapshot.
pub type Choice = (usize, usize);

/// Picks a backend for pool `first`, falling back to its backup chain and fail-open.
#[inline]
pub fn pick(
    pools: &[Pool],
    first: usize,
    affinity: Affinity,
    avoid: Option<Choice>,
    now: u64,
) -> Option<Choice> {
    let mut at = Some(first);
    for _ in 0..pools.len() {
        let Some(p) = at else { break };
        let pool = &pools[p];
        let affinity = match affinity {
            Affinity::Backend(_) if p != first => Affinity::None,
            a => a,
        };
        if let Some(i) = pick_in(pool, p, affinity, avoid, now) {
            if p == first && pool.fail_open {
                end_fail_open(pool);
            }
            return Some((p, i));
        }
        at = pool.backup;
    }
    fail_open(&pools[first], first, affinity, avoid)
}

#[inline]
fn pick_in(
    pool: &Pool,
    p: usize,
    affinity: Affinity,
    avoid: Option<Choice>,
    now: u64,
) -> Option<usize> {
    let backends = &pool.backends;
    let usable = |i: usize| Some((p, i)) != avoid && backends[i].state.is_available();
    let fresh = |i: usize| usable(i) && !backends[i].state.is_ejected(now);
    if pool.slow_start_ms > 0 {
        let ramped = |i: usize| fresh(i) && admitted(&backends[i], pool.slow_start_ms, now);
        if let Some(i) = pool.balancer.pick_for(backends, affinity, ramped) {
            return Some(i);
        }
    }
    pool.balancer
        .pick_for(backends, affinity, fresh)
        .or_else(|| pool.balancer.pick_for(backends, affinity, usable))
}

/// Slow start: whether a backend still ramping up takes this pick.
#[inline]
fn admitted(backend: &Backend, slow_start_ms: u64, now: u64) -> bool {
    let since = backend.state.in_service_since();
    let elapsed = now.saturating_sub(since);
    if since == 0 || elapsed >= slow_start_ms {
        return true;
    }
    fastrand::u64(..slow_start_ms) < elapsed.max(slow_start_ms / 20)
}

#[cold]
fn fail_open(pool: &Pool, p: usize, affinity: Affinity, avoid: Option<Choice>) -> Option<Choice> {
    if !pool.fail_open {
        return None;
    }
    let i = pool.balancer.pick_for(&pool.backends, affinity, |i| {
        Some((p, i)) != avoid && !pool.backends[i].state.is_draining()
    })?;
    if !pool.fail_open_active.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "pool {}: fail-open: every backend is down and no backup can serve; using them all",
            pool.name
        );
    }
    Some((p, i))
}

#[inline]
fn end_fail_open(pool: &Pool) {
    if pool.fail_open_active.load(Ordering::Relaxed)
        && pool.fail_open_active.swap(false, Ordering::Relaxed)
    {
        tracing::info!(
            "pool {}: fail-open ended: a backend is available again",
            pool.name
        );
    }
}
