//! A pool as the request path uses it: its backends, the balancer over them, each backend's
//! region, the retry budget and the pool's timeouts and policies, compiled once per snapshot.
//!
//! Why its own file: the backend is a leaf that balancers and regions build on, and a pool is
//! built from all three; keeping `Pool` here keeps `backend.rs` free of upward imports.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{Backend, UpstreamCap};
use crate::balance::Balancer;
use crate::budget::RetryBudget;
use crate::config::{
    BackendId, HealthConfig, OnDown, PassiveConfig, PoolConfig, PoolId, RetryOn, UpstreamProtocol,
};
use crate::region::{PoolRegions, Regions};
use crate::tls::client::UpstreamTls;

/// A pool as the request path uses it.
#[derive(Debug)]
pub struct Pool {
    pub name: Arc<str>,
    pub backends: Vec<Backend>,
    pub balancer: Balancer,
    pub retries: u32,
    /// Which failures are retried.
    pub retry_on: RetryOn,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    /// `max_connections`, `max_queue`, `queue_timeout`: open connections per backend.
    pub upstream: UpstreamCap,
    /// The pool that serves when none here is available.
    pub backup: Option<PoolId>,
    /// Ramp length in milliseconds; 0 = none.
    pub slow_start_ms: u64,
    pub fail_open: bool,
    /// Fail-open is in effect (every backend down, nothing in the backup chain): for status.
    pub fail_open_active: AtomicBool,
    /// The active check, run by `health::checker` (never read on the request path).
    pub health: Option<Arc<HealthConfig>>,
    pub passive: PassiveConfig,
    /// Caps retries to a share of this pool's requests.
    pub budget: RetryBudget,
    /// Each backend's region id and the `region_split`, resolved at snapshot build.
    pub regions: PoolRegions,
    /// tcp: a PROXY v2 header naming the client starts every backend connection.
    pub send_proxy: bool,
    /// tcp: open connections of a backend that goes down are closed.
    pub on_down: OnDown,
    /// HTTP/1.1, h2c, h2 or auto (ALPN) to the backends.
    pub protocol: UpstreamProtocol,
    /// `[pool.tls]`, built once per snapshot (its session cache resumes reconnects); used by
    /// requests and health checks alike.
    pub tls: Option<Arc<UpstreamTls>>,
}

impl Pool {
    /// Compiles `[[pool]]` `pc` over `backends` (built from its backend list, with their
    /// carried state), each backend's region resolved in `regions`.
    pub fn build(pc: &PoolConfig, backends: Vec<Backend>, regions: &Regions) -> Pool {
        Pool {
            name: Arc::from(pc.name.as_str()),
            balancer: Balancer::for_pool(pc, &backends),
            regions: PoolRegions::build(&backends, &pc.region_split, regions),
            backends,
            retries: pc.retries,
            retry_on: pc.retry_on,
            connect_timeout: pc.connect_timeout,
            request_timeout: pc.request_timeout,
            idle_timeout: pc.idle_timeout,
            upstream: UpstreamCap {
                max: pc.max_connections,
                max_queue: pc.max_queue,
                queue_timeout: pc.queue_timeout,
            },
            backup: pc.backup,
            slow_start_ms: u64::try_from(pc.slow_start.as_millis()).unwrap_or(u64::MAX),
            fail_open: pc.fail_open,
            fail_open_active: Default::default(),
            health: pc.health.clone().map(Arc::new),
            passive: pc.passive,
            budget: Default::default(),
            send_proxy: pc.send_proxy,
            on_down: pc.on_down,
            protocol: pc.protocol,
            tls: pc
                .tls
                .as_ref()
                .map(|t| crate::tls::client::build(&pc.name, t, pc.protocol)),
        }
    }

    /// Backend `id` of this pool.
    #[inline]
    pub fn backend(&self, id: BackendId) -> &Backend {
        &self.backends[id.index()]
    }

    /// Health or drain state of a backend changed: lets the balancer precompute what it can
    /// for the new membership (consistent hashing's fallback table), off the request path.
    pub fn membership_changed(&self) {
        if let Balancer::ConsistentHash(hash) = &self.balancer {
            hash.rebuild(&self.backends, |i| self.backends[i].state.is_available());
        }
    }
}
