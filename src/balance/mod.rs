//! Backend selection: a closed enum of balancers chosen from config.
//!
//! Every balancer is lock-free: per-pool state is atomics shared by all workers, and the pick
//! takes a predicate (`eligible`) so that health, draining, the retry rule "never the same
//! backend twice in a row" and (later) region narrowing are applied by the caller without the
//! balancer knowing about them.

mod least_conn;
mod random_two;
mod round_robin;

pub use least_conn::LeastConn;
pub use random_two::RandomTwo;
pub use round_robin::RoundRobin;

use crate::backend::Backend;
use crate::config::BalanceKind;

#[derive(Debug)]
pub enum Balancer {
    RoundRobin(RoundRobin),
    LeastConn(LeastConn),
    RandomTwo(RandomTwo),
}

impl Balancer {
    /// Builds the balancer for a pool's backends (precomputes what it can, off the request path).
    pub fn new(kind: BalanceKind, backends: &[Backend]) -> Self {
        match kind {
            BalanceKind::RoundRobin => Balancer::RoundRobin(RoundRobin::new(backends)),
            BalanceKind::LeastConn => Balancer::LeastConn(LeastConn::new(backends)),
            BalanceKind::RandomTwo => Balancer::RandomTwo(RandomTwo::new(backends)),
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
