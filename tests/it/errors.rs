//! Error statuses: 502 (unreachable), 504 (slow), 431 (headers too large), 413 (body too large).

use std::time::{Duration, Instant};

use fulcrum::config::PoolConfig;

use crate::support::backend::BackendBuilder;
use crate::support::client::{get_once, raw_exchange, status_line};
use crate::support::eventually;
use crate::support::proxy::{backend, config, listener, pool, refused_addr, Proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_gateway_when_every_backend_refuses() {
    let dead = [refused_addr(), refused_addr()];
    let mut p = pool("p", &dead);
    p.retries = 2;
    let proxy = Proxy::start(config(listener(), vec![p]));
    let started = Instant::now();
    let r = get_once(proxy.addr, "/").await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!r.body.is_empty());
    assert!(!r.body.contains("127.0.0.1"), "address leaked: {}", r.body);
    for d in dead {
        assert!(
            !r.body.contains(&d.port().to_string()),
            "port leaked: {}",
            r.body
        );
    }
    for (name, value) in &r.headers {
        let v = value.to_str().unwrap_or("");
        assert!(!v.contains("127.0.0.1"), "address leaked in {name}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_timeout_on_a_slow_backend() {
    let slow = BackendBuilder::new("slow")
        .delay(Duration::from_secs(2))
        .start()
        .await;
    let mut p = PoolConfig::new("p", vec![backend(slow.addr, 1)]);
    p.request_timeout = Duration::from_millis(200);
    let proxy = Proxy::start(config(listener(), vec![p]));
    let started = Instant::now();
    let r = get_once(proxy.addr, "/").await;
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.body);
    assert!(took < Duration::from_millis(1500), "504 took {took:?}");
    assert_eq!(slow.count(), 1, "a timed-out request is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_block_over_64k_gets_431_and_the_proxy_keeps_serving() {
    let b = BackendBuilder::new("b").start().await;
    let proxy = Proxy::simple(&[b.addr]);
    let big = "x".repeat(70 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: h\r\nX-Big: {big}\r\n\r\n");
    let response = raw_exchange(proxy.addr, request.as_bytes(), Duration::from_secs(5)).await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 431"),
        "status line: {:?}",
        status_line(&response)
    );
    let r = get_once(proxy.addr, "/after").await;
    assert_eq!(r.status, 200);
    assert_eq!(b.count(), 1, "only the normal request reached the backend");
    assert_eq!(b.requests()[0].path, "/after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_listener_limit_gets_413_and_is_not_forwarded() {
    let b = BackendBuilder::new("b").start().await;
    let mut l = listener();
    l.max_request_body = 10;
    let proxy = Proxy::start(config(l, vec![pool("p", &[b.addr])]));

    let body = "y".repeat(100);
    let with_length = format!("POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n{body}");
    let response = raw_exchange(proxy.addr, with_length.as_bytes(), Duration::from_secs(5)).await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 413"),
        "{response}"
    );

    let chunked = format!(
        "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n{body}\r\n0\r\n\r\n"
    );
    let response = raw_exchange(proxy.addr, chunked.as_bytes(), Duration::from_secs(5)).await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 413"),
        "chunked: {response}"
    );

    // A small body still goes through; then the backend has seen exactly that one request.
    let small =
        "POST /ok HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    let response = raw_exchange(proxy.addr, small.as_bytes(), Duration::from_secs(5)).await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 200"),
        "{response}"
    );
    eventually(
        Duration::from_secs(5),
        "the backend to get the request",
        || async { b.count() >= 1 },
    )
    .await;
    let seen = b.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/ok");
    assert_eq!(&seen[0].body[..], b"hello");
}
