//! Ten minutes of history, one sample a second, for the status page's charts and region flows
//! (`GET /api/v1/history`).
//!
//! Why this way: the request path already counts everything needed (`fulcrum_requests_total`,
//! `fulcrum_request_duration_seconds`, `fulcrum_region_requests_total`, the tcp byte counts and
//! the backends' connection counters), so the cost there is nil: a task on the control runtime
//! reads those counters once a second, takes the deltas, and keeps them in fixed rings of
//! [`SAMPLES`] per series. The counters are read from the registry (not the snapshot's lazily
//! resolved handles), so a reload, which rebuilds the handles, neither loses nor repeats a
//! count. Series are per listener and per pool (by name, so they survive reloads; a name
//! that leaves the config leaves the history), per region pair, and per backend only the
//! latest rates. p50 and p99 come from the latency histogram's bucket deltas over the second,
//! interpolated inside the bucket (as Prometheus's `histogram_quantile` does); a second with no
//! request has none (`null` in JSON).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::core::Collector;
use prometheus::proto::{Metric, MetricFamily};
use serde_json::{json, Value};

use crate::config::{PoolId, Protocol};
use crate::metrics;
use crate::snapshot::{Live, Snapshot};

/// Samples kept per series: ten minutes at one a second.
pub const SAMPLES: usize = 600;
/// How often a sample is taken.
pub const EVERY: Duration = Duration::from_secs(1);

/// One second of one listener or pool. `NaN` = none (no request in that second, for the
/// latencies; a value that does not apply, for the tcp fields of an http series).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub rps: f32,
    /// Share of the second's responses that were 5xx (Fulcrum's own 502/503/504 included).
    pub error_rate: f32,
    pub p50_ms: f32,
    pub p99_ms: f32,
    /// tcp: connections open at the sample.
    pub open: f32,
    pub conns_per_s: f32,
    /// tcp: bytes per second client -> backend, and back.
    pub bytes_in_per_s: f32,
    pub bytes_out_per_s: f32,
}

/// Cumulative counts of one series at one sample.
#[derive(Debug, Clone, Default, PartialEq)]
struct Totals {
    requests: u64,
    errors: u64,
    /// The latency histogram's cumulative bucket counts (bounds in `Hist::bounds`).
    buckets: Vec<u64>,
    latency_count: u64,
    connections: u64,
    bytes_in: u64,
    bytes_out: u64,
}

/// A listener's or pool's ring and its counts at the last sample.
#[derive(Debug)]
struct Series {
    tcp: bool,
    samples: VecDeque<Sample>,
    last: Totals,
}

/// A backend's latest rates and its counts at the last sample.
#[derive(Debug, Default, Clone, Copy)]
struct BackendRates {
    requests: u64,
    errors: u64,
    connections: u64,
    rps: f32,
    errors_per_s: f32,
    conns_per_s: f32,
}

#[derive(Debug, Default)]
struct State {
    /// When the last sample was taken.
    at: Option<SystemTime>,
    bounds: Vec<f64>,
    listeners: HashMap<Arc<str>, Series>,
    pools: HashMap<Arc<str>, Series>,
    /// (pool, backend label).
    backends: HashMap<(Arc<str>, Arc<str>), BackendRates>,
    /// (client region, served region) -> requests per second, and the count last seen.
    regions: HashMap<(String, String), (VecDeque<f32>, u64)>,
}

/// The history, shared by the sampler and the admin API.
#[derive(Debug, Default)]
pub struct History {
    // A cold path: written once a second by the sampler, read by `GET /api/v1/history`;
    // never touched by the request path.
    #[allow(clippy::disallowed_types)]
    state: std::sync::Mutex<State>,
}

impl History {
    pub fn new() -> Arc<History> {
        Arc::new(History::default())
    }

    #[allow(clippy::disallowed_types)]
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes one sample of `snapshot`'s listeners and pools at `now`.
    pub fn sample(&self, snapshot: &Snapshot, now: SystemTime) {
        let m = metrics::get();
        let requests = m.requests.collect();
        let durations = m.duration.collect();
        let regions = m.region_requests.collect();
        let mut state = self.lock();
        let secs = state
            .at
            .and_then(|at| now.duration_since(at).ok())
            .map_or(1.0, |d| d.as_secs_f64().max(0.001));
        state.at = Some(now);
        let read = Read::of(&requests, &durations, &mut state.bounds);
        let bounds = state.bounds.clone();

        let mut seen = Vec::with_capacity(snapshot.listeners.len());
        for l in &snapshot.listeners {
            let tcp = l.protocol == Protocol::Tcp;
            let mut t = read.listener(&l.name);
            if tcp {
                t.bytes_in = l.bytes.upstream.load(std::sync::atomic::Ordering::Relaxed);
                t.bytes_out = l
                    .bytes
                    .downstream
                    .load(std::sync::atomic::Ordering::Relaxed);
            }
            let open = tcp.then(|| open_of(snapshot, l.routes.default_pool()));
            if let Some((_, conns)) = open {
                t.connections = conns;
            }
            push(&mut state.listeners, &l.name, tcp, t, open, secs, &bounds);
            seen.push(Arc::clone(&l.name));
        }
        state.listeners.retain(|name, _| seen.contains(name));

        let mut seen = Vec::with_capacity(snapshot.pools.len());
        let mut backends_seen = HashSet::new();
        for (pi, p) in snapshot.pools.iter().enumerate() {
            let id = PoolId::new(pi);
            let tcp_listeners: Vec<_> = snapshot
                .listeners
                .iter()
                .filter(|l| l.protocol == Protocol::Tcp && l.routes.default_pool() == id)
                .collect();
            let tcp = !tcp_listeners.is_empty();
            let mut t = read.pool(&p.name);
            let open = tcp.then(|| open_of(snapshot, id));
            if let Some((_, conns)) = open {
                t.connections = conns;
                for l in &tcp_listeners {
                    t.bytes_in += l.bytes.upstream.load(std::sync::atomic::Ordering::Relaxed);
                    t.bytes_out += l
                        .bytes
                        .downstream
                        .load(std::sync::atomic::Ordering::Relaxed);
                }
            }
            push(&mut state.pools, &p.name, tcp, t, open, secs, &bounds);
            seen.push(Arc::clone(&p.name));
            for b in &p.backends {
                let key = (Arc::clone(&p.name), Arc::clone(&b.label));
                let (requests, errors) = read.backend(&p.name, &b.label);
                let connections = b.state.connections();
                let rate = |now: u64, was: u64| (now.saturating_sub(was) as f64 / secs) as f32;
                let entry = state.backends.entry(key.clone());
                let r = entry.or_insert(BackendRates {
                    requests,
                    errors,
                    connections,
                    ..BackendRates::default()
                });
                *r = BackendRates {
                    rps: rate(requests, r.requests),
                    errors_per_s: rate(errors, r.errors),
                    conns_per_s: rate(connections, r.connections),
                    requests,
                    errors,
                    connections,
                };
                backends_seen.insert(key);
            }
        }
        state.pools.retain(|name, _| seen.contains(name));
        state.backends.retain(|k, _| backends_seen.contains(k));

        for metric in regions.iter().flat_map(MetricFamily::get_metric) {
            let key = (
                label(metric, "client_region").to_string(),
                label(metric, "served_region").to_string(),
            );
            let count = metric.get_counter().value() as u64;
            match state.regions.get_mut(&key) {
                Some((ring, last)) => {
                    let rps = (count.saturating_sub(*last) as f64 / secs) as f32;
                    *last = count;
                    if ring.len() == SAMPLES {
                        ring.pop_front();
                    }
                    ring.push_back(rps);
                }
                None => {
                    state
                        .regions
                        .insert(key, (VecDeque::with_capacity(SAMPLES), count));
                }
            }
        }
    }

    /// The document of `GET /api/v1/history` (shape in the README).
    pub fn to_json(&self, snapshot: &Snapshot) -> Value {
        let state = self.lock();
        let series = |s: &Series| {
            let col = |f: fn(&Sample) -> f32| -> Vec<Option<f64>> {
                s.samples.iter().map(|x| round(f(x))).collect()
            };
            let mut v = json!({
                "protocol": if s.tcp { "tcp" } else { "http" },
                "rps": col(|x| x.rps),
                "error_rate": col(|x| x.error_rate),
                "p50_ms": col(|x| x.p50_ms),
                "p99_ms": col(|x| x.p99_ms),
            });
            if s.tcp {
                v["open"] = json!(col(|x| x.open));
                v["conns_per_s"] = json!(col(|x| x.conns_per_s));
                v["bytes_in_per_s"] = json!(col(|x| x.bytes_in_per_s));
                v["bytes_out_per_s"] = json!(col(|x| x.bytes_out_per_s));
            }
            v
        };
        let listeners: Vec<Value> = snapshot
            .listeners
            .iter()
            .filter_map(|l| {
                let mut v = series(state.listeners.get(&l.name)?);
                v["name"] = json!(&*l.name);
                Some(v)
            })
            .collect();
        let pools: Vec<Value> = snapshot
            .pools
            .iter()
            .filter_map(|p| {
                let mut v = series(state.pools.get(&p.name)?);
                v["name"] = json!(&*p.name);
                let backends: Vec<Value> = p
                    .backends
                    .iter()
                    .filter_map(|b| {
                        let r = state
                            .backends
                            .get(&(Arc::clone(&p.name), Arc::clone(&b.label)))?;
                        Some(json!({
                            "address": &*b.label,
                            "rps": round(r.rps),
                            "errors_per_s": round(r.errors_per_s),
                            "conns_per_s": round(r.conns_per_s),
                        }))
                    })
                    .collect();
                v["backends"] = json!(backends);
                Some(v)
            })
            .collect();
        let mut regions: Vec<(&(String, String), &VecDeque<f32>)> = state
            .regions
            .iter()
            .map(|(k, (ring, _))| (k, ring))
            .collect();
        regions.sort_by(|a, b| a.0.cmp(b.0));
        let regions: Vec<Value> = regions
            .into_iter()
            .map(|((client, served), ring)| {
                let rps: Vec<Option<f64>> = ring.iter().map(|v| round(*v)).collect();
                json!({ "client": client, "served": served, "rps": rps })
            })
            .collect();
        let end = state
            .at
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs_f64());
        json!({
            "interval_seconds": EVERY.as_secs(),
            "samples": SAMPLES,
            "end": end,
            "listeners": listeners,
            "pools": pools,
            "regions": regions,
        })
    }
}

/// A sample for JSON: three decimals (f32 noise left out), `None` for `NaN`.
fn round(v: f32) -> Option<f64> {
    v.is_finite()
        .then(|| (f64::from(v) * 1000.0).round() / 1000.0)
}

/// The sampler: one sample a second on the control runtime, for as long as it runs.
pub async fn run(history: Arc<History>, shared: Arc<Live>) {
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        history.sample(&shared.snapshot.load(), SystemTime::now());
    }
}

/// A tcp pool's open connections (its backends' in flight) and connections made so far.
fn open_of(snapshot: &Snapshot, pool: PoolId) -> (f32, u64) {
    let Some(p) = snapshot.pools.get(pool.index()) else {
        return (0.0, 0);
    };
    p.backends.iter().fold((0.0, 0), |(open, conns), b| {
        (
            open + b.state.inflight() as f32,
            conns + b.state.connections(),
        )
    })
}

/// Appends the sample `t` makes against its series' last totals (the first sample of a
/// series only sets the baseline).
fn push(
    map: &mut HashMap<Arc<str>, Series>,
    name: &Arc<str>,
    tcp: bool,
    t: Totals,
    open: Option<(f32, u64)>,
    secs: f64,
    bounds: &[f64],
) {
    let Some(s) = map.get_mut(name) else {
        map.insert(
            Arc::clone(name),
            Series {
                tcp,
                samples: VecDeque::with_capacity(SAMPLES),
                last: t,
            },
        );
        return;
    };
    let delta = |now: u64, was: u64| now.saturating_sub(was);
    let per_s = |now: u64, was: u64| (delta(now, was) as f64 / secs) as f32;
    let requests = delta(t.requests, s.last.requests);
    let errors = delta(t.errors, s.last.errors);
    let buckets: Vec<u64> = t
        .buckets
        .iter()
        .enumerate()
        .map(|(i, &n)| delta(n, s.last.buckets.get(i).copied().unwrap_or(0)))
        .collect();
    let count = delta(t.latency_count, s.last.latency_count);
    let nan = f32::NAN;
    let sample = Sample {
        rps: (requests as f64 / secs) as f32,
        error_rate: if requests == 0 {
            0.0
        } else {
            errors as f32 / requests as f32
        },
        p50_ms: quantile(0.5, &buckets, count, bounds).map_or(nan, |s| (s * 1000.0) as f32),
        p99_ms: quantile(0.99, &buckets, count, bounds).map_or(nan, |s| (s * 1000.0) as f32),
        open: open.map_or(nan, |(o, _)| o),
        conns_per_s: if tcp {
            per_s(t.connections, s.last.connections)
        } else {
            nan
        },
        bytes_in_per_s: if tcp {
            per_s(t.bytes_in, s.last.bytes_in)
        } else {
            nan
        },
        bytes_out_per_s: if tcp {
            per_s(t.bytes_out, s.last.bytes_out)
        } else {
            nan
        },
    };
    if s.samples.len() == SAMPLES {
        s.samples.pop_front();
    }
    s.samples.push_back(sample);
    s.tcp = tcp;
    s.last = t;
}

/// The `q` quantile (seconds) of `count` observations whose per-bucket counts (cumulative,
/// upper bounds `bounds`) are `buckets`; linear inside the bucket, the last bound for those
/// above it. `None` without observations.
pub fn quantile(q: f64, buckets: &[u64], count: u64, bounds: &[f64]) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let rank = q * count as f64;
    let mut below = 0u64;
    let mut lower = 0.0;
    for (&cum, &upper) in buckets.iter().zip(bounds) {
        if cum as f64 >= rank {
            let inside = cum.saturating_sub(below);
            if inside == 0 {
                return Some(upper);
            }
            let share = (rank - below as f64) / inside as f64;
            return Some(lower + (upper - lower) * share.clamp(0.0, 1.0));
        }
        below = cum;
        lower = upper;
    }
    bounds.last().copied()
}

fn label<'a>(m: &'a Metric, name: &str) -> &'a str {
    m.get_label()
        .iter()
        .find(|l| l.name() == name)
        .map_or("", |l| l.value())
}

/// The registry's counts, summed by listener, by pool and by (pool, backend).
#[derive(Debug, Default)]
struct Read {
    listeners: HashMap<String, Totals>,
    pools: HashMap<String, Totals>,
    backends: HashMap<(String, String), (u64, u64)>,
}

impl Read {
    fn of(requests: &[MetricFamily], durations: &[MetricFamily], bounds: &mut Vec<f64>) -> Read {
        let mut r = Read::default();
        for metric in requests.iter().flat_map(MetricFamily::get_metric) {
            let n = metric.get_counter().value() as u64;
            let error = label(metric, "code").starts_with('5');
            let e = if error { n } else { 0 };
            let (l, p, b) = (
                label(metric, "listener"),
                label(metric, "pool"),
                label(metric, "backend"),
            );
            for t in [
                r.listeners.entry(l.to_string()).or_default(),
                r.pools.entry(p.to_string()).or_default(),
            ] {
                t.requests += n;
                t.errors += e;
            }
            if !b.is_empty() {
                let c = r
                    .backends
                    .entry((p.to_string(), b.to_string()))
                    .or_default();
                c.0 += n;
                c.1 += e;
            }
        }
        for metric in durations.iter().flat_map(MetricFamily::get_metric) {
            let h = metric.get_histogram();
            if bounds.is_empty() {
                *bounds = h.get_bucket().iter().map(|b| b.upper_bound()).collect();
            }
            let (l, p) = (label(metric, "listener"), label(metric, "pool"));
            for t in [
                r.listeners.entry(l.to_string()).or_default(),
                r.pools.entry(p.to_string()).or_default(),
            ] {
                t.latency_count += h.sample_count();
                if t.buckets.len() < h.get_bucket().len() {
                    t.buckets.resize(h.get_bucket().len(), 0);
                }
                for (sum, b) in t.buckets.iter_mut().zip(h.get_bucket()) {
                    *sum += b.cumulative_count();
                }
            }
        }
        r
    }

    fn listener(&self, name: &str) -> Totals {
        self.listeners.get(name).cloned().unwrap_or_default()
    }

    fn pool(&self, name: &str) -> Totals {
        self.pools.get(name).cloned().unwrap_or_default()
    }

    fn backend(&self, pool: &str, label: &str) -> (u64, u64) {
        self.backends
            .get(&(pool.to_string(), label.to_string()))
            .copied()
            .unwrap_or_default()
    }
}

#[cfg(test)]
/// What the history holds at most, in bytes, for `listeners` listeners, `pools` pools of
/// `backends` backends each and `regions` regions (full rings; the keys' names not counted
/// beyond their pointers, and hash-map overhead taken as one pointer per entry).
pub fn bound(listeners: usize, pools: usize, backends: usize, regions: usize) -> usize {
    use std::mem::size_of;
    let word = size_of::<usize>();
    let series = size_of::<Series>()
        + SAMPLES * size_of::<Sample>()
        + LATENCY_BUCKETS * size_of::<u64>()
        + size_of::<Arc<str>>()
        + word;
    let backend = size_of::<BackendRates>() + 2 * size_of::<Arc<str>>() + word;
    let pairs = (regions + 1) * (regions + 1);
    let region =
        size_of::<(VecDeque<f32>, u64)>() + SAMPLES * size_of::<f32>() + 2 * size_of::<String>();
    (listeners + pools) * series + pools * backends * backend + pairs * region
}

/// Buckets of `fulcrum_request_duration_seconds` (its bounds, `+Inf` apart).
#[cfg(test)]
const LATENCY_BUCKETS: usize = 13;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let bounds = [0.001, 0.01, 0.1];
        // 10 observations: 2 under 1 ms, 6 in (1, 10] ms, 2 in (10, 100] ms.
        let buckets = [2, 8, 10];
        let p50 = quantile(0.5, &buckets, 10, &bounds).unwrap();
        assert!((p50 - 0.001 - 0.009 * 0.5).abs() < 1e-9, "{p50}");
        let p99 = quantile(0.99, &buckets, 10, &bounds).unwrap();
        assert!(p99 > 0.01 && p99 <= 0.1, "{p99}");
        assert_eq!(quantile(0.5, &[0, 0, 0], 0, &bounds), None);
        // Above every bound: the last one.
        assert_eq!(quantile(0.99, &[0, 0, 0], 4, &bounds), Some(0.1));
    }

    /// The README's figure: 100 pools of 10 backends, 10 listeners, 4 regions.
    #[test]
    fn memory_bound_for_100_pools_of_10_backends() {
        let bytes = bound(10, 100, 10, 4);
        println!(
            "history: {bytes} bytes ({:.2} MiB) for 10 listeners, 100 pools x 10 backends, 4 regions; \
             Sample {} B, Series {} B, BackendRates {} B",
            bytes as f64 / (1024.0 * 1024.0),
            std::mem::size_of::<Sample>(),
            std::mem::size_of::<Series>(),
            std::mem::size_of::<BackendRates>(),
        );
        assert!(bytes < 4 * 1024 * 1024, "{bytes}");
    }
}
