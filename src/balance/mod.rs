//! Backend selection: a closed enum of balancers chosen from config.
//!
//! Every balancer is lock-free: per-pool state is atomics shared by all workers, and the pick
//! takes a predicate (`eligible`) so that health, draining, the retry rule "never the same
//! backend twice in a row" and region narrowing are applied by the caller (`select`) without
//! the balancer knowing about them.
//!
//! Two balancers also follow the request: `consistent_hash` (a key hashed from the request) and
//! `sticky_cookie` (a cookie naming a backend). The proxy extracts that as an [`Affinity`] (see
//! `http::affinity`) only for those pools and calls [`Balancer::pick_for`]; the others never see
//! the request and their pick is unchanged.

mod hash;
mod least_conn;
mod random_two;
mod round_robin;
mod sticky;

pub use hash::{ip_hash, key_hash, ConsistentHash};
pub use least_conn::LeastConn;
pub use random_two::RandomTwo;
pub use round_robin::RoundRobin;
pub use sticky::Sticky;

use crate::backend::Backend;
use crate::config::{BalanceKind, HashKey, PoolConfig};

/// What a request says about where it wants to go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Affinity {
    /// Nothing (no key, no cookie, or a balancer that does not care).
    #[default]
    None,
    /// `consistent_hash`: the key's stable hash ([`key_hash`]).
    Hash(u64),
    /// `sticky_cookie`: the backend the cookie names.
    Backend(usize),
}

#[derive(Debug)]
pub enum Balancer {
    RoundRobin(RoundRobin),
    LeastConn(LeastConn),
    RandomTwo(RandomTwo),
    ConsistentHash(ConsistentHash),
    Sticky(Sticky),
}

impl Balancer {
    /// Builds the balancer for a pool's backends (precomputes what it can, off the request path).
    pub fn for_pool(pool: &PoolConfig, backends: &[Backend]) -> Self {
        match pool.balance {
            BalanceKind::ConsistentHash => Balancer::ConsistentHash(ConsistentHash::new(
                &pool.name,
                pool.hash_key.clone(),
                backends,
            )),
            BalanceKind::StickyCookie => {
                Balancer::Sticky(Sticky::new(&pool.name, &pool.sticky_cookie, backends))
            }
            kind => Balancer::new(kind, backends),
        }
    }

    /// Builds a balancer of `kind` with the pool-level defaults (an empty pool name, the default
    /// cookie name): for tests and benches; the snapshot uses [`Balancer::for_pool`].
    pub fn new(kind: BalanceKind, backends: &[Backend]) -> Self {
        match kind {
            BalanceKind::RoundRobin => Balancer::RoundRobin(RoundRobin::new(backends)),
            BalanceKind::LeastConn => Balancer::LeastConn(LeastConn::new(backends)),
            BalanceKind::RandomTwo => Balancer::RandomTwo(RandomTwo::new(backends)),
            BalanceKind::ConsistentHash => {
                Balancer::ConsistentHash(ConsistentHash::new("", HashKey::ClientIp, backends))
            }
            BalanceKind::StickyCookie => {
                Balancer::Sticky(Sticky::new("", "FULCRUM_STICKY", backends))
            }
        }
    }

    /// Index into `backends` of the chosen one among those for which `eligible(index)` holds;
    /// `None` when none is eligible. `backends` is the same slice the balancer was built with.
    #[inline]
    pub fn pick(&self, backends: &[Backend], eligible: impl Fn(usize) -> bool) -> Option<usize> {
        match self {
            Balancer::RoundRobin(b) => b.pick(backends, eligible),
            Balancer::LeastConn(b) => b.pick(backends, eligible),
            Balancer::RandomTwo(b) => b.pick(backends, eligible),
            Balancer::ConsistentHash(b) => b.pick(backends, None, eligible),
            Balancer::Sticky(b) => b.pick(backends, None, eligible),
        }
    }

    /// Like [`Balancer::pick`], following the request's [`Affinity`] where the balancer uses
    /// one (an affinity of the wrong kind is ignored).
    #[inline]
    pub fn pick_for(
        &self,
        backends: &[Backend],
        affinity: Affinity,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        match (self, affinity) {
            (Balancer::ConsistentHash(b), Affinity::Hash(h)) => b.pick(backends, Some(h), eligible),
            (Balancer::Sticky(b), Affinity::Backend(i)) => b.pick(backends, Some(i), eligible),
            _ => self.pick(backends, eligible),
        }
    }
}

/// Pools for the balancers' unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::Arc;

    use crate::backend::{Backend, BackendState};

    /// One backend per weight, on 10.0.0.1:80, 10.0.0.2:80, ...
    pub fn backends(weights: &[u32]) -> Vec<Backend> {
        weights
            .iter()
            .zip(1u8..)
            .map(|(&w, i)| {
                let addr = SocketAddr::from((Ipv4Addr::new(10, 0, 0, i), 80));
                Backend::new(addr, w, None, Arc::new(BackendState::default()))
            })
            .collect()
    }
}
