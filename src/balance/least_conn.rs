//! Weighted least connections, lock-free.
//!
//! The load of a backend is its in-flight count (`BackendState::inflight`, shared by all workers,
//! so every worker sees the whole pool's load) divided by its weight. Ratios are compared by cross
//! multiplication in `u64` (`a.inflight * b.weight < b.inflight * a.weight`): exact, no floats, no
//! overflow (both factors fit in `u32`).
//!
//! Equal loads are common (an idle pool is all zeros). Always taking the first of the tied
//! backends would send every tie to one backend. Starting the scan at a rotating offset is better
//! but still unfair: the backend just after a loaded or ineligible one wins the ties of both (with
//! `[0, 0, 0, 1]` in flight, the first would get half). So a pick takes a ticket from one shared
//! `AtomicUsize` and, when several backends share the lowest load, takes the `ticket % ties`-th of
//! them: tied backends take strict turns. That costs a second scan only when there is a tie.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::backend::Backend;

/// Weighted least connections with rotating tie-breaking.
#[derive(Debug)]
pub struct LeastConn {
    /// Tickets for tie-breaking: which of the tied backends this pick takes.
    rotor: AtomicUsize,
}

impl LeastConn {
    pub fn new(_backends: &[Backend]) -> Self {
        LeastConn {
            rotor: AtomicUsize::new(0),
        }
    }

    /// The eligible backend with the lowest `inflight / weight`; tied backends take turns.
    /// `None` when none is eligible.
    pub fn pick(&self, backends: &[Backend], eligible: impl Fn(usize) -> bool) -> Option<usize> {
        // First pass: the lowest load, its first holder, and how many backends share it.
        // (index, inflight, weight) of the best so far.
        let mut best: Option<(usize, u64, u64)> = None;
        let mut ties = 0usize;
        for (i, b) in backends.iter().enumerate() {
            if !eligible(i) {
                continue;
            }
            let (load, weight) = load_of(b);
            match best {
                Some((_, best_load, best_weight)) => {
                    match (load * best_weight).cmp(&(best_load * weight)) {
                        std::cmp::Ordering::Less => {
                            best = Some((i, load, weight));
                            ties = 1;
                        }
                        std::cmp::Ordering::Equal => ties += 1,
                        std::cmp::Ordering::Greater => {}
                    }
                }
                None => {
                    best = Some((i, load, weight));
                    ties = 1;
                }
            }
        }
        let (first, best_load, best_weight) = best?;
        if ties == 1 {
            return Some(first);
        }
        // Second pass: the `ticket % ties`-th tied backend. Loads may have moved since the first
        // pass (other workers); if the chosen one is no longer found, the first holder will do.
        let mut skip = self.rotor.fetch_add(1, Ordering::Relaxed) % ties;
        for (i, b) in backends.iter().enumerate().skip(first) {
            if !eligible(i) {
                continue;
            }
            let (load, weight) = load_of(b);
            if load * best_weight == best_load * weight {
                if skip == 0 {
                    return Some(i);
                }
                skip -= 1;
            }
        }
        Some(first)
    }
}

/// `(inflight, weight)` of a backend, widened so that cross products cannot overflow.
#[inline]
fn load_of(b: &Backend) -> (u64, u64) {
    (u64::from(b.state.inflight()), u64::from(b.weight.max(1)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::backend::InflightGuard;
    use crate::balance::test_support::backends;

    /// Holds `n` in-flight units on backend `i`.
    fn load(b: &[Backend], i: usize, n: usize) -> Vec<InflightGuard> {
        (0..n).map(|_| b[i].state.acquire()).collect()
    }

    #[test]
    fn picks_the_fewest_in_flight() {
        let b = backends(&[1, 1, 1]);
        let lc = LeastConn::new(&b);
        let _g = [load(&b, 0, 3), load(&b, 1, 1), load(&b, 2, 2)];
        for _ in 0..10 {
            assert_eq!(lc.pick(&b, |_| true), Some(1));
        }
        // Not eligible: the next least loaded.
        assert_eq!(lc.pick(&b, |i| i != 1), Some(2));
    }

    #[test]
    fn respects_weights() {
        let b = backends(&[4, 1]);
        let lc = LeastConn::new(&b);
        // 3/4 < 1/1: the heavy one, although it has more in flight.
        let _g = [load(&b, 0, 3), load(&b, 1, 1)];
        assert_eq!(lc.pick(&b, |_| true), Some(0));
        // 5/4 > 1/1.
        let _more = load(&b, 0, 2);
        assert_eq!(lc.pick(&b, |_| true), Some(1));
    }

    #[test]
    fn follows_load_as_it_builds_up() {
        let b = backends(&[2, 1]);
        let lc = LeastConn::new(&b);
        let mut guards = Vec::new();
        let mut counts = [0; 2];
        for _ in 0..30 {
            let i = lc.pick(&b, |_| true).unwrap();
            counts[i] += 1;
            guards.push(b[i].state.acquire());
        }
        assert_eq!(counts, [20, 10]);
    }

    #[test]
    fn rotates_ties() {
        let b = backends(&[1, 1, 1, 1]);
        let lc = LeastConn::new(&b);
        let _g = load(&b, 3, 1);
        let mut counts = [0; 4];
        for _ in 0..300 {
            counts[lc.pick(&b, |_| true).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 100, 100, 0]);
        // Same with the loaded one in the middle, and weights: 0/2 == 0/1.
        let b = backends(&[2, 1, 1]);
        let lc = LeastConn::new(&b);
        let _g = load(&b, 1, 1);
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[lc.pick(&b, |_| true).unwrap()] += 1;
        }
        assert_eq!(counts, [150, 0, 150]);
    }

    #[test]
    fn none_when_nothing_eligible_or_empty() {
        let b = backends(&[1, 2]);
        assert_eq!(LeastConn::new(&b).pick(&b, |_| false), None);
        assert_eq!(LeastConn::new(&[]).pick(&[], |_| true), None);
    }
}
