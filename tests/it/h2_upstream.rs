//! HTTP/2 to the backends (`protocol = "h2c"`): requests of one client multiplexed over a
//! few upstream connections, trailers both ways whatever the client spoke, a GOAWAY followed by
//! new connections without a failed request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

use crate::support::client::{get, http1, raw_exchange};
use crate::support::proxy::{config, listener, pool, Proxy};

/// An h2c backend (HTTP/2 only): counts connections; `/slow` answers after 300 ms,
/// `/trailers` echoes the request's `x-req-trailer` trailer as `x-echo-trailer` and adds
/// `x-resp-trailer: done`; anything else answers `x-version`. `goaway_after`: each
/// connection says GOAWAY after that many requests (0 = never).
struct H2Backend {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl H2Backend {
    async fn start(goaway_after: usize) -> H2Backend {
        H2Backend::with_streams(goaway_after, 200).await
    }

    /// `max_streams`: its SETTINGS_MAX_CONCURRENT_STREAMS.
    async fn with_streams(goaway_after: usize, max_streams: u32) -> H2Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(tcp, goaway_after, max_streams));
            }
        });
        H2Backend { addr, connections }
    }
}

async fn serve(tcp: TcpStream, goaway_after: usize, max_streams: u32) {
    let served = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let (s, d) = (Arc::clone(&served), Arc::clone(&done));
    let service = service_fn(move |req: Request<Incoming>| {
        let (s, d) = (Arc::clone(&s), Arc::clone(&d));
        async move {
            let resp = answer(req).await;
            if goaway_after > 0 && s.fetch_add(1, Ordering::SeqCst) + 1 == goaway_after {
                d.notify_one();
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .max_concurrent_streams(max_streams)
        .serve_connection(TokioIo::new(tcp), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = done.notified() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn answer(req: Request<Incoming>) -> Response<Body> {
    let version = format!("{:?}", req.version());
    let authority = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_default();
    match req.uri().path() {
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Response::new(Full::new(Bytes::from_static(b"slow")).boxed())
        }
        "/trailers" => {
            let collected = req.into_body().collect().await.unwrap();
            let echoed = collected
                .trailers()
                .and_then(|t| t.get("x-req-trailer"))
                .cloned()
                .unwrap_or(HeaderValue::from_static("none"));
            let data = collected.to_bytes();
            let mut trailers = HeaderMap::new();
            trailers.insert("x-echo-trailer", echoed);
            trailers.insert("x-resp-trailer", HeaderValue::from_static("done"));
            let frames: Vec<Result<Frame<Bytes>, Infallible>> =
                vec![Ok(Frame::data(data)), Ok(Frame::trailers(trailers))];
            let body = StreamBody::new(futures_util::stream::iter(frames));
            // Declared: an HTTP/1.1 client gets only the trailers a `Trailer` header names.
            Response::builder()
                .header("trailer", "x-echo-trailer, x-resp-trailer")
                .body(BodyExt::boxed(body))
                .unwrap()
        }
        "/echo" => {
            // Records that it started, then what arrived and whether the body ended
            // cleanly, before answering.
            let target = req.uri().to_string();
            STARTED.lock().unwrap().push(target.clone());
            let mut body = req.into_body();
            let mut data = Vec::new();
            let whole = loop {
                match body.frame().await {
                    None => break true,
                    Some(Err(_)) => break false,
                    Some(Ok(frame)) => {
                        if let Ok(chunk) = frame.into_data() {
                            data.extend_from_slice(&chunk);
                        }
                    }
                }
            };
            ECHOED.lock().unwrap().push((target, data.clone(), whole));
            Response::new(Full::new(Bytes::from(data)).boxed())
        }
        _ => Response::builder()
            .header("x-version", version)
            .header("x-authority", authority)
            .body(Full::new(Bytes::from_static(b"h2 ok")).boxed())
            .unwrap(),
    }
}

/// `/echo` requests the backends received (their targets: tests tell theirs apart by its
/// query) with their bodies and whether each ended cleanly; and those whose handler started.
type Echoed = Vec<(String, Vec<u8>, bool)>;
static ECHOED: std::sync::Mutex<Echoed> = std::sync::Mutex::new(Vec::new());
static STARTED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// The `/echo` request with `query` in its target, once its body has ended.
fn echoed(query: &str) -> Option<(Vec<u8>, bool)> {
    let echoed = ECHOED.lock().unwrap();
    echoed
        .iter()
        .find(|(target, _, _)| target.ends_with(query))
        .map(|(_, data, whole)| (data.clone(), *whole))
}

fn h2c_proxy(backend: SocketAddr) -> Proxy {
    let mut p = pool("p", &[backend]);
    p.protocol = fulcrum::config::UpstreamProtocol::H2c;
    Proxy::start(config(listener(), vec![p]))
}

/// An h2c client connection to `addr`.
async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Body> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

#[tokio::test]
async fn an_h1_client_reaches_an_h2c_backend_with_its_host_as_authority() {
    let backend = H2Backend::start(0).await;
    let proxy = h2c_proxy(backend.addr);
    let client = http1();
    for _ in 0..3 {
        let reply = get(&client, proxy.addr, "/").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.headers["x-version"], "HTTP/2.0");
        assert_eq!(reply.headers["x-authority"], proxy.addr.to_string());
        assert_eq!(reply.version, http::Version::HTTP_11);
    }
    assert_eq!(
        backend.connections.load(Ordering::SeqCst),
        1,
        "one connection, reused"
    );
}

/// `n` concurrent `/slow` requests over one h2 client connection; all must succeed, together.
async fn concurrent(proxy: &Proxy, n: usize) {
    let sender = h2_client(proxy.addr).await;
    let mut calls = Vec::new();
    for _ in 0..n {
        let mut sender = sender.clone();
        let uri = format!("http://{}/slow", proxy.addr);
        calls.push(tokio::spawn(async move {
            let req = Request::get(uri).body(Full::default().boxed()).unwrap();
            let resp = sender.send_request(req).await.unwrap();
            let status = resp.status();
            resp.into_body().collect().await.unwrap();
            status
        }));
    }
    let started = std::time::Instant::now();
    for call in calls {
        let status = tokio::time::timeout(Duration::from_secs(20), call)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status, 200);
    }
    // Concurrent, not one after another (n x 300 ms).
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_hundred_concurrent_requests_share_at_most_two_upstream_connections() {
    let backend = H2Backend::start(0).await;
    let proxy = h2c_proxy(backend.addr);
    concurrent(&proxy, 100).await;
    let connections = backend.connections.load(Ordering::SeqCst);
    // One client connection is served by one worker: its requests go over that worker's
    // connections to the backend.
    assert!(
        (1..=2).contains(&connections),
        "{connections} upstream connections for 100 streams"
    );
}

#[tokio::test]
async fn a_new_connection_opens_only_when_the_backends_stream_limit_is_reached() {
    let backend = H2Backend::with_streams(0, 10).await;
    let proxy = h2c_proxy(backend.addr);
    concurrent(&proxy, 40).await;
    let connections = backend.connections.load(Ordering::SeqCst);
    // 40 streams at 10 per connection: 4, give or take the first connection's requests
    // that went before its SETTINGS said 10.
    assert!(
        (4..=8).contains(&connections),
        "{connections} upstream connections for 40 streams at 10 per connection"
    );
}

#[tokio::test]
async fn trailers_pass_both_ways_between_h2_client_and_h2c_backend() {
    let backend = H2Backend::start(0).await;
    let proxy = h2c_proxy(backend.addr);
    let mut sender = h2_client(proxy.addr).await;
    let mut trailers = HeaderMap::new();
    trailers.insert("x-req-trailer", HeaderValue::from_static("from-client"));
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
        Ok(Frame::data(Bytes::from_static(b"hello "))),
        Ok(Frame::data(Bytes::from_static(b"world"))),
        Ok(Frame::trailers(trailers)),
    ];
    let body = BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)));
    let req = Request::post(format!("http://{}/trailers", proxy.addr))
        .header("te", "trailers")
        .body(body)
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let collected = resp.into_body().collect().await.unwrap();
    let got = collected.trailers().cloned().expect("response trailers");
    assert_eq!(got["x-echo-trailer"], "from-client");
    assert_eq!(got["x-resp-trailer"], "done");
    assert_eq!(collected.to_bytes(), "hello world");
}

#[tokio::test]
async fn an_h1_client_asking_for_trailers_gets_the_h2_backends_trailers() {
    let backend = H2Backend::start(0).await;
    let proxy = h2c_proxy(backend.addr);
    let request = format!(
        "POST /trailers HTTP/1.1\r\nHost: {}\r\nTE: trailers\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        proxy.addr
    );
    let response = raw_exchange(proxy.addr, request.as_bytes(), Duration::from_secs(10)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{response}"
    );
    assert!(response.contains("x-resp-trailer: done"), "{response}");
}

#[tokio::test]
async fn a_goaway_moves_new_requests_to_a_new_connection_without_failures() {
    let backend = H2Backend::start(3).await;
    let proxy = h2c_proxy(backend.addr);
    let client = http1();
    for i in 0..10 {
        let reply = get(&client, proxy.addr, "/").await;
        assert_eq!(reply.status, 200, "request {i}: {}", reply.body);
    }
    let connections = backend.connections.load(Ordering::SeqCst);
    // Each GOAWAY moved the requests to a new connection (a request that raced the GOAWAY
    // may still have been served on the old one).
    assert!(
        connections >= 3,
        "{connections} connections for 10 requests, GOAWAY after 3"
    );
}

#[tokio::test]
async fn concurrent_requests_survive_goaways_racing_them() {
    // Every connection says GOAWAY after 5 requests while about 40 are in flight: the
    // streams in flight finish, the rest go to new connections, none fails.
    let backend = H2Backend::start(5).await;
    let proxy = h2c_proxy(backend.addr);
    for _ in 0..3 {
        concurrent(&proxy, 40).await;
    }
    assert!(backend.connections.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn a_stream_refused_unprocessed_is_sent_again() {
    // A backend (the h2 crate's server) that answers every third stream with REFUSED_STREAM:
    // nothing was processed, so Fulcrum sends the request once more, and the client never
    // sees the refusal.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let refused = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&refused);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                let mut n = 0;
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    n += 1;
                    if n % 3 == 0 {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        counted.fetch_add(1, Ordering::SeqCst);
                    } else {
                        let _ = respond.send_response(Response::new(()), true);
                    }
                }
            });
        }
    });
    let proxy = h2c_proxy(addr);
    let client = http1();
    for i in 0..12 {
        let reply = get(&client, proxy.addr, "/").await;
        assert_eq!(reply.status, 200, "request {i}: {}", reply.body);
    }
    assert!(
        refused.load(Ordering::SeqCst) >= 4,
        "the backend refused nothing"
    );
}

#[tokio::test]
async fn http_health_checks_of_an_h2c_pool_speak_http2() {
    // The backend speaks HTTP/2 only: an HTTP/1.1 check would fail and mark it down.
    let backend = H2Backend::start(0).await;
    let mut p = pool("p", &[backend.addr]);
    p.protocol = fulcrum::config::UpstreamProtocol::H2c;
    p.health = Some(fulcrum::config::HealthConfig {
        path: "/".into(),
        interval: Duration::from_millis(50),
        rise: 1,
        fall: 1,
        ..fulcrum::config::HealthConfig::http()
    });
    let proxy = Proxy::start(config(listener(), vec![p]));
    let connections = &backend.connections;
    crate::support::eventually(Duration::from_secs(5), "a few checks", || async {
        connections.load(Ordering::SeqCst) >= 3
    })
    .await;
    let status = proxy.handle.as_ref().unwrap().status();
    let b = &status[0].backends[0];
    assert!(b.healthy, "{:?}", b.last_change);
    assert!(
        b.last_change.is_none(),
        "it never changed: {:?}",
        b.last_change
    );
}

/// An HTTP/1 client's chunked body goes to the h2 backend decoded and whole, the response
/// comes back as HTTP/1 (chunked: h2 gave no length), and the client connection carries its
/// next request.
#[tokio::test]
async fn an_h1_clients_chunked_body_reaches_an_h2c_backend_and_the_connection_goes_on() {
    let backend = H2Backend::start(0).await;
    let proxy = h2c_proxy(backend.addr);
    let request = format!(
        "POST /echo?chunked HTTP/1.1\r\nHost: {0}\r\nTransfer-Encoding: chunked\r\n\r\n\
         8\r\nchunked-\r\nb\r\nbody-intact\r\n0\r\n\r\n\
         GET / HTTP/1.1\r\nHost: {0}\r\nConnection: close\r\n\r\n",
        proxy.addr
    );
    let response = raw_exchange(proxy.addr, request.as_bytes(), Duration::from_secs(10)).await;
    assert_eq!(response.matches("HTTP/1.1 200").count(), 2, "{response}");
    assert!(response.contains("chunked-body-intact"), "{response}");
    assert!(response.contains("h2 ok"), "{response}");
    assert_eq!(
        echoed("?chunked"),
        Some((b"chunked-body-intact".to_vec(), true))
    );
}

/// A client that stops in the middle of a chunked body: the h2 backend sees the stream
/// broken off, never a clean end (which would make a cut body look complete).
#[tokio::test]
async fn a_chunked_body_cut_off_by_the_client_never_reaches_an_h2c_backend_as_whole() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = H2Backend::start(0).await;
    let proxy = h2c_proxy(backend.addr);
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let head = format!(
        "POST /echo?cut HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\n\r\nd\r\ncut-off-body-\r\n",
        proxy.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The request reached the backend (its handler runs): then the client goes.
    crate::support::eventually(
        Duration::from_secs(5),
        "the request reaches the backend",
        || async { STARTED.lock().unwrap().iter().any(|t| t.ends_with("?cut")) },
    )
    .await;
    stream.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(!String::from_utf8_lossy(&rest).contains("HTTP/1.1 200"));
    crate::support::eventually(
        Duration::from_secs(5),
        "the backend's body ends",
        || async { echoed("?cut").is_some() },
    )
    .await;
    let (data, whole) = echoed("?cut").unwrap();
    assert!(
        !whole,
        "a cut body ended cleanly: {:?}",
        String::from_utf8_lossy(&data)
    );
}
