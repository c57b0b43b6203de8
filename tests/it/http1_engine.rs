//! Fulcrum's HTTP/1 engine, the response side and the client semantics the corpus test
//! (`http1_corpus`: requests as the backend sees them) does not show:
//! `Expect: 100-continue`, 1xx, HEAD / 204 / 304 without bodies (and a body sent to a HEAD
//! never reaching the client), close-delimited responses, chunked responses to HTTP/1.0 and
//! HTTP/1.1 clients, an early answer to an upload, response fields as the backend wrote them
//! (less the hop-by-hop ones), and keep-alive after each.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::backend::{find, read_head};
use crate::support::proxy::{config, listener, pool, Proxy};

const LIMIT: Duration = Duration::from_secs(5);

/// A backend answering by path, on keep-alive connections (request bodies are not read).
async fn scripted() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                while read_head(&mut stream, &mut head).await {
                    let end = find(&head, b"\r\n\r\n").unwrap() + 4;
                    let text = String::from_utf8_lossy(&head[..end]).into_owned();
                    head.drain(..end);
                    let path = text.split(' ').nth(1).unwrap_or("").to_string();
                    let reply: &[u8] = match path.as_str() {
                        "/head-body" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                        "/204" => b"HTTP/1.1 204 No Content\r\n\r\n",
                        "/304" => b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
                        "/close" => b"HTTP/1.1 200 OK\r\n\r\nuntil-close",
                        "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 11\r\n\r\n",
                        "/103" => b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                        "/early" => b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        "/fields" => b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nX-Mixed-Case: One\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nX-Spaced:   two  \r\nContent-Length: 2\r\nUpgrade: h2c\r\n\r\nok",
                        _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                    };
                    if stream.write_all(reply).await.is_err() {
                        return;
                    }
                    if path == "/early" {
                        // Answered before the body; reads on (a close with unread bytes
                        // would reset the connection and could lose the answer).
                        let mut sink = [0u8; 16384];
                        while matches!(stream.read(&mut sink).await, Ok(1..)) {}
                        return;
                    }
                    if path == "/close" {
                        let _ = stream.shutdown().await;
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn engine_proxy(backend: SocketAddr) -> Proxy {
    Proxy::start(config(listener(), vec![pool("p", &[backend])]))
}

/// Reads until `stream` has delivered `want` (or it closes, or the limit passes).
async fn read_until(stream: &mut TcpStream, data: &mut Vec<u8>, want: &[u8]) -> bool {
    tokio::time::timeout(LIMIT, async {
        let mut buf = [0u8; 4096];
        while find(data, want).is_none() {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => data.extend_from_slice(&buf[..n]),
            }
        }
        true
    })
    .await
    .unwrap_or(false)
}

async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(LIMIT, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_204_and_304_have_no_body_and_a_body_sent_to_head_never_reaches_the_client() {
    let proxy = engine_proxy(scripted().await);
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    c.write_all(
        b"HEAD /head-body HTTP/1.1\r\nHost: h\r\n\r\nGET /204 HTTP/1.1\r\nHost: h\r\n\r\n\
          GET /304 HTTP/1.1\r\nHost: h\r\n\r\nGET /last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let all = read_to_close(&mut c).await;
    let statuses: Vec<&str> = all
        .split("\r\n")
        .filter(|l| l.starts_with("HTTP/1.1 "))
        .collect();
    assert_eq!(
        statuses,
        [
            "HTTP/1.1 200 OK",
            "HTTP/1.1 204 No Content",
            "HTTP/1.1 304 Not Modified",
            "HTTP/1.1 200 OK"
        ],
        "{all}"
    );
    // HEAD keeps its Content-Length; the body sent after it is nobody's response.
    assert!(
        all.to_ascii_lowercase().contains("content-length: 5"),
        "{all}"
    );
    assert!(!all.contains("hello"), "{all}");
    assert!(all.ends_with("\r\n\r\nok"), "{all}");
}

/// A backend's response fields reach the client as it wrote them (case, spacing, order),
/// less the hop-by-hop ones and those its `Connection` names, wherever they stood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_fields_pass_as_the_backend_wrote_them_less_hop_by_hop_ones() {
    let proxy = engine_proxy(scripted().await);
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    c.write_all(b"GET /fields HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let all = read_to_close(&mut c).await;
    assert!(
        all.starts_with(
            "HTTP/1.1 200 OK\r\nX-Mixed-Case: One\r\nX-Spaced:   two  \r\nContent-Length: 2\r\n"
        ),
        "{all}"
    );
    let lower = all.to_ascii_lowercase();
    for gone in ["keep-alive:", "x-secret", "upgrade:"] {
        assert!(!lower.contains(gone), "{gone} in {all}");
    }
    assert!(all.ends_with("\r\n\r\nok"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_delimited_response_reaches_the_client_whole_then_closes() {
    let proxy = engine_proxy(scripted().await);
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    c.write_all(b"GET /close HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let all = read_to_close(&mut c).await;
    assert!(all.starts_with("HTTP/1.1 200 OK\r\n"), "{all}");
    assert!(
        all.to_ascii_lowercase().contains("connection: close"),
        "{all}"
    );
    assert!(all.ends_with("\r\n\r\nuntil-close"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_responses_keep_trailers_only_for_te_trailers_and_are_decoded_for_http10() {
    let proxy = engine_proxy(scripted().await);
    // HTTP/1.1 with TE: trailers: chunked, trailer kept; keep-alive.
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    c.write_all(b"GET /chunked HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n")
        .await
        .unwrap();
    let mut data = Vec::new();
    assert!(
        read_until(&mut c, &mut data, b"x-sum: 11\r\n\r\n").await,
        "{:?}",
        String::from_utf8_lossy(&data)
    );
    let text = String::from_utf8_lossy(&data).to_ascii_lowercase();
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(
        text.contains("5\r\nhello\r\n6\r\n world\r\n0\r\n"),
        "{text}"
    );
    c.write_all(b"GET /after HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(read_to_close(&mut c).await.ends_with("ok"));

    // HTTP/1.1 without TE: chunked, no trailer.
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    c.write_all(b"GET /chunked HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let all = read_to_close(&mut c).await;
    assert!(all.ends_with("0\r\n\r\n"), "{all}");
    assert!(!all.contains("x-sum: 11"), "{all}");

    // HTTP/1.0: the body decoded, delimited by the close.
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    c.write_all(b"GET /chunked HTTP/1.0\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let all = read_to_close(&mut c).await;
    assert!(all.starts_with("HTTP/1.0 200 OK\r\n"), "{all}");
    assert!(
        !all.to_ascii_lowercase().contains("transfer-encoding"),
        "{all}"
    );
    assert!(all.ends_with("\r\n\r\nhello world"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_responses_reach_http11_clients_before_the_final_one() {
    let proxy = engine_proxy(scripted().await);
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    c.write_all(b"GET /103 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let all = read_to_close(&mut c).await;
    assert!(all.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{all}");
    assert!(all.contains("\r\n\r\nHTTP/1.1 200 OK\r\n"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_before_the_body_and_not_forwarded() {
    let raw = crate::support::backend::RawBackend::start().await;
    let proxy = engine_proxy(raw.addr);
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    c.write_all(
        b"POST /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .await
    .unwrap();
    let mut data = Vec::new();
    assert!(read_until(&mut c, &mut data, b"HTTP/1.1 100 Continue\r\n\r\n").await);
    assert_eq!(
        raw.received(),
        "",
        "nothing goes upstream before the body starts"
    );
    c.write_all(b"hello").await.unwrap();
    assert!(read_until(&mut c, &mut data, b"\r\n\r\nok").await);
    let received = raw.received();
    assert!(received.ends_with("\r\n\r\nhello"), "{received}");
    assert!(
        !received.to_ascii_lowercase().contains("expect"),
        "{received}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_to_an_upload_reaches_the_client_and_closes_its_connection() {
    let proxy = engine_proxy(scripted().await);
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    c.write_all(b"POST /early HTTP/1.1\r\nHost: h\r\nContent-Length: 10000000\r\n\r\n")
        .await
        .unwrap();
    let _ = c.write_all(&[b'x'; 64 * 1024]).await;
    let all = read_to_close(&mut c).await;
    assert!(all.starts_with("HTTP/1.1 413 "), "{all}");
}
