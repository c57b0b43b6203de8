//! Malformed requests: 400 and nothing upstream; a client too slow to send its headers is closed.

use std::time::{Duration, Instant};

use fulcrum::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::backend::RawBackend;
use crate::support::client::{get_once, raw_exchange, status_line};
use crate::support::eventually;
use crate::support::proxy::{config, listener, pool, Proxy};

const MALFORMED: &[(&str, &str)] = &[
    (
        "conflicting Content-Length",
        "POST /cl HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    ),
    (
        "bad chunk size",
        "POST /chunk HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "two Host headers",
        "GET /hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ),
    ("missing Host", "GET /nohost HTTP/1.1\r\n\r\n"),
    // RFC 9112 3.2: origin-form, absolute-form, authority-form (CONNECT only), asterisk-form
    // (OPTIONS only); `GET echo` was forwarded as `GET /`.
    ("a bare word target", "GET echo HTTP/1.1\r\nHost: h\r\n\r\n"),
    (
        "authority-form for GET",
        "GET h.example:80 HTTP/1.1\r\nHost: h\r\n\r\n",
    ),
    ("asterisk-form for GET", "GET * HTTP/1.1\r\nHost: h\r\n\r\n"),
    (
        "a scheme other than http(s)",
        "GET ftp://h.example/x HTTP/1.1\r\nHost: h\r\n\r\n",
    ),
    (
        "userinfo in the target",
        "GET http://user@h.example/x HTTP/1.1\r\nHost: h.example\r\n\r\n",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_and_are_never_forwarded() {
    assert_refused_and_not_forwarded(MALFORMED).await;
}

/// A request with both `Content-Length` and `Transfer-Encoding: chunked`: hyper's HTTP/1 parser
/// drops the `Content-Length` header (RFC 9112 6.3 allows that), so only the framing tracker
/// (`http::framing`) can see it; without it the request went upstream, re-framed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_gets_400_and_is_not_forwarded() {
    assert_refused_and_not_forwarded(&[(
        "Content-Length with Transfer-Encoding",
        "POST /clte HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )])
    .await;
}

/// Sends each request on its own connection, expects `400` for each, then checks that the
/// backend received nothing but one later valid request.
async fn assert_refused_and_not_forwarded(requests: &[(&str, &str)]) {
    let raw = RawBackend::start().await;
    let proxy = Proxy::simple(&[raw.addr]);

    for (what, request) in requests {
        let response = raw_exchange(proxy.addr, request.as_bytes(), Duration::from_secs(5)).await;
        assert!(
            status_line(&response).starts_with("HTTP/1.1 400"),
            "{what}: got {:?}",
            status_line(&response)
        );
    }

    // One valid request on a fresh connection; once the backend has it, it must be all it got.
    let r = get_once(proxy.addr, "/after-malformed").await;
    assert_eq!(r.status, 200);
    eventually(
        Duration::from_secs(5),
        "the backend to receive the valid request",
        || async { raw.received().contains("/after-malformed") },
    )
    .await;
    let received = raw.received();
    assert!(
        received.starts_with("GET /after-malformed HTTP/1.1\r\n"),
        "the backend received something else first: {received:?}"
    );
    assert_eq!(
        received.matches(" HTTP/1.1\r\n").count(),
        1,
        "more than one request reached the backend: {received:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_header_is_closed_after_client_header_timeout() {
    let raw = RawBackend::start().await;
    let mut cfg: Config = config(listener(), vec![pool("p", &[raw.addr])]);
    cfg.global.client_header_timeout = Duration::from_millis(300);
    let proxy = Proxy::start(cfg);

    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /slowloris HTTP/1.1\r\nHost: h\r\nX-Partial: abc")
        .await
        .unwrap();
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // a 408 is fine; the close is what matters
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "connection still open after 2 s");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "closed before the timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(raw.received(), "", "a partial request reached the backend");
}

/// RFC 9112 section 3: a request-target longer than the server parses gets 414, not 431
/// (hyper answers 431 for any head over its buffer); a header block over the limit keeps 431.
/// Neither reaches the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_request_line_gets_414_and_an_over_long_header_block_431() {
    let raw = RawBackend::start().await;
    let proxy = Proxy::simple(&[raw.addr]);
    let long = "a".repeat(70_000);
    let cases = [
        (
            "70 KB request line",
            format!("GET /{long} HTTP/1.1\r\nHost: h\r\n\r\n"),
            "HTTP/1.1 414 ",
        ),
        (
            "70 KB header block",
            format!("GET /big-header HTTP/1.1\r\nHost: h\r\nX-Big: {long}\r\n\r\n"),
            "HTTP/1.1 431 ",
        ),
    ];
    for (what, request, want) in &cases {
        let response = send_then_read(proxy.addr, request.as_bytes()).await;
        assert!(
            status_line(&response).starts_with(want),
            "{what}: got {:?}",
            status_line(&response)
        );
    }

    let r = get_once(proxy.addr, "/after-long").await;
    assert_eq!(r.status, 200);
    eventually(
        Duration::from_secs(5),
        "the backend to see /after-long",
        || async { raw.received().contains("/after-long") },
    )
    .await;
    let received = raw.received();
    assert!(
        received.starts_with("GET /after-long HTTP/1.1\r\n"),
        "the backend received something else first: {:.200?}",
        received
    );
    assert_eq!(received.matches(" HTTP/1.1\r\n").count(), 1);
}

/// Writes `bytes` (the proxy may answer and close before reading them all, so a failed write
/// is fine) and reads the response until the proxy closes.
async fn send_then_read(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            out.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// `OPTIONS *` is a valid request-target and goes upstream as it came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_asterisk_is_forwarded_as_is() {
    let raw = RawBackend::start().await;
    let proxy = Proxy::simple(&[raw.addr]);
    let response = raw_exchange(
        proxy.addr,
        b"OPTIONS * HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 200"),
        "{response}"
    );
    assert!(
        raw.received().starts_with("OPTIONS * HTTP/1.1\r\n"),
        "{:?}",
        raw.received()
    );
}
