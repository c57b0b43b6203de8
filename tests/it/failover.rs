//! Failover figures (ignored: run once, in release, by hand):
//! `cargo test --release --test it failover -- --ignored --nocapture`.
//!
//! Steady GET load (50 requests/s) over 3 backends with the default check settings (http,
//! interval 2s, timeout 1s, rise 2, fall 3, passive 5 failures / 10s). Scenario 1 kills one
//! backend (listener and every connection dropped, as a SIGKILL does) and restarts it;
//! scenario 2 flips its `/healthz` to 500 and back. Printed: failed client requests, seconds
//! until the backend gets no more traffic, seconds until it is back in rotation.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fulcrum::config::{HealthConfig, PoolConfig};

use crate::support::client::http1;
use crate::support::flip::FlipBackend;
use crate::support::proxy::{backend, config, listener, Proxy};

/// Seconds from `t0` until `cond` holds, polled every 5 ms, within `limit`.
async fn seconds_until(t0: Instant, limit: Duration, mut cond: impl FnMut() -> bool) -> f64 {
    while !cond() {
        assert!(t0.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    t0.elapsed().as_secs_f64()
}

async fn scenario(kill: bool) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "figures for the closing note; about 40 s"]
async fn failover_figures() {
    scenario(true).await;
    scenario(false).await;
}
