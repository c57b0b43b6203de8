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
//!
//! Regions (DESIGN section 5) narrow each of tiers 1-3 before it widens: a client of a known
//! region is tried on its own region's backends, then on each of its `failover` regions in
//! order, then on any backend; a client of unknown region in a pool with `region_split` gets a
//! region by weight (a region with no fresh backend drops out of the split), then any. So a
//! fresh backend of a failover region wins over an ejected one of the client's own region, and
//! the balancer (and the affinity) still picks within the narrowed set through its `eligible`
//! predicate. Regions are small integers (`region::RegionId`) resolved at snapshot build: no
//! string compares here.

use std::sync::atomic::Ordering;

use crate::backend::Backend;
use crate::balance::{Affinity, Balancer};
use crate::config::{BackendId, PoolId};
use crate::pool::Pool;
use crate::region::{RegionId, Regions};

/// A backend of a pool of the snapshot: where an attempt goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub pool: PoolId,
    pub backend: BackendId,
}

impl Choice {
    #[inline]
    fn new(pool: usize, backend: usize) -> Choice {
        Choice {
            pool: PoolId::new(pool),
            backend: BackendId::new(backend),
        }
    }

    /// Whether this is backend `backend` of pool `pool` (positions).
    #[inline]
    fn is(self, pool: usize, backend: usize) -> bool {
        self.pool.index() == pool && self.backend.index() == backend
    }
}

/// Picks a backend for pool `first`, falling back to its backup chain and fail-open. `client`:
/// the client's region with the snapshot's regions, `None` when unknown.
#[inline]
pub fn pick(
    pools: &[Pool],
    first: PoolId,
    affinity: Affinity,
    avoid: Option<Choice>,
    now: u64,
    client: Option<(&Regions, RegionId)>,
) -> Option<Choice> {
    let first = first.index();
    let mut at = Some(first);
    for _ in 0..pools.len() {
        let Some(p) = at else { break };
        let Some(pool) = pools.get(p) else { break };
        let affinity = match affinity {
            Affinity::Backend(_) if p != first => Affinity::None,
            a => a,
        };
        let chosen;
        let order: &[RegionId] = match client {
            Some((regions, id)) if pool.regions.regional => regions.order(id),
            Some(_) => &[],
            None => match &pool.regions.split {
                Some(split) => {
                    chosen = split.pick(|r| has_fresh(pool, r, now));
                    chosen.as_slice()
                }
                None => &[],
            },
        };
        if let Some(i) = pick_in(pool, p, affinity, avoid, now, order) {
            if p == first && pool.fail_open {
                end_fail_open(pool);
            }
            return Some(Choice::new(p, i));
        }
        at = pool.backup.map(PoolId::index);
    }
    fail_open(pools.get(first)?, first, affinity, avoid)
}

/// Whether region `r` has a backend that is available and not ejected (the split's test).
#[inline]
fn has_fresh(pool: &Pool, r: RegionId, now: u64) -> bool {
    pool.backends
        .iter()
        .enumerate()
        .any(|(i, b)| pool.regions.of(i) == r && b.state.is_available() && !b.state.is_ejected(now))
}

/// Tiers 1-3 in pool `p`, each narrowed by `order` (regions, nearest first) before any backend.
#[inline]
fn pick_in(
    pool: &Pool,
    p: usize,
    affinity: Affinity,
    avoid: Option<Choice>,
    now: u64,
    order: &[RegionId],
) -> Option<usize> {
    let backends = &pool.backends;
    let usable = |i: usize| !avoid.is_some_and(|a| a.is(p, i)) && backends[i].state.is_available();
    let fresh = |i: usize| usable(i) && !backends[i].state.is_ejected(now);
    let in_region = |r: RegionId| move |i: usize| pool.regions.of(i) == r;
    for &r in order {
        let here = in_region(r);
        if let Some(i) = pick_fresh(pool, Some(r), affinity, now, |i| here(i) && fresh(i)) {
            return Some(i);
        }
    }
    if let Some(i) = pick_fresh(pool, None, affinity, now, fresh) {
        return Some(i);
    }
    for &r in order {
        let here = in_region(r);
        if let Some(i) = pick_one(pool, Some(r), affinity, |i| here(i) && usable(i)) {
            return Some(i);
        }
    }
    pool.balancer.pick_for(backends, affinity, usable)
}

/// The balancer's pick among the backends `eligible` admits; narrowed to `region`, a
/// round-robin pool walks that region's own cycle (`region::PoolRegions::cycle`).
#[inline]
fn pick_one(
    pool: &Pool,
    region: Option<RegionId>,
    affinity: Affinity,
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    if let (Balancer::RoundRobin(_), Affinity::None, Some(cycle)) = (
        &pool.balancer,
        affinity,
        region.and_then(|r| pool.regions.cycle(r)),
    ) {
        return cycle.pick_among(pool.backends.len(), eligible);
    }
    pool.balancer.pick_for(&pool.backends, affinity, eligible)
}

/// Tiers 1 and 2 among the backends `fresh` admits: slow start first, then without it.
#[inline]
fn pick_fresh(
    pool: &Pool,
    region: Option<RegionId>,
    affinity: Affinity,
    now: u64,
    fresh: impl Fn(usize) -> bool,
) -> Option<usize> {
    let backends = &pool.backends;
    if pool.slow_start_ms > 0 {
        let ramped = |i: usize| fresh(i) && admitted(&backends[i], pool.slow_start_ms, now);
        if let Some(i) = pick_one(pool, region, affinity, ramped) {
            return Some(i);
        }
    }
    pick_one(pool, region, affinity, fresh)
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
        !avoid.is_some_and(|a| a.is(p, i)) && !pool.backends[i].state.is_draining()
    })?;
    if !pool.fail_open_active.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "pool {}: fail-open: every backend is down and no backup can serve; using them all",
            pool.name
        );
    }
    Some(Choice::new(p, i))
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
