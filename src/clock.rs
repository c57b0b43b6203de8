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
    let elapsed = BASE.get_or_init(Instant::now).elapsed().as_millis();
    u64::try_from(elapsed).unwrap_or(u64::MAX - 1) + 1
}
