//! The validated model of a pool's health settings: `[pool.health]` (active checks) and
//! `[pool.passive]` (ejection from real traffic).
//!
//! Kept apart from `mod.rs` because it is a self-contained family of types that the health
//! checkers (`crate::health`) consume; the request path only sees what the snapshot derives.

use std::time::Duration;

/// `[pool.health]`: an active check run against every backend of the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    pub kind: HealthKind,
    /// http: the path requested.
    pub path: String,
    /// http: statuses that count as healthy.
    pub expect_status: StatusRanges,
    /// tcp: bytes sent after connecting (empty: send nothing).
    pub send: String,
    /// tcp: substring the reply must contain (empty: a connect is enough).
    pub expect: String,
    /// postgres: the role login, database, role wanted and replica lag allowed.
    pub postgres: Option<PostgresCheck>,
    /// grpc: the service asked about in `grpc.health.v1.Health/Check` ("" = the server).
    pub service: String,
    /// Side port to check instead of the backend's; 0 = the backend's own port.
    pub port: u16,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes that mark a down backend up.
    pub rise: u32,
    /// Consecutive failures that mark an up backend down.
    pub fall: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthKind {
    Http,
    Tcp,
    /// Log in with tokio-postgres (no TLS) and compare `pg_is_in_recovery()` with the role.
    Postgres,
    /// `grpc.health.v1.Health/Check` over HTTP/2 (h2c, or h2 with `[pool.tls]`): up when
    /// the answer is SERVING.
    Grpc,
}

/// `kind = "postgres"`: who logs in where, and which role the node must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresCheck {
    pub role: PgRole,
    pub user: String,
    /// Empty: the server's default (the user's name).
    pub database: String,
    /// Read at every check (a rotated password is picked up); trailing newline dropped.
    pub password_file: Option<std::path::PathBuf>,
    /// replica: down when replay lags more than this; `None`: lag is not checked.
    pub max_lag: Option<Duration>,
}

/// The role a `postgres` check wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgRole {
    /// Not in recovery: takes writes.
    Primary,
    /// In recovery: a streaming (or archive) replica.
    Replica,
}

impl HealthConfig {
    /// Whether the check tells a node's role apart (a postgres `role`, a tcp `expect` such as
    /// `role:master`), not just whether it answers: then a backend nobody has checked yet
    /// could be the wrong node, and takes no traffic until its first check passes.
    pub fn decides_role(&self) -> bool {
        match self.kind {
            HealthKind::Postgres => true,
            HealthKind::Tcp => !self.expect.is_empty(),
            // A server answers NOT_SERVING for a service it does not (yet) serve.
            HealthKind::Grpc => true,
            HealthKind::Http => false,
        }
    }

    /// An http check with the documented defaults.
    pub fn http() -> Self {
        HealthConfig {
            kind: HealthKind::Http,
            path: "/healthz".into(),
            expect_status: StatusRanges::default(),
            send: String::new(),
            expect: String::new(),
            postgres: None,
            service: String::new(),
            port: 0,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }
    }

    /// A tcp check (connect, or send/expect) with the documented defaults.
    pub fn tcp() -> Self {
        HealthConfig {
            kind: HealthKind::Tcp,
            ..HealthConfig::http()
        }
    }
}

/// A set of inclusive status ranges, e.g. `"200-299,301"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRanges(pub Vec<(u16, u16)>);

impl Default for StatusRanges {
    /// `"200-399"`.
    fn default() -> Self {
        StatusRanges(vec![(200, 399)])
    }
}

impl StatusRanges {
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
    }

    /// Parses `"200-399"`, `"200,204"` or `"200-299,301"`; statuses are 100..=599.
    pub fn parse(text: &str) -> Result<StatusRanges, String> {
        let status = |s: &str| -> Result<u16, String> {
            match s.trim().parse::<u16>() {
                Ok(n) if (100..=599).contains(&n) => Ok(n),
                _ => Err(format!(
                    "must be statuses 100-599 such as \"200-399\" or \"200,204\", got {text:?}"
                )),
            }
        };
        let mut ranges = Vec::new();
        for part in text.split(',') {
            let range = match part.split_once('-') {
                Some((lo, hi)) => (status(lo)?, status(hi)?),
                None => {
                    let s = status(part)?;
                    (s, s)
                }
            };
            if range.0 > range.1 {
                return Err(format!("range {:?} is empty (low > high)", part.trim()));
            }
            ranges.push(range);
        }
        Ok(StatusRanges(ranges))
    }
}

/// `[pool.passive]`: ejection after consecutive failures of real requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveConfig {
    /// Connect errors, timeouts or 5xx answers in a row that eject a backend; 0 disables.
    pub consecutive_failures: u32,
    /// First ejection length; doubles on each repeat ejection, up to [`MAX_EJECTION`].
    pub eject_for: Duration,
}

/// The longest a repeatedly failing backend stays ejected.
pub const MAX_EJECTION: Duration = Duration::from_secs(300);

impl Default for PassiveConfig {
    fn default() -> Self {
        PassiveConfig {
            consecutive_failures: 5,
            eject_for: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StatusRanges;

    #[test]
    fn expect_status_forms() {
        let r = StatusRanges::parse("200-399").expect("range");
        assert!(r.contains(200) && r.contains(399) && !r.contains(400) && !r.contains(199));
        let r = StatusRanges::parse("200,204").expect("list");
        assert_eq!(r.0, vec![(200, 200), (204, 204)]);
        assert!(!r.contains(201));
        let r = StatusRanges::parse("200-299, 301").expect("mixed");
        assert!(r.contains(250) && r.contains(301) && !r.contains(302));
    }

    #[test]
    fn expect_status_errors() {
        for bad in ["", "abc", "99", "600", "300-200", "200-", "200,,204"] {
            assert!(StatusRanges::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
