//! Backend health: active checks and passive ejection (which backend then takes the work is
//! `crate::select`'s call).
//!
//! Health is in two parts (pingora's shape): atomics in `BackendState` that the request path
//! reads, and the bookkeeping that decides them, owned by whoever observes the backend. This
//! file holds that bookkeeping for active checks as a pure state machine ([`Thresholds`]:
//! `rise` successes in a row mark a backend up, `fall` failures down), plus the one place state
//! changes are logged and kept for the admin API ([`report`]).
//!
//! Fresh backends start **up**: at start (and for a backend a reload adds) nothing is known, and
//! marking everything down until `rise` checks pass would turn every restart of Fulcrum into an
//! outage of `rise x interval`. A dead backend is instead found by the first checks (`fall x
//! interval`) and, before that, by connect failures that retries and passive ejection absorb.
//!
//! - `probe.rs`: one check (http, tcp, tcp send/expect, postgres role and replica lag).
//! - `grpc.rs`: the grpc check (`grpc.health.v1.Health/Check`).
//! - `checker.rs`: one task per backend on the control runtime.
//! - `passive.rs`: ejection from real traffic, called by the proxy.
//! - `status.rs`: a read-only view for `Handle::status` and the admin API.

pub mod checker;
mod grpc;
pub mod passive;
pub mod probe;
pub mod status;

use crate::backend::{BackendState, Condition};

/// Consecutive-result counting for one backend's active checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thresholds {
    rise: u32,
    fall: u32,
    up: bool,
    /// Results in a row that disagree with `up`.
    streak: u32,
    /// `false` until the first result: an undecided backend is decided by it alone.
    decided: bool,
}

impl Thresholds {
    /// `up`: the current verdict (fresh backends start up; a restarted checker keeps the
    /// verdict it finds in the shared state).
    pub fn new(rise: u32, fall: u32, up: bool) -> Self {
        Thresholds {
            rise: rise.max(1),
            fall: fall.max(1),
            up,
            streak: 0,
            decided: true,
        }
    }

    /// For a backend nobody has checked yet (role-checked pools): the first result decides,
    /// so a right-role node takes traffic after one passed check, not `rise`.
    pub fn undecided(rise: u32, fall: u32) -> Self {
        Thresholds {
            decided: false,
            ..Thresholds::new(rise, fall, false)
        }
    }

    #[cfg(test)]
    fn is_up(&self) -> bool {
        self.up
    }

    /// Counts one check result; `Some(new verdict)` when it changes the state.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if !self.decided {
            self.decided = true;
            self.up = ok;
            return Some(ok);
        }
        if ok == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up { self.fall } else { self.rise };
        if self.streak >= needed {
            self.up = ok;
            self.streak = 0;
            Some(ok)
        } else {
            None
        }
    }
}

/// Logs a state change once, with its reason, and keeps it for status pages:
/// `pool web: 10.0.0.2:80 down: 3 checks failed: connect refused`.
pub fn report(
    pool: &str,
    backend: &str,
    backend_state: &BackendState,
    state: Condition,
    reason: String,
) {
    if state == Condition::Up {
        tracing::info!("pool {pool}: {backend} {state}: {reason}");
    } else {
        tracing::warn!("pool {pool}: {backend} {state}: {reason}");
    }
    backend_state.record_change(state, reason);
}

#[cfg(test)]
mod tests {
    use super::Thresholds;

    #[test]
    fn an_undecided_backend_is_decided_by_its_first_result() {
        let mut t = Thresholds::undecided(2, 3);
        assert_eq!(t.record(true), Some(true), "up after one pass, not rise");
        assert_eq!(t.record(false), None, "then the usual fall");
        let mut t = Thresholds::undecided(2, 3);
        assert_eq!(t.record(false), Some(false), "down, and no longer unknown");
        assert_eq!(t.record(true), None, "then the usual rise");
        assert_eq!(t.record(true), Some(true));
    }

    #[test]
    fn fall_failures_in_a_row_mark_down() {
        let mut t = Thresholds::new(2, 3, true);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(false));
        assert!(!t.is_up());
        assert_eq!(t.record(false), None, "no second transition");
    }

    #[test]
    fn a_success_resets_the_failure_streak() {
        let mut t = Thresholds::new(2, 3, true);
        t.record(false);
        t.record(false);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert!(t.is_up());
        assert_eq!(t.record(false), Some(false));
    }

    #[test]
    fn rise_successes_in_a_row_mark_up() {
        let mut t = Thresholds::new(2, 3, false);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None, "streak broken");
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(true));
        assert!(t.is_up());
    }

    #[test]
    fn thresholds_of_one_flip_at_once() {
        let mut t = Thresholds::new(1, 1, true);
        assert_eq!(t.record(false), Some(false));
        assert_eq!(t.record(true), Some(true));
    }
}
