//! `Config` -> immutable `Snapshot`: what the request path reads, through one `ArcSwap` load
//! of `Live::snapshot` (the one such value of the process, with its counters beside it).
//!
//! A snapshot is never mutated. Building one compiles routes and balancers off the request path;
//! per-backend state (`BackendState`) is looked up in the previous snapshot by `(pool, address)`
//! and shared, so in-flight counts and health survive a rebuild.
//!
//! Per-listener state is carried the same way, by slot: a tcp listener's byte counts and the
//! per-client limiter state of `[listener.limits]` (`limits::ClientLimits::build` decides what
//! of it a changed config keeps).
//!
//! Listeners are addressed by a *slot* that stays the same across rebuilds while the listener's
//! name and bind stay the same: a connection remembers its slot, so after a reload that adds or
//! removes other listeners it still finds its own listener (or learns it was removed).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::acme_state::AcmeState;
use crate::backend::{Backend, BackendState};
use crate::chain::Chain;
use crate::clock;
use crate::config::{
    Config, GslbConfig, ListenerConfig, ListenerSlot, PoolId, Protocol, TraceMode,
};
use crate::limits::ClientLimits;
use crate::metrics::{HandshakeCounters, ListenerMetrics, RegionMetrics, TcpBytes};
use crate::pool::Pool;
use crate::region::Regions;
use crate::route::RouteTable;
use crate::splice::Forwarding;
use crate::tls::ServerTls;

use arc_swap::ArcSwap;
use ipnet::IpNet;

/// One open client connection in its listener's and the process's counts, charged its
/// descriptors (see `listener`), until dropped: with the connection's last part, its task or
/// its place among the parked idle connections (`http1::park`).
#[derive(Debug)]
pub struct OpenGuard {
    listener: Arc<AtomicUsize>,
    shared: Arc<Live>,
    descriptors: usize,
}

impl OpenGuard {
    /// Counts a connection already added to `listener`, `shared.open` and
    /// `shared.descriptors` (the accept loop adds, checking its limits as it does).
    pub fn new(listener: Arc<AtomicUsize>, shared: Arc<Live>, descriptors: usize) -> Self {
        OpenGuard {
            listener,
            shared,
            descriptors,
        }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.listener.fetch_sub(1, Ordering::Relaxed);
        self.shared.open.fetch_sub(1, Ordering::Relaxed);
        self.shared
            .descriptors
            .fetch_sub(self.descriptors, Ordering::Relaxed);
    }
}

/// What the data path shares while Fulcrum runs: the live snapshot behind its one `ArcSwap`,
/// the process-wide settings read on the data path, and the open-connection count.
#[derive(Debug)]
pub struct Live {
    /// The one shared value of the request path: read with one load per request.
    pub snapshot: ArcSwap<Snapshot>,
    pub client_header_timeout: Duration,
    pub client_idle_timeout: Duration,
    pub client_send_timeout: Duration,
    pub client_body_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Snapshots build the request path's metric handles (off only to measure their cost).
    pub metrics: bool,
    /// How tcp listeners move bytes.
    pub tcp_forwarding: Forwarding,
    /// Open client connections, all listeners together (kept by the accept loops).
    pub(crate) open: AtomicUsize,
    /// Of those, idle HTTP/1 connections parked off their tasks (`http1::park`).
    pub(crate) parked: AtomicUsize,
    /// Descriptors the open client connections are charged (theirs and the upstream ones they
    /// lead to; see `listener`), kept by the accept loops.
    pub(crate) descriptors: AtomicUsize,
    /// The most `descriptors` may reach: `RLIMIT_NOFILE` less a reserve, set at start
    /// (`usize::MAX`: no limit known).
    pub descriptor_budget: usize,
    /// Where the process is in its life (`/ready`, shutdown, binary upgrade); never read on
    /// the request path.
    pub phase: tokio::sync::watch::Sender<Phase>,
    /// ACME's shared state: the HTTP-01 answers every http listener serves, and the status
    /// of each listener's certificate for the admin API.
    pub acme: Arc<AcmeState>,
}

/// The process's lifecycle as `/ready` reports it (`GET /ready` is 200 only in `Serving`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Listening; the first round of active health checks has not finished.
    Starting,
    /// Listening, and every checked backend has had its first check.
    Serving,
    /// A shutdown or a binary upgrade began: in-flight work finishes (upgrade: the old
    /// process keeps serving until the new one is ready, and again if it fails).
    Draining,
    /// The new process of a binary upgrade is ready: this one stops accepting on every
    /// socket, the admin API's included, and drains.
    HandedOver,
}

impl Live {
    /// The first snapshot of a run, built from `config`, with `[global]`'s data-path
    /// settings and the start options the data path reads.
    pub fn new(config: &Config, metrics: bool, tcp_forwarding: Forwarding) -> Live {
        if config.global.http1_engine == Some(crate::config::Http1Engine::Hyper) {
            tracing::warn!("[global] http1_engine = \"hyper\" is no longer available: Fulcrum's own HTTP/1 engine serves every HTTP/1 client (the key can go)");
        }
        Live {
            snapshot: ArcSwap::from_pointee(Snapshot::build(config, None, metrics)),
            client_header_timeout: config.global.client_header_timeout,
            client_idle_timeout: config.global.client_idle_timeout,
            client_send_timeout: config.global.client_send_timeout,
            client_body_timeout: config.global.client_body_timeout,
            shutdown_grace: config.global.shutdown_grace,
            metrics,
            tcp_forwarding,
            open: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            descriptors: AtomicUsize::new(0),
            descriptor_budget: usize::MAX,
            phase: tokio::sync::watch::Sender::new(Phase::Starting),
            acme: Arc::default(),
        }
    }

    /// Open client connections, all listeners together.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Idle HTTP/1 client connections parked off their tasks, all workers together.
    pub fn parked_connections(&self) -> usize {
        self.parked.load(Ordering::Relaxed)
    }
}

/// Everything the workers need to serve requests, for one config generation.
#[derive(Debug)]
pub struct Snapshot {
    pub listeners: Vec<ListenerSnapshot>,
    pub pools: Vec<Pool>,
    /// `[[region]]` and `[geo]`: client IP -> region, failover orders.
    pub regions: Regions,
    /// `[global] trusted_proxies`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Box<[IpNet]>,
    /// `fulcrum_region_requests_total` handles.
    pub region_metrics: RegionMetrics,
    /// `[gslb]` and the regions' vips, for the GeoDNS responder (never read by the proxy).
    pub gslb: Option<Arc<GslbConfig>>,
    /// Slot -> position in `listeners` (`NO_LISTENER` for a slot whose listener was removed).
    slots: Vec<u32>,
}

const NO_LISTENER: u32 = u32::MAX;

/// The request-path view of one `[[listener]]`.
#[derive(Debug)]
pub struct ListenerSnapshot {
    /// Stable across rebuilds while name and bind stay the same (never reused).
    pub slot: ListenerSlot,
    pub name: Arc<str>,
    pub bind: SocketAddr,
    pub routes: RouteTable,
    pub max_connections: usize,
    pub max_request_body: u64,
    /// Trusted peers start their connections with a PROXY v1/v2 header.
    pub proxy_protocol: bool,
    /// `http` (served by `crate::http`) or `tcp` (forwarded by `crate::tcp`).
    pub protocol: Protocol,
    /// tcp: bytes forwarded each way; carried with the slot across rebuilds.
    pub bytes: Arc<TcpBytes>,
    /// `[listener.limits]` and its per-client state; carried with the slot across rebuilds.
    pub limits: ClientLimits,
    /// Request-path metric handles, per pool of the snapshot.
    pub metrics: ListenerMetrics,
    /// `[listener.tls]`: the config each handshake runs with (read in the connection's one
    /// snapshot load), its certificates, and `hsts` as a header value.
    pub tls: Option<Arc<ListenerTls>>,
    /// A plain http listener redirecting every request to `https://`.
    pub redirect_https: bool,
    /// `trace`: whether a request without a `traceparent` gets one (`http::request_id`).
    pub trace: TraceMode,
}

/// A TLS listener's view in the snapshot.
#[derive(Debug)]
pub struct ListenerTls {
    pub server: Arc<ServerTls>,
    /// `Strict-Transport-Security` for every response.
    pub hsts: Option<http::HeaderValue>,
    /// `fulcrum_tls_handshakes_total` handles.
    pub handshakes: HandshakeCounters,
}

impl Snapshot {
    /// Compiles a validated config. `previous` lends its backend state to backends that stay;
    /// `metrics`: build the request path's metric handles.
    pub fn build(config: &Config, previous: Option<&Snapshot>, metrics: bool) -> Snapshot {
        let carried: HashMap<(&str, SocketAddr), &Arc<BackendState>> = previous
            .map(|prev| {
                prev.pools
                    .iter()
                    .flat_map(|p| {
                        p.backends
                            .iter()
                            .map(move |b| ((&*p.name, b.addr), &b.state))
                    })
                    .collect()
            })
            .unwrap_or_default();

        let regions = Regions::build(&config.regions, &config.geo).unwrap_or_else(|e| {
            // Validation opened the database; it changed since. Regions by CIDR still work.
            tracing::error!(
                "{}; country lookups are off until the next reload",
                Chain(&e)
            );
            Regions::build(&config.regions, &Default::default()).unwrap_or_default()
        });
        let now = clock::now_ms();
        let pools: Vec<Pool> = config
            .pools
            .iter()
            .map(|pc| {
                let backends: Vec<Backend> = pc
                    .backends
                    .iter()
                    .map(|bc| {
                        let state = match carried.get(&(pc.name.as_str(), bc.address)) {
                            Some(s) => Arc::clone(s),
                            None => {
                                let s = Arc::new(match &pc.health {
                                    Some(h) if h.decides_role() => BackendState::unknown(),
                                    _ => BackendState::default(),
                                });
                                // Added by a reload: ramp up like a returning backend.
                                if previous.is_some() {
                                    s.mark_added(now);
                                }
                                s
                            }
                        };
                        Backend {
                            name: bc.name.as_deref().map(Arc::from),
                            ..Backend::new(
                                bc.address,
                                bc.weight,
                                bc.region.as_deref().map(Arc::from),
                                state,
                            )
                        }
                    })
                    .collect();
                Pool::build(pc, backends, &regions)
            })
            .collect();

        // Same name and bind as before: same slot. Otherwise a fresh slot, never reused.
        let mut next_slot = previous.map_or(0, |p| p.slots.len());
        let listeners: Vec<ListenerSnapshot> = config
            .listeners
            .iter()
            .map(|lc| {
                let kept = previous.and_then(|p| {
                    p.listeners
                        .iter()
                        .find(|l| *l.name == *lc.name && l.bind == lc.bind)
                        .map(|l| l.slot)
                });
                let before = kept.and_then(|slot| previous.and_then(|p| p.listener(slot)));
                let slot = kept.unwrap_or_else(|| {
                    next_slot += 1;
                    ListenerSlot::new(next_slot - 1)
                });
                ListenerSnapshot::build(lc, slot, before, &pools, metrics)
            })
            .collect();
        let mut slots = vec![NO_LISTENER; next_slot];
        for (pos, l) in listeners.iter().enumerate() {
            slots[l.slot.index()] = u32::try_from(pos).unwrap_or(NO_LISTENER);
        }
        // Carried state may already have backends down or draining.
        for pool in &pools {
            pool.membership_changed();
        }
        Snapshot {
            listeners,
            pools,
            region_metrics: RegionMetrics::build(&regions, metrics),
            regions,
            trusted_proxies: config.global.trusted_proxies.clone().into_boxed_slice(),
            gslb: config.gslb.clone().map(Arc::new),
            slots,
        }
    }

    /// Pool `id` (ids come from the validated config this snapshot was built from).
    #[inline]
    pub fn pool(&self, id: PoolId) -> &Pool {
        &self.pools[id.index()]
    }

    /// The listener in `slot`, or `None` when a reload removed it (its connections are draining).
    pub fn listener(&self, slot: ListenerSlot) -> Option<&ListenerSnapshot> {
        let pos = *self.slots.get(slot.index())?;
        self.listeners.get(pos as usize)
    }
}

impl ListenerSnapshot {
    /// `before`: the same listener in the previous snapshot, whose state is carried.
    fn build(
        lc: &ListenerConfig,
        slot: ListenerSlot,
        before: Option<&ListenerSnapshot>,
        built: &[Pool],
        metrics: bool,
    ) -> Self {
        let name: Arc<str> = Arc::from(lc.name.as_str());
        ListenerSnapshot {
            slot,
            metrics: ListenerMetrics::build(&name, built, metrics),
            limits: ClientLimits::build(&lc.limits, before.map(|l| &l.limits), &name, metrics),
            bytes: before.map(|l| Arc::clone(&l.bytes)).unwrap_or_default(),
            name,
            bind: lc.bind,
            routes: RouteTable::new(&lc.routes, lc.pool),
            max_connections: lc.max_connections,
            max_request_body: lc.max_request_body,
            proxy_protocol: lc.proxy_protocol,
            protocol: lc.protocol,
            tls: lc.tls.as_ref().map(|t| {
                Arc::new(ListenerTls {
                    server: server_tls(t, lc, before),
                    hsts: t
                        .hsts
                        .as_deref()
                        .and_then(|v| http::HeaderValue::from_str(v).ok()),
                    handshakes: HandshakeCounters::build(&lc.name, metrics),
                })
            }),
            redirect_https: lc.redirect_https,
            trace: lc.trace,
        }
    }
}

/// The listener's TLS from its files. Validation (`tls::server::check`) read them already;
/// when they changed since and no longer load, the listener keeps the certificates it served
/// before (logged), or, new, serves no handshake until they are fixed: never plaintext.
fn server_tls(
    t: &crate::config::ListenerTls,
    lc: &ListenerConfig,
    before: Option<&ListenerSnapshot>,
) -> Arc<ServerTls> {
    let previous = before.and_then(|b| b.tls.as_ref()).map(|t| &t.server);
    match ServerTls::build(t, lc.protocol, previous.map(|p| &**p)) {
        Ok(server) => Arc::new(server),
        Err(e) => {
            tracing::error!(listener = %lc.name, "TLS config not loaded: {e}");
            match previous {
                Some(p) => Arc::clone(p),
                None => Arc::new(ServerTls::refusing(lc.protocol)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Snapshot;
    use crate::config::{BackendConfig, Config, ListenerConfig, ListenerSlot, PoolConfig, PoolId};

    fn config(listeners: &[(&str, &str)]) -> Config {
        let backend = BackendConfig {
            address: "127.0.0.1:9".parse().expect("addr"),
            name: None,
            weight: 1,
            region: None,
        };
        Config {
            source: None,
            fingerprint: None,
            global: Default::default(),
            listeners: listeners
                .iter()
                .map(|(n, b)| ListenerConfig::http(*n, b.parse().expect("addr"), PoolId::new(0)))
                .collect(),
            pools: vec![PoolConfig::new("p", vec![backend])],
            regions: Vec::new(),
            geo: Default::default(),
            gslb: None,
        }
    }

    #[test]
    fn listener_slots_are_stable_across_rebuilds() {
        let a = Snapshot::build(
            &config(&[("a", "127.0.0.1:1"), ("b", "127.0.0.1:2")]),
            None,
            true,
        );
        assert_eq!(
            a.listener(ListenerSlot::new(1)).map(|l| &*l.name),
            Some("b")
        );
        // "a" removed, "c" added, "b" kept; "b" moves in the vector but keeps its slot.
        let b = Snapshot::build(
            &config(&[("b", "127.0.0.1:2"), ("c", "127.0.0.1:3")]),
            Some(&a),
            true,
        );
        assert!(b.listener(ListenerSlot::new(0)).is_none());
        assert_eq!(
            b.listener(ListenerSlot::new(1)).map(|l| &*l.name),
            Some("b")
        );
        assert_eq!(
            b.listener(ListenerSlot::new(2)).map(|l| &*l.name),
            Some("c")
        );
        // A bind change is a new listener: new slot, the old one gone.
        let c = Snapshot::build(&config(&[("b", "127.0.0.1:4")]), Some(&b), true);
        assert!(c.listener(ListenerSlot::new(1)).is_none());
        assert_eq!(
            c.listener(ListenerSlot::new(3)).map(|l| &*l.name),
            Some("b")
        );
        assert!(c.listener(ListenerSlot::new(99)).is_none());
    }
}
