//! A read-only view of pool and backend health, for `Handle::status` and the admin API.
//! Built on demand from a snapshot (cold path); the request path never calls it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::backend::StateChange;
use crate::clock;
use crate::snapshot::Snapshot;

#[derive(Debug, Clone)]
pub struct PoolStatus {
    pub name: Arc<str>,
    /// Fail-open in effect: every backend down, serving from them anyway.
    pub fail_open_active: bool,
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Clone)]
pub struct BackendStatus {
    pub address: SocketAddr,
    /// The active verdict.
    pub healthy: bool,
    pub ejected: bool,
    pub draining: bool,
    pub inflight: u32,
    pub last_change: Option<Arc<StateChange>>,
}

/// The status of every pool of `snapshot`.
pub fn of(snapshot: &Snapshot) -> Vec<PoolStatus> {
    let now = clock::now_ms();
    snapshot
        .pools
        .iter()
        .map(|p| PoolStatus {
            name: Arc::clone(&p.name),
            fail_open_active: p.fail_open_active.load(Ordering::Relaxed),
            backends: p
                .backends
                .iter()
                .map(|b| BackendStatus {
                    address: b.addr,
                    healthy: b.state.is_healthy(),
                    ejected: b.state.is_ejected(now),
                    draining: b.state.is_draining(),
                    inflight: b.state.inflight(),
                    last_change: b.state.last_change(),
                })
                .collect(),
        })
        .collect()
}
