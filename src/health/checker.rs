//! Active checks: one task per backend on the control runtime, following a snapshot.
//!
//! [`spawn`] takes a snapshot and starts a task for every backend of every pool with a
//! `[pool.health]`; the returned [`HealthTasks`] aborts them when dropped, so a reload can start
//! the new snapshot's set and drop the old one (the verdict lives in the carried-over
//! `BackendState`, so nothing is lost). A task checks, counts with [`Thresholds`], writes the
//! verdict into the backend's atomics on a change (the request path only reads them), logs it
//! with its reason, and sleeps `interval` +-10% (jitter so checks of many backends spread out).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::AbortHandle;

use super::{grpc, probe, report, Thresholds};
use crate::backend::{BackendState, CheckResult, Condition};
use crate::chain::Chain;
use crate::clock;
use crate::config::{HealthConfig, HealthKind};
use crate::snapshot::Snapshot;

/// The running checks of one snapshot; dropping it stops them.
#[derive(Debug, Default)]
pub struct HealthTasks(Vec<AbortHandle>);

impl HealthTasks {
    /// How many backends are being checked.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl Drop for HealthTasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Starts one check task per backend of every pool with a health config.
pub fn spawn(snapshot: &Arc<Snapshot>, rt: &tokio::runtime::Handle) -> HealthTasks {
    let mut tasks = Vec::new();
    for (pool_index, pool) in snapshot.pools.iter().enumerate() {
        let Some(cfg) = &pool.health else { continue };
        for b in &pool.backends {
            let task = Checker {
                pool: Arc::clone(&pool.name),
                label: Arc::clone(&b.label),
                addr: b.addr,
                state: Arc::clone(&b.state),
                cfg: Arc::clone(cfg),
                snapshot: Arc::clone(snapshot),
                pool_index,
            };
            tasks.push(rt.spawn(task.run()).abort_handle());
        }
    }
    HealthTasks(tasks)
}

/// Whether every backend under an active check has had its first check (`/ready`, and the
/// new process of a binary upgrade before it tells the old one to go).
pub fn first_round_done(snapshot: &Snapshot) -> bool {
    snapshot
        .pools
        .iter()
        .filter(|p| p.health.is_some())
        .flat_map(|p| &p.backends)
        .all(|b| b.state.last_check().is_some())
}

/// A backend the old process of a binary upgrade had out of service: down by its active
/// checks, or passively ejected for `ejected_ms` more milliseconds (then also `ejections`, the
/// doubling exponent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Down {
    pub pool: String,
    pub addr: SocketAddr,
    /// 0: down by its checks; else the rest of its passive ejection.
    pub ejected_ms: u64,
    pub ejections: u32,
}

/// Every backend out of service now: down by its active checks (pools with checks), or
/// passively ejected (any pool). What the old process of a binary upgrade hands over, so the
/// new one sends them nothing before its own checks (or the ejection's end) bring them back.
pub fn down_set(snapshot: &Snapshot) -> Vec<Down> {
    let now = clock::now_ms();
    let mut down = Vec::new();
    for p in &snapshot.pools {
        for b in &p.backends {
            let checked_down = p.health.is_some() && !b.state.is_healthy() && !b.state.is_unknown();
            let until = b.state.ejected_until.load(Ordering::Relaxed);
            if checked_down || until > now {
                down.push(Down {
                    pool: p.name.to_string(),
                    addr: b.addr,
                    ejected_ms: if checked_down { 0 } else { until - now },
                    ejections: b.state.ejections.load(Ordering::Relaxed),
                });
            }
        }
    }
    down
}

/// Applies `down` (from [`down_set`] of the old process) to a fresh snapshot: a backend down
/// by checks starts down (it needs `rise` passing checks here too; pools without checks here
/// ignore it), an ejected one stays ejected for the rest of its time.
pub fn start_down(snapshot: &Snapshot, down: &[Down]) {
    if down.is_empty() {
        return;
    }
    let now = clock::now_ms();
    for p in &snapshot.pools {
        for b in &p.backends {
            let Some(d) = down.iter().find(|d| *d.pool == *p.name && d.addr == b.addr) else {
                continue;
            };
            if d.ejected_ms > 0 {
                b.state
                    .ejected_until
                    .store(now + d.ejected_ms, Ordering::Relaxed);
                b.state.ejections.store(d.ejections, Ordering::Relaxed);
                b.state.record_change(
                    Condition::Ejected,
                    "ejected in the old process (binary upgrade)".to_string(),
                );
            } else if p.health.is_some() {
                b.state.set_healthy(false);
                b.state.record_change(
                    Condition::Down,
                    "down in the old process (binary upgrade)".to_string(),
                );
            }
        }
        p.membership_changed();
    }
}

/// `interval` scaled by `factor`, where `factor` in `[0, 1)` maps to -10%..+10%.
pub fn jittered(interval: Duration, factor: f64) -> Duration {
    interval.mul_f64(0.9 + 0.2 * factor.clamp(0.0, 1.0))
}

struct Checker {
    pool: Arc<str>,
    label: Arc<str>,
    addr: SocketAddr,
    state: Arc<BackendState>,
    cfg: Arc<HealthConfig>,
    /// The snapshot this check belongs to, to tell the pool's balancer about a change.
    snapshot: Arc<Snapshot>,
    pool_index: usize,
}

impl Checker {
    async fn run(self) {
        let cfg = &*self.cfg;
        let mut thresholds = if self.state.is_unknown() {
            // Undecided (a role-checked backend at start, or added): checked at once, and
            // the first result decides.
            Thresholds::undecided(cfg.rise, cfg.fall)
        } else {
            // Spread the first checks of known backends over a tenth of the interval.
            tokio::time::sleep(cfg.interval.mul_f64(0.1 * fastrand::f64())).await;
            Thresholds::new(cfg.rise, cfg.fall, self.state.is_healthy())
        };
        loop {
            let started = std::time::Instant::now();
            let pool = &self.snapshot.pools[self.pool_index];
            let transport = probe::Transport {
                tls: pool.tls.as_deref(),
                protocol: pool.protocol,
            };
            let result = check(self.addr, cfg, transport).await;
            self.state
                .set_standby(matches!(&result, Err(e) if e.is_standby()));
            self.state.record_check(CheckResult {
                at: std::time::SystemTime::now(),
                ok: result.is_ok(),
                latency: started.elapsed(),
                error: result.as_ref().err().map(|e| Chain(e).to_string()),
            });
            crate::metrics::get()
                .health_checks
                .with_label_values(&[
                    &*self.pool,
                    &*self.label,
                    if result.is_ok() { "ok" } else { "fail" },
                ])
                .inc();
            if let Some(up) = thresholds.record(result.is_ok()) {
                let first = self.state.is_unknown();
                self.state.set_healthy_at(up, clock::now_ms());
                self.snapshot.pools[self.pool_index].membership_changed();
                let (state, reason) = match (&result, first) {
                    (Ok(()), true) => (Condition::Up, "first check passed".to_string()),
                    (Ok(()), false) => (Condition::Up, format!("{} checks passed", cfg.rise)),
                    (Err(e), true) => {
                        (Condition::Down, format!("first check failed: {}", Chain(e)))
                    }
                    (Err(e), false) => (
                        Condition::Down,
                        format!("{} checks failed: {}", cfg.fall, Chain(e)),
                    ),
                };
                report(&self.pool, &self.label, &self.state, state, reason);
            }
            tokio::time::sleep(jittered(cfg.interval, fastrand::f64())).await;
        }
    }
}

/// Runs one check of `backend` within the check's timeout; http and grpc checks go over
/// `transport` (the pool's TLS and protocol).
async fn check(
    backend: SocketAddr,
    cfg: &HealthConfig,
    transport: probe::Transport<'_>,
) -> Result<(), probe::ProbeError> {
    let addr = probe::target(backend, cfg);
    let run = async {
        match cfg.kind {
            HealthKind::Http => probe::http_check(addr, cfg, transport).await,
            HealthKind::Tcp => probe::tcp_check(addr, cfg).await,
            HealthKind::Postgres => probe::postgres_check(addr, cfg).await,
            HealthKind::Grpc => grpc::check(addr, cfg, transport).await,
        }
    };
    tokio::time::timeout(cfg.timeout, run)
        .await
        .unwrap_or(Err(probe::ProbeError::Timeout(cfg.timeout)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::jittered;

    #[test]
    fn jitter_is_ten_percent_either_way() {
        let i = Duration::from_secs(2);
        assert_eq!(jittered(i, 0.0), Duration::from_millis(1800));
        assert_eq!(jittered(i, 0.5), Duration::from_secs(2));
        assert!(jittered(i, 0.999_999) <= Duration::from_millis(2200));
    }
}
