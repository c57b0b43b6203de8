//! Balancers through the proxy: smooth weighted round robin, least connections, retries.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fulcrum::config::{BalanceKind, PoolConfig};

use crate::support::backend::BackendBuilder;
use crate::support::client::{get, get_once, http1};
use crate::support::proxy::{backend, config, listener, refused_addr, Proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smooth_weighted_round_robin_shares_and_order() {
    let a = BackendBuilder::new("a").start().await;
    let b = BackendBuilder::new("b").start().await;
    let c = BackendBuilder::new("c").start().await;
    let mut pool = PoolConfig::new(
        "p",
        vec![backend(a.addr, 5), backend(b.addr, 1), backend(c.addr, 1)],
    );
    pool.balance = BalanceKind::RoundRobin;
    let proxy = Proxy::start(config(listener(), vec![pool]));

    let client = http1();
    let mut order = Vec::new();
    for i in 0..70 {
        let r = get(&client, proxy.addr, &format!("/{i}")).await;
        assert_eq!(r.status, 200);
        order.push(r.backend());
    }
    assert_eq!(
        order[..7].join(" "),
        "a a b a c a a",
        "smooth WRR order of the first cycle"
    );
    let count = |n: &str| order.iter().filter(|o| *o == n).count();
    assert_eq!(
        (count("a"), count("b"), count("c")),
        (50, 10, 10),
        "shares over 10 whole cycles: {order:?}"
    );
    assert_eq!((a.count(), b.count(), c.count()), (50, 10, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_avoids_a_slow_backend() {
    // The slow backend comes first so that a balancer ignoring in-flight counts (or one that
    // always picks the first eligible backend) sends it most requests.
    let slow = BackendBuilder::new("slow")
        .delay(Duration::from_millis(500))
        .start()
        .await;
    let fast = BackendBuilder::new("fast").start().await;
    let mut pool = PoolConfig::new("p", vec![backend(slow.addr, 1), backend(fast.addr, 1)]);
    pool.balance = BalanceKind::LeastConn;
    let proxy = Proxy::start(config(listener(), vec![pool]));

    // Two concurrent request streams share 40 tickets: while one stream waits on the slow
    // backend (one in flight there), the other's requests should all go to the fast one.
    const TOTAL: usize = 40;
    let tickets = Arc::new(AtomicUsize::new(0));
    let mut streams = Vec::new();
    for _ in 0..2 {
        let tickets = Arc::clone(&tickets);
        let addr = proxy.addr;
        streams.push(tokio::spawn(async move {
            let client = http1();
            let mut seen = Vec::new();
            while tickets.fetch_add(1, Ordering::SeqCst) < TOTAL {
                let r = get(&client, addr, "/").await;
                assert_eq!(r.status, 200);
                seen.push(r.backend());
            }
            seen
        }));
    }
    let mut seen = Vec::new();
    for s in streams {
        seen.extend(s.await.unwrap());
    }
    assert_eq!(seen.len(), TOTAL);
    let fast_n = seen.iter().filter(|b| *b == "fast").count();
    assert!(
        fast_n * 100 >= TOTAL * 75,
        "fast backend got {fast_n}/{TOTAL}; expected >= 75%"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_is_retried_on_another_backend() {
    let a = BackendBuilder::new("a").start().await;
    let c = BackendBuilder::new("c").start().await;
    let dead = refused_addr();
    // The refused backend first: whatever the balancer, it is tried early and often.
    let mut pool = PoolConfig::new(
        "p",
        vec![backend(dead, 1), backend(a.addr, 1), backend(c.addr, 1)],
    );
    pool.retries = 2;
    let proxy = Proxy::start(config(listener(), vec![pool]));

    let client = http1();
    for i in 0..30 {
        let r = get(&client, proxy.addr, &format!("/{i}")).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        assert!(
            r.backend() == "a" || r.backend() == "c",
            "request {i} answered by {:?}",
            r.backend()
        );
    }
    assert_eq!(a.count() + c.count(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_two_serves_every_backend() {
    let a = BackendBuilder::new("a").start().await;
    let b = BackendBuilder::new("b").start().await;
    let mut pool = PoolConfig::new("p", vec![backend(a.addr, 1), backend(b.addr, 1)]);
    pool.balance = BalanceKind::RandomTwo;
    let proxy = Proxy::start(config(listener(), vec![pool]));
    for i in 0..40 {
        assert_eq!(get_once(proxy.addr, &format!("/{i}")).await.status, 200);
    }
    // Sequential requests leave both idle: each pick is a coin toss; 40 all one way is ~1e-12.
    assert!(
        a.count() > 0 && b.count() > 0,
        "a={} b={}",
        a.count(),
        b.count()
    );
}
