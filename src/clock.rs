//! A coarse monotonic clock in milliseconds, for state the request path compares cheaply.
//!
//! Ejection deadlines, "up since" stamps and retry-budget buckets are stored in `AtomicU64`s as
//! milliseconds since one process-wide base `Instant`, so comparing them is an integer compare
//! and storing one needs no lock. The value is never 0 (0 means "unset" in those atomics).

use std::sync::OnceLock;
use std::time::Instant;

static BASE: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the first call in this process, plus one.
#[inline]
pub fn now_ms() -> u64 {
    ms_at(Instant::now())
}

/// [`now_ms`] at an instant read already (the request path reads the clock once per
/// exchange and derives what it needs from that reading). An instant before the base is 1.
#[inline]
pub fn ms_at(at: Instant) -> u64 {
    let base = *BASE.get_or_init(Instant::now);
    let elapsed = at.saturating_duration_since(base).as_millis();
    u64::try_from(elapsed).unwrap_or(u64::MAX - 1) + 1
}
