//! Prometheus metrics: every name and request-path handle, in one process-wide registry.
//!
//! Why this shape: the request path must never look a label set up by string, take a lock, or
//! allocate for metrics. Every handle it touches is resolved when a `Snapshot` is built
//! (`ListenerMetrics`: per pool a duration histogram and per backend a `CodeCounters`), so a
//! request costs an `Arc` clone, one histogram observation and one counter increment. Status
//! codes are resolved lazily through a small fixed table (`CODES`); a code outside it is rare
//! and falls back to a label lookup. Because the registry returns the same counter for the same
//! labels, handles rebuilt by a reload keep counting where the old ones stopped.
//!
//! Gauges (`backend_up`, `backend_inflight`, `connections_active`) are not kept on the request
//! path at all: `admin::scrape` computes them from the current snapshot at scrape time, and
//! leaves out the series of backends a reload removed. This file holds names and handles only.
//! The start option `Options::metrics = false` (the binary's undocumented `FULCRUM_METRICS=off`,
//! for measuring the cost) builds no handles.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::config::{BackendId, PoolId};
use crate::pool::Pool;
use crate::region::{RegionId, Regions};

/// Every metric Fulcrum exports (the names are public contract).
#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub backend_up: IntGaugeVec,
    pub backend_inflight: IntGaugeVec,
    pub connections_active: IntGaugeVec,
    /// Of those, idle HTTP/1 connections parked off their tasks (`http1::park`).
    pub connections_parked: IntGauge,
    pub tcp_bytes: IntCounterVec,
    pub health_checks: IntCounterVec,
    pub reloads: IntCounterVec,
    pub region_requests: IntCounterVec,
    /// Connections closed at accept (cold path: looked up by label when it happens).
    pub connections_refused: IntCounterVec,
    pub limited: IntCounterVec,
    pub tls_handshakes: IntCounterVec,
    /// DNS discovery, per resolution (cold path: a few per TTL).
    pub dns_resolutions: IntCounterVec,
    /// GeoDNS answers (`gslb`): handles resolved per (record, region) when the zone is built.
    pub gslb_queries: IntCounterVec,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| unreachable_metric(&e))
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| unreachable_metric(&e))
}

/// The metric definitions are constants: an error here is a programming error.
#[allow(clippy::panic)]
fn unreachable_metric(e: &prometheus::Error) -> ! {
    panic!("invalid metric definition: {e}")
}

impl Metrics {
    fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::new(),
            requests: counter(
                "fulcrum_requests_total",
                "HTTP requests answered, by listener, pool, backend (empty when none served it) and status code.",
                &["listener", "pool", "backend", "code"],
            ),
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "fulcrum_request_duration_seconds",
                    "Time from the request head to the end of the response body.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["listener", "pool"],
            )
            .unwrap_or_else(|e| unreachable_metric(&e)),
            backend_up: gauge(
                "fulcrum_backend_up",
                "1 when the backend takes new work (healthy, not ejected, not draining).",
                &["pool", "backend"],
            ),
            backend_inflight: gauge(
                "fulcrum_backend_inflight",
                "Requests or connections in flight to the backend.",
                &["pool", "backend"],
            ),
            connections_active: gauge(
                "fulcrum_connections_active",
                "Open client connections.",
                &["listener"],
            ),
            connections_parked: IntGauge::new(
                "fulcrum_connections_parked",
                "Idle HTTP/1 client connections parked off their tasks (quiet for 250 ms), all listeners.",
            )
            .unwrap_or_else(|e| unreachable_metric(&e)),
            tcp_bytes: counter(
                "fulcrum_tcp_bytes_total",
                "Bytes proxied by TCP listeners.",
                &["listener", "direction"],
            ),
            health_checks: counter(
                "fulcrum_health_checks_total",
                "Active health checks, by result.",
                &["pool", "backend", "result"],
            ),
            reloads: counter(
                "fulcrum_config_reloads_total",
                "Config reloads, by result.",
                &["result"],
            ),
            region_requests: counter(
                "fulcrum_region_requests_total",
                "Requests served, by the client's region and the serving backend's region.",
                &["client_region", "served_region"],
            ),
            dns_resolutions: counter(
                "fulcrum_dns_resolutions_total",
                "DNS discovery resolutions, by pool and result (ok, nxdomain, no_records, timeout, error).",
                &["pool", "result"],
            ),
            connections_refused: counter(
                "fulcrum_connections_refused_total",
                "Client connections closed at accept, by listener and reason (max_connections, descriptors).",
                &["listener", "reason"],
            ),
            limited: counter(
                "fulcrum_limited_total",
                "Refused by the listener's per-client limits: requests answered 429 (kind=requests), connections closed at accept (kind=connections).",
                &["listener", "kind"],
            ),
            tls_handshakes: counter(
                "fulcrum_tls_handshakes_total",
                "TLS handshakes of TLS listeners, by result: ok, error (refused or broken), timeout (not done within client_header_timeout).",
                &["listener", "result"],
            ),
            gslb_queries: counter(
                "fulcrum_gslb_queries_total",
                "GeoDNS queries answered for a [gslb] record, by record name and the region whose vips were answered.",
                &["name", "region"],
            ),
        };
        let all: [Box<dyn Collector>; 15] = [
            Box::new(m.requests.clone()),
            Box::new(m.duration.clone()),
            Box::new(m.backend_up.clone()),
            Box::new(m.backend_inflight.clone()),
            Box::new(m.connections_active.clone()),
            Box::new(m.connections_parked.clone()),
            Box::new(m.tcp_bytes.clone()),
            Box::new(m.health_checks.clone()),
            Box::new(m.reloads.clone()),
            Box::new(m.region_requests.clone()),
            Box::new(m.connections_refused.clone()),
            Box::new(m.limited.clone()),
            Box::new(m.tls_handshakes.clone()),
            Box::new(m.dns_resolutions.clone()),
            Box::new(m.gslb_queries.clone()),
        ];
        for c in all {
            if let Err(e) = m.registry.register(c) {
                unreachable_metric(&e);
            }
        }
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            if let Err(e) = m.registry.register(Box::new(pc)) {
                tracing::warn!(error = %e, "process metrics unavailable");
            }
        }
        // Both results show from the start, so rate() works on the first reload.
        m.reloads.with_label_values(&["ok"]);
        m.reloads.with_label_values(&["error"]);
        m
    }
}

/// Codes with their own pre-resolved slot; others are looked up by label (rare).
const CODES: [u16; 24] = [
    200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 408, 409, 413,
    429, 500, 502, 503, 504,
];

#[inline]
fn code_slot(code: u16) -> Option<usize> {
    CODES.iter().position(|&c| c == code)
}

/// `fulcrum_requests_total` of one (listener, pool, backend), one lazily resolved counter per
/// common status code.
#[derive(Debug)]
pub struct CodeCounters {
    labels: [Arc<str>; 3],
    slots: [OnceLock<IntCounter>; CODES.len()],
}

impl CodeCounters {
    fn new(listener: &Arc<str>, pool: &Arc<str>, backend: &Arc<str>) -> Self {
        CodeCounters {
            labels: [Arc::clone(listener), Arc::clone(pool), Arc::clone(backend)],
            slots: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn resolve(&self, code: u16) -> IntCounter {
        let code = code.to_string();
        let [l, p, b] = &self.labels;
        get().requests.with_label_values(&[&**l, &**p, &**b, &code])
    }

    /// Counts one response with `code`.
    #[inline]
    pub fn inc(&self, code: u16) {
        match code_slot(code) {
            Some(i) => self.slots[i].get_or_init(|| self.resolve(code)).inc(),
            None => self.resolve(code).inc(),
        }
    }

    /// (requests, 5xx) counted through this table's common codes (cold path, for status).
    pub fn totals(&self) -> (u64, u64) {
        let mut all = 0;
        let mut errors = 0;
        for (code, slot) in CODES.iter().zip(&self.slots) {
            if let Some(c) = slot.get() {
                all += c.get();
                if *code >= 500 {
                    errors += c.get();
                }
            }
        }
        (all, errors)
    }
}

/// The handles of one listener for one pool.
#[derive(Debug)]
pub struct PoolMetrics {
    pub duration: Histogram,
    /// Indexed like `Pool::backends`.
    pub backends: Box<[CodeCounters]>,
    /// Requests this pool answered without a backend (no backend, 502 after retries, 413...).
    pub unserved: CodeCounters,
}

impl PoolMetrics {
    /// One finished request: its status and how long it took; `backend` served it.
    #[inline]
    pub fn record(&self, backend: Option<BackendId>, code: u16, took: Duration) {
        self.duration.observe(took.as_secs_f64());
        match backend.and_then(|b| self.backends.get(b.index())) {
            Some(c) => c.inc(code),
            None => self.unserved.inc(code),
        }
    }
}

/// The handles of one listener, built with the snapshot; `None` pieces when metrics are off.
#[derive(Debug, Default)]
pub struct ListenerMetrics {
    /// Indexed like `Snapshot::pools`.
    pub pools: Box<[Arc<PoolMetrics>]>,
    /// Requests refused before a pool was chosen (malformed).
    pub unrouted: Option<CodeCounters>,
}

impl ListenerMetrics {
    /// `on = false` builds none (to measure what the handles cost).
    pub fn build(listener: &Arc<str>, pools: &[Pool], on: bool) -> Self {
        if !on {
            return ListenerMetrics::default();
        }
        let none: Arc<str> = Arc::from("");
        let m = get();
        ListenerMetrics {
            pools: pools
                .iter()
                .map(|p| {
                    Arc::new(PoolMetrics {
                        duration: m.duration.with_label_values(&[&**listener, &*p.name]),
                        backends: p
                            .backends
                            .iter()
                            .map(|b| CodeCounters::new(listener, &p.name, &b.label))
                            .collect(),
                        unserved: CodeCounters::new(listener, &p.name, &none),
                    })
                })
                .collect(),
            unrouted: Some(CodeCounters::new(listener, &none, &none)),
        }
    }

    #[inline]
    pub fn pool(&self, id: PoolId) -> Option<&Arc<PoolMetrics>> {
        self.pools.get(id.index())
    }
}

/// `fulcrum_limited_total` of one listener, resolved when its snapshot is built: `None` for a
/// limit that is off (or with metrics off), so a series exists only where it can move.
#[derive(Debug, Default)]
pub struct LimitedCounters {
    /// `kind="requests"`: answered 429 by `requests_per_second`.
    pub requests: Option<IntCounter>,
    /// `kind="connections"`: closed at accept by `connections_per_client`.
    pub connections: Option<IntCounter>,
}

impl LimitedCounters {
    /// The handles of `listener` for the limits that are on; none when `on` is false.
    pub fn build(listener: &str, requests: bool, connections: bool, on: bool) -> Self {
        let handle = |wanted: bool, kind: &str| {
            (on && wanted).then(|| get().limited.with_label_values(&[listener, kind]))
        };
        LimitedCounters {
            requests: handle(requests, "requests"),
            connections: handle(connections, "connections"),
        }
    }
}

/// `fulcrum_tls_handshakes_total` of one TLS listener, resolved when its snapshot is built
/// (`None` with metrics off), so a handshake increments a handle, never looks up a label.
#[derive(Debug, Default)]
pub struct HandshakeCounters {
    pub ok: Option<IntCounter>,
    pub error: Option<IntCounter>,
    pub timeout: Option<IntCounter>,
}

impl HandshakeCounters {
    pub fn build(listener: &str, on: bool) -> Self {
        let handle =
            |result: &str| on.then(|| get().tls_handshakes.with_label_values(&[listener, result]));
        HandshakeCounters {
            ok: handle("ok"),
            error: handle("error"),
            timeout: handle("timeout"),
        }
    }
}

/// Bytes forwarded by one tcp listener, per direction (for `fulcrum_tcp_bytes_total`).
#[derive(Debug, Default)]
pub struct TcpBytes {
    /// Client -> backend.
    pub upstream: AtomicU64,
    /// Backend -> client.
    pub downstream: AtomicU64,
}

/// `fulcrum_region_requests_total`: a (client region + unknown) x (served region + unknown)
/// matrix of lazily resolved counters.
#[derive(Debug, Default)]
pub struct RegionMetrics {
    names: Box<[Arc<str>]>,
    cells: Box<[OnceLock<IntCounter>]>,
}

impl RegionMetrics {
    pub fn build(regions: &Regions, on: bool) -> Self {
        if !on {
            return RegionMetrics::default();
        }
        let mut names: Vec<Arc<str>> = (0..)
            .map_while(|id: RegionId| regions.name(id).cloned())
            .collect();
        names.push(Arc::from("unknown"));
        let n = names.len();
        RegionMetrics {
            names: names.into_boxed_slice(),
            cells: (0..n * n).map(|_| OnceLock::new()).collect(),
        }
    }

    /// One request of a client in `client` served by a backend in `served`.
    #[inline]
    pub fn inc(&self, client: Option<RegionId>, served: RegionId) {
        let n = self.names.len();
        if n == 0 {
            return;
        }
        let idx = |id: Option<RegionId>| id.map_or(n - 1, |i| usize::from(i).min(n - 1));
        let (c, s) = (idx(client), idx(Some(served)));
        if let Some(cell) = self.cells.get(c * n + s) {
            cell.get_or_init(|| {
                get()
                    .region_requests
                    .with_label_values(&[&*self.names[c], &*self.names[s]])
            })
            .inc();
        }
    }
}
