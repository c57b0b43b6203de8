//! What a backend or a client must not slip past the proxy: a response framed two ways, a
//! response body that ends early passed on as if complete, an `Upgrade: h2c` that would open a
//! tunnel around routing and limits.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::backend::{canned, find, RawBackend};
use crate::support::client::{raw_exchange, status_line, EXCHANGE_LIMIT};
use crate::support::eventually;
use crate::support::proxy::Proxy;

/// A keep-alive GET, as a client that means to send more requests on the connection.
const KEEP_ALIVE_GET: &[u8] = b"GET /r HTTP/1.1\r\nHost: h\r\n\r\n";

/// One response read from `stream`: its head (up to the blank line) and its body as framed by
/// `Content-Length` (the head must have one).
async fn read_sized_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    tokio::time::timeout(EXCHANGE_LIMIT, async {
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        let end = loop {
            if let Some(end) = find(&data, b"\r\n\r\n") {
                break end;
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the head: {data:?}");
            data.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&data[..end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no Content-Length: {head}"));
        let mut body = data[end + 4..].to_vec();
        while body.len() < len {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed inside the body: {head} {body:?}");
            body.extend_from_slice(&buf[..n]);
        }
        (head, body)
    })
    .await
    .expect("no complete response in time")
}

/// Reads until the peer closes (EOF or reset); panics if it is still open after the limit.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(EXCHANGE_LIMIT, async {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            out.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the connection is still open: {:?}",
            String::from_utf8_lossy(&out)
        )
    });
    out
}

/// RFC 9112 6.3: a message with both `Content-Length` and `Transfer-Encoding` is framed by the
/// latter, and a proxy must not pass the `Content-Length` on. Fulcrum passed it: the client got
/// `abcde` of the 26-byte chunked body, as a complete response, on a kept-alive connection
/// (and with a `Content-Length` above the body, a hang or an abort). Now it is a 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_with_content_length_and_transfer_encoding_is_a_502() {
    let replies: [&'static [u8]; 2] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
          1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 100\r\n\r\n\
          1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n",
    ];
    for reply in replies {
        let (backend, _task) = canned(reply).await;
        let proxy = Proxy::simple(&[backend]);
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(KEEP_ALIVE_GET).await.unwrap();
        let (head, body) = read_sized_response(&mut stream).await;
        assert!(
            status_line(&head).starts_with("HTTP/1.1 502"),
            "{head}\n{}",
            String::from_utf8_lossy(&body)
        );
        assert!(find(&body, b"abcde").is_none(), "{body:?}");
    }
}

/// A backend that closes inside its body: the client's connection is closed too, so no
/// client takes the part it got for the whole response. `Content-Length` and chunked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_ends_early_aborts_the_clients_connection() {
    // (reply, the end a complete body would have had)
    let cases: [(&'static [u8], &[u8]); 2] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 26\r\n\r\nabcde",
            b"abcdefghijklmnopqrstuvwxyz",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
            b"\r\n0\r\n\r\n",
        ),
    ];
    for (reply, complete_end) in cases {
        let (backend, _task) = canned(reply).await;
        let proxy = Proxy::simple(&[backend]);
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(KEEP_ALIVE_GET).await.unwrap();
        let got = read_to_close(&mut stream).await;
        let text = String::from_utf8_lossy(&got);
        assert!(status_line(&text).starts_with("HTTP/1.1 200"), "{text}");
        assert!(find(&got, b"abcde").is_some(), "{text}");
        assert!(!got.ends_with(complete_end), "ended cleanly: {text}");
        if !text.to_ascii_lowercase().contains("content-length: 26") {
            // Chunked to the client: no last chunk.
            assert!(find(&got, b"\r\n0\r\n\r\n").is_none(), "{text}");
        }
    }
}

/// The same over HTTP/2: the stream is reset, the client's body read fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_ends_early_resets_an_h2_stream() {
    let (backend, _task) = canned(b"HTTP/1.1 200 OK\r\nContent-Length: 26\r\n\r\nabcde").await;
    let proxy = Proxy::simple(&[backend]);
    let outcome = tokio::time::timeout(EXCHANGE_LIMIT, async {
        let stream = TcpStream::connect(proxy.addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = Request::get("http://h/r")
            .body(Full::<Bytes>::default())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.map(|b| b.to_bytes())
    })
    .await
    .expect("h2 exchange took too long");
    assert!(outcome.is_err(), "the body ended cleanly: {outcome:?}");
}

/// `Upgrade: h2c` would turn the backend connection into an HTTP/2 tunnel that routing,
/// X-Forwarded-For, `max_request_body` and the access log never see. It is not forwarded (nor
/// `HTTP2-Settings`, whether or not `Connection` names it): the request goes as a plain one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_upgrade_is_not_forwarded() {
    let raw = RawBackend::start().await;
    let proxy = Proxy::simple(&[raw.addr]);
    let requests = [
        "GET /h2c-a HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: close\r\n\r\n",
        "GET /h2c-b HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, close\r\nUpgrade: h2c\r\n\
         HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    ];
    for request in requests {
        let response = raw_exchange(proxy.addr, request.as_bytes(), EXCHANGE_LIMIT).await;
        assert!(
            status_line(&response).starts_with("HTTP/1.1 200"),
            "{response}"
        );
    }
    eventually(
        Duration::from_secs(5),
        "the backend to get both requests",
        || async { raw.received().contains("/h2c-b") },
    )
    .await;
    let received = raw.received().to_ascii_lowercase();
    assert!(received.contains("/h2c-a"), "{received}");
    for gone in ["upgrade", "http2-settings", "h2c\r\n"] {
        assert!(!received.contains(gone), "{gone} forwarded: {received}");
    }
}

/// A backend that switches protocols although it was not asked to (here to the h2c it was
/// offered by a client, the upgrade Fulcrum dropped) gets no tunnel: the client gets 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_switching_protocols_unasked_is_a_502() {
    let (backend, _task) =
        canned(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
            .await;
    let proxy = Proxy::simple(&[backend]);
    let request =
        "GET /internal/admin HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n\
                   Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let (head, _) = read_sized_response(&mut stream).await;
    assert!(status_line(&head).starts_with("HTTP/1.1 502"), "{head}");
}
