//! h2 abuse: a paced rapid reset (HEADERS, the request reaches the backend, RST_STREAM) is cut
//! off after about 1,000 cancelled streams, and other clients are still served.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::backend::read_head;
use crate::support::client::h2c;
use crate::support::eventually;
use crate::support::proxy::{config, listener, pool, Proxy};

/// A backend that answers `/ok` at once and holds every other request unanswered until its
/// connection closes; it counts the held requests that arrived.
struct Holding {
    addr: SocketAddr,
    held: Arc<AtomicUsize>,
}

impl Holding {
    async fn start() -> Holding {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&held);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        if !read_head(&mut s, &mut head).await {
                            return;
                        }
                        if !head.starts_with(b"GET /ok ") {
                            counter.fetch_add(1, Ordering::SeqCst);
                            // Held: read until the proxy closes it.
                            while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                            return;
                        }
                        head.clear();
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Holding { addr, held }
    }

    fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

fn get(path: &str) -> Request<()> {
    Request::get(format!("http://fulcrum.test{path}"))
        .body(())
        .unwrap()
}

/// Streams opened in batches of 100; each batch is reset only once all its requests have
/// reached the backend (so hyper accepted them, and h2's own pending-accept limit never
/// applies). Fulcrum closes the connection once about 1,000 were cancelled; before, the reset
/// went on for ever, each cancelled stream costing an upstream request. A normal h2 client
/// is served afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_rapid_reset_is_cut_off_and_others_are_served() {
    let b = Holding::start().await;
    let cfg = config(listener(), vec![pool("p", &[b.addr])]);
    let proxy = Proxy::start(cfg);

    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut client = client;
    let mut sent = 0usize;
    let mut cut = false;
    'attack: for _batch in 0..20 {
        let mut open = Vec::new();
        for _ in 0..100 {
            let Ok(ready) = client.ready().await else {
                cut = true;
                break 'attack;
            };
            client = ready;
            match client.send_request(get("/held"), true) {
                Ok((resp, _)) => open.push(resp),
                Err(_) => {
                    cut = true;
                    break 'attack;
                }
            }
            sent += 1;
        }
        let want = sent;
        eventually(
            Duration::from_secs(20),
            "the batch's requests reached the backend (or the connection was closed)",
            || async { b.held() >= want || conn.is_finished() },
        )
        .await;
        if conn.is_finished() {
            cut = true;
            break;
        }
        // Dropping the response futures resets the streams (RST_STREAM CANCEL).
        drop(open);
    }
    if !cut {
        // The last batch was the one past the limit: the GOAWAY is on its way.
        let done = tokio::time::timeout(Duration::from_secs(10), conn).await;
        cut = done.is_ok();
    }
    assert!(cut, "still open after {sent} streams, all reset");
    assert!(
        (1_000..=1_500).contains(&sent),
        "cut off after {sent} streams, not about 1,000"
    );

    let ok = h2c(
        proxy.addr,
        Request::get("http://fulcrum.test/ok")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(ok.status, 200);
}
