//! Shared test machinery: backends, Fulcrum launchers, clients, a bounded wait, and the check
//! for programs some tests need.

pub mod backend;
pub mod client;
pub mod external;
pub mod flip;
pub mod postgres;
pub mod proxy;
pub mod redis;
pub mod tcp;

pub use external::require;

use std::time::{Duration, Instant};

/// Polls `condition` (every 10 ms) until it holds or `within` has passed; returns whether it held.
pub async fn wait_until(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Blocking variant for code outside a runtime.
pub fn wait_until_blocking(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
