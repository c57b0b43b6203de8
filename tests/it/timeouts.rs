//! Client timeouts: sockets that hold a slot without using it are closed (nothing sent, part
//! of the h2 preface, the preface and then nothing, a keep-alive connection idle past
//! `client_idle_timeout`, HTTP/1 and h2).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::backend::BackendBuilder;
use crate::support::client::get_once;
use crate::support::eventually;
use crate::support::proxy::{config, listener, pool, Config, Proxy};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads (and drops) whatever the proxy sends until it closes the connection; how long that
/// took, or `None` if it was still open after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// Reads one HTTP/1.1 response with a `Content-Length` body (the test backends send one);
/// returns its head and body.
async fn read_response(stream: &mut TcpStream) -> (String, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).into_owned();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    let body = String::from_utf8_lossy(&got[end + 4..end + 4 + len]).into_owned();
                    return (head, body);
                }
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a whole response: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("no response within 10 s")
}

fn quick(cfg: &mut Config, header: Duration, idle: Duration) {
    cfg.global.client_header_timeout = header;
    cfg.global.client_idle_timeout = idle;
}

/// Three sockets that never send a request (nothing at all, half of the h2 preface, the whole
/// preface) fill a `max_connections = 3` listener; each is closed after
/// `client_header_timeout` counted from accept, and then a real client gets in. Before, all
/// three stayed open for ever (hyper's header timeout starts at the first byte of an HTTP/1
/// head, and h2 had none), locking every client out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_that_send_no_request_are_closed_after_the_header_timeout() {
    let b = BackendBuilder::new("b").start().await;
    let mut l = listener();
    l.max_connections = 3;
    let mut cfg = config(l, vec![pool("p", &[b.addr])]);
    // The idle timeout is long: what closes them here is the header timeout from accept.
    quick(
        &mut cfg,
        Duration::from_millis(400),
        Duration::from_secs(60),
    );
    let proxy = Proxy::start(cfg);

    let mut silent = TcpStream::connect(proxy.addr).await.unwrap();
    let mut partial = TcpStream::connect(proxy.addr).await.unwrap();
    partial.write_all(&PREFACE[..10]).await.unwrap();
    let mut preface_only = TcpStream::connect(proxy.addr).await.unwrap();
    preface_only.write_all(PREFACE).await.unwrap();

    let handle = proxy.handle.as_ref().unwrap();
    eventually(
        Duration::from_secs(5),
        "three connections accepted",
        || async { handle.open_connections() == 3 },
    )
    .await;
    // The listener is full: a fourth connection is closed at accept, unanswered.
    let mut fourth = TcpStream::connect(proxy.addr).await.unwrap();
    let _ = fourth.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), fourth.read_to_end(&mut buf)).await;
    assert!(buf.is_empty(), "a fourth connection was served: {buf:?}");

    // 400 ms, plus up to 1 s for an h2 GOAWAY to go out, plus a loaded machine's slack.
    let limit = Duration::from_secs(5);
    for (what, stream) in [
        ("nothing sent", &mut silent),
        ("half the h2 preface", &mut partial),
        ("the h2 preface and nothing more", &mut preface_only),
    ] {
        let took = closed_within(stream, limit).await;
        assert!(took.is_some(), "{what}: still open after {limit:?}");
    }

    let r = get_once(proxy.addr, "/after").await;
    assert_eq!(r.status, 200);
}

/// A connection is not closed sooner than the header timeout (it counts from accept, it is
/// not zero), and a first request that arrives in time is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_timeout_gives_a_new_connection_its_full_time() {
    let b = BackendBuilder::new("b").start().await;
    let mut cfg = config(listener(), vec![pool("p", &[b.addr])]);
    quick(
        &mut cfg,
        Duration::from_millis(600),
        Duration::from_secs(60),
    );
    let proxy = Proxy::start(cfg);

    let mut silent = TcpStream::connect(proxy.addr).await.unwrap();
    let took = closed_within(&mut silent, Duration::from_secs(5))
        .await
        .expect("still open after 5 s");
    assert!(
        took >= Duration::from_millis(500),
        "closed before client_header_timeout: {took:?}"
    );

    // A head sent in two halves, well within the timeout, is served.
    let mut slow = TcpStream::connect(proxy.addr).await.unwrap();
    slow.write_all(b"GET /halves HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await; // pacing the client, not a wait
    slow.write_all(b"Host: h\r\n\r\n").await.unwrap();
    let (head, body) = read_response(&mut slow).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "b\n");
}

/// HTTP/1 keep-alive: a connection idle after its response is closed after
/// `client_idle_timeout`, which here is shorter than the header timeout (before, hyper's
/// header timeout was the only bound, and `client_idle_timeout` did not exist).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http1_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let b = BackendBuilder::new("b").start().await;
    let mut cfg = config(listener(), vec![pool("p", &[b.addr])]);
    quick(
        &mut cfg,
        Duration::from_secs(30),
        Duration::from_millis(400),
    );
    let proxy = Proxy::start(cfg);

    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    for path in ["/one", "/two"] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let (head, _) = read_response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    let took = closed_within(&mut stream, Duration::from_secs(10))
        .await
        .expect("an idle keep-alive connection still open after 10 s");
    assert!(
        took >= Duration::from_millis(300),
        "closed before client_idle_timeout: {took:?}"
    );
    assert_eq!(b.count(), 2);
}

/// h2: a connection with no open stream is closed after `client_idle_timeout` (hyper sends
/// a GOAWAY and the client's connection task ends); before, it stayed open for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_connection_with_no_open_stream_is_closed_after_the_idle_timeout() {
    let b = BackendBuilder::new("b").start().await;
    let mut cfg = config(listener(), vec![pool("p", &[b.addr])]);
    quick(
        &mut cfg,
        Duration::from_secs(30),
        Duration::from_millis(400),
    );
    let proxy = Proxy::start(cfg);

    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get(format!("http://{}/h2", proxy.addr))
        .body(Full::<Bytes>::default())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(
        ended.is_ok(),
        "an idle h2 connection was still open after 10 s"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "closed before client_idle_timeout: {:?}",
        started.elapsed()
    );
}
