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

/// A backend that speaks HTTP/2 only, behind an HTTP/1.1 pool: it answers our request with
/// its SETTINGS frame and closes.
async fn h2_only_backend() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"h2")),
                    ))
                });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
            });
        }
    });
    addr
}

/// A backend speaking the wrong protocol is the backend's failure, not an invisible one: its
/// 502s count against it (`fulcrum_requests_total{backend=...}` and its status row), and it
/// is passively ejected while the other backend serves every retried request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_speaking_the_wrong_protocol_is_blamed_and_ejected() {
    let wrong = h2_only_backend().await;
    let good = BackendBuilder::new("good").start().await;

    // Alone in its pool: the client gets 502, counted against the backend.
    let mut c = config(listener(), vec![pool("p", &[wrong])]);
    c.global.admin = Some(crate::support::proxy::any_port());
    let alone = Proxy::start(c);
    assert_eq!(get_once(alone.addr, "/").await.status, 502);
    let admin = alone.handle.as_ref().unwrap().admin_addr().unwrap();
    let metrics = get_once(admin, "/metrics").await.body;
    let series = format!("backend=\"{wrong}\",code=\"502\",listener=\"web\",pool=\"p\"}} 1");
    assert!(metrics.contains(&series), "{series} not in:\n{metrics}");
    drop(alone);

    // Beside a good backend: every request succeeds, and the wrong one is ejected.
    let mut p = pool("p", &[wrong, good.addr]);
    p.passive.consecutive_failures = 3;
    let proxy = Proxy::start(config(listener(), vec![p]));
    for i in 0..12 {
        let r = get_once(proxy.addr, &format!("/{i}")).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
    }
    let status = proxy.handle.as_ref().unwrap().status();
    let backend = status[0]
        .backends
        .iter()
        .find(|b| b.address == wrong)
        .unwrap();
    assert!(
        backend.ejected,
        "the wrong-protocol backend was not ejected: {backend:?}"
    );
}

/// `retry_on = ["503"]`: an idempotent request that gets 503 goes to another backend, once
/// per backend; a POST is never replayed; when every backend answers 503 the client gets the
/// last 503 (the backend's answer, not a 502 made up by the proxy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_a_status_tries_another_backend_for_idempotent_requests() {
    use fulcrum::config::RetryOn;
    let busy = BackendBuilder::new("busy").status(503).start().await;
    let fine = BackendBuilder::new("fine").start().await;
    let mut p = pool("p", &[busy.addr, fine.addr]);
    p.retry_on = RetryOn {
        statuses: [false, true, false],
        ..RetryOn::default()
    };
    // Passive ejection off: the busy backend stays in rotation for every request.
    p.passive.consecutive_failures = 0;
    let proxy = Proxy::start(config(listener(), vec![p]));
    for i in 0..6 {
        let r = get_once(proxy.addr, &format!("/{i}")).await;
        assert_eq!(
            (r.status.as_u16(), r.backend()),
            (200, "fine".into()),
            "GET {i}"
        );
    }
    // POSTs are not idempotent: each reaches exactly one backend, and a 503 is the answer.
    let before = busy.count() + fine.count();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let post = raw_exchange(
            proxy.addr,
            b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        statuses.push(status_line(&post).to_string());
    }
    assert_eq!(busy.count() + fine.count() - before, 4, "{statuses:?}");
    assert!(statuses.iter().any(|s| s.contains(" 503")), "{statuses:?}");

    let all_busy = BackendBuilder::new("busy-2").status(503).start().await;
    let mut p = pool("p", &[busy.addr, all_busy.addr]);
    p.retry_on.statuses = [false, true, false];
    p.passive.consecutive_failures = 0;
    let proxy = Proxy::start(config(listener(), vec![p]));
    let before = busy.count() + all_busy.count();
    let r = get_once(proxy.addr, "/").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.backend().starts_with("busy"), "the backend's own 503");
    assert_eq!(
        busy.count() + all_busy.count() - before,
        2,
        "once per backend"
    );
}

/// The wait for a response head is bounded on a reused upstream connection too: the engine
/// keeps one timer per upstream connection and moves it for each request, so a fast first
/// answer must not leave the second request's wait unbounded (or bounded by the first's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_timeout_on_a_reused_upstream_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = upstream.local_addr().unwrap();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&connections);
    // Answers the first request of each connection at once and never the second.
    let backend_task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = upstream.accept().await else {
                continue;
            };
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                if !crate::support::backend::read_head(&mut stream, &mut head).await {
                    return;
                }
                let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if stream.write_all(reply).await.is_err() {
                    return;
                }
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    let mut p = PoolConfig::new("p", vec![backend(addr, 1)]);
    p.request_timeout = Duration::from_millis(300);
    let proxy = Proxy::start(config(listener(), vec![p]));

    // Both requests on one client connection: one worker, so its pooled upstream is reused.
    let mut client = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let request = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    client.write_all(request).await.unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !got.ends_with(b"ok") {
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut chunk))
            .await
            .expect("first answer")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );

    let started = Instant::now();
    client.write_all(request).await.unwrap();
    let mut got = Vec::new();
    while crate::support::backend::find(&got, b"\r\n\r\n").is_none() {
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut chunk))
            .await
            .expect("an answer to the unanswered request")
            .unwrap();
        assert!(n > 0, "closed without an answer");
        got.extend_from_slice(&chunk[..n]);
    }
    let took = started.elapsed();
    assert!(
        got.starts_with(b"HTTP/1.1 504"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(took < Duration::from_millis(2500), "504 took {took:?}");
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the second request went over the first one's upstream connection"
    );
    backend_task.abort();
}
