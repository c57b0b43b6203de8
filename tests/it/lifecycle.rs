//! The real binary: graceful shutdown on SIGTERM with a request in flight; `fulcrum demo`.

use std::time::{Duration, Instant};

use crate::support::backend::BackendBuilder;
use crate::support::client::{get, get_once, http1};
use crate::support::proxy::{accepts, free_addr, write_file, Process, Proxy};
use crate::support::wait_until;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_request_finishes_across_sigterm() {
    let slow = BackendBuilder::new("slow")
        .delay(Duration::from_secs(1))
        .start()
        .await;
    let addr = free_addr();
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
bind = "{addr}"
protocol = "http"
pool = "slow"

[[pool]]
name = "slow"
backends = [{{ address = "{}", weight = 1 }}]
"#,
            slow.addr
        ),
    );
    let mut process = tokio::task::spawn_blocking(move || Process::run(&path, addr))
        .await
        .unwrap();

    let request = tokio::spawn(async move { get_once(addr, "/in-flight").await });
    assert!(
        wait_until(Duration::from_secs(5), || slow.count() == 1).await,
        "the backend never got the request"
    );
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
    .unwrap();
    let stderr = process.stderr();
    let status = status.expect("fulcrum did not exit after SIGTERM");
    assert!(status.success(), "exit status {status:?}: {stderr}");
    assert!(
        sent_term.elapsed() < Duration::from_secs(5),
        "exit took longer than shutdown_grace: {:?}",
        sent_term.elapsed()
    );
    assert!(!accepts(addr), "still accepting after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_answers_and_stops_on_sigint() {
    let addr = free_addr();
    let listen = addr.to_string();
    let mut process =
        tokio::task::spawn_blocking(move || Process::spawn(&["demo", "--listen", &listen], addr))
            .await
            .unwrap();
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
    .unwrap();
    let status = status.expect("demo did not exit after SIGINT");
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
    assert!(wait_until(Duration::from_secs(5), || slow.count() == 1).await);
    let started = Instant::now();
    proxy.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(2), "grace is 2 s");
    let r = request.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "slow\n");
    assert!(!accepts(addr), "still accepting after shutdown");
}
