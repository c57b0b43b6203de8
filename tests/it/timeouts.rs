//! Client timeouts: sockets that hold a slot without using it are closed (nothing sent, part
//! of the h2 preface, the preface and then nothing, a keep-alive connection idle past
//! `client_idle_timeout`, HTTP/1 and h2), a slow but active request is not cut, and a client
//! whose body stalls gets 408 without the backend being blamed for it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::backend::{read_head, BackendBuilder};
use crate::support::client::{get_once, status_line};
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

/// A request that takes longer than every client timeout but keeps going is not cut: a
/// backend that answers after 1.5 s, and an upload paced at one chunk every 150 ms for 1.5 s
/// (each gap under `client_body_timeout`, the whole longer than `request_timeout`, which runs
/// from the end of the upload), on one keep-alive connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_active_request_is_not_cut() {
    let slow = BackendBuilder::new("slow")
        .delay(Duration::from_millis(1500))
        .start()
        .await;
    let fast = BackendBuilder::new("fast").start().await;
    let mut slow_pool = pool("slow", &[slow.addr]);
    slow_pool.request_timeout = Duration::from_secs(5);
    let mut fast_pool = pool("fast", &[fast.addr]);
    fast_pool.request_timeout = Duration::from_millis(800);
    let mut l = listener();
    l.routes.push(fulcrum::config::RouteConfig {
        sni: None,
        host: None,
        path_prefix: Some("/upload".into()),
        header: None,
        pool: fulcrum::config::PoolId::new(1),
    });
    let mut cfg = config(l, vec![slow_pool, fast_pool]);
    quick(
        &mut cfg,
        Duration::from_millis(300),
        Duration::from_millis(300),
    );
    cfg.global.client_body_timeout = Duration::from_millis(600);
    let proxy = Proxy::start(cfg);

    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "slow\n");

    let chunks = 10;
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        chunks * 4
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for i in 0..chunks {
        tokio::time::sleep(Duration::from_millis(150)).await; // pacing the client
        stream
            .write_all(format!("{i:03}.").as_bytes())
            .await
            .unwrap();
    }
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "fast\n");
    let got = fast.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(
        &got[0].body[..],
        b"000.001.002.003.004.005.006.007.008.009."
    );
}

/// POSTs whose body stalls: ten that send part of their body and then nothing, two that send
/// none of it. Each gets 408 after `client_body_timeout` and the connection is closed, and no
/// backend is ejected (`consecutive_failures = 3` over two backends). Before, the stalled
/// body ended in the backend's 504 after `request_timeout` and counted as its failure (ten
/// slow POSTs ejected a healthy backend), and a body that never started held its connection
/// for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_request_bodies_get_408_and_never_eject_the_backend() {
    let a = BackendBuilder::new("a").start().await;
    let b = BackendBuilder::new("b").start().await;
    let mut p = pool("p", &[a.addr, b.addr]);
    p.passive.consecutive_failures = 3;
    p.passive.eject_for = Duration::from_secs(60);
    p.request_timeout = Duration::from_millis(300);
    let mut cfg = config(listener(), vec![p]);
    cfg.global.client_body_timeout = Duration::from_millis(500);
    let proxy = Proxy::start(cfg);

    let post = |addr: SocketAddr, sent: &'static [u8]| async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n")
            .await
            .unwrap();
        stream.write_all(sent).await.unwrap();
        let started = Instant::now();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out));
        assert!(read.await.is_ok(), "still open after 10 s");
        (
            String::from_utf8_lossy(&out).into_owned(),
            started.elapsed(),
        )
    };
    let mut posts = Vec::new();
    for _ in 0..10 {
        posts.push(tokio::spawn(post(proxy.addr, b"the first 25 bytes of 100")));
    }
    for _ in 0..2 {
        posts.push(tokio::spawn(post(proxy.addr, b"")));
    }
    for p in posts {
        let (response, took) = p.await.unwrap();
        assert!(
            status_line(&response).starts_with("HTTP/1.1 408"),
            "got {:?} after {took:?}",
            status_line(&response)
        );
        assert!(took >= Duration::from_millis(400), "408 too soon: {took:?}");
    }

    let handle = proxy.handle.as_ref().unwrap();
    let status = handle.status();
    for backend in &status[0].backends {
        assert!(!backend.ejected, "{} was ejected", backend.address);
    }
    // Both still serve.
    let mut served = std::collections::BTreeSet::new();
    for _ in 0..4 {
        served.insert(get_once(proxy.addr, "/after").await.backend());
    }
    assert_eq!(served.len(), 2, "served by {served:?}");
}

/// h2: a stream whose body stalls gets 408 and the connection's other streams go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_h2_request_body_gets_408_on_its_stream_only() {
    use futures_util::StreamExt;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;

    let b = BackendBuilder::new("b").start().await;
    let mut cfg = config(listener(), vec![pool("p", &[b.addr])]);
    cfg.global.client_body_timeout = Duration::from_millis(400);
    let proxy = Proxy::start(cfg);

    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    // One chunk, then nothing (the stream stays open).
    let chunks = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(Frame::data(
        Bytes::from_static(b"part of it"),
    ))])
    .chain(futures_util::stream::pending());
    let req = Request::post(format!("http://{}/stalled", proxy.addr))
        .body(BodyExt::boxed(StreamBody::new(chunks)))
        .unwrap();
    let started = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("no answer to a stalled h2 body within 10 s")
        .unwrap();
    assert_eq!(resp.status(), 408);

    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "408 before client_body_timeout: {:?}",
        started.elapsed()
    );

    // The same connection still serves.
    sender.ready().await.unwrap();
    let req = Request::get(format!("http://{}/after", proxy.addr))
        .body(Full::<Bytes>::default().boxed())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("no answer within 10 s")
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// A client that breaks its upload off (closes mid-body) is not the backend's failure either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_request_bodies_never_eject_the_backend() {
    let a = BackendBuilder::new("a").start().await;
    let b = BackendBuilder::new("b").start().await;
    let mut p = pool("p", &[a.addr, b.addr]);
    p.passive.consecutive_failures = 3;
    p.passive.eject_for = Duration::from_secs(60);
    let proxy = Proxy::start(config(listener(), vec![p]));

    for _ in 0..10 {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream
            .write_all(b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\npart")
            .await
            .unwrap();
        stream.shutdown().await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    }
    let status = proxy.handle.as_ref().unwrap().status();
    for backend in &status[0].backends {
        assert!(!backend.ejected, "{} was ejected", backend.address);
    }
}

/// A backend that answers `/big` with a 1 GiB body it streams until the socket fails, and
/// anything else with `ok`; it counts the `/big` streams that ended (the proxy dropped them).
struct Streaming {
    addr: SocketAddr,
    dropped: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Streaming {
    async fn start() -> Streaming {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dropped = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&dropped);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    // Requests one at a time on the connection (keep-alive).
                    loop {
                        if !read_head(&mut s, &mut head).await {
                            return;
                        }
                        let big = head.starts_with(b"GET /big ");
                        head.clear();
                        if !big {
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if s.write_all(ok).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1073741824\r\n\r\n")
                            .await;
                        let chunk = vec![b'x'; 64 * 1024];
                        while s.write_all(&chunk).await.is_ok() {}
                        counter.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                });
            }
        });
        Streaming { addr, dropped }
    }

    fn dropped(&self) -> usize {
        self.dropped.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A client that asks for a large response and then reads nothing: once the proxy's writes to
/// it have made no progress for `client_send_timeout`, the connection is closed and the
/// upstream connection streaming to it is dropped (the backend sees its stream fail), and the
/// backend serves the next client. Before, both stayed open for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_after_the_send_timeout() {
    let b = Streaming::start().await;
    let mut cfg = config(listener(), vec![pool("p", &[b.addr])]);
    cfg.global.client_send_timeout = Duration::from_millis(300);
    let proxy = Proxy::start(cfg);

    // A small receive window, so that the proxy's writes block soon, whatever the kernel's
    // buffer autotuning would allow.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut silent = socket.connect(proxy.addr).await.unwrap();
    silent
        .write_all(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();

    // 300 ms of no progress, plus the watchdog's step and a loaded machine's slack.
    eventually(
        Duration::from_secs(10),
        "the upstream stream to the silent client dropped",
        || async { b.dropped() == 1 },
    )
    .await;
    let took = closed_within(&mut silent, Duration::from_secs(10)).await;
    assert!(
        took.is_some(),
        "the silent client's connection is still open"
    );

    let r = get_once(proxy.addr, "/small").await;
    assert_eq!(r.status, 200);
}

/// A client that keeps reading, slowly, is not cut by the send timeout: its small receive
/// window keeps the proxy's writes blocking, but each sip lets one progress (the proxy keeps
/// at most about 128 KiB unsent per socket, so a client draining that much per
/// `client_send_timeout` is never cut). It reads in small sips for three send timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_slowly_is_not_cut_by_the_send_timeout() {
    let b = Streaming::start().await;
    let mut cfg = config(listener(), vec![pool("p", &[b.addr])]);
    cfg.global.client_send_timeout = Duration::from_millis(600);
    let proxy = Proxy::start(cfg);

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(proxy.addr).await.unwrap();
    slow.write_all(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16 * 1024];
    let mut got = 0usize;
    // Reading at a steady pace for three send timeouts: the stream goes on.
    while started.elapsed() < Duration::from_millis(1800) {
        let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf))
            .await
            .expect("the proxy stopped sending")
            .unwrap();
        assert!(
            n > 0,
            "closed after {got} bytes, at {:?}",
            started.elapsed()
        );
        got += n;
        // A pace, not a synchronisation: about 800 KB/s at most through an 8 KiB window.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(b.dropped(), 0);
}
