//! `[[pool]] max_connections` (per backend, across workers) with its bounded wait queue: the
//! backend never sees more open connections than the cap, whatever the clients do; queued
//! requests are served once a connection frees; an overflowing queue and a `queue_timeout`
//! both end in 503 with `Retry-After`, fast; tcp listeners hold one slot per connection.
//!
//! The backend holds every request until the test opens its gate, so "in flight" is a state
//! the test sets, not a race against a delay. Open connections are counted on the backend's
//! side at each accept: connections whose peer has closed (EOF readable, the proxy closed it
//! before freeing its slot) are pruned first.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::support::client::get_once;
use crate::support::eventually;
use crate::support::proxy::{any_port, config, listener, pool, Proxy};
use fulcrum::config::{ListenerConfig, PoolId};

const WAIT: Duration = Duration::from_secs(10);

/// An HTTP/1.1 backend that counts its open connections and holds requests until opened.
struct GatedBackend {
    addr: SocketAddr,
    /// Requests received so far.
    requests: Arc<AtomicUsize>,
    /// Connections accepted so far.
    accepted: Arc<AtomicUsize>,
    /// The most connections open at once.
    max_open: Arc<AtomicUsize>,
    gate: Arc<watch::Sender<bool>>,
    task: JoinHandle<()>,
}

impl Drop for GatedBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether the peer of `probe` has not closed (no EOF waiting).
fn still_open(probe: &std::net::TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match probe.peek(&mut byte) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    }
}

impl GatedBackend {
    async fn start() -> GatedBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let max_open = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(watch::channel(false).0);
        let (r, a, m, g) = (
            Arc::clone(&requests),
            Arc::clone(&accepted),
            Arc::clone(&max_open),
            Arc::clone(&gate),
        );
        let task = tokio::spawn(async move {
            let open: Mutex<Vec<std::net::TcpStream>> = Mutex::new(Vec::new());
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                a.fetch_add(1, Ordering::SeqCst);
                let std = stream.into_std().unwrap();
                let probe = std.try_clone().unwrap();
                {
                    let mut open = open.lock().unwrap();
                    open.retain(still_open);
                    open.push(probe);
                    m.fetch_max(open.len(), Ordering::SeqCst);
                }
                let stream = TcpStream::from_std(std).unwrap();
                let (r, g) = (Arc::clone(&r), Arc::clone(&g));
                tokio::spawn(async move {
                    let service = service_fn(move |_req| {
                        let (r, mut gate) = (Arc::clone(&r), g.subscribe());
                        async move {
                            r.fetch_add(1, Ordering::SeqCst);
                            let _ = gate.wait_for(|open| *open).await;
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                Bytes::from_static(b"ok\n"),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        GatedBackend {
            addr,
            requests,
            accepted,
            max_open,
            gate,
            task,
        }
    }

    fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// A proxy over one gated backend with `max_connections`, `max_queue`, `queue_timeout`.
fn capped(backend: SocketAddr, max: u32, queue: u32, timeout: Duration) -> Proxy {
    let mut p = pool("p", &[backend]);
    p.max_connections = max;
    p.max_queue = queue;
    p.queue_timeout = timeout;
    Proxy::start(config(listener(), vec![p]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_clients_never_open_more_than_two_connections() {
    let backend = GatedBackend::start().await;
    let proxy = capped(backend.addr, 2, 100, Duration::from_secs(10));
    let addr = proxy.addr;
    let clients: Vec<_> = (0..6)
        .map(|_| tokio::spawn(async move { get_once(addr, "/").await }))
        .collect();
    eventually(WAIT, "two requests at the backend", async || {
        backend.requests() == 2
    })
    .await;
    // The other four wait in the queue; none reaches the backend while both slots are held.
    assert_eq!(backend.max_open.load(Ordering::SeqCst), 2);
    backend.open_gate();
    for client in clients {
        let reply = client.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    assert_eq!(backend.requests(), 6);
    assert!(
        backend.max_open.load(Ordering::SeqCst) <= 2,
        "the backend saw {} connections at once",
        backend.max_open.load(Ordering::SeqCst)
    );
    assert!(backend.accepted.load(Ordering::SeqCst) >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_503_at_once() {
    let backend = GatedBackend::start().await;
    // One connection, one waiter: of two more clients one waits, the other is refused.
    let proxy = capped(backend.addr, 1, 1, Duration::from_secs(30));
    let addr = proxy.addr;
    let first = tokio::spawn(async move { get_once(addr, "/").await });
    eventually(WAIT, "the first request at the backend", async || {
        backend.requests() == 1
    })
    .await;
    let started = Instant::now();
    let mut second = tokio::spawn(async move { get_once(addr, "/").await });
    let mut third = tokio::spawn(async move { get_once(addr, "/").await });
    // Whichever finds the queue full answers long before queue_timeout.
    let (refused, waiting) = tokio::select! {
        r = &mut second => (r.unwrap(), third),
        r = &mut third => (r.unwrap(), second),
    };
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.body
    );
    assert_eq!(refused.headers.get("retry-after").unwrap(), "1");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(backend.requests(), 1);
    backend.open_gate();
    assert_eq!(first.await.unwrap().status, StatusCode::OK);
    assert_eq!(waiting.await.unwrap().status, StatusCode::OK);
    assert_eq!(backend.max_open.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_timeout_is_503_then_the_freed_connection_serves() {
    let backend = GatedBackend::start().await;
    let proxy = capped(backend.addr, 1, 10, Duration::from_millis(200));
    let addr = proxy.addr;
    let first = tokio::spawn(async move { get_once(addr, "/").await });
    eventually(WAIT, "the first request at the backend", async || {
        backend.requests() == 1
    })
    .await;
    let started = Instant::now();
    let late = get_once(addr, "/").await;
    assert_eq!(
        late.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        late.body
    );
    assert!(late.headers.contains_key("retry-after"));
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(started.elapsed() < Duration::from_secs(5));
    backend.open_gate();
    assert_eq!(first.await.unwrap().status, StatusCode::OK);
    // Its connection went idle on some worker: reused there, or swept for this waiter.
    assert_eq!(get_once(addr, "/").await.status, StatusCode::OK);
    assert_eq!(backend.max_open.load(Ordering::SeqCst), 1);
}

/// A tcp backend that holds every connection open and counts them at accept.
async fn tcp_holder() -> (SocketAddr, Arc<AtomicUsize>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    let _ = stream.write_all(&buf[..n]).await;
                }
            });
        }
    });
    (addr, accepted, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_wait_for_a_slot_and_overflow_is_closed() {
    let (backend, accepted, task) = tcp_holder().await;
    let mut p = pool("t", &[backend]);
    p.max_connections = 1;
    p.max_queue = 1;
    p.queue_timeout = Duration::from_millis(200);
    let proxy = Proxy::start(config(
        ListenerConfig::tcp("web", any_port(), PoolId::new(0)),
        vec![p],
    ));
    let mut first = TcpStream::connect(proxy.addr).await.unwrap();
    first.write_all(b"a").await.unwrap();
    let mut buf = [0u8; 1];
    first.read_exact(&mut buf).await.unwrap();
    // The second client waits for the slot, gets none in time and is closed unserved.
    let mut second = TcpStream::connect(proxy.addr).await.unwrap();
    let _ = second.write_all(b"b").await;
    let n = tokio::time::timeout(WAIT, second.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the second client was served past the cap");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    // Once the first leaves, its slot serves the next client.
    drop(first);
    let third = eventually(WAIT, "a client served after the first left", async || {
        let mut s = TcpStream::connect(proxy.addr).await.ok()?;
        s.write_all(b"c").await.ok()?;
        let mut buf = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(1)) => Some(s),
            _ => None,
        }
    })
    .await;
    drop(third);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    task.abort();
}
