//! Health checks, passive ejection, retries, retry budget, backup pools, slow start and
//! fail-open, against real backends on loopback. Checks run every 100 ms so every state change
//! happens within a bounded wait; nothing sleeps to synchronise.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fulcrum::config::{HealthConfig, PoolConfig, PoolId};
use fulcrum::BackendStatus;

use crate::support::client::{get, http1};
use crate::support::eventually;
use crate::support::flip::{FlipBackend, RoleServer};
use crate::support::proxy::{backend, config, listener, Proxy};

const WAIT: Duration = Duration::from_secs(5);

/// An http check every 100 ms that flips on one result.
fn http_check() -> HealthConfig {
    HealthConfig {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(500),
        rise: 1,
        fall: 1,
        ..HealthConfig::http()
    }
}

fn pool_of(name: &str, backends: &[&FlipBackend]) -> PoolConfig {
    PoolConfig::new(name, backends.iter().map(|b| backend(b.addr, 1)).collect())
}

fn status(proxy: &Proxy, addr: SocketAddr) -> BackendStatus {
    proxy
        .handle
        .as_ref()
        .unwrap()
        .status()
        .into_iter()
        .flat_map(|p| p.backends)
        .find(|b| b.address == addr)
        .unwrap()
}

fn reason(proxy: &Proxy, addr: SocketAddr) -> String {
    status(proxy, addr)
        .last_change
        .map(|c| format!("{}: {}", c.state, c.reason))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_check_marks_down_on_500_and_up_on_recovery() {
    let a = FlipBackend::start("a").await;
    let b = FlipBackend::start("b").await;
    let mut pool = pool_of("p", &[&a, &b]);
    pool.health = Some(http_check());
    let proxy = Proxy::start(config(listener(), vec![pool]));
    assert!(status(&proxy, b.addr).healthy, "fresh backends start up");

    b.set_health(500);
    eventually(WAIT, "b marked down", || async {
        !status(&proxy, b.addr).healthy
    })
    .await;
    assert_eq!(reason(&proxy, b.addr), "down: 1 checks failed: status 500");
    let client = http1();
    let before = b.hits();
    for i in 0..10 {
        let r = get(&client, proxy.addr, &format!("/{i}")).await;
        assert_eq!((r.status.as_u16(), r.backend()), (200, "a".into()));
    }
    assert_eq!(b.hits(), before, "a down backend gets no traffic");

    b.set_health(204);
    eventually(WAIT, "b marked up", || async {
        status(&proxy, b.addr).healthy
    })
    .await;
    assert_eq!(reason(&proxy, b.addr), "up: 1 checks passed");
    for i in 0..10 {
        assert_eq!(get(&client, proxy.addr, &format!("/{i}")).await.status, 200);
    }
    assert!(b.hits() > before, "back in rotation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_send_expect_on_a_side_port_follows_the_role() {
    let a = FlipBackend::start("a").await;
    let role = RoleServer::start(true).await;
    let mut pool = pool_of("p", &[&a]);
    pool.health = Some(HealthConfig {
        send: "INFO replication\r\n".into(),
        expect: "role:master".into(),
        port: role.addr.port(),
        ..HealthConfig {
            rise: 2,
            ..http_check()
        }
    });
    pool.health.as_mut().unwrap().kind = fulcrum::config::HealthKind::Tcp;
    let proxy = Proxy::start(config(listener(), vec![pool]));

    // A role-checked backend starts unknown; its first check, run at once, decides alone.
    eventually(WAIT, "a up after its first check", || async {
        status(&proxy, a.addr).healthy
    })
    .await;
    assert_eq!(reason(&proxy, a.addr), "up: first check passed");
    role.set_master(false);
    eventually(WAIT, "a marked down", || async {
        !status(&proxy, a.addr).healthy
    })
    .await;
    assert_eq!(
        reason(&proxy, a.addr),
        "down: 1 checks failed: reply does not contain \"role:master\""
    );
    role.set_master(true);
    eventually(WAIT, "a marked up", || async {
        status(&proxy, a.addr).healthy
    })
    .await;
    assert_eq!(reason(&proxy, a.addr), "up: 2 checks passed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_is_removed_without_failed_requests() {
    let a = FlipBackend::start("a").await;
    let mut b = FlipBackend::start("b").await;
    let c = FlipBackend::start("c").await;
    let mut pool = pool_of("p", &[&a, &b, &c]);
    pool.health = Some(http_check());
    let proxy = Proxy::start(config(listener(), vec![pool]));
    let client = http1();

    b.kill();
    // Traffic until the checks mark b down; every request of it succeeds.
    let mut i = 0;
    eventually(WAIT, "b marked down", async || {
        if !status(&proxy, b.addr).healthy {
            return true;
        }
        let r = get(&client, proxy.addr, &format!("/{i}")).await;
        assert_eq!(r.status, 200, "request {i} failed while b was dying");
        i += 1;
        false
    })
    .await;
    assert_eq!(
        reason(&proxy, b.addr),
        "down: 1 checks failed: connect refused"
    );

    b.restart().await;
    eventually(WAIT, "b marked up", || async {
        status(&proxy, b.addr).healthy
    })
    .await;
    for i in 0..9 {
        assert_eq!(get(&client, proxy.addr, &format!("/{i}")).await.status, 200);
    }
    assert!(b.hits() > 0, "restarted backend back in rotation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_ejection_and_its_expiry() {
    let a = FlipBackend::start("a").await;
    let b = FlipBackend::start("b").await;
    let mut pool = pool_of("p", &[&a, &b]);
    pool.retries = 0;
    pool.passive.consecutive_failures = 3;
    pool.passive.eject_for = Duration::from_millis(500);
    let proxy = Proxy::start(config(listener(), vec![pool]));
    let client = http1();

    b.set_fail(true);
    let mut fives = 0;
    for i in 0..20 {
        if get(&client, proxy.addr, &format!("/{i}")).await.status == 500 {
            fives += 1;
        }
        if status(&proxy, b.addr).ejected {
            break;
        }
    }
    assert!(status(&proxy, b.addr).ejected, "not ejected");
    assert_eq!(fives, 3, "ejected after exactly 3 failures in a row");
    assert!(reason(&proxy, b.addr).starts_with("ejected: 3 requests failed in a row (last: 500"));
    let hits = b.hits();
    for i in 0..6 {
        let r = get(&client, proxy.addr, &format!("/{i}")).await;
        if !status(&proxy, b.addr).ejected {
            break;
        }
        assert_eq!(r.backend(), "a", "request {i} during the ejection");
    }

    b.set_fail(false);
    eventually(WAIT, "b's ejection to end", || async {
        !status(&proxy, b.addr).ejected
    })
    .await;
    let hits_after = hits;
    for i in 0..10 {
        assert_eq!(get(&client, proxy.addr, &format!("/{i}")).await.status, 200);
    }
    assert!(b.hits() > hits_after, "b back after its ejection expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_backend_is_never_ejected() {
    let a = FlipBackend::start("a").await;
    let mut pool = pool_of("p", &[&a]);
    pool.passive.consecutive_failures = 2;
    let proxy = Proxy::start(config(listener(), vec![pool]));
    a.set_fail(true);
    let client = http1();
    for i in 0..5 {
        assert_eq!(get(&client, proxy.addr, &format!("/{i}")).await.status, 500);
    }
    assert!(!status(&proxy, a.addr).ejected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_get_is_retried_on_another_backend() {
    let a = FlipBackend::start("a").await;
    let b = FlipBackend::start("b").await;
    b.set_reset(true);
    let mut pool = pool_of("p", &[&b, &a]);
    pool.retries = 1;
    pool.passive.consecutive_failures = 0;
    let proxy = Proxy::start(config(listener(), vec![pool]));
    let client = http1();
    for i in 0..20 {
        let r = get(&client, proxy.addr, &format!("/{i}")).await;
        assert_eq!(
            (r.status.as_u16(), r.backend()),
            (200, "a".into()),
            "request {i}"
        );
    }
    assert!(b.hits() >= 10, "b saw (and reset) requests: {}", b.hits());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_caps_retries() {
    let a = FlipBackend::start("a").await;
    let b = FlipBackend::start("b").await;
    b.set_reset(true);
    let mut pool = pool_of("p", &[&b, &a]);
    pool.retries = 1;
    pool.passive.consecutive_failures = 0;
    let proxy = Proxy::start(config(listener(), vec![pool]));
    let client = http1();
    const N: usize = 200;
    let started = Instant::now();
    let mut failed = 0;
    for i in 0..N {
        if get(&client, proxy.addr, &format!("/{i}")).await.status == 502 {
            failed += 1;
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "must fit the budget window"
    );
    // Every request that hit b first was either retried on a or failed.
    let retried = b.hits() - failed;
    let budget = 30 + N / 5;
    assert!(failed > 0, "no retry was refused (b hits {})", b.hits());
    assert!(
        retried <= budget + 2 && retried + 10 >= budget,
        "retried {retried}, budget {budget}, failed {failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_pool_serves_then_503_when_both_are_down() {
    let a = FlipBackend::start("a").await;
    let o = FlipBackend::start("origin").await;
    let mut web = pool_of("web", &[&a]);
    web.health = Some(http_check());
    web.backup = Some(PoolId::new(1)); // "origin", the second pool
    let mut origin = pool_of("origin", &[&o]);
    origin.health = Some(http_check());
    let proxy = Proxy::start(config(listener(), vec![web, origin]));
    let client = http1();

    assert_eq!(get(&client, proxy.addr, "/").await.backend(), "a");
    a.set_health(503);
    eventually(WAIT, "a marked down", || async {
        !status(&proxy, a.addr).healthy
    })
    .await;
    let r = get(&client, proxy.addr, "/").await;
    assert_eq!((r.status.as_u16(), r.backend()), (200, "origin".into()));

    o.set_health(500);
    eventually(WAIT, "origin marked down", || async {
        !status(&proxy, o.addr).healthy
    })
    .await;
    let r = get(&client, proxy.addr, "/").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.headers.get("retry-after").unwrap(), "1");

    a.set_health(200);
    eventually(WAIT, "a marked up", || async {
        status(&proxy, a.addr).healthy
    })
    .await;
    assert_eq!(get(&client, proxy.addr, "/").await.backend(), "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_start_ramps_a_returning_backends_share() {
    let a = FlipBackend::start("a").await;
    let b = FlipBackend::start("b").await;
    let mut pool = pool_of("p", &[&a, &b]);
    pool.health = Some(http_check());
    pool.slow_start = Duration::from_secs(3);
    let proxy = Proxy::start(config(listener(), vec![pool]));
    let client = http1();

    b.set_health(500);
    eventually(WAIT, "b marked down", || async {
        !status(&proxy, b.addr).healthy
    })
    .await;
    b.set_health(200);
    eventually(WAIT, "b marked up", || async {
        status(&proxy, b.addr).healthy
    })
    .await;
    let back = Instant::now();
    let (mut early, mut late) = ((0, 0), (0, 0));
    let mut i = 0;
    while back.elapsed() < Duration::from_millis(3100) {
        let t = back.elapsed();
        let on_b = get(&client, proxy.addr, &format!("/{i}")).await.backend() == "b";
        i += 1;
        let window = if t < Duration::from_millis(750) {
            &mut early
        } else if t >= Duration::from_millis(2250) {
            &mut late
        } else {
            continue;
        };
        window.0 += usize::from(on_b);
        window.1 += 1;
    }
    let share = |(on_b, n): (usize, usize)| on_b as f64 / n.max(1) as f64;
    let (e, l) = (share(early), share(late));
    assert!(
        early.1 >= 20 && late.1 >= 20,
        "too few samples: {early:?} {late:?}"
    );
    assert!(
        e < 0.3 && l > 0.3 && l > e + 0.15,
        "early {early:?} = {e:.2}, late {late:?} = {l:.2}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_serves_when_everything_is_down() {
    let a = FlipBackend::start("a").await;
    let b = FlipBackend::start("b").await;
    let mut pool = pool_of("p", &[&a, &b]);
    pool.health = Some(http_check());
    pool.fail_open = true;
    let proxy = Proxy::start(config(listener(), vec![pool]));
    a.set_health(500);
    b.set_health(500);
    eventually(WAIT, "a and b marked down", || async {
        !status(&proxy, a.addr).healthy && !status(&proxy, b.addr).healthy
    })
    .await;
    let client = http1();
    for i in 0..4 {
        assert_eq!(get(&client, proxy.addr, &format!("/{i}")).await.status, 200);
    }
    let pools = proxy.handle.as_ref().unwrap().status();
    assert!(
        pools[0].fail_open_active,
        "fail-open is visible in the status"
    );

    a.set_health(200);
    eventually(WAIT, "a marked up", || async {
        status(&proxy, a.addr).healthy
    })
    .await;
    assert_eq!(get(&client, proxy.addr, "/").await.backend(), "a");
    assert!(!proxy.handle.as_ref().unwrap().status()[0].fail_open_active);
}
