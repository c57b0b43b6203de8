//! WebSocket upgrade passed through; h2c (prior knowledge) from the client, HTTP/1.1 upstream.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Version};
use http_body_util::Full;
use tokio_tungstenite::tungstenite::Message;

use crate::support::backend::{canned, BackendBuilder, WsEchoBackend};
use crate::support::client::{h2c, EXCHANGE_LIMIT};
use crate::support::proxy::Proxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_proxy() {
    let echo = WsEchoBackend::start().await;
    let proxy = Proxy::simple(&[echo.addr]);
    tokio::time::timeout(EXCHANGE_LIMIT, async {
        let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", proxy.addr))
            .await
            .unwrap();
        assert_eq!(resp.status(), 101);

        let text = Message::text("hello through fulcrum");
        ws.send(text.clone()).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), text);

        let binary = Message::binary(vec![0u8, 1, 2, 254, 255]);
        ws.send(binary.clone()).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), binary);

        ws.close(None).await.unwrap();
    })
    .await
    .expect("websocket exchange took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_request_reaches_the_backend_as_http11_with_host() {
    let b = BackendBuilder::new("b").start().await;
    let proxy = Proxy::simple(&[b.addr]);
    let req = Request::get("http://svc.test/h2?x=1")
        .body(Full::<Bytes>::default())
        .unwrap();
    let r = h2c(proxy.addr, req).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.version, Version::HTTP_2);
    assert_eq!(r.body, "b\n");
    let seen = b.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].version, Version::HTTP_11);
    assert_eq!(seen[0].headers["host"], "svc.test");
    assert_eq!(seen[0].path, "/h2");
}

/// An HTTP/1.0 backend's response reaches an HTTP/1.1 client in the client's protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http10_backend_answers_an_http11_client_in_http11() {
    use crate::support::client::{raw_exchange, status_line};
    let (backend, _task) = canned(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let proxy = Proxy::simple(&[backend]);
    let response = raw_exchange(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        EXCHANGE_LIMIT,
    )
    .await;
    assert_eq!(status_line(&response), "HTTP/1.1 200 OK", "{response}");
    assert!(response.ends_with("ok"), "{response}");
}

/// Trailers of a chunked upstream reach an HTTP/1.1 client that sent `TE: trailers` (and
/// only such a client: the others get the body without them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_trailers_reach_an_http11_client_that_accepts_them() {
    use crate::support::client::raw_exchange;
    let (backend, _task) = canned(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n\
          2\r\nok\r\n0\r\nx-checksum: abc123\r\n\r\n",
    )
    .await;
    let proxy = Proxy::simple(&[backend]);
    let with_te = raw_exchange(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: h\r\nTE: trailers\r\nConnection: TE, close\r\n\r\n",
        EXCHANGE_LIMIT,
    )
    .await;
    let lower = with_te.to_ascii_lowercase();
    let trailer = lower.rfind("x-checksum: abc123");
    let last_chunk = lower.rfind("\r\n0\r\n");
    assert!(
        matches!((last_chunk, trailer), (Some(c), Some(t)) if t > c),
        "the trailer after the last chunk: {with_te:?}"
    );
    let without = raw_exchange(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        EXCHANGE_LIMIT,
    )
    .await;
    assert!(without.contains("\r\n2\r\nok\r\n0\r\n"), "{without:?}");
    assert!(
        !without.to_ascii_lowercase().contains("x-checksum: abc123"),
        "{without:?}"
    );
}
