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
//! Under the pool's `max_connections`, tiers 1 and 2 first look among the backends with a free
//! upstream slot (fewer open connections than the cap, one atomic load each): a backend at its
//! cap would make the attempt wait in its queue while another could take it at once. When
//! every candidate is full, the pick is made as without the cap (and waits in that backend's
//! queue). Not with an affinity (consistent hash, sticky cookie): the client's backend stays
//! its backend, full or not.
//!
//! Slow start: a backend back in service for `elapsed < slow_start` is skipped with probability
//! `1 - elapsed / slow_start` (admitted at least 5% of the time), so its share ramps linearly
//! from small to its full weight without touching the balancers' precomputed state.
//!
//! "A retry never goes to a backend already tried for this request" is the `tried` argument
//! (so when the client's region has no untried backend left, the region tiers below move the
//! retry on to its failover regions, then anywhere). `affinity` (consistent hash,
//! sticky cookie) is followed in every tier; a sticky backend index only in the first pool,
//! whose backend it names.
//!
//! Regions narrow each of tiers 1-3 before it widens: a client of a known
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

/// The backends already tried for one request. Fixed size, no allocation: the retries of a
/// request are bounded (`retries`, validated), and past `TRIED` attempts the oldest is
/// forgotten (it may be tried again rather than nothing at all).
#[derive(Debug, Clone, Copy, Default)]
pub struct Tried {
    slots: [Option<Choice>; TRIED],
    next: usize,
}

/// Attempts remembered per request.
const TRIED: usize = 8;

impl Tried {
    /// Records an attempt on `choice`.
    #[inline]
    pub fn add(&mut self, choice: Choice) {
        self.slots[self.next % TRIED] = Some(choice);
        self.next = self.next.wrapping_add(1);
    }

    /// Whether backend `backend` of pool `pool` (positions) was tried.
    #[inline]
    fn contains(&self, pool: usize, backend: usize) -> bool {
        // The first attempt of every request: nothing to look through.
        self.next != 0 && self.slots.iter().flatten().any(|c| c.is(pool, backend))
    }
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
    tried: &Tried,
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
        if let Some(i) = pick_in(pool, p, affinity, tried, now, order) {
            if p == first && pool.fail_open {
                end_fail_open(pool);
            }
            return Some(Choice::new(p, i));
        }
        at = pool.backup.map(PoolId::index);
    }
    fail_open(pools.get(first)?, first, affinity, tried)
}

/// Whether region `r` has a backend that is available and not ejected (the split's test, and
/// the GeoDNS responder's: a region is answered only when the proxy there would serve).
#[inline]
pub(crate) fn has_fresh(pool: &Pool, r: RegionId, now: u64) -> bool {
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
    tried: &Tried,
    now: u64,
    order: &[RegionId],
) -> Option<usize> {
    let backends = &pool.backends;
    let usable = |i: usize| !tried.contains(p, i) && backends[i].state.is_available();
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

/// Tiers 1 and 2 among the backends `fresh` admits: under a `max_connections` cap (and with no
/// affinity) those with a free slot first, then any.
#[inline]
fn pick_fresh(
    pool: &Pool,
    region: Option<RegionId>,
    affinity: Affinity,
    now: u64,
    fresh: impl Fn(usize) -> bool,
) -> Option<usize> {
    let cap = pool.upstream.max;
    if cap > 0 && matches!(affinity, Affinity::None) {
        let backends = &pool.backends;
        let room = |i: usize| fresh(i) && backends[i].state.upstream_connections() < cap;
        if let Some(i) = pick_ramped(pool, region, affinity, now, room) {
            return Some(i);
        }
    }
    pick_ramped(pool, region, affinity, now, fresh)
}

/// Tiers 1 and 2 among the backends `fresh` admits: slow start first, then without it.
#[inline]
fn pick_ramped(
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
fn fail_open(pool: &Pool, p: usize, affinity: Affinity, tried: &Tried) -> Option<Choice> {
    if !pool.fail_open {
        return None;
    }
    let i = pool.balancer.pick_for(&pool.backends, affinity, |i| {
        !tried.contains(p, i) && !pool.backends[i].state.is_draining()
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! Each eligibility rule as a case, on pools built in memory with `now` passed in.

    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    use super::{pick, Choice, Tried};
    use crate::backend::{Backend, BackendState};
    use crate::balance::Affinity;
    use crate::config::{BackendId, PoolConfig, PoolId, RegionConfig};
    use crate::pool::Pool;
    use crate::region::{RegionId, Regions};

    const NOW: u64 = 1_000_000;

    /// Backends 10.0.P.1.. of pool `p`, in `regions` (`None`: no region).
    fn backends(p: u8, regions: &[Option<&str>]) -> Vec<Backend> {
        regions
            .iter()
            .zip(1u8..)
            .map(|(r, i)| {
                let addr = SocketAddr::from((Ipv4Addr::new(10, 0, p, i), 80));
                let region = r.map(Arc::from);
                Backend::new(addr, 1, region, Arc::new(BackendState::default()))
            })
            .collect()
    }

    fn regions() -> Regions {
        let region = |name: &str, cidr: &str, failover: &str| RegionConfig {
            name: name.into(),
            cidrs: vec![cidr.parse().unwrap()],
            countries: Vec::new(),
            failover: vec![failover.into()],
        };
        Regions::build(
            &[
                region("east", "127.1.0.0/16", "west"),
                region("west", "127.2.0.0/16", "east"),
            ],
            &Default::default(),
        )
        .unwrap()
    }

    fn pool(cfg: PoolConfig, p: u8, regions_of: &[Option<&str>], regions: &Regions) -> Pool {
        Pool::build(&cfg, backends(p, regions_of), regions)
    }

    /// Which backends of pool `first` `n` picks reach, in order.
    fn picks(pools: &[Pool], first: usize, now: u64, client: Option<RegionId>) -> Vec<Choice> {
        let regions = regions();
        let client = client.map(|id| (&regions, id));
        (0..8)
            .filter_map(|_| {
                pick(
                    pools,
                    PoolId::new(first),
                    Affinity::None,
                    &Tried::default(),
                    now,
                    client,
                )
            })
            .collect()
    }

    fn only(pools: &[Pool], now: u64, client: Option<RegionId>) -> Vec<(usize, usize)> {
        let mut seen: Vec<(usize, usize)> = picks(pools, 0, now, client)
            .into_iter()
            .map(|c| (c.pool.index(), c.backend.index()))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        seen
    }

    fn plain(n: usize) -> Vec<Pool> {
        vec![pool(
            PoolConfig::new("p", Vec::new()),
            0,
            &vec![None; n],
            &regions(),
        )]
    }

    #[test]
    fn a_down_backend_takes_nothing() {
        let pools = plain(3);
        pools[0].backends[1].state.set_healthy(false);
        assert_eq!(only(&pools, NOW, None), [(0, 0), (0, 2)]);
    }

    /// Issue 14: a backend at its `max_connections` is passed over while another has room,
    /// and picked again (to wait in its queue) once every backend is full.
    #[tokio::test]
    async fn a_backend_at_its_cap_is_skipped_while_another_has_room() {
        let mut cfg = PoolConfig::new("p", Vec::new());
        cfg.max_connections = 1;
        let pools = vec![pool(cfg, 0, &[None, None], &regions())];
        let cap = pools[0].upstream;
        let full = pools[0].backends[0].state.take_slot(cap).await.unwrap();
        assert_eq!(only(&pools, NOW, None), [(0, 1)]);
        let other = pools[0].backends[1].state.take_slot(cap).await.unwrap();
        assert_eq!(only(&pools, NOW, None), [(0, 0), (0, 1)]);
        drop((full, other));
        assert_eq!(only(&pools, NOW, None), [(0, 0), (0, 1)]);
    }

    #[test]
    fn a_draining_backend_takes_nothing() {
        let pools = plain(2);
        pools[0].backends[0].state.set_draining(true);
        assert_eq!(only(&pools, NOW, None), [(0, 1)]);
    }

    #[test]
    fn an_ejected_backend_waits_for_its_ejection_to_end() {
        let pools = plain(2);
        let state = &pools[0].backends[0].state;
        state.ejected_until.store(NOW + 1_000, Ordering::Relaxed);
        assert_eq!(only(&pools, NOW, None), [(0, 1)]);
        assert_eq!(only(&pools, NOW + 1_000, None), [(0, 0), (0, 1)], "expired");
    }

    #[test]
    fn ejection_never_empties_a_pool() {
        let pools = plain(2);
        for b in &pools[0].backends {
            b.state.ejected_until.store(NOW + 1_000, Ordering::Relaxed);
        }
        assert_eq!(only(&pools, NOW, None), [(0, 0), (0, 1)]);
    }

    #[test]
    fn a_retry_never_goes_back_to_a_tried_backend() {
        let pools = plain(3);
        let mut tried = Tried::default();
        let choice = |b: usize| Choice {
            pool: PoolId::new(0),
            backend: BackendId::new(b),
        };
        let next = |tried: &Tried| {
            pick(&pools, PoolId::new(0), Affinity::None, tried, NOW, None)
                .map(|c| c.backend.index())
        };
        tried.add(choice(0));
        for _ in 0..8 {
            assert_ne!(next(&tried), Some(0));
        }
        tried.add(choice(2));
        for _ in 0..8 {
            assert_eq!(next(&tried), Some(1));
        }
        // With every backend tried, none is offered again.
        tried.add(choice(1));
        assert_eq!(next(&tried), None);
    }

    #[test]
    fn a_retry_leaves_a_region_whose_backends_were_all_tried() {
        let r = regions();
        let pools = vec![pool(
            PoolConfig::new("p", Vec::new()),
            0,
            &[Some("east"), Some("east"), Some("west")],
            &r,
        )];
        let east = r.lookup("127.1.0.1".parse().unwrap()).map(|id| (&r, id));
        let mut tried = Tried::default();
        for b in [0, 1] {
            tried.add(Choice {
                pool: PoolId::new(0),
                backend: BackendId::new(b),
            });
        }
        // Both east backends are still "up" (not yet detected): the retry goes west anyway.
        let c = pick(&pools, PoolId::new(0), Affinity::None, &tried, NOW, east);
        assert_eq!(c.map(|c| c.backend.index()), Some(2));
    }

    #[test]
    fn slow_start_admits_a_returning_backend_rarely_at_first_then_fully() {
        let mut cfg = PoolConfig::new("p", Vec::new());
        cfg.slow_start = Duration::from_secs(10);
        let pools = vec![pool(cfg, 0, &[None, None], &regions())];
        // Backend 0 came back just now: admitted about 5% of picks at first.
        pools[0].backends[0].state.mark_added(NOW);
        let share = |now: u64| {
            let n = 2000;
            let hits = (0..n)
                .filter(|_| {
                    pick(
                        &pools,
                        PoolId::new(0),
                        Affinity::None,
                        &Tried::default(),
                        now,
                        None,
                    )
                    .is_some_and(|c| c.backend.index() == 0)
                })
                .count();
            hits as f64 / n as f64
        };
        let early = share(NOW);
        let late = share(NOW + 10_000);
        assert!(early < 0.15, "early share {early}");
        assert!((0.4..0.6).contains(&late), "after the ramp {late}");
        // Alone, a ramping backend still serves: better than none.
        pools[0].backends[1].state.set_healthy(false);
        assert!((share(NOW) - 1.0).abs() < f64::EPSILON);
    }

    #[test]
    fn a_client_stays_in_its_region_then_fails_over_in_order() {
        let r = regions();
        let pools = vec![pool(
            PoolConfig::new("p", Vec::new()),
            0,
            &[Some("east"), Some("east"), Some("west")],
            &r,
        )];
        let east = r.lookup("127.1.0.1".parse().unwrap());
        assert_eq!(only(&pools, NOW, east), [(0, 0), (0, 1)]);
        pools[0].backends[0].state.set_healthy(false);
        pools[0].backends[1].state.set_draining(true);
        assert_eq!(only(&pools, NOW, east), [(0, 2)], "failover to west");
        // An ejected backend of the client's own region loses to a fresh one elsewhere.
        pools[0].backends[1].state.set_draining(false);
        let ejected = &pools[0].backends[1].state;
        ejected.ejected_until.store(NOW + 1_000, Ordering::Relaxed);
        assert_eq!(only(&pools, NOW, east), [(0, 2)]);
    }

    #[test]
    fn the_backup_pool_serves_when_every_backend_is_down() {
        let mut web = PoolConfig::new("web", Vec::new());
        web.backup = Some(PoolId::new(1));
        let r = regions();
        let pools = vec![
            pool(web, 0, &[None, None], &r),
            pool(PoolConfig::new("origin", Vec::new()), 1, &[None], &r),
        ];
        assert_eq!(only(&pools, NOW, None), [(0, 0), (0, 1)]);
        for b in &pools[0].backends {
            b.state.set_healthy(false);
        }
        assert_eq!(only(&pools, NOW, None), [(1, 0)]);
        pools[1].backends[0].state.set_healthy(false);
        assert_eq!(only(&pools, NOW, None), []);
    }

    #[test]
    fn fail_open_uses_down_backends_but_not_draining_ones() {
        let mut cfg = PoolConfig::new("p", Vec::new());
        cfg.fail_open = true;
        let pools = vec![pool(cfg, 0, &[None, None, None], &regions())];
        for b in &pools[0].backends {
            b.state.set_healthy(false);
        }
        pools[0].backends[2].state.set_draining(true);
        assert_eq!(only(&pools, NOW, None), [(0, 0), (0, 1)]);
        assert!(pools[0].fail_open_active.load(Ordering::Relaxed), "visible");
        pools[0].backends[0].state.set_healthy(true);
        assert_eq!(only(&pools, NOW, None), [(0, 0)]);
        assert!(!pools[0].fail_open_active.load(Ordering::Relaxed), "ended");
    }
}
