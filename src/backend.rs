//! One backend as the request path sees it, and its shared state. A leaf: it imports nothing
//! of the crate, so balancers, regions and pools can all build on it.
//!
//! `BackendState` holds only atomics: every worker reads and updates it without a lock. It is
//! keyed by `(pool, address)` and carried from one snapshot to the next (`snapshot.rs`), so a
//! reload neither resets health nor loses in-flight counts.
//!
//! Health is written by two parties and read by the request path: the active checker (its own
//! task on the control runtime) writes `healthy` and `up_since`; passive ejection
//! (`health::passive`, called by the proxy after each attempt) writes the failure streak and
//! `ejected_until`. Times are `clock::now_ms()` values. The last state change with its reason is
//! kept for the admin API in `last_change`, a cold-path value the request path never reads.
//!
//! Open upstream connections are counted here too (`[[pool]] max_connections`, per backend,
//! across all workers): a new connection takes a slot ([`BackendState::take_slot`]) and holds it
//! until the connection closes ([`UpstreamSlot`]'s drop). Taking a free slot is one
//! compare-and-swap; only a request that finds the backend full waits, in a bounded queue
//! (`max_queue`) for at most `queue_timeout`, parked on a `tokio::sync::Notify` (whose internal
//! lock is touched on that slow path only). An idle pooled connection reuses its own slot.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use tokio::sync::Notify;

/// The cap on one backend's open upstream connections (`[[pool]] max_connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamCap {
    /// Open connections at most; 0 = no cap.
    pub max: u32,
    /// Requests (or tcp connections) waiting for a slot at most; past it: refused at once.
    pub max_queue: u32,
    /// How long one waits for a free slot.
    pub queue_timeout: Duration,
}

impl UpstreamCap {
    /// No cap: connections are only counted.
    pub const NONE: UpstreamCap = UpstreamCap {
        max: 0,
        max_queue: 0,
        queue_timeout: Duration::ZERO,
    };
}

/// Why no upstream connection slot was had: the backend is at `max_connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    #[error("backend at max_connections and its wait queue is full")]
    QueueFull,
    #[error("backend at max_connections: no connection freed within queue_timeout")]
    Timeout,
}

/// What a backend is, as logs, the status page and the admin API name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Takes new work.
    Up,
    /// Failed its active checks.
    Down,
    /// Passively ejected for a while after failing real traffic.
    Ejected,
    /// A role-checked backend no check has decided yet: takes no traffic.
    Unknown,
    /// Down in a role-checked pool because it answers with another role (a replica in the
    /// write pool): healthy, just not this pool's.
    Standby,
    /// Drained by the operator: no new work, in-flight work finishes.
    Draining,
}

impl Condition {
    /// The lowercase name used in logs, JSON and the page.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Up => "up",
            Condition::Down => "down",
            Condition::Ejected => "ejected",
            Condition::Unknown => "unknown",
            Condition::Standby => "standby",
            Condition::Draining => "draining",
        }
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A health state change and why, kept for status pages (cold path only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub at: SystemTime,
    pub state: Condition,
    pub reason: String,
}

/// The outcome of the last active check (cold path only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub at: SystemTime,
    pub ok: bool,
    pub latency: Duration,
    pub error: Option<String>,
}

/// Shared, lock-free state of one backend.
#[derive(Debug)]
pub struct BackendState {
    /// Requests (or connections) in flight, across all workers.
    inflight: AtomicU32,
    /// Active health verdict; a fresh backend is up until a check says otherwise, except in
    /// a role-checked pool, where it starts down and `unknown` until its first check.
    healthy: AtomicBool,
    /// No check has decided this backend yet (role-checked pools only).
    unknown: AtomicBool,
    /// The last check found it answering with another role (role-checked pools only).
    standby: AtomicBool,
    /// Connections handed to it (tcp listeners), for the status page's rates.
    connections: AtomicU64,
    /// Drained by the operator: no new work, in-flight work finishes.
    draining: AtomicBool,
    /// Passive: failed attempts in a row.
    pub(crate) failures: AtomicU32,
    /// Passive: ejections since the last success after a return (the doubling exponent).
    pub(crate) ejections: AtomicU32,
    /// Passive: ejected while `now_ms() < ejected_until`; 0 = never ejected.
    pub(crate) ejected_until: AtomicU64,
    /// When the backend last came up (or was added by a reload); 0 = up from the start.
    up_since: AtomicU64,
    /// Last state change and its reason (cold path: logs and the admin API).
    last_change: ArcSwapOption<StateChange>,
    /// Last active check (cold path: the admin API).
    last_check: ArcSwapOption<CheckResult>,
    /// Open upstream connections (each holds an [`UpstreamSlot`]), across all workers.
    upstream: AtomicU32,
    /// Waiting for a slot ([`BackendState::take_slot`]'s queue).
    waiting: AtomicU32,
    /// A slot was freed while someone waited.
    freed: Notify,
}

impl Default for BackendState {
    fn default() -> Self {
        BackendState {
            inflight: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
            unknown: AtomicBool::new(false),
            standby: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            up_since: AtomicU64::new(0),
            last_change: ArcSwapOption::empty(),
            last_check: ArcSwapOption::empty(),
            upstream: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            freed: Notify::new(),
        }
    }
}

impl BackendState {
    /// A backend of a role-checked pool before its first check: no traffic until it passes.
    pub fn unknown() -> Self {
        BackendState {
            healthy: AtomicBool::new(false),
            unknown: AtomicBool::new(true),
            ..BackendState::default()
        }
    }

    /// No check has decided this backend yet.
    pub fn is_unknown(&self) -> bool {
        self.unknown.load(Ordering::Relaxed)
    }

    /// Down because the last check found the node holding another role (role-checked pools).
    pub fn holds_other_role(&self) -> bool {
        !self.is_healthy() && self.standby.load(Ordering::Relaxed)
    }

    /// Whether the last check found the node holding another role.
    pub fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::Relaxed);
    }

    /// Counts a connection handed to this backend (tcp).
    #[inline]
    pub fn count_connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections handed to this backend since it was added.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Whether new work may be sent here.
    #[inline]
    pub fn is_available(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.draining.load(Ordering::Relaxed)
    }

    #[inline]
    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// The active verdict alone (not draining, not ejection).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// What the backend is at `now`: draining wins over down, down over ejected.
    pub fn condition(&self, now: u64) -> Condition {
        if self.is_draining() {
            Condition::Draining
        } else if self.is_unknown() {
            Condition::Unknown
        } else if !self.is_healthy() && self.standby.load(Ordering::Relaxed) {
            Condition::Standby
        } else if !self.is_healthy() {
            Condition::Down
        } else if self.is_ejected(now) {
            Condition::Ejected
        } else {
            Condition::Up
        }
    }

    /// Passively ejected at `now` (a `clock::now_ms()` value).
    #[inline]
    pub fn is_ejected(&self, now: u64) -> bool {
        now < self.ejected_until.load(Ordering::Relaxed)
    }

    /// When the backend last returned to service (came up, was added, or its ejection ended);
    /// 0 when it has been in service since the start. Slow start ramps from here.
    #[inline]
    pub fn in_service_since(&self) -> u64 {
        self.up_since
            .load(Ordering::Relaxed)
            .max(self.ejected_until.load(Ordering::Relaxed))
    }

    /// Sets the active verdict; coming up at `now` starts its slow-start ramp and ends a
    /// passive ejection (the checks just saw it recover: it returns as a fresh backend).
    pub fn set_healthy_at(&self, up: bool, now: u64) {
        if up && !self.healthy.load(Ordering::Relaxed) {
            self.up_since.store(now, Ordering::Relaxed);
            self.ejected_until.store(0, Ordering::Relaxed);
            self.failures.store(0, Ordering::Relaxed);
            self.ejections.store(0, Ordering::Relaxed);
        }
        self.healthy.store(up, Ordering::Relaxed);
        self.unknown.store(false, Ordering::Relaxed);
    }

    pub fn set_healthy(&self, up: bool) {
        self.healthy.store(up, Ordering::Relaxed);
    }

    /// A backend added by a reload ramps like one that came back.
    pub fn mark_added(&self, now: u64) {
        self.up_since.store(now, Ordering::Relaxed);
    }

    /// Records a state change for status pages (cold path).
    pub fn record_change(&self, state: Condition, reason: String) {
        self.last_change.store(Some(Arc::new(StateChange {
            at: SystemTime::now(),
            state,
            reason,
        })));
    }

    /// The last state change, if any (cold path).
    pub fn last_change(&self) -> Option<Arc<StateChange>> {
        self.last_change.load_full()
    }

    /// Records an active check's outcome (cold path).
    pub fn record_check(&self, result: CheckResult) {
        self.last_check.store(Some(Arc::new(result)));
    }

    /// The last active check, if any ran (cold path).
    pub fn last_check(&self) -> Option<Arc<CheckResult>> {
        self.last_check.load_full()
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

impl BackendState {
    /// Open upstream connections to this backend, across all workers.
    pub fn upstream_connections(&self) -> u32 {
        self.upstream.load(Ordering::Relaxed)
    }

    /// Requests (or tcp connections) waiting for a free slot now.
    #[inline]
    pub fn slot_waiters(&self) -> u32 {
        self.waiting.load(Ordering::SeqCst)
    }

    /// One compare-and-swap: a slot when fewer than `max` are open (`max` 0: always).
    #[inline]
    fn try_slot(&self, max: u32) -> bool {
        if max == 0 {
            self.upstream.fetch_add(1, Ordering::SeqCst);
            return true;
        }
        self.upstream
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// A slot for one new upstream connection under `cap`: at once when one is free, else
    /// after waiting in the backend's queue (at most `cap.max_queue` waiters) for up to
    /// `cap.queue_timeout`.
    #[inline]
    pub async fn take_slot(self: &Arc<Self>, cap: UpstreamCap) -> Result<UpstreamSlot, Busy> {
        if self.try_slot(cap.max) {
            return Ok(UpstreamSlot(Arc::clone(self)));
        }
        // Cold path: boxed, so callers' futures stay small.
        Box::pin(self.wait_slot(cap)).await
    }

    #[cold]
    async fn wait_slot(self: &Arc<Self>, cap: UpstreamCap) -> Result<UpstreamSlot, Busy> {
        let joined = self
            .waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < cap.max_queue).then_some(n + 1)
            });
        if joined.is_err() {
            return Err(Busy::QueueFull);
        }
        let _queued = Queued(&self.waiting);
        let deadline = tokio::time::Instant::now() + cap.queue_timeout;
        loop {
            // Registered before looking, so a slot freed in between is not missed: a release
            // that sees no waiter happened before `waiting` grew, and this look sees it.
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            if self.try_slot(cap.max) {
                return Ok(UpstreamSlot(Arc::clone(self)));
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(Busy::Timeout);
            }
        }
    }
}

/// Leaves the wait queue when dropped (slot taken, timed out, or the request abandoned).
struct Queued<'a>(&'a AtomicU32);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One open upstream connection's slot: held by the connection (its task, or the tcp proxy)
/// and freed when it closes, waking one waiter.
#[derive(Debug)]
pub struct UpstreamSlot(Arc<BackendState>);

impl UpstreamSlot {
    /// The backend whose slot this is.
    pub fn state(&self) -> &Arc<BackendState> {
        &self.0
    }
}

impl Drop for UpstreamSlot {
    fn drop(&mut self) {
        self.0.upstream.fetch_sub(1, Ordering::SeqCst);
        if self.0.waiting.load(Ordering::SeqCst) > 0 {
            self.0.freed.notify_one();
        }
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
    /// `name` of `[[pool]] backends`, for the status page (`None`: shown by address).
    pub name: Option<Arc<str>>,
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
            name: None,
            state,
        }
    }
}
