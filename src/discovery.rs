//! DNS discovery: `dns` and `srv` backends resolved (hickory-resolver) and re-resolved on
//! their records' TTL, on the control runtime, never on the request path.
//!
//! How a change reaches the request path: [`Discovered`] holds the last good answer of every
//! (pool, name); the snapshot is always built from the config with those addresses added as
//! ordinary backends ([`Discovered::expand`]), and a name whose answer changed asks the
//! reloader to rebuild (the `on_change` hook). The snapshot carries backend state by
//! `(pool, address)`, so an address that stays keeps its health, in-flight counts and hash
//! position, one that appears ramps up with slow start and waits for its role check, and one
//! that goes away drains (requests in flight finish on the old snapshot).
//!
//! A name that stops resolving (NXDOMAIN, SERVFAIL, timeout) keeps its last good set: a DNS
//! outage must not empty a pool that serves fine. It is logged, counted
//! (`fulcrum_dns_resolutions_total{pool,result}`) and shown by the status API.

// The table of answers is read by the status API and written by one task per name: a cold
// path (a few writes per TTL), never the request path.
#![allow(clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use hickory_resolver::config::LookupIpStrategy;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

use crate::config::{BackendConfig, Config, DnsBackend, DnsSettings, DnsTarget, Global};

/// Why the resolver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("DNS resolver: {0}")]
    Resolver(String),
    #[error("pool {pool:?}: {name} does not resolve ({reason}) and [pool.dns] require = true")]
    Required {
        pool: String,
        name: String,
        reason: String,
    },
}

/// One name's addresses: `(address, weight)`, sorted, and how long they are good for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub addresses: Vec<(SocketAddr, u32)>,
    /// The smallest TTL of the records used, unclamped.
    pub ttl: Duration,
}

/// How a resolution went, the `result` label of `fulcrum_dns_resolutions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The name does not exist.
    Nxdomain,
    /// It exists but has no records of the type asked (or SRV targets without addresses).
    NoRecords,
    Timeout,
    /// SERVFAIL, REFUSED, a transport error.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Nxdomain => "nxdomain",
            Outcome::NoRecords => "no_records",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
        }
    }
}

/// A failed resolution: its class and the resolver's words.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub outcome: Outcome,
    pub message: String,
}

impl From<NetError> for Failure {
    fn from(e: NetError) -> Failure {
        let outcome = match &e {
            NetError::Timeout => Outcome::Timeout,
            NetError::Dns(DnsError::NoRecordsFound(n))
                if n.response_code == ResponseCode::NXDomain =>
            {
                Outcome::Nxdomain
            }
            NetError::Dns(DnsError::NoRecordsFound(_)) => Outcome::NoRecords,
            _ => Outcome::Error,
        };
        Failure {
            outcome,
            message: e.to_string(),
        }
    }
}

/// What the status API shows of one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameStatus {
    pub pool: String,
    /// `"dns"` or `"srv"`.
    pub kind: &'static str,
    /// As written: `web.internal:8080`, `_http._tcp.web.internal`.
    pub name: String,
    /// The last good answer (kept while the name fails).
    pub addresses: Vec<(SocketAddr, u32)>,
    pub resolved_at: Option<SystemTime>,
    /// The last resolution's failure, cleared by the next success.
    pub error: Option<String>,
}

type Key = (String, DnsTarget);

#[derive(Debug, Default, Clone)]
struct Entry {
    answer: Option<Answer>,
    resolved_at: Option<SystemTime>,
    error: Option<String>,
}

/// The last good answer of every (pool, name); shared by the resolution tasks, the reloader
/// (which builds snapshots from it) and the status API.
#[derive(Debug, Default)]
pub struct Discovered {
    entries: Mutex<BTreeMap<Key, Entry>>,
}

impl Discovered {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `config` with every pool's discovered addresses added to its `backends` (a literal
    /// backend with the same address wins; an address two names give is added once).
    pub fn expand(&self, config: &Config) -> Config {
        let entries = self.lock();
        let mut out = config.clone();
        for pool in &mut out.pools {
            for name in &pool.names {
                let key = (pool.name.clone(), name.target.clone());
                let Some(answer) = entries.get(&key).and_then(|e| e.answer.as_ref()) else {
                    continue;
                };
                for &(address, srv_weight) in &answer.addresses {
                    if pool.backends.iter().any(|b| b.address == address) {
                        continue;
                    }
                    pool.backends.push(BackendConfig {
                        address,
                        name: None,
                        weight: weight_of(name, srv_weight),
                        region: name.region.clone(),
                    });
                }
            }
        }
        out
    }

    /// Every name of `config`, in config order, with what is known of it.
    pub fn status(&self, config: &Config) -> Vec<NameStatus> {
        let entries = self.lock();
        names(config)
            .map(|(pool, name, _)| {
                let e = entries
                    .get(&(pool.to_string(), name.target.clone()))
                    .cloned()
                    .unwrap_or_default();
                NameStatus {
                    pool: pool.to_string(),
                    kind: name.target.kind(),
                    name: name.target.label(),
                    addresses: e.answer.map(|a| a.addresses).unwrap_or_default(),
                    resolved_at: e.resolved_at,
                    error: e.error,
                }
            })
            .collect()
    }

    /// Records a resolution; `true` when the answer's addresses changed (a rebuild is due).
    fn record(&self, key: &Key, result: &Result<Answer, Failure>) -> bool {
        let mut entries = self.lock();
        let entry = entries.entry(key.clone()).or_default();
        match result {
            Ok(answer) => {
                let changed =
                    entry.answer.as_ref().map(|a| &a.addresses) != Some(&answer.addresses);
                entry.answer = Some(answer.clone());
                entry.resolved_at = Some(SystemTime::now());
                entry.error = None;
                changed
            }
            Err(f) => {
                entry.error = Some(f.message.clone());
                false
            }
        }
    }

    /// Forgets names no pool of `config` has any more.
    fn retain(&self, config: &Config) {
        let keep: Vec<Key> = names(config)
            .map(|(pool, name, _)| (pool.to_string(), name.target.clone()))
            .collect();
        self.lock().retain(|k, _| keep.contains(k));
    }
}

/// A backend's weight: the config's for `dns`, the record's for `srv` (0 counts as 1: RFC 2782
/// gives weight-0 targets a small share, not none).
fn weight_of(name: &DnsBackend, srv_weight: u32) -> u32 {
    match name.target {
        DnsTarget::Host { .. } => name.weight,
        DnsTarget::Srv { .. } => srv_weight.max(1),
    }
}

/// Every (pool name, name, settings) of `config`.
fn names(config: &Config) -> impl Iterator<Item = (&str, &DnsBackend, DnsSettings)> {
    config
        .pools
        .iter()
        .flat_map(|p| p.names.iter().map(move |n| (p.name.as_str(), n, p.dns)))
}

/// Whether `config` names any DNS backend at all (no resolver is built otherwise).
pub fn any(config: &Config) -> bool {
    names(config).next().is_some()
}

/// The resolver for `[global] resolvers` (empty: the system's resolv.conf and hosts file).
/// No cache: each resolution is a fresh query, so a `max_ttl` below the records' TTL is
/// honoured and a removed record is seen at the next resolution.
pub(crate) fn resolver(global: &Global) -> Result<TokioResolver, DiscoveryError> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = if global.resolvers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| DiscoveryError::Resolver(e.to_string()))?
    } else {
        let servers = global
            .resolvers
            .iter()
            .map(|addr| {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
            })
            .collect();
        TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
    };
    let opts: &mut ResolverOpts = builder.options_mut();
    opts.cache_size = 0;
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    builder
        .build()
        .map_err(|e| DiscoveryError::Resolver(e.to_string()))
}

/// Resolves one name once.
pub(crate) async fn resolve(
    resolver: &TokioResolver,
    target: &DnsTarget,
) -> Result<Answer, Failure> {
    match target {
        DnsTarget::Host { name, port } => {
            let (ips, ttl) = host(resolver, name).await?;
            Ok(answer(
                ips.into_iter().map(|ip| (SocketAddr::new(ip, *port), 1)),
                ttl,
            ))
        }
        DnsTarget::Srv { name } => {
            let lookup = resolver.srv_lookup(fqdn(name)).await?;
            let records: Vec<_> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(srv) => Some((srv.clone(), r.ttl)),
                    _ => None,
                })
                .collect();
            // The lowest priority value is the one in use; the others are its fallbacks.
            let Some(best) = records.iter().map(|(s, _)| s.priority).min() else {
                return Err(no_records(name));
            };
            let mut ttl = u32::MAX;
            let mut addresses = Vec::new();
            for (srv, record_ttl) in records.iter().filter(|(s, _)| s.priority == best) {
                ttl = ttl.min(*record_ttl);
                let target = srv.target.to_ascii();
                // A target that fails is left out; the others still serve.
                match host(resolver, &target).await {
                    Ok((ips, t)) => {
                        ttl = ttl.min(t.as_secs().try_into().unwrap_or(u32::MAX));
                        let weight = u32::from(srv.weight);
                        addresses.extend(
                            ips.into_iter()
                                .map(|ip| (SocketAddr::new(ip, srv.port), weight)),
                        );
                    }
                    Err(f) => {
                        tracing::warn!(srv = %name, %target, "SRV target does not resolve: {}", f.message)
                    }
                }
            }
            if addresses.is_empty() {
                return Err(no_records(name));
            }
            Ok(answer(
                addresses.into_iter(),
                Duration::from_secs(ttl.into()),
            ))
        }
    }
}

fn no_records(name: &str) -> Failure {
    Failure {
        outcome: Outcome::NoRecords,
        message: format!("{name}: no usable records"),
    }
}

/// Sorted and deduplicated (an address listed twice would double its weight).
fn answer(addresses: impl Iterator<Item = (SocketAddr, u32)>, ttl: Duration) -> Answer {
    let mut addresses: Vec<_> = addresses.collect();
    addresses.sort_unstable();
    addresses.dedup_by_key(|(a, _)| *a);
    Answer { addresses, ttl }
}

/// A and AAAA of `name`, and the smallest TTL among them.
async fn host(resolver: &TokioResolver, name: &str) -> Result<(Vec<IpAddr>, Duration), Failure> {
    let lookup = resolver.lookup_ip(fqdn(name)).await?;
    let records = lookup.as_lookup().answers();
    let ttl = records.iter().map(|r| r.ttl).min().unwrap_or(0);
    let ips: Vec<IpAddr> = lookup.iter().collect();
    if ips.is_empty() {
        return Err(no_records(name));
    }
    Ok((ips, Duration::from_secs(ttl.into())))
}

/// A name with a trailing dot is looked up as is, without the search list; a config names
/// hosts as written, but `localhost` and other single labels keep the system's rules.
fn fqdn(name: &str) -> String {
    if name.contains('.') && !name.ends_with('.') {
        format!("{name}.")
    } else {
        name.to_string()
    }
}

/// Counts and logs one resolution.
fn observe(pool: &str, name: &DnsBackend, result: &Result<Answer, Failure>) {
    let outcome = result.as_ref().map_or_else(|f| f.outcome, |_| Outcome::Ok);
    crate::metrics::get()
        .dns_resolutions
        .with_label_values(&[pool, outcome.as_str()])
        .inc();
    if let Err(f) = result {
        tracing::warn!(
            %pool,
            name = %name.target.label(),
            result = outcome.as_str(),
            "DNS name does not resolve, keeping its last good addresses: {}",
            f.message
        );
    }
}

/// Resolves every name of `config` once (at start, before the first snapshot), so pools start
/// with their backends. A name that fails is an error only under `require = true`.
pub(crate) async fn first_round(
    config: &Config,
    resolver: &TokioResolver,
    discovered: &Discovered,
) -> Result<(), DiscoveryError> {
    let all: Vec<_> = names(config).collect();
    // Concurrently: a start with many names waits for the slowest, not their sum.
    let pending: Vec<_> = all
        .iter()
        .map(|(_, name, _)| {
            let (resolver, target) = (resolver.clone(), name.target.clone());
            tokio::spawn(async move { resolve(&resolver, &target).await })
        })
        .collect();
    let mut results = Vec::with_capacity(pending.len());
    for p in pending {
        results.push(p.await.unwrap_or_else(|e| {
            Err(Failure {
                outcome: Outcome::Error,
                message: e.to_string(),
            })
        }));
    }
    for ((pool, name, settings), result) in all.iter().zip(results) {
        observe(pool, name, &result);
        discovered.record(&(pool.to_string(), name.target.clone()), &result);
        if let (Err(f), true) = (&result, settings.require) {
            return Err(DiscoveryError::Required {
                pool: pool.to_string(),
                name: name.target.label(),
                reason: f.message.clone(),
            });
        }
    }
    Ok(())
}

/// Called when an answer changed: rebuild the snapshot from the running config.
pub(crate) type OnChange = Arc<dyn Fn() + Send + Sync>;

/// The running resolution tasks, one per name; dropping this stops them.
pub(crate) struct DiscoveryTasks {
    /// What they resolve, to tell whether a new config needs new tasks.
    names: Vec<(String, DnsBackend, DnsSettings)>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl std::fmt::Debug for DiscoveryTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DiscoveryTasks({} names)", self.names.len())
    }
}

impl Drop for DiscoveryTasks {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl DiscoveryTasks {
    /// No names, no tasks.
    pub(crate) fn none() -> DiscoveryTasks {
        DiscoveryTasks {
            names: Vec::new(),
            tasks: Vec::new(),
        }
    }

    /// Whether these tasks resolve exactly the names of `config` (a reload that changes no
    /// name keeps them and their timers).
    pub(crate) fn serve(&self, config: &Config) -> bool {
        let wanted: Vec<_> = names(config)
            .map(|(p, n, s)| (p.to_string(), n.clone(), s))
            .collect();
        wanted == self.names
    }
}

/// One task per name of `config` on `control`: resolve, record, rebuild on change, sleep the
/// clamped TTL (after a failure: `min_ttl`, so a recovering name is noticed soon). The first
/// resolution happens at once (a name added by a reload fills its pool without waiting).
pub(crate) fn spawn(
    config: &Config,
    resolver: &TokioResolver,
    discovered: &Arc<Discovered>,
    control: &tokio::runtime::Handle,
    on_change: &OnChange,
) -> DiscoveryTasks {
    discovered.retain(config);
    let names: Vec<_> = names(config)
        .map(|(p, n, s)| (p.to_string(), n.clone(), s))
        .collect();
    let tasks = names
        .iter()
        .map(|(pool, name, settings)| {
            let (pool, name, settings) = (pool.clone(), name.clone(), *settings);
            let resolver = resolver.clone();
            let discovered = Arc::clone(discovered);
            let on_change = Arc::clone(on_change);
            control
                .spawn(async move {
                    let key = (pool.clone(), name.target.clone());
                    loop {
                        let result = resolve(&resolver, &name.target).await;
                        observe(&pool, &name, &result);
                        if discovered.record(&key, &result) {
                            tracing::info!(
                                %pool,
                                name = %name.target.label(),
                                addresses = ?result.as_ref().map(|a| a.addresses.len()).unwrap_or(0),
                                "DNS answer changed: rebuilding the pool"
                            );
                            let on_change = Arc::clone(&on_change);
                            // The rebuild takes the reloader's lock: off the async threads.
                            let _ = tokio::task::spawn_blocking(move || on_change()).await;
                        }
                        let wait = match &result {
                            Ok(a) => settings.clamp(a.ttl),
                            Err(_) => settings.min_ttl,
                        };
                        tokio::time::sleep(wait).await;
                    }
                })
                .abort_handle()
        })
        .collect();
    DiscoveryTasks { names, tasks }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PoolConfig;

    fn config_with(names: Vec<DnsBackend>, literal: Vec<BackendConfig>) -> Config {
        let mut pool = PoolConfig::new("web", literal);
        pool.names = names;
        Config {
            source: None,
            fingerprint: None,
            global: Global::default(),
            listeners: Vec::new(),
            pools: vec![pool],
            regions: Vec::new(),
            geo: Default::default(),
            gslb: None,
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn expand_adds_answers_once_and_literal_addresses_win() {
        let host = DnsBackend {
            target: DnsTarget::Host {
                name: "web.internal".into(),
                port: 80,
            },
            weight: 3,
            region: Some("us-east".into()),
        };
        let srv = DnsBackend {
            target: DnsTarget::Srv {
                name: "_http._tcp.web.internal".into(),
            },
            weight: 1,
            region: None,
        };
        let literal = BackendConfig {
            address: addr("10.0.0.1:80"),
            name: None,
            weight: 1,
            region: None,
        };
        let config = config_with(vec![host.clone(), srv.clone()], vec![literal]);
        let d = Discovered::default();
        let ttl = Duration::from_secs(5);
        let ok = |a: Vec<(&str, u32)>| -> Result<Answer, Failure> {
            Ok(answer(a.into_iter().map(|(s, w)| (addr(s), w)), ttl))
        };
        let host_key = ("web".to_string(), host.target.clone());
        let srv_key = ("web".to_string(), srv.target.clone());
        assert!(d.record(&host_key, &ok(vec![("10.0.0.1:80", 1), ("10.0.0.2:80", 1)])));
        assert!(d.record(&srv_key, &ok(vec![("10.0.0.2:80", 0), ("10.0.0.3:81", 7)])));
        // The same answer again changes nothing; a failure keeps the last good one.
        assert!(!d.record(&host_key, &ok(vec![("10.0.0.2:80", 1), ("10.0.0.1:80", 1)])));
        let fail = Err(Failure {
            outcome: Outcome::Timeout,
            message: "request timed out".into(),
        });
        assert!(!d.record(&host_key, &fail));

        let expanded = d.expand(&config);
        let got: Vec<_> = expanded.pools[0]
            .backends
            .iter()
            .map(|b| (b.address.to_string(), b.weight, b.region.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("10.0.0.1:80".to_string(), 1, None),
                ("10.0.0.2:80".to_string(), 3, Some("us-east".to_string())),
                ("10.0.0.3:81".to_string(), 7, None),
            ]
        );
        let status = d.status(&config);
        assert_eq!(status[0].error.as_deref(), Some("request timed out"));
        assert_eq!(status[0].addresses.len(), 2);
        assert_eq!(status[1].kind, "srv");
    }
}
