//! Distribution and movement properties of the Maglev balancer over 100,000 keys, and the
//! measurement behind choosing Maglev over a ring.

use super::*;
use crate::balance::test_support::backends;
use crate::config::HashKey;

const KEYS: u64 = 100_000;

fn keys() -> impl Iterator<Item = u64> {
    (0..KEYS).map(|i| key_hash(format!("user-{i}").as_bytes()))
}

/// Backend of every key, with `eligible`.
fn mapping(ch: &ConsistentHash, b: &[Backend], eligible: impl Fn(usize) -> bool) -> Vec<usize> {
    keys()
        .map(|k| ch.pick(b, Some(k), &eligible).unwrap())
        .collect()
}

fn shares(map: &[usize], n: usize) -> Vec<usize> {
    let mut c = vec![0; n];
    map.iter().for_each(|&i| c[i] += 1);
    c
}

#[test]
fn table_is_prime_and_at_least_100_per_backend() {
    let b = backends(&[1; 10]);
    let ch = ConsistentHash::new("p", HashKey::ClientIp, &b);
    assert_eq!(ch.table_len(), 1733);
    assert!(is_prime(1733));
    // One backend fewer: the same size, so keys keep their entries.
    let nine = backends(&[1; 9]);
    assert_eq!(
        ConsistentHash::new("p", HashKey::ClientIp, &nine).table_len(),
        1733
    );
    let b = backends(&[2, 1]);
    assert_eq!(
        ConsistentHash::new("p", HashKey::ClientIp, &b).table_len(),
        431
    );
    assert!(ConsistentHash::new("p", HashKey::ClientIp, &[])
        .pick(&[], Some(1), |_| true)
        .is_none());
}

#[test]
fn ten_equal_backends_are_balanced() {
    let b = backends(&[1; 10]);
    let ch = ConsistentHash::new("web", HashKey::ClientIp, &b);
    let c = shares(&mapping(&ch, &b, |_| true), 10);
    let max = *c.iter().max().unwrap() as f64;
    let mean = KEYS as f64 / 10.0;
    assert!(max <= 1.10 * mean, "busiest {max} vs mean {mean}: {c:?}");
}

#[test]
fn removing_one_moves_only_its_keys_and_adding_it_back_restores() {
    let b = backends(&[1; 10]);
    let ch = ConsistentHash::new("web", HashKey::ClientIp, &b);
    let before = mapping(&ch, &b, |_| true);
    for gone in [0, 3, 9] {
        let after = mapping(&ch, &b, |i| i != gone);
        let moved: Vec<usize> = (0..before.len())
            .filter(|&k| before[k] != after[k])
            .collect();
        assert!(
            moved.len() as f64 <= KEYS as f64 * (0.10 + 0.02),
            "{} keys moved",
            moved.len()
        );
        assert!(moved.iter().all(|&k| before[k] == gone));
        assert!(after.iter().all(|&i| i != gone));
        // Its keys are spread over the others, not dumped on one neighbour.
        let spread = shares(&after, 10);
        let max = *spread.iter().max().unwrap() as f64;
        assert!(max <= 1.25 * KEYS as f64 / 9.0, "{spread:?}");
        // The precomputed fallback gives the same answers as the live probes.
        ch.rebuild(&b, |i| i != gone);
        assert_eq!(mapping(&ch, &b, |i| i != gone), after);
        // Back: exactly the original mapping, with or without a rebuild.
        assert_eq!(mapping(&ch, &b, |_| true), before);
        ch.rebuild(&b, |_| true);
        assert_eq!(mapping(&ch, &b, |_| true), before);
    }
}

/// A reload that removes a backend builds a new table: Maglev moves that backend's keys and
/// a few of the others' (not zero, unlike availability changes, which never rebuild the table).
#[test]
fn reload_without_a_backend_moves_few_other_keys() {
    let b = backends(&[1; 10]);
    let before = mapping(
        &ConsistentHash::new("web", HashKey::ClientIp, &b),
        &b,
        |_| true,
    );
    let gone = 4;
    let rest: Vec<Backend> = b
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != gone)
        .map(|(_, x)| x.clone())
        .collect();
    let ch = ConsistentHash::new("web", HashKey::ClientIp, &rest);
    let after = mapping(&ch, &rest, |_| true);
    let addr_of = |map: &[usize], all: &[Backend], k: usize| all[map[k]].addr;
    let collateral = (0..before.len())
        .filter(|&k| before[k] != gone && addr_of(&before, &b, k) != addr_of(&after, &rest, k))
        .count();
    println!(
        "reload removing 1 of 10: {:.2}% of the other keys moved",
        collateral as f64 * 100.0 / KEYS as f64
    );
    assert!(collateral as f64 <= 0.03 * KEYS as f64, "{collateral}");
}

#[test]
fn weights_two_to_one() {
    let b = backends(&[2, 1]);
    let ch = ConsistentHash::new("cache", HashKey::ClientIp, &b);
    let c = shares(&mapping(&ch, &b, |_| true), 2);
    let ratio = c[0] as f64 / c[1] as f64;
    assert!((ratio - 2.0).abs() <= 0.10, "{c:?} ratio {ratio}");
}

#[test]
fn same_config_same_table_different_pool_different_table() {
    let b = backends(&[1, 2, 3, 1]);
    let (x, y) = (
        ConsistentHash::new("p", HashKey::ClientIp, &b),
        ConsistentHash::new("p", HashKey::ClientIp, &b),
    );
    assert_eq!(x.table, y.table);
    assert_ne!(
        x.table,
        ConsistentHash::new("q", HashKey::ClientIp, &b).table
    );
    // Pinned: the hash and the table construction must not change between releases.
    let b = backends(&[1; 3]);
    let ch = ConsistentHash::new("pin", HashKey::ClientIp, &b);
    let first: Vec<usize> = (0..8)
        .map(|i: u64| {
            ch.pick(&b, Some(key_hash(&i.to_le_bytes())), |_| true)
                .unwrap()
        })
        .collect();
    assert_eq!(first, PINNED, "the key -> backend mapping changed");
}

/// Recorded once; a change here remaps every key of every deployment.
const PINNED: [usize; 8] = [0, 2, 0, 0, 0, 0, 1, 0];

#[test]
fn no_key_goes_round_robin_and_nothing_eligible_is_none() {
    let b = backends(&[1, 1, 1]);
    let ch = ConsistentHash::new("p", HashKey::ClientIp, &b);
    let seq: Vec<usize> = (0..6)
        .map(|_| ch.pick(&b, None, |_| true).unwrap())
        .collect();
    assert_eq!(seq, [0, 1, 2, 0, 1, 2]);
    assert_eq!(ch.pick(&b, Some(42), |_| false), None);
    assert_eq!(ch.pick(&b, Some(42), |i| i == 2), Some(2));
}

/// The ring this was compared with: `100 * weight` virtual nodes per backend on a sorted `u64`
/// circle, binary search for the first point at or after the key.
struct Ring(Vec<(u64, u32)>);

impl Ring {
    fn new(pool: &str, b: &[Backend]) -> Ring {
        let mut points: Vec<(u64, u32)> = b
            .iter()
            .enumerate()
            .flat_map(|(i, be)| {
                let id = identity(pool, be);
                (0..100 * u64::from(be.weight))
                    .map(move |v| (xxh3_64_with_seed(id.as_bytes(), v), i as u32))
            })
            .collect();
        points.sort_unstable();
        Ring(points)
    }

    fn pick(&self, key: u64) -> usize {
        let at = self.0.partition_point(|&(p, _)| p < key) % self.0.len();
        self.0[at].1 as usize
    }
}

/// Prints spread and pick cost of both (`cargo test ring_vs_maglev -- --nocapture`); asserts
/// only what the choice rests on: Maglev is the more even of the two.
#[test]
fn ring_vs_maglev() {
    for n in [10usize, 100] {
        let b = backends(&vec![1; n]);
        let (ch, ring) = (
            ConsistentHash::new("web", HashKey::ClientIp, &b),
            Ring::new("web", &b),
        );
        let hashes: Vec<u64> = keys().collect();
        let maglev_map: Vec<usize> = hashes
            .iter()
            .map(|&k| ch.pick(&b, Some(k), |_| true).unwrap())
            .collect();
        let ring_map: Vec<usize> = hashes.iter().map(|&k| ring.pick(k)).collect();
        let worst =
            |m: &[usize]| *shares(m, n).iter().max().unwrap() as f64 / (KEYS as f64 / n as f64);
        let time = |f: &dyn Fn(u64) -> usize| {
            let start = std::time::Instant::now();
            let sum: usize = hashes.iter().map(|&k| f(k)).sum();
            std::hint::black_box(sum);
            start.elapsed().as_nanos() as f64 / KEYS as f64
        };
        let maglev_ns = time(&|k| ch.pick(&b, Some(k), |_| true).unwrap_or(0));
        let ring_ns = time(&|k| ring.pick(k));
        println!(
            "n={n}: busiest/mean maglev {:.3} ring {:.3}; ns/pick (debug build) maglev {maglev_ns:.1} ring {ring_ns:.1}",
            worst(&maglev_map),
            worst(&ring_map)
        );
        assert!(worst(&maglev_map) <= worst(&ring_map) + 0.01);
    }
}
