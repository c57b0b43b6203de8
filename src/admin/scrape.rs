//! `GET /metrics`: the Prometheus text of the current state, built at scrape time (cold path).
//!
//! Counters come from the registry in `metrics.rs`; the gauges (`backend_up`,
//! `backend_inflight`, `connections_active`) and the tcp byte counters are brought up to date
//! from the current snapshot first, and series of backends the snapshot no longer has are left
//! out, so a reload that removes a backend removes its series.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use prometheus::{Encoder, TextEncoder};

use crate::clock;
use crate::config::Protocol;
use crate::metrics;
use crate::snapshot::Snapshot;

/// The Prometheus text of the current state: gauges computed from `snapshot`, series of
/// backends it no longer has left out. `listeners`: (name, open connections); `parked`: of
/// all open connections, the parked idle ones.
pub(crate) fn encode(
    snapshot: &Snapshot,
    listeners: &[(String, usize)],
    parked: usize,
) -> Result<String, prometheus::Error> {
    let m = metrics::get();
    let now = clock::now_ms();
    m.backend_up.reset();
    m.backend_inflight.reset();
    m.connections_active.reset();
    let mut live: HashSet<(&str, &str)> = HashSet::new();
    for p in &snapshot.pools {
        live.insert((&p.name, ""));
        for b in &p.backends {
            live.insert((&p.name, &b.label));
            let up = b.state.is_available() && !b.state.is_ejected(now);
            m.backend_up
                .with_label_values(&[&*p.name, &*b.label])
                .set(i64::from(up));
            m.backend_inflight
                .with_label_values(&[&*p.name, &*b.label])
                .set(i64::from(b.state.inflight()));
        }
    }
    live.insert(("", ""));
    for (name, open) in listeners {
        m.connections_active
            .with_label_values(&[name])
            .set(i64::try_from(*open).unwrap_or(i64::MAX));
    }
    m.connections_parked
        .set(i64::try_from(parked).unwrap_or(i64::MAX));
    // TCP byte counts live with the listener (carried across reloads, monotonic): the
    // counter catches up with them at scrape time.
    for l in &snapshot.listeners {
        if l.protocol != Protocol::Tcp {
            continue;
        }
        for (direction, value) in [
            ("upstream", &l.bytes.upstream),
            ("downstream", &l.bytes.downstream),
        ] {
            let c = m.tcp_bytes.with_label_values(&[&*l.name, direction]);
            let now = value.load(Ordering::Relaxed);
            if now > c.get() {
                c.inc_by(now - c.get());
            }
        }
    }
    let mut families = m.registry.gather();
    for f in &mut families {
        if f.name() == "fulcrum_requests_total" || f.name() == "fulcrum_health_checks_total" {
            let keep: Vec<_> = f
                .take_metric()
                .into_iter()
                .filter(|metric| {
                    let label = |n: &str| {
                        metric
                            .get_label()
                            .iter()
                            .find(|l| l.name() == n)
                            .map_or("", |l| l.value())
                    };
                    live.contains(&(label("pool"), label("backend")))
                })
                .collect();
            f.set_metric(keep);
        }
    }
    families.retain(|f| !f.get_metric().is_empty());
    let mut out = Vec::with_capacity(16 * 1024);
    TextEncoder::new().encode(&families, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
