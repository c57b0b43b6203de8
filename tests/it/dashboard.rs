//! The status page as an operator watches it, in headless Chromium over the DevTools protocol:
//! under traffic its charts draw and move, a drain clicked on the page changes the backend's
//! row, and the region-flow view shows the drained region's clients moving to the other one.
//! Screenshots at 1366 and 390 px go to `target/screenshots/`.
//!
//! The names (listener and pool `shop`, regions `eu-north` / `eu-south`) are this test's own:
//! the metrics registry, which the history samples, is the process's, shared by every test.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fulcrum::config::{BackendConfig, ListenerConfig, PoolConfig, PoolId, RegionConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::admin::{admin_of, with_admin};
use crate::support::backend::{BackendBuilder, TestBackend};
use crate::support::browser::Browser;
use crate::support::proxy::{any_port, config, Proxy};
use crate::support::{eventually, require};

const NORTH_CLIENT: &str = "127.31.0.1";
const SOUTH_CLIENT: &str = "127.32.0.1";
const WAIT: Duration = Duration::from_secs(20);

fn region(name: &str, cidr: &str, failover: &str) -> RegionConfig {
    RegionConfig {
        name: name.into(),
        cidrs: vec![cidr.parse().unwrap()],
        countries: Vec::new(),
        failover: vec![failover.into()],
    }
}

fn named(b: &TestBackend, name: &str, region: &str) -> BackendConfig {
    BackendConfig {
        address: b.addr,
        name: Some(name.into()),
        weight: 1,
        region: Some(region.into()),
    }
}

/// One `Connection: close` GET from `source`; whether it got a 200.
async fn get_from(source: &str, proxy: SocketAddr) -> bool {
    let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
        return false;
    };
    if socket
        .bind(SocketAddr::new(source.parse().unwrap(), 0))
        .is_err()
    {
        return false;
    }
    let Ok(mut stream) = socket.connect(proxy).await else {
        return false;
    };
    let req = b"GET / HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n";
    if stream.write_all(req).await.is_err() {
        return false;
    }
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await;
    reply.starts_with(b"HTTP/1.1 200")
}

/// Clients in both regions, about 20 requests a second each, until `stop`.
fn traffic(proxy: SocketAddr, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(50));
        while !stop.load(Ordering::Relaxed) {
            every.tick().await;
            tokio::join!(get_from(NORTH_CLIENT, proxy), get_from(SOUTH_CLIENT, proxy));
        }
    })
}

/// The `d` of the first line of chart `key` (`""` while none is drawn).
fn path_of(key: &str) -> String {
    format!("document.querySelector('[data-chart=\"{key}\"] path.line')?.getAttribute('d') ?? ''")
}

/// The requests/s the flow view shows for `client` -> `served` (`null` when not shown).
fn flow(client: &str, served: &str) -> String {
    format!(
        "(() => {{ const f = document.querySelector('.flow[data-client=\"{client}\"][data-served=\"{served}\"]'); \
         return f ? Number(f.dataset.rps) : null; }})()"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charts_move_and_a_drain_shows_in_the_region_flows() {
    let Some(chromium) = require("chromium") else {
        return;
    };
    let mut backends = Vec::new();
    for name in ["north-1", "north-2", "south-1", "south-2"] {
        backends.push(BackendBuilder::new(name).start().await);
    }
    let pool = PoolConfig::new(
        "shop",
        vec![
            named(&backends[0], "north-1", "eu-north"),
            named(&backends[1], "north-2", "eu-north"),
            named(&backends[2], "south-1", "eu-south"),
            named(&backends[3], "south-2", "eu-south"),
        ],
    );
    let mut cfg = with_admin(config(
        ListenerConfig::http("shop", any_port(), PoolId::new(0)),
        vec![pool],
    ));
    cfg.regions = vec![
        region("eu-north", "127.31.0.0/16", "eu-south"),
        region("eu-south", "127.32.0.0/16", "eu-north"),
    ];
    let proxy = Proxy::start(cfg);
    let admin = admin_of(&proxy);
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(proxy.addr, Arc::clone(&stop));

    let mut page = Browser::open(&chromium, &format!("http://{admin}/")).await;
    page.viewport(1366, 900).await;

    // The charts draw, and move: the requests/s line changes between two reads.
    let rps = path_of("pool:shop:rps");
    let first = eventually(WAIT, "the pool's requests/s chart drawn", async || {
        let d = page.eval(&rps).await;
        d.as_str().filter(|d| d.contains('L')).map(String::from)
    })
    .await;
    eventually(WAIT, "the requests/s chart to move", async || {
        page.eval(&rps).await.as_str() != Some(first.as_str())
    })
    .await;
    for key in [
        "pool:shop:latency",
        "pool:shop:errors",
        "listener:shop:rps",
        "flow:eu-north",
    ] {
        let what = format!("chart {key} drawn");
        let js = path_of(key);
        eventually(WAIT, &what, async || {
            page.eval(&js).await.as_str().is_some_and(|d| !d.is_empty())
        })
        .await;
    }
    // Before the drain, north's clients are served in the north.
    eventually(WAIT, "eu-north clients served in eu-north", async || {
        page.eval(&flow("eu-north", "eu-north"))
            .await
            .as_f64()
            .is_some_and(|r| r > 1.0)
    })
    .await;
    // Names are shown, addresses beside them.
    let shown = page
        .eval(&format!(
            "document.querySelector('tr[data-backend=\"{}\"] .name').textContent",
            backends[0].addr
        ))
        .await;
    assert_eq!(shown, "north-1");

    // No name or button wraps at 1366 px: each is one line high.
    let wrapped = page
        .eval(
            "[...document.querySelectorAll('button, .name, h2, th, .state, .flow')].filter(e => { \
               const s = getComputedStyle(e), px = v => parseFloat(v) || 0; \
               const inner = e.getBoundingClientRect().height - px(s.paddingTop) - px(s.paddingBottom) \
                 - px(s.borderTopWidth) - px(s.borderBottomWidth); \
               return inner > 1.5 * (px(s.lineHeight) || 1.45 * px(s.fontSize)); \
             }).map(e => e.textContent)",
        )
        .await;
    assert_eq!(wrapped, serde_json::json!([]), "wrapped at 1366 px");

    // Drain both north backends by clicking their buttons.
    for b in &backends[..2] {
        let addr = b.addr;
        let row = format!("document.querySelector('tr[data-backend=\"{addr}\"]')");
        page.eval(&format!("{row}.querySelector('button').click(); true"))
            .await;
        let what = format!("{addr} shown draining");
        eventually(WAIT, &what, async || {
            page.eval(&format!("{row}?.dataset.state ?? null")).await == "draining"
        })
        .await;
    }
    // The flow view shows north's clients moving south.
    eventually(
        WAIT,
        "eu-north clients shown served by eu-south",
        async || {
            let south = page.eval(&flow("eu-north", "eu-south")).await.as_f64();
            let north = page.eval(&flow("eu-north", "eu-north")).await.as_f64();
            south.is_some_and(|s| s > 1.0) && north.is_some_and(|n| n == 0.0)
        },
    )
    .await;

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    page.screenshot(&dir.join("status-1366.png")).await;
    // At 390 px the page stays usable: nothing wider than the screen but the tables, which
    // scroll inside their own box.
    page.viewport(390, 844).await;
    let overflow = page
        .eval("document.documentElement.scrollWidth")
        .await
        .as_f64()
        .unwrap();
    assert!(overflow <= 390.0, "the page is {overflow} px wide at 390");
    page.screenshot(&dir.join("status-390.png")).await;
    for shot in ["status-1366.png", "status-390.png"] {
        let len = std::fs::metadata(dir.join(shot)).unwrap().len();
        assert!(len > 10_000, "{shot}: {len} bytes");
    }

    stop.store(true, Ordering::Relaxed);
    let _ = load.await;
    drop(page);
    proxy.shutdown().await;
}
