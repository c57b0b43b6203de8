//! Lifecycle: graceful shutdown with a request in flight (the binary on SIGTERM, the library's
//! `shutdown`), `fulcrum demo`, the connection limit across workers, the access log.

use std::time::{Duration, Instant};

use crate::support::backend::BackendBuilder;
use crate::support::client::{get, get_once, http1};
use crate::support::eventually;
use crate::support::proxy::{accepts, write_file, Process, Proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_request_finishes_across_sigterm() {
    let slow = BackendBuilder::new("slow")
        .delay(Duration::from_secs(1))
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "fulcrum.toml",
        &format!(
            r#"[global]
access_log = "off"
shutdown_grace = "5s"

[[listener]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
pool = "slow"

[[pool]]
name = "slow"
backends = [{{ address = "{}", weight = 1 }}]
"#,
            slow.addr
        ),
    );
    let mut process = tokio::task::spawn_blocking(move || Process::run(&path))
        .await
        .unwrap();
    let addr = process.addr("web");

    let request = tokio::spawn(async move { get_once(addr, "/in-flight").await });
    eventually(
        Duration::from_secs(5),
        "the backend to get the request",
        || async { slow.count() == 1 },
    )
    .await;
    process.signal("TERM");
    let sent_term = Instant::now();

    let r = request.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "slow\n");

    let (status, mut process) = tokio::task::spawn_blocking(move || {
        let status = process.wait_exit(Duration::from_secs(8));
        (status, process)
    })
    .await
    .expect("fulcrum exits after SIGTERM");
    let stderr = process.stderr();
    assert!(status.success(), "exit status {status:?}: {stderr}");
    assert!(
        sent_term.elapsed() < Duration::from_secs(5),
        "exit took longer than shutdown_grace: {:?}",
        sent_term.elapsed()
    );
    assert!(!accepts(addr), "still accepting after shutdown");
}

/// With no client connection, SIGTERM is followed by "stopped" without waiting for
/// `shutdown_grace`, and the process is gone soon after "stopped": nothing it started (health
/// checks, admin API, access-log writer, file watcher) keeps it alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_exits_soon_after_stopped() {
    let checked = BackendBuilder::new("checked").start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "fulcrum.toml",
        &format!(
            r#"[global]
access_log = "stdout"
shutdown_grace = "10s"
admin = "127.0.0.1:0"

[[listener]]
name = "web"
bind = "127.0.0.1:0"
pool = "p"

[[pool]]
name = "p"
backends = [{{ address = "{}" }}]
[pool.health]
kind = "http"
path = "/healthz"
interval = "100ms"
"#,
            checked.addr
        ),
    );
    let mut process = tokio::task::spawn_blocking(move || Process::run(&path))
        .await
        .unwrap();
    // The checks run (and keep running while it stops).
    eventually(Duration::from_secs(5), "two health checks", || async {
        checked.count() >= 2
    })
    .await;

    process.signal("TERM");
    let sent_term = Instant::now();
    let (status, stderr) = tokio::task::spawn_blocking(move || {
        let status = process.wait_exit(Duration::from_secs(10));
        (status, process.stderr())
    })
    .await
    .unwrap();
    let took = sent_term.elapsed();
    assert!(status.success(), "exit status {status:?}: {stderr}");
    assert!(stderr.contains(" stopped"), "no \"stopped\" line: {stderr}");
    eprintln!("SIGTERM -> exit {took:?}");
    // Stopping with no connection waits for nothing (not shutdown_grace), and the process is
    // gone right after "stopped": a bound 50 times what it takes here.
    assert!(
        took < Duration::from_secs(1),
        "exited {took:?} after SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_answers_and_stops_on_sigint() {
    // Both on port 0: the demo's default admin port may be taken by another test or a demo.
    let args = ["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"];
    let mut process = tokio::task::spawn_blocking(move || Process::spawn(&args))
        .await
        .unwrap();
    let addr = process.addr("demo");
    {
        let client = http1();
        for _ in 0..2 {
            let r = get(&client, addr, "/").await;
            assert_eq!(r.status, 200);
            assert!(r.body.contains("hello from"), "{}", r.body);
        }
    }
    assert!(get_once(addr, "/x").await.body.contains("hello from"));
    process.signal("INT");
    let (status, mut process) = tokio::task::spawn_blocking(move || {
        let status = process.wait_exit(Duration::from_secs(8));
        (status, process)
    })
    .await
    .expect("the demo exits after SIGINT");
    assert!(
        status.success(),
        "exit status {status:?}: {}",
        process.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_shutdown_lets_in_flight_request_finish() {
    let slow = BackendBuilder::new("slow")
        .delay(Duration::from_millis(500))
        .start()
        .await;
    let proxy = Proxy::simple(&[slow.addr]);
    let addr = proxy.addr;
    let request = tokio::spawn(async move { get_once(addr, "/in-flight").await });
    eventually(
        Duration::from_secs(5),
        "the slow backend to get the request",
        || async { slow.count() == 1 },
    )
    .await;
    let started = Instant::now();
    proxy.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(2), "grace is 2 s");
    let r = request.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "slow\n");
    assert!(!accepts(addr), "still accepting after shutdown");
}

/// Sends one keep-alive request on `stream` and returns the first bytes of the answer ("" on EOF).
async fn exchange(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if stream
        .write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .is_err()
    {
        return String::new();
    }
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        _ => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_is_enforced_across_workers() {
    use crate::support::proxy::{config, listener, pool};
    let b = BackendBuilder::new("b").start().await;
    let mut l = listener();
    l.max_connections = 2;
    let proxy = Proxy::start(config(l, vec![pool("p", &[b.addr])]));
    let handle = proxy.handle.as_ref().unwrap();

    let mut first = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    assert!(exchange(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(exchange(&mut second).await.starts_with("HTTP/1.1 200"));
    assert_eq!(handle.open_connections(), 2);

    // The third is over the limit (whichever worker accepts it): closed without an answer.
    let mut third = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    assert_eq!(
        exchange(&mut third).await,
        "",
        "a connection over max_connections was served"
    );
    assert_eq!(b.count(), 2);

    // A slot frees up when a client leaves.
    drop(first);
    eventually(
        Duration::from_secs(5),
        "the proxy to see the first connection close",
        || async { handle.open_connections() == 1 },
    )
    .await;
    let mut fourth = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    assert!(exchange(&mut fourth).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_has_one_line_per_request_with_pool_and_backend() {
    use crate::support::proxy::{config, listener, pool};
    let b = BackendBuilder::new("b").start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let mut cfg = config(listener(), vec![pool("p", &[b.addr])]);
    cfg.global.access_log = fulcrum::config::AccessLogTarget::File(path.clone());
    let proxy = Proxy::start(cfg);
    let client = http1();
    for i in 0..3 {
        assert_eq!(
            get(&client, proxy.addr, &format!("/logged/{i}"))
                .await
                .status,
            200
        );
    }
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    eventually(Duration::from_secs(5), "3 access log lines", || async {
        let log = read();
        if log.lines().count() == 3 {
            Ok(())
        } else {
            Err(log)
        }
    })
    .await;
    let log = read();
    for (i, line) in log.lines().enumerate() {
        assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
        assert!(
            line.contains(&format!("\"GET /logged/{i} HTTP/1.1\" 200 2 ")),
            "{line}"
        );
        assert!(line.contains(&format!(" web p {} ", b.addr)), "{line}");
    }
}

/// A second instance on an address another process listens on is refused at start, naming
/// the address (SO_REUSEPORT would otherwise let it take half the connections); the first
/// keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_on_the_same_address_is_refused() {
    use crate::support::proxy::{config, listener, pool};
    let b = BackendBuilder::new("b").start().await;
    let first = Proxy::start(config(listener(), vec![pool("p", &[b.addr])]));
    let mut l = listener();
    l.bind = first.addr;
    let err = fulcrum::start(config(l, vec![pool("p", &[b.addr])])).unwrap_err();
    let text = format!("{:#}", anyhow::Error::from(err));
    assert!(text.contains(&first.addr.to_string()), "{text}");
    assert!(text.contains("another process already listens"), "{text}");
    assert_eq!(get_once(first.addr, "/").await.status, 200);
}
