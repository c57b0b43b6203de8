//! Smooth weighted round robin, lock-free.
//!
//! The order is nginx's "smooth" weighted round robin: weights 5:1:1 give `a a b a c a a`, so a
//! heavy backend's turns are spread over the cycle instead of arriving in a burst of five. nginx
//! computes that order on every pick by mutating a `current_weight` per backend, which needs a
//! lock (or one balancer per worker, which breaks the order across workers). Here the whole cycle
//! is computed once, when the pool is built, and stored as a table of backend indexes; a pick is
//! then one `fetch_add` on a shared cursor and one table read. All workers share the cursor, so
//! the pool as a whole sees the exact weighted order, and over any multiple of the cycle length
//! every backend gets exactly its share, however the picks interleave between threads.
//!
//! Ineligible entries (down, draining, the backend a retry must avoid) are skipped by walking
//! forward in the table; the cursor is then pushed past the skipped entries (`fetch_max`) so the
//! next pick does not walk the same entries again and send their share to the same neighbour.
//! That keeps the shares among the remaining backends in proportion to their weights: exactly
//! when picks do not race, closely when they do (two racing picks may skip to the same entry).

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::backend::Backend;

/// Upper bound on the precomputed cycle. Weights whose reduced sum exceeds it are scaled down
/// proportionally (each kept at least 1), trading a little precision for bounded memory and build
/// time (building is `O(cycle * backends)`, off the request path).
const MAX_CYCLE: u64 = 65_536;

/// Smooth weighted round robin over a precomputed cycle.
#[derive(Debug)]
pub struct RoundRobin {
    /// One full smooth-WRR cycle, as indexes into the pool's backends.
    sequence: Box<[u32]>,
    /// Tickets handed out so far; `cursor % sequence.len()` is the next slot.
    cursor: AtomicUsize,
}

impl RoundRobin {
    /// Precomputes the smooth cycle for `backends`' weights.
    pub fn new(backends: &[Backend]) -> Self {
        let weights: Vec<u64> = backends
            .iter()
            .map(|b| u64::from(b.weight.max(1)))
            .collect();
        RoundRobin {
            sequence: smooth_sequence(&reduce_weights(&weights)).into_boxed_slice(),
            cursor: AtomicUsize::new(0),
        }
    }

    /// The same smooth cycle over plain weights (e.g. a pool's `region_split`).
    pub fn with_weights(weights: &[u32]) -> Self {
        let weights: Vec<u64> = weights.iter().map(|&w| u64::from(w.max(1))).collect();
        RoundRobin {
            sequence: smooth_sequence(&reduce_weights(&weights)).into_boxed_slice(),
            cursor: AtomicUsize::new(0),
        }
    }

    /// The smooth cycle over a subset of a pool's backends, `(index, weight)` each; the cycle
    /// holds the pool's indexes (a region's own cycle, see `region::PoolRegions`).
    pub fn over(members: &[(usize, u32)]) -> Self {
        let weights: Vec<u64> = members.iter().map(|&(_, w)| u64::from(w.max(1))).collect();
        let sequence = smooth_sequence(&reduce_weights(&weights))
            .into_iter()
            .filter_map(|k| members.get(k as usize))
            .filter_map(|&(index, _)| u32::try_from(index).ok())
            .collect();
        RoundRobin {
            sequence,
            cursor: AtomicUsize::new(0),
        }
    }

    /// The next eligible backend in the cycle; `None` when none is eligible.
    #[inline]
    pub fn pick(&self, backends: &[Backend], eligible: impl Fn(usize) -> bool) -> Option<usize> {
        self.pick_among(backends.len(), eligible)
    }

    /// The next eligible index below `count` in the cycle; `None` when none is eligible.
    #[inline]
    pub fn pick_among(&self, count: usize, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.sequence.len();
        if len == 0 {
            return None;
        }
        let ticket = self.cursor.fetch_add(1, Ordering::Relaxed);
        let start = ticket % len;
        for step in 0..len {
            let slot = (start + step) % len;
            let index = self.sequence[slot] as usize;
            // The bound check only guards against a slice other than the one built with.
            if index < count && eligible(index) {
                if step > 0 {
                    // Consume the skipped tickets too, so their share is not absorbed by the
                    // entry that follows them. Monotonic: never rewinds a concurrent pick.
                    self.cursor
                        .fetch_max(ticket.wrapping_add(step + 1), Ordering::Relaxed);
                }
                return Some(index);
            }
        }
        // Nothing eligible: hand the ticket back. Selection asks again with a wider predicate
        // (ejected backends, a backup pool, fail-open); a ticket spent on every failed try
        // would advance the cursor by the number of tries per pick, and with two backends
        // every pick would land on the same one.
        self.cursor.fetch_sub(1, Ordering::Relaxed);
        None
    }

    /// Length of one full cycle (sum of the reduced weights).
    #[cfg(test)]
    fn cycle_len(&self) -> usize {
        self.sequence.len()
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Divides the weights by their gcd and, when the cycle would still exceed [`MAX_CYCLE`], scales
/// them down proportionally (each at least 1).
fn reduce_weights(weights: &[u64]) -> Vec<u64> {
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let mut reduced: Vec<u64> = weights.iter().map(|w| w / g).collect();
    let sum: u64 = reduced.iter().sum();
    if sum > MAX_CYCLE {
        for w in &mut reduced {
            *w = (*w * MAX_CYCLE / sum).max(1);
        }
        let g = reduced.iter().copied().fold(0, gcd).max(1);
        reduced.iter_mut().for_each(|w| *w /= g);
    }
    reduced
}

/// nginx's smooth weighted round robin, run for one full cycle: every step each backend's
/// `current` grows by its weight, the largest (first on ties) is chosen and loses the total.
/// After `sum(weights)` steps every `current` is back to zero, so the cycle repeats exactly.
fn smooth_sequence(weights: &[u64]) -> Vec<u32> {
    // Weights all 1 (equal weights once reduced: the common case) give 0, 1, .., n-1, which
    // the loop below would also produce, in O(n^2): 100 ms of a reload of a 10,000-backend pool.
    if weights.iter().all(|&w| w == 1) {
        return (0..weights.len()).map(|i| i as u32).collect();
    }
    let total: i64 = weights.iter().map(|&w| w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut sequence = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += *w as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        sequence.push(best as u32);
    }
    sequence
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::balance::test_support::backends;
    use std::sync::Arc;

    #[test]
    fn a_pick_that_finds_nothing_does_not_move_the_cycle() {
        let rr = RoundRobin::new(&backends(&[1, 1]));
        let mut seen = Vec::new();
        for _ in 0..4 {
            // A first try that finds nothing eligible, then one that does (select's tiers).
            assert_eq!(rr.pick_among(2, |_| false), None);
            seen.push(rr.pick_among(2, |_| true).unwrap());
        }
        assert_eq!(seen, [0, 1, 0, 1]);
    }

    #[test]
    fn equal_weights_take_the_shortcut_with_the_same_sequence() {
        assert_eq!(smooth_sequence(&[1, 1, 1, 1]), [0, 1, 2, 3]);
        assert_eq!(smooth_sequence(&[]), Vec::<u32>::new());
        // The general loop gives the same for equal weights above 1, once per unit.
        assert_eq!(smooth_sequence(&[2, 2, 2]), [0, 1, 2, 0, 1, 2]);
    }

    fn counts(
        rr: &RoundRobin,
        b: &[Backend],
        picks: usize,
        eligible: impl Fn(usize) -> bool,
    ) -> Vec<usize> {
        let mut c = vec![0; b.len()];
        for _ in 0..picks {
            c[rr.pick(b, &eligible).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn five_one_one_is_smooth() {
        let b = backends(&[5, 1, 1]);
        let rr = RoundRobin::new(&b);
        let seq: Vec<usize> = (0..7).map(|_| rr.pick(&b, |_| true).unwrap()).collect();
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]); // a a b a c a a
        assert_eq!(counts(&rr, &b, 7000, |_| true), [5000, 1000, 1000]);
    }

    #[test]
    fn equal_weights_cycle_is_number_of_backends() {
        let b = backends(&[3, 3, 3, 3]);
        let rr = RoundRobin::new(&b);
        assert_eq!(rr.cycle_len(), 4);
        let seq: Vec<usize> = (0..8).map(|_| rr.pick(&b, |_| true).unwrap()).collect();
        assert_eq!(seq, [0, 1, 2, 3, 0, 1, 2, 3]);
    }

    #[test]
    fn skips_ineligible_and_keeps_proportions() {
        let b = backends(&[5, 1, 1]);
        let rr = RoundRobin::new(&b);
        // The heavy one is down: the two others share equally, not 5:2.
        assert_eq!(counts(&rr, &b, 7000, |i| i != 0), [0, 3500, 3500]);
        let b = backends(&[1, 2, 3, 4]);
        let rr = RoundRobin::new(&b);
        assert_eq!(counts(&rr, &b, 7000, |i| i != 2), [1000, 2000, 0, 4000]);
    }

    #[test]
    fn none_when_nothing_eligible_or_empty() {
        let b = backends(&[5, 1, 1]);
        assert_eq!(RoundRobin::new(&b).pick(&b, |_| false), None);
        assert_eq!(RoundRobin::new(&[]).pick(&[], |_| true), None);
    }

    #[test]
    fn huge_weights_are_scaled_to_a_bounded_cycle() {
        let b = backends(&[1_000_000, 999_999, 1]);
        let rr = RoundRobin::new(&b);
        assert!(rr.cycle_len() as u64 <= MAX_CYCLE + 3);
        let c = counts(&rr, &b, rr.cycle_len(), |_| true);
        assert!(c[2] >= 1 && c[0] >= c[1] && c[1] > c[2]);
    }

    #[test]
    fn concurrent_picks_give_exact_shares() {
        let b = Arc::new(backends(&[5, 1, 1, 3]));
        let rr = Arc::new(RoundRobin::new(&b));
        let cycle = rr.cycle_len();
        assert_eq!(cycle, 10);
        let threads = 4;
        let per_thread = cycle * 2_500;
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (b, rr) = (Arc::clone(&b), Arc::clone(&rr));
                std::thread::spawn(move || {
                    let mut c = [0usize; 4];
                    for _ in 0..per_thread {
                        c[rr.pick(&b, |_| true).unwrap()] += 1;
                    }
                    c
                })
            })
            .collect();
        let mut total = [0usize; 4];
        for h in handles {
            for (t, c) in total.iter_mut().zip(h.join().unwrap()) {
                *t += c;
            }
        }
        let rounds = threads * per_thread / cycle;
        assert_eq!(total, [5 * rounds, rounds, rounds, 3 * rounds]);
    }
}
