//! Consistent hashing with a Maglev lookup table: same key, same backend, on every instance.
//!
//! **Why Maglev, not a ring.** Both were measured (see `ring_vs_maglev` in the tests and the
//! `balance_pick` bench). A Maglev pick is one multiply-shift and one table read, independent of
//! the pool size; a ring pick is a binary search over `vnodes * backends` points (a few cache
//! misses at 100 backends). Maglev's table gives every backend its exact share (±1 entry of a
//! table of ≥ 100 entries per unit of weight), so the spread over keys is as even as the key hash
//! allows; a ring needs hundreds of virtual nodes per backend to come close and still leaves a
//! few percent of imbalance. What a ring does better is disruption on a membership change, which
//! is why availability is *not* handled by rebuilding the table (below).
//!
//! **Table.** Size `M` is a prime ≥ 100 × max(backends, sum of reduced weights), taken from a
//! fixed ladder of primes that roughly double (see [`table_size`]), so every backend owns at
//! least 100 entries, weights are honoured to within 1%, and adding or removing a backend
//! usually keeps `M` (a different `M` would remap nearly every key). Each backend's
//! preference list is the permutation `(offset + j * skip) mod M`, with `offset` and `skip`
//! derived from xxh3 of `pool name \0 address` (fixed seeds): the same config builds the same
//! table on every machine, in every process, so instances agree on every key without sharing
//! anything. Backends take turns claiming their next free preferred entry, `weight` entries per
//! turn (weighted Maglev). Built once per snapshot, off the request path.
//!
//! **Pick.** The key is hashed with xxh3 (by the caller, see `http::affinity`) and mapped to an
//! entry by multiply-shift (`(h * M) >> 64`): one hash, one lookup. No key (a header or cookie
//! that is absent): the pool's smooth round robin, kept inside this balancer.
//!
//! **Unavailable backends** (down, ejected, draining, or the backend a retry must avoid): the
//! table is built over *all* configured backends and never changes with health, so no key of an
//! available backend ever moves. An entry whose backend is unavailable is redirected along a
//! fixed per-entry probe sequence (`probe(entry, 1..)`, more xxh3) to the first entry whose
//! backend is available: only that backend's keys move, spread over the others in proportion to
//! their table shares, and they come back as soon as it is available again. Following probes costs
//! a few hashes, so the redirections can be precomputed: [`ConsistentHash::rebuild`] (for health
//! changes; reloads build a new balancer anyway) computes a fallback table off the request path
//! and swaps it in through an `ArcSwap`. The pick reads the primary table first, and the fallback
//! table only when the primary backend is unavailable, so a stale fallback table can never keep a
//! key away from its primary backend; it is checked against `eligible` and, when stale, the probe
//! sequence is followed live, which gives the same answer a fresh rebuild would.
//! Today nothing calls `rebuild` yet (health checks land separately); picks are correct without
//! it, only the fallback for a down backend's keys costs a few probes more.

use std::sync::Arc;

use arc_swap::ArcSwap;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::RoundRobin;
use crate::backend::Backend;
use crate::config::HashKey;

/// Entries per backend (and per unit of reduced weight) at least.
const ENTRIES_PER_BACKEND: u64 = 100;
/// Upper bound on the table size target (a prime just above it is used): bounds memory (4 MiB)
/// and build time for pools with very uneven weights; weights are still met to within 1% up to
/// 10,000 units.
const MAX_TABLE: u64 = 1 << 20;
/// Probes followed live before a scan; with half the pool unavailable, 32 probes all miss with
/// probability 2^-32.
const MAX_PROBES: u32 = 32;
/// Seeds of the backend identity hashes (any fixed values; changing them remaps every key).
const SEED_OFFSET: u64 = 0x6d61_676c_6576_0001;
const SEED_SKIP: u64 = 0x6d61_676c_6576_0002;
const SEED_PROBE: u64 = 0x6d61_676c_6576_0003;

/// Maglev consistent hashing with a round-robin fallback for requests without a key.
#[derive(Debug)]
pub struct ConsistentHash {
    /// What the proxy hashes from the request.
    key: HashKey,
    /// Entry -> backend index, over all configured backends.
    table: Box<[u32]>,
    /// Entry -> where its keys go while its backend is unavailable, as of the last `rebuild`.
    fallback: ArcSwap<Box<[u32]>>,
    /// For requests without a key.
    round_robin: RoundRobin,
}

impl ConsistentHash {
    /// Builds the table for `pool`'s backends (their identity is `pool \0 address`).
    pub fn new(pool: &str, key: HashKey, backends: &[Backend]) -> Self {
        let table = maglev_table(pool, backends).into_boxed_slice();
        ConsistentHash {
            key,
            fallback: ArcSwap::from_pointee(table.clone()),
            table,
            round_robin: RoundRobin::new(backends),
        }
    }

    /// The backend for a key hash (`None`: round robin), among those for which `eligible` holds.
    #[inline]
    pub fn pick(
        &self,
        backends: &[Backend],
        key: Option<u64>,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let Some(hash) = key else {
            return self.round_robin.pick(backends, eligible);
        };
        let len = self.table.len();
        if len == 0 {
            return None;
        }
        let entry = entry_of(hash, len);
        let primary = self.table[entry] as usize;
        if primary < backends.len() && eligible(primary) {
            return Some(primary);
        }
        self.redirect(entry, backends, &eligible)
    }

    /// Where the keys of `entry` go while its backend is unavailable: the precomputed answer
    /// when it is still good, else the probe sequence followed live.
    #[cold]
    fn redirect(
        &self,
        entry: usize,
        backends: &[Backend],
        eligible: &impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let cached = self.fallback.load().get(entry).map(|&i| i as usize);
        if let Some(i) = cached.filter(|&i| i < backends.len() && eligible(i)) {
            // Valid only if no earlier probe became eligible since the rebuild; checking that
            // costs the probes we want to avoid, so accept it: a rebuild follows health changes.
            return Some(i);
        }
        probe_sequence(entry, &self.table)
            .map(|i| i as usize)
            .find(|&i| i < backends.len() && eligible(i))
            .or_else(|| (0..backends.len()).find(|&i| eligible(i)))
    }

    /// Recomputes the fallback table for the current availability, off the request path (call
    /// it when health or drain state changes); picks see it at once, lock-free.
    pub fn rebuild(&self, backends: &[Backend], eligible: impl Fn(usize) -> bool) {
        let fallback: Box<[u32]> = (0..self.table.len())
            .map(|entry| {
                let primary = self.table[entry];
                if eligible(primary as usize) {
                    return primary;
                }
                probe_sequence(entry, &self.table)
                    .find(|&i| (i as usize) < backends.len() && eligible(i as usize))
                    .unwrap_or(primary)
            })
            .collect();
        self.fallback.store(Arc::new(fallback));
    }

    /// What to hash from the request.
    pub fn key(&self) -> &HashKey {
        &self.key
    }

    /// Table size (a prime).
    #[cfg(test)]
    fn table_len(&self) -> usize {
        self.table.len()
    }
}

/// The stable hash of a key's bytes (xxh3, no seed): what `pick` takes.
#[inline]
pub fn key_hash(bytes: &[u8]) -> u64 {
    xxh3_64(bytes)
}

/// The `client_ip` key: the address's bytes, an IPv4-mapped IPv6 address taken as IPv4, so
/// one client hashes the same over HTTP and TCP, and whichever family it arrived on.
#[inline]
pub fn ip_hash(ip: std::net::IpAddr) -> u64 {
    match ip.to_canonical() {
        std::net::IpAddr::V4(ip) => key_hash(&ip.octets()),
        std::net::IpAddr::V6(ip) => key_hash(&ip.octets()),
    }
}

/// Maps a 64-bit hash onto `0..len` without a division (Lemire's multiply-shift).
#[inline]
fn entry_of(hash: u64, len: usize) -> usize {
    ((u128::from(hash) * len as u128) >> 64) as usize
}

/// Backends (as table entries) to try, in order, for the keys of `entry` when its own backend is
/// unavailable: the backends of pseudo-random entries, fixed per entry.
fn probe_sequence(entry: usize, table: &[u32]) -> impl Iterator<Item = u32> + '_ {
    (1..=MAX_PROBES).map(move |k| {
        let h = xxh3_64_with_seed(&(entry as u64).to_le_bytes(), SEED_PROBE ^ u64::from(k));
        table[entry_of(h, table.len())]
    })
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// The smallest prime ≥ `n`.
fn next_prime(n: u64) -> u64 {
    (n.max(2)..).find(|&m| is_prime(m)).unwrap_or(n)
}

/// The table size for at least `min` entries: the first of the primes 101, next_prime(2 * 101),
/// ... that is ≥ `min`. Sizes come from this fixed ladder, not "the smallest prime ≥ min",
/// because a key's entry depends on the size: with sizes that follow the backend count exactly,
/// adding or removing one backend would change the size and remap almost every key. On the
/// ladder, the size (and so every key's entry) stays put until the pool doubles or halves.
fn table_size(min: u64) -> u64 {
    let mut m = 101;
    while m < min {
        m = next_prime(2 * m);
    }
    m
}

/// Weighted Maglev population: backends take turns, each claiming `weight` (reduced) entries per
/// turn, each the next free entry along its own permutation.
fn maglev_table(pool: &str, backends: &[Backend]) -> Vec<u32> {
    let n = backends.len() as u64;
    if n == 0 {
        return Vec::new();
    }
    let g = backends
        .iter()
        .map(|b| u64::from(b.weight.max(1)))
        .fold(0, gcd)
        .max(1);
    let mut weights: Vec<u64> = backends
        .iter()
        .map(|b| u64::from(b.weight.max(1)) / g)
        .collect();
    let sum: u64 = weights.iter().sum();
    let units = sum.clamp(n, MAX_TABLE / ENTRIES_PER_BACKEND);
    if sum > units {
        // Scale very uneven weights down (each at least 1): precision traded for memory.
        weights
            .iter_mut()
            .for_each(|w| *w = (*w * units / sum).max(1));
    }
    let m = table_size(ENTRIES_PER_BACKEND * units.max(n));
    // (offset, skip) of each backend's permutation; skip in 1..m, so with m prime every
    // permutation visits every entry.
    let perms: Vec<(u64, u64)> = backends
        .iter()
        .map(|b| {
            let id = identity(pool, b);
            let offset = xxh3_64_with_seed(id.as_bytes(), SEED_OFFSET) % m;
            let skip = xxh3_64_with_seed(id.as_bytes(), SEED_SKIP) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; backends.len()];
    let mut table = vec![u32::MAX; m as usize];
    let mut filled = 0u64;
    'fill: loop {
        for (i, &(offset, skip)) in perms.iter().enumerate() {
            for _ in 0..weights[i] {
                let mut entry = (offset + next[i] * skip) % m;
                while table[entry as usize] != u32::MAX {
                    next[i] += 1;
                    entry = (offset + next[i] * skip) % m;
                }
                table[entry as usize] = i as u32;
                next[i] += 1;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
        }
    }
    table
}

/// What a backend is known by in the table: pool name and address, so the same address in two
/// pools gets two different permutations.
fn identity(pool: &str, b: &Backend) -> String {
    format!("{pool}\0{}", b.addr)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "hash_tests.rs"]
mod tests;
