//! The validated model of backends given by DNS names (`{ dns = "name:port" }`,
//! `{ srv = "_svc._proto.name" }`) and `[pool.dns]`.
//!
//! Why apart from `BackendConfig`: a name is not a backend, it is a source of backends whose
//! set changes while Fulcrum runs. The config keeps the names; `crate::discovery` resolves them
//! and the snapshot is built from the config with the addresses found so far added as
//! ordinary backends, so nothing on the request path knows a backend came from DNS.

use std::time::Duration;

/// What a DNS backend names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DnsTarget {
    /// `dns = "name:port"`: every A and AAAA record of `name`, each a backend on `port`.
    Host { name: String, port: u16 },
    /// `srv = "_svc._proto.name"`: the SRV records of the lowest priority, each target's
    /// addresses on the record's port with the record's weight.
    Srv { name: String },
}

impl DnsTarget {
    /// The name as written in the config (`web.internal:8080`, `_http._tcp.web.internal`).
    pub fn label(&self) -> String {
        match self {
            DnsTarget::Host { name, port } => format!("{name}:{port}"),
            DnsTarget::Srv { name } => name.clone(),
        }
    }

    /// `"dns"` or `"srv"`, the key it was written with.
    pub fn kind(&self) -> &'static str {
        match self {
            DnsTarget::Host { .. } => "dns",
            DnsTarget::Srv { .. } => "srv",
        }
    }
}

/// One `backends` entry with `dns` or `srv` instead of `address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsBackend {
    pub target: DnsTarget,
    /// `dns` only (SRV records carry their own weights); > 0.
    pub weight: u32,
    pub region: Option<String>,
}

/// `[pool.dns]`: how the pool's names are re-resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsSettings {
    /// The records' TTL is raised to at least this (a TTL of 0 would mean a query a moment).
    pub min_ttl: Duration,
    /// ... and lowered to at most this (a day-long TTL would hide a scale-down for a day).
    pub max_ttl: Duration,
    /// `true`: `fulcrum run` refuses to start while one of the pool's names does not resolve
    /// (HAProxy's `init-addr last,libc` without `none`). Default `false`: the pool starts
    /// empty, answers 503, and fills when the name resolves.
    pub require: bool,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(300),
            require: false,
        }
    }
}

impl DnsSettings {
    /// A record's TTL, clamped.
    pub fn clamp(&self, ttl: Duration) -> Duration {
        ttl.clamp(self.min_ttl, self.max_ttl.max(self.min_ttl))
    }
}
