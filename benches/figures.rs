//! The failover and reload figures quoted in README.md. They are measurements, not tests: they
//! print what they measured and fail only when something breaks outright. They drive the
//! library in this process with the integration tests' backends and clients
//! (`tests/it/support`).
//!
//! Release build (the bench profile), on an otherwise idle machine:
//!
//! ```sh
//! cargo bench --bench figures               # both, about a minute and a half
//! cargo bench --bench figures -- failover   # about 40 s
//! cargo bench --bench figures -- reload     # under a minute
//! ```
//!
//! `failover`: steady GET load (50 requests/s) over 3 backends with the default check settings
//! (http, interval 2s, timeout 1s, rise 2, fall 3, passive 5 failures / 10s). Scenario 1 kills
//! one backend (listener and every connection dropped, as a SIGKILL does) and restarts it;
//! scenario 2 flips its `/healthz` to 500 and back. Printed: failed client requests, seconds
//! until the backend gets no more traffic, seconds until it is back in rotation.
//!
//! `reload`: RSS after 1,000 reloads against after the first; 8 keep-alive clients for 10 s
//! without and then with 20 reloads (failed requests, p99); file write to the new backend
//! serving, through the file watcher; the reload time of a 10,000-backend config.
//!
//! `limits`: the memory of `[listener.limits]`'s per-client rate table: RSS before and after
//! one request from each of 1,000,000 distinct clients (IPv4, then IPv6), the time per check
//! of a new and of a known client, and what the sweep leaves once their states are fresh.
//!
//! Under `cargo test --benches` (no `--bench` argument) it only says how to run it.

#![allow(clippy::unwrap_used)]
// The test backends record requests behind a Mutex: test code, not the request path.
#![allow(clippy::disallowed_types)]

// The integration tests' support module, of which this uses a part.
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fulcrum::config::{HealthConfig, PoolConfig};

use support::backend::BackendBuilder;
use support::client::{get, http1};
use support::flip::FlipBackend;
use support::proxy::{any_port, backend, config, listener, toml_text, write_file, Proxy};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("figures: measurements, not tests; run `cargo bench --bench figures`");
        return;
    }
    let wanted: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let selected = |name: &str| wanted.is_empty() || wanted.iter().any(|w| name.contains(w));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if selected("failover") {
        rt.block_on(async {
            failover(true).await;
            failover(false).await;
        });
    }
    if selected("reload") {
        rt.block_on(reload_figures());
    }
    if selected("limits") {
        limits_memory();
    }
}

/// The per-client rate table with 1M distinct clients: bytes per client (RSS delta), check
/// times, and the sweep that empties it.
fn limits_memory() {
    use fulcrum::config::LimitsConfig;
    use fulcrum::internals::ClientLimits;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    const CLIENTS: u32 = 1_000_000;
    let config = LimitsConfig {
        requests_per_second: 1,
        burst: 0,
        connections_per_client: 0,
    };
    type Address = fn(u32) -> IpAddr;
    let families: [(&str, Address); 2] = [
        ("IPv4", |i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))),
        ("IPv6", |i| {
            IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i)))
        }),
    ];
    for (family, ip) in families {
        let limits = ClientLimits::build(&config, None, "figure", false);
        let before = rss_kib();
        let t0 = Instant::now();
        for i in 0..CLIENTS {
            assert!(limits.check_request(ip(i)).is_ok());
        }
        let first = t0.elapsed();
        let after = rss_kib();
        // Known clients: no insert (most are over their rate still, the earliest fresh again).
        let t0 = Instant::now();
        for i in 0..CLIENTS {
            let _ = limits.check_request(ip(i));
        }
        let known = t0.elapsed();
        assert_eq!(limits.tracked_clients(), CLIENTS as usize);
        let per_client = (after - before) * 1024 / u64::from(CLIENTS);
        println!(
            "limits {family}: {CLIENTS} clients: RSS +{} KiB ({per_client} B per client); \
             check {} ns (new client), {} ns (known)",
            after - before,
            first.as_nanos() / u128::from(CLIENTS),
            known.as_nanos() / u128::from(CLIENTS),
        );
        // 1/s, no burst: forgettable (`retain_recent`) 2 s after a client's last request.
        std::thread::sleep(Duration::from_millis(2100));
        let t0 = Instant::now();
        limits.sweep();
        println!(
            "limits {family}: sweep 2.1 s later: {} clients left, {:?}, RSS {} KiB (was {after})",
            limits.tracked_clients(),
            t0.elapsed(),
            rss_kib()
        );
    }
}

/// Seconds from `t0` until `cond` holds, polled every 5 ms, within `limit`.
async fn seconds_until(t0: Instant, limit: Duration, mut cond: impl FnMut() -> bool) -> f64 {
    while !cond() {
        assert!(t0.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    t0.elapsed().as_secs_f64()
}

async fn failover(kill: bool) {
    let a = FlipBackend::start("a").await;
    let mut b = FlipBackend::start("b").await;
    let c = FlipBackend::start("c").await;
    let mut pool = PoolConfig::new(
        "p",
        vec![backend(a.addr, 1), backend(b.addr, 1), backend(c.addr, 1)],
    );
    pool.health = Some(HealthConfig::http());
    let proxy = Proxy::start(config(listener(), vec![pool]));
    let addr = proxy.addr;

    // 50 requests/s, each on its own task over a shared keep-alive client.
    let failed = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let (f, s) = (Arc::clone(&failed), Arc::clone(&sent));
    let load = tokio::spawn(async move {
        let client = http1();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            let (client, f) = (client.clone(), Arc::clone(&f));
            s.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let req = http::Request::get(format!("http://{addr}/"))
                    .body(Default::default())
                    .unwrap();
                match tokio::time::timeout(Duration::from_secs(5), client.request(req)).await {
                    Ok(Ok(r)) if r.status() == 200 => {}
                    _ => {
                        f.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    tokio::time::sleep(Duration::from_secs(3)).await; // warm-up under load

    let t0 = Instant::now();
    if kill {
        b.kill();
    } else {
        b.set_health(500);
    }
    let limit = Duration::from_secs(15);
    let handle = proxy.handle.as_ref().unwrap();
    let out_of_rotation = |h: &fulcrum::Handle| {
        h.status()[0]
            .backends
            .iter()
            .any(|s| s.address == b.addr && (!s.healthy || s.ejected))
    };
    let removed = seconds_until(t0, limit, || out_of_rotation(handle)).await;
    let down = seconds_until(t0, limit, || {
        handle.status()[0]
            .backends
            .iter()
            .any(|s| s.address == b.addr && !s.healthy)
    })
    .await;
    // For the flip, traffic still flows until the checks mark it down: the last hit tells.
    let hits_at_down = b.hits();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stray = b.hits() - hits_at_down;

    let t1 = Instant::now();
    if kill {
        b.restart().await;
    } else {
        b.set_health(200);
    }
    let before = b.hits();
    let back = seconds_until(t1, limit, || b.hits() > before).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.abort();
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "{}: sent {} requests, failed {}; out of rotation after {removed:.2}s (actively down after {down:.2}s, {stray} hits after that); back in rotation {back:.2}s after {}",
        if kill { "kill" } else { "healthz 500" },
        sent.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        if kill { "restart" } else { "healthz 200" },
    );
}

/// 8 keep-alive clients hammer `addr` for `secs`; returns (failed requests, all latencies).
async fn load(addr: SocketAddr, secs: u64) -> (usize, Vec<Duration>) {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        tasks.push(tokio::spawn(async move {
            let client = http1();
            let (mut failed, mut lat) = (0usize, Vec::new());
            while Instant::now() < until {
                let req = http::Request::get(format!("http://{addr}/"))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                let started = Instant::now();
                let ok = match client.request(req).await {
                    Ok(resp) => {
                        let ok = resp.status() == 200;
                        ok && http_body_util::BodyExt::collect(resp.into_body())
                            .await
                            .is_ok()
                    }
                    Err(_) => false,
                };
                lat.push(started.elapsed());
                failed += usize::from(!ok);
            }
            (failed, lat)
        }));
    }
    let (mut failed, mut all) = (0, Vec::new());
    for t in tasks {
        let (f, l) = t.await.unwrap();
        failed += f;
        all.extend(l);
    }
    all.sort();
    (failed, all)
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)]
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Reloads the file now, as the admin API does (off the runtime: it blocks).
async fn reload(reloader: &Arc<fulcrum::Reloader>) -> fulcrum::ReloadResult {
    let r = Arc::clone(reloader);
    tokio::task::spawn_blocking(move || r.reload(fulcrum::Trigger::Api).unwrap())
        .await
        .unwrap()
}

/// Fulcrum from the config file at `path`, file watcher included.
fn start_watching(path: &Path) -> fulcrum::Handle {
    fulcrum::start(fulcrum::Config::from_file(path).unwrap()).unwrap()
}

async fn reload_figures() {
    let a = BackendBuilder::new("a").start().await;
    let b = BackendBuilder::new("b").start().await;
    let bind = any_port();
    let dir = tempfile::tempdir().unwrap();
    let one = toml_text(&[("web", bind)], &[a.addr]);
    let two = toml_text(&[("web", bind)], &[a.addr, b.addr]);
    let path = write_file(dir.path(), "f.toml", &one);
    let handle = start_watching(&path);
    let addr = handle.listener_addr("web").unwrap();
    let reloader = handle.reloader();

    // 0. RSS (first, while the heap holds nothing of the load below) after 1,000 reloads vs after the first.
    std::fs::write(&path, &one).unwrap();
    reload(&reloader).await;
    let first = rss_kib();
    for i in 0..1000 {
        std::fs::write(&path, if i % 2 == 0 { &two } else { &one }).unwrap();
        reload(&reloader).await;
    }
    let after = rss_kib();
    println!(
        "RSS after the first reload {first} KiB, after 1,000 more {after} KiB ({:+.1}%)",
        (after as f64 - first as f64) * 100.0 / first as f64
    );

    // 1. Load without, then with 20 reloads (one every 0.5 s, alternately adding/removing b).
    let (failed0, lat0) = load(addr, 10).await;
    let l = tokio::spawn(load(addr, 10));
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        std::fs::write(&path, if i % 2 == 0 { &two } else { &one }).unwrap();
        reload(&reloader).await;
    }
    let (failed1, lat1) = l.await.unwrap();
    println!(
        "load 10 s x 8 conns: without reloads {} req, {failed0} failed, p99 {:?}; with 20 reloads {} req, {failed1} failed, p99 {:?} (ratio {:.2})",
        lat0.len(),
        p99(&lat0),
        lat1.len(),
        p99(&lat1),
        p99(&lat1).as_secs_f64() / p99(&lat0).as_secs_f64()
    );

    // 2. File write -> new config serving (through the watcher: debounce + reload).
    let client = http1();
    let mut samples = Vec::new();
    for i in 0..6 {
        let (text, want) = if i % 2 == 0 { (&two, "b") } else { (&one, "a") };
        if want == "a" {
            std::fs::write(&path, text).unwrap();
            let w = Instant::now();
            // Only a serves once b is gone: wait until 20 answers in a row are a.
            let mut in_a_row = 0;
            while in_a_row < 20 && w.elapsed() < Duration::from_secs(5) {
                if get(&client, addr, "/").await.backend() == "a" {
                    in_a_row += 1;
                } else {
                    in_a_row = 0;
                }
            }
            continue;
        }
        std::fs::write(&path, text).unwrap();
        let w = Instant::now();
        while get(&client, addr, "/").await.backend() != want
            && w.elapsed() < Duration::from_secs(5)
        {}
        samples.push(w.elapsed());
    }
    println!("file write -> new backend serving: {samples:?}");

    // 3. Reload time of a 10,000-backend config.
    let big = |extra: u8| {
        let mut addrs: Vec<SocketAddr> = (0..10_000u32)
            .map(|i| SocketAddr::from(([10, 1, (i / 250) as u8, (i % 250) as u8 + 1], 80)))
            .collect();
        addrs[0] = SocketAddr::from(([10, 2, 0, extra], 80));
        toml_text(&[("web", bind)], &addrs)
    };
    let mut took = Vec::new();
    for i in 0..6u8 {
        std::fs::write(&path, big(i + 1)).unwrap();
        took.push(reload(&reloader).await.took);
    }
    took.sort();
    println!(
        "10,000-backend reload (read+parse+validate+build+swap): median {:?}, max {:?}",
        took[took.len() / 2],
        took[took.len() - 1]
    );
}
