//! Idle HTTP/1 keep-alive connections parked off their tasks (`http1::park`): a connection
//! quiet for the grace is parked, still counts as open and keeps its `connections_per_client`
//! slot, is served again when its next request comes, is closed at its `client_idle_timeout`
//! (no sooner), closes when its client does, and at shutdown gets a clean end of stream.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fulcrum::config::LimitsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::admin::{admin_of, sample, with_admin};
use crate::support::backend::BackendBuilder;
use crate::support::client::{get as get_path, http1};
use crate::support::eventually;
use crate::support::proxy::{config, listener, pool, Config, Proxy};

/// How long a test waits for a connection to be parked (the grace is 250 ms).
const PARKED_WITHIN: Duration = Duration::from_secs(10);

/// Sends one keep-alive GET and reads its whole response (the test backends send a
/// `Content-Length`); returns the response.
async fn get(stream: &mut TcpStream, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: parked.test\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().expect("content-length"))
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    return text;
                }
            }
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before a whole response: {text}");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("no response within 10 s")
}

/// Reads until the proxy ends the connection: `Ok` for an end of stream, `Err` for a reset;
/// `None` if it was still open after `limit`.
async fn end_of(stream: &mut TcpStream, limit: Duration) -> Option<Result<(), String>> {
    tokio::time::timeout(limit, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .ok()
}

fn one_worker(cfg: &mut Config) {
    cfg.global.workers = 1;
}

async fn wait_parked(proxy: &Proxy, n: usize) {
    let handle = proxy.handle.as_ref().expect("handle");
    eventually(
        PARKED_WITHIN,
        &format!("{n} connections parked"),
        || async { handle.parked_connections() == n },
    )
    .await;
}

/// Parked, a connection is still open (the listener's count, its client's slot: a second
/// connection from the same client is refused) and counted in `fulcrum_connections_parked`,
/// is served again on its next request, and is parked again after it; when its client
/// closes, its count and slot are released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_is_served_again_and_keeps_its_slot() {
    let b = BackendBuilder::new("b").start().await;
    let mut l = listener();
    l.limits = LimitsConfig {
        connections_per_client: 1,
        ..LimitsConfig::default()
    };
    let mut cfg = with_admin(config(l, vec![pool("p", &[b.addr])]));
    one_worker(&mut cfg);
    let proxy = Proxy::start(cfg);
    let handle = proxy.handle.as_ref().expect("handle");

    let mut client = TcpStream::connect(proxy.addr).await.expect("connect");
    assert!(get(&mut client, "/one").await.starts_with("HTTP/1.1 200"));
    wait_parked(&proxy, 1).await;
    assert_eq!(handle.open_connections(), 1, "a parked connection is open");
    let metrics = get_path(&http1(), admin_of(&proxy), "/metrics").await.body;
    assert_eq!(
        sample(&metrics, "fulcrum_connections_parked", &[]),
        Some(1.0),
        "{metrics}"
    );

    // Its client's one slot is still taken: a second connection is closed at accept.
    let mut second = TcpStream::connect(proxy.addr).await.expect("connect");
    let _ = second
        .write_all(b"GET / HTTP/1.1\r\nHost: parked.test\r\n\r\n")
        .await;
    let mut refused = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), second.read_to_end(&mut refused)).await;
    assert!(refused.is_empty(), "served past connections_per_client");

    // Its next request wakes it: served on the same connection, which is parked again.
    let again = get(&mut client, "/two").await;
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    assert_eq!(b.count(), 2);
    wait_parked(&proxy, 1).await;

    // The client closes: the parked connection ends, its count and slot go back.
    drop(client);
    eventually(PARKED_WITHIN, "the closed connection released", || async {
        handle.open_connections() == 0 && handle.parked_connections() == 0
    })
    .await;
    let mut third = TcpStream::connect(proxy.addr).await.expect("connect");
    assert!(get(&mut third, "/three").await.starts_with("HTTP/1.1 200"));
}

/// A parked connection is closed at its `client_idle_timeout`, counted from its last
/// response, not sooner (and not much later: at 4 s the set is swept every 250 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_is_closed_at_its_idle_timeout() {
    let b = BackendBuilder::new("b").start().await;
    let mut cfg = config(listener(), vec![pool("p", &[b.addr])]);
    one_worker(&mut cfg);
    let idle = Duration::from_secs(4);
    cfg.global.client_idle_timeout = idle;
    let proxy = Proxy::start(cfg);
    let handle = proxy.handle.as_ref().expect("handle");

    let mut client = TcpStream::connect(proxy.addr).await.expect("connect");
    assert!(get(&mut client, "/").await.starts_with("HTTP/1.1 200"));
    let answered = Instant::now();
    wait_parked(&proxy, 1).await;
    let end = end_of(&mut client, Duration::from_secs(20)).await;
    let took = answered.elapsed();
    assert!(
        end.is_some(),
        "still open 20 s after an idle timeout of {idle:?}"
    );
    assert!(
        took >= idle - Duration::from_millis(50),
        "closed after {took:?}"
    );
    eventually(PARKED_WITHIN, "the expired connection released", || async {
        handle.open_connections() == 0 && handle.parked_connections() == 0
    })
    .await;
}

/// Shutdown closes parked connections as it closes idle ones on their tasks: an end of stream
/// (not a reset), and the stop ends once their clients have closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_parked_connections_cleanly() {
    let b = BackendBuilder::new("b").start().await;
    let mut cfg = config(listener(), vec![pool("p", &[b.addr])]);
    one_worker(&mut cfg);
    let proxy = Proxy::start(cfg);
    let addr: SocketAddr = proxy.addr;

    let mut clients = Vec::new();
    for i in 0..3 {
        let mut c = TcpStream::connect(addr).await.expect("connect");
        assert!(get(&mut c, &format!("/{i}"))
            .await
            .starts_with("HTTP/1.1 200"));
        clients.push(c);
    }
    wait_parked(&proxy, 3).await;
    let stopping = tokio::spawn(proxy.shutdown());
    for (i, c) in clients.iter_mut().enumerate() {
        let end = end_of(c, Duration::from_secs(10)).await;
        assert_eq!(end, Some(Ok(())), "connection {i}");
    }
    drop(clients);
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown took over 10 s")
        .expect("shutdown");
}
