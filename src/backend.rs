//! Pools and backends as the request path sees them, and the per-backend shared state.
//!
//! `BackendState` holds only atomics: every worker reads and updates it without a lock. It is
//! keyed by `(pool, address)` and carried from one snapshot to the next (see `snapshot.rs`), so a
//! reload neither resets health nor loses in-flight counts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::balance::Balancer;

/// Shared, lock-free state of one backend.
#[derive(Debug)]
pub struct BackendState {
    /// Requests (or connections) in flight, across all workers.
    inflight: AtomicU32,
    /// Active health verdict; a fresh backend is up until a check says otherwise.
    healthy: AtomicBool,
    /// Drained by the operator: no new work, in-flight work finishes.
    draining: AtomicBool,
}

impl Default for BackendState {
    fn default() -> Self {
        BackendState {
            inflight: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
            draining: AtomicBool::new(false),
        }
    }
}

impl BackendState {
    /// Whether new work may be sent here.
    #[inline]
    pub fn is_available(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.draining.load(Ordering::Relaxed)
    }

    #[inline]
    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }

    pub fn set_healthy(&self, up: bool) {
        self.healthy.store(up, Ordering::Relaxed);
    }

    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::Relaxed);
    }

    /// Counts one unit of in-flight work until the guard is dropped.
    #[inline]
    pub fn acquire(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(Arc::clone(self))
    }
}

/// Decrements the backend's in-flight count when dropped (response finished or abandoned).
#[derive(Debug)]
pub struct InflightGuard(Arc<BackendState>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One backend of one pool.
#[derive(Debug, Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    /// > 0.
    pub weight: u32,
    pub region: Option<Arc<str>>,
    /// `addr` as text, built once for logs.
    pub label: Arc<str>,
    pub state: Arc<BackendState>,
}

impl Backend {
    pub fn new(
        addr: SocketAddr,
        weight: u32,
        region: Option<Arc<str>>,
        state: Arc<BackendState>,
    ) -> Self {
        Backend {
            addr,
            weight,
            region,
            label: Arc::from(addr.to_string()),
            state,
        }
    }
}

/// A pool as the request path uses it.
#[derive(Debug)]
pub struct Pool {
    pub name: Arc<str>,
    pub backends: Vec<Backend>,
    pub balancer: Balancer,
    pub retries: u32,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
}
