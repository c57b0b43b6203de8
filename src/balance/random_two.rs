//! Power of two choices, lock-free.
//!
//! Draw two distinct backends at random and take the less loaded (`inflight / weight`, compared by
//! cross multiplication). Compared with least connections it reads two counters instead of all of
//! them, needs no shared cursor (the RNG is `fastrand`'s thread-local one: nothing is written to
//! shared memory), and avoids the herd effect where every worker sends its next request to the
//! same "least loaded" backend at once; the load still stays within a small factor of the best.
//!
//! Ineligible backends: a draw that lands on one is retried a few times, which keeps the choice
//! uniform among the eligible ones; if that keeps failing (most of the pool is out) a scan from a
//! random start finds an eligible backend if there is one, so a pick never fails spuriously.

use crate::backend::Backend;

/// Random draws tried before falling back to a scan.
const DRAWS: usize = 4;

/// Power of two random choices.
#[derive(Debug)]
pub struct RandomTwo {}

impl RandomTwo {
    pub fn new(_backends: &[Backend]) -> Self {
        RandomTwo {}
    }

    /// The less loaded of two distinct random eligible backends (the only one when just one is
    /// eligible); `None` when none is eligible.
    pub fn pick(&self, backends: &[Backend], eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let n = backends.len();
        let first = draw(n, None, &eligible)?;
        let Some(second) = draw(n, Some(first), &eligible) else {
            return Some(first);
        };
        let (a, b) = (&backends[first], &backends[second]);
        let load_a = u64::from(a.state.inflight()) * u64::from(b.weight.max(1));
        let load_b = u64::from(b.state.inflight()) * u64::from(a.weight.max(1));
        Some(if load_b < load_a { second } else { first })
    }
}

/// A random eligible index in `0..n` other than `exclude`, or `None` if there is none.
fn draw(n: usize, exclude: Option<usize>, eligible: &impl Fn(usize) -> bool) -> Option<usize> {
    // Candidates other than `exclude`.
    let span = n.checked_sub(usize::from(exclude.is_some()))?;
    if span == 0 {
        return None;
    }
    // Maps 0..span onto 0..n skipping `exclude`.
    let index = |k: usize| match exclude {
        Some(x) if k >= x => k + 1,
        _ => k,
    };
    for _ in 0..DRAWS {
        let i = index(fastrand::usize(..span));
        if eligible(i) {
            return Some(i);
        }
    }
    let start = fastrand::usize(..span);
    (0..span)
        .map(|k| index((start + k) % span))
        .find(|&i| eligible(i))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::balance::test_support::backends;

    #[test]
    fn always_picks_an_eligible_one() {
        let b = backends(&[1; 10]);
        let r = RandomTwo::new(&b);
        for only in 0..10 {
            for _ in 0..200 {
                assert_eq!(r.pick(&b, |i| i == only), Some(only));
            }
        }
        for _ in 0..1000 {
            let i = r.pick(&b, |i| i % 3 == 1).unwrap();
            assert_eq!(i % 3, 1);
        }
    }

    #[test]
    fn zero_and_one_backends() {
        assert_eq!(RandomTwo::new(&[]).pick(&[], |_| true), None);
        let b = backends(&[1]);
        let r = RandomTwo::new(&b);
        assert_eq!(r.pick(&b, |_| true), Some(0));
        assert_eq!(r.pick(&b, |_| false), None);
        let b = backends(&[1, 1, 1]);
        assert_eq!(RandomTwo::new(&b).pick(&b, |_| false), None);
    }

    #[test]
    fn two_backends_always_compares_both() {
        let b = backends(&[1, 1]);
        let r = RandomTwo::new(&b);
        let _g = b[0].state.acquire();
        for _ in 0..100 {
            assert_eq!(r.pick(&b, |_| true), Some(1));
        }
    }

    #[test]
    fn prefers_the_less_loaded() {
        let b = backends(&[1; 4]);
        let r = RandomTwo::new(&b);
        // In flight: 0, 1, 2, 3. Of the 6 equally likely pairs, backend k wins 3 - k.
        let _g: Vec<_> = (1..4)
            .flat_map(|i| (0..i).map(move |_| i))
            .map(|i| b[i].state.acquire())
            .collect();
        let mut counts = [0usize; 4];
        for _ in 0..12_000 {
            counts[r.pick(&b, |_| true).unwrap()] += 1;
        }
        assert_eq!(counts[3], 0, "{counts:?}");
        assert!(
            counts[0] > 5_000 && counts[1] > 3_000 && counts[2] > 1_000,
            "{counts:?}"
        );
        assert!(counts[0] > counts[1] && counts[1] > counts[2], "{counts:?}");
    }

    #[test]
    fn weights_scale_the_load() {
        let b = backends(&[10, 1]);
        let r = RandomTwo::new(&b);
        // 5/10 < 1/1.
        let _g: Vec<_> = (0..5).map(|_| b[0].state.acquire()).collect();
        let _h = b[1].state.acquire();
        for _ in 0..100 {
            assert_eq!(r.pick(&b, |_| true), Some(0));
        }
    }

    #[test]
    fn uniform_among_eligible_when_idle() {
        let b = backends(&[1; 5]);
        let r = RandomTwo::new(&b);
        let mut counts = [0usize; 5];
        for _ in 0..20_000 {
            counts[r.pick(&b, |i| i != 2).unwrap()] += 1;
        }
        assert_eq!(counts[2], 0);
        for (i, c) in counts.iter().enumerate().filter(|(i, _)| *i != 2) {
            assert!((4_000..6_000).contains(c), "backend {i}: {counts:?}");
        }
    }
}
