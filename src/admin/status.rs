//! `GET /api/v1/status`: the JSON an operator (and the status page) reads. Built from the
//! current snapshot and the reloader on demand (cold path); field names are documented in the
//! README.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use super::{epoch, Admin};
use crate::acme_state::AcmeStatus;
use crate::backend::BackendState;
use crate::clock;
use crate::config::{PgRole, PoolId, Protocol};
use crate::discovery::NameStatus;
use crate::reload::ReloadResult;
use crate::snapshot::Snapshot;

/// One listener's ACME certificate: what the task is doing, the expiry of what it holds,
/// when it acts next, and its last failure.
fn acme_json(s: &AcmeStatus) -> Value {
    let at = |t: Option<std::time::SystemTime>| {
        t.map(|t| humantime::format_rfc3339_seconds(t).to_string())
    };
    json!({
        "domains": s.domains,
        "state": s.state,
        "expires": at(s.not_after),
        "next": at(s.next),
        "last_error": s.last_error,
    })
}

/// The whole status document.
pub fn of(admin: &Admin) -> Value {
    let snapshot = admin.shared.snapshot.load();
    let acme = admin.shared.acme.board.snapshot();
    let listeners: Vec<Value> = admin
        .reloader
        .listeners()
        .into_iter()
        .map(|(name, addr, open)| {
            let mut l = json!({
                "name": name,
                "bind": addr.to_string(),
                "connections": open,
                "protocol": "http",
            });
            // A tcp listener's traffic is bytes, not requests.
            if let Some(tcp) = snapshot
                .listeners
                .iter()
                .find(|s| *s.name == *name && s.protocol == Protocol::Tcp)
            {
                l["protocol"] = json!("tcp");
                l["bytes_up"] = json!(tcp.bytes.upstream.load(Ordering::Relaxed));
                l["bytes_down"] = json!(tcp.bytes.downstream.load(Ordering::Relaxed));
            }
            // A TLS listener's certificates as its handshakes pick them now.
            if let Some(tls) = snapshot
                .listeners
                .iter()
                .find(|s| *s.name == *name)
                .and_then(|s| s.tls.as_ref())
            {
                let now = crate::tls::certs::now();
                let certs: Vec<Value> = tls
                    .server
                    .store
                    .infos()
                    .iter()
                    .map(|c| {
                        json!({
                            "names": c.names,
                            "subject": c.subject,
                            "serial": c.serial,
                            "file": c.file,
                            "not_after": c.not_after,
                            "expires": crate::tls::certs::date(c.not_after),
                            "days_left": (c.not_after - now) / 86_400,
                        })
                    })
                    .collect();
                l["tls"] = json!({ "certs": certs });
                if let Some(acme) = acme.get(name.as_str()) {
                    l["tls"]["acme"] = acme_json(acme);
                }
            }
            l
        })
        .collect();
    let regions: Vec<Value> = (0..)
        .map_while(|id| snapshot.regions.name(id).map(|n| (id, n)))
        .map(|(id, name)| {
            let failover: Vec<&str> = snapshot
                .regions
                .order(id)
                .iter()
                .skip(1)
                .filter_map(|f| snapshot.regions.name(*f).map(|n| &**n))
                .collect();
            json!({ "name": &**name, "failover": failover })
        })
        .collect();
    let mut doc = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": epoch(admin.started_at),
        "uptime_seconds": admin.started.elapsed().as_secs_f64(),
        "listeners": listeners,
        "pools": pools(&snapshot, &admin.reloader.dns_names()),
        "regions": regions,
        "last_reload": admin.reloader.last_reload().as_ref().map(reload_json),
        "reloads": admin.reloader.recent_reloads().iter().map(reload_json).collect::<Vec<_>>(),
    });
    if let Some((name, value)) = admin.extension.as_ref().and_then(|e| e.status()) {
        doc[name] = value;
    }
    doc
}

/// One reload outcome.
pub fn reload_json(r: &ReloadResult) -> Value {
    json!({
        "at": epoch(r.at),
        "trigger": r.trigger.as_str(),
        "ok": r.ok,
        "message": r.message,
        "hash": r.hash.map(|h| format!("{h:016x}")),
        "took_ms": r.took.as_secs_f64() * 1000.0,
    })
}

fn role_name(role: PgRole) -> &'static str {
    match role {
        PgRole::Primary => "primary",
        PgRole::Replica => "replica",
    }
}

/// The role a postgres-checked backend holds as its last check saw it: the pool's when the
/// check passed, the other one when it failed on the role alone, unknown (`null`) otherwise
/// (not checked yet, unreachable, or a pool without a role check).
fn role_of(wanted: Option<PgRole>, s: &BackendState) -> Option<&'static str> {
    let wanted = wanted?;
    if s.is_unknown() {
        None
    } else if s.is_healthy() {
        Some(role_name(wanted))
    } else if s.holds_other_role() {
        Some(role_name(match wanted {
            PgRole::Primary => PgRole::Replica,
            PgRole::Replica => PgRole::Primary,
        }))
    } else {
        None
    }
}

/// A DNS backend: its name, current addresses and last resolution.
fn dns_json(n: &NameStatus) -> Value {
    json!({
        "kind": n.kind,
        "name": n.name,
        "addresses": n.addresses.iter().map(|(a, _)| a.to_string()).collect::<Vec<_>>(),
        "resolved_at": n.resolved_at.map(epoch),
        "error": n.error,
    })
}

fn pools(snapshot: &Snapshot, names: &[NameStatus]) -> Vec<Value> {
    let now = clock::now_ms();
    snapshot
        .pools
        .iter()
        .enumerate()
        .map(|(pi, p)| {
            let tcp = snapshot
                .listeners
                .iter()
                .any(|l| l.protocol == Protocol::Tcp && l.routes.default_pool() == PoolId::new(pi));
            // A postgres-checked pool: the role its backends must hold.
            let wanted = p
                .health
                .as_ref()
                .and_then(|h| h.postgres.as_ref())
                .map(|pg| pg.role);
            let backends: Vec<Value> = p
                .backends
                .iter()
                .enumerate()
                .map(|(bi, b)| {
                    let s = &b.state;
                    let state = s.condition(now).as_str();
                    let (requests, errors) = snapshot
                        .listeners
                        .iter()
                        .filter_map(|l| l.metrics.pool(PoolId::new(pi))?.backends.get(bi))
                        .map(|c| c.totals())
                        .fold((0, 0), |(a, e), (r, x)| (a + r, e + x));
                    let change = s.last_change();
                    let check = s.last_check();
                    json!({
                        "address": &*b.label,
                        "name": b.name.as_deref().unwrap_or(&b.label),
                        "state": state,
                        "role": role_of(wanted, s),
                        "why": change.as_ref().map(|c| c.reason.clone()),
                        "since": change.as_ref().map(|c| epoch(c.at)),
                        "region": b.region.as_deref(),
                        "weight": b.weight,
                        "inflight": s.inflight(),
                        "upstream_connections": s.upstream_connections(),
                        "connections": s.connections(),
                        "requests": requests,
                        "errors": errors,
                        "last_check": check.as_ref().map(|c| json!({
                            "at": epoch(c.at),
                            "ok": c.ok,
                            "latency_ms": c.latency.as_secs_f64() * 1000.0,
                            "error": c.error,
                        })),
                    })
                })
                .collect();
            json!({
                "name": &*p.name,
                "protocol": if tcp { "tcp" } else { "http" },
                "health_check": p.health.is_some(),
                "fail_open_active": p.fail_open_active.load(Ordering::Relaxed),
                "role": wanted.map(role_name),
                "backends": backends,
                "dns": names
                    .iter()
                    .filter(|n| *n.pool == *p.name)
                    .map(dns_json)
                    .collect::<Vec<_>>(),
            })
        })
        .collect()
}
