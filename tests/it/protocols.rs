//! WebSocket upgrade passed through; h2c (prior knowledge) from the client, HTTP/1.1 upstream.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Version};
use http_body_util::Full;
use tokio_tungstenite::tungstenite::Message;

use crate::support::backend::{BackendBuilder, WsEchoBackend};
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
