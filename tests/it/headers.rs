//! Header rewriting: X-Forwarded-*, Via, Host kept, hop-by-hop removed both ways.

use std::time::Duration;

use crate::support::backend::BackendBuilder;
use crate::support::client::{raw_exchange, status_line};
use crate::support::proxy::Proxy;

/// Lower-cased header names and values of a raw response head.
fn head_headers(response: &str) -> Vec<(String, String)> {
    let head = response.split("\r\n\r\n").next().unwrap_or("");
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_set_and_hop_by_hop_removed_both_ways() {
    let b = BackendBuilder::new("b")
        .echo_headers()
        .response_header("keep-alive", "timeout=5")
        .response_header("connection", "x-hop-resp")
        .response_header("x-hop-resp", "secret")
        .response_header("proxy-connection", "keep-alive")
        .response_header("x-resp-kept", "yes")
        .start()
        .await;
    let proxy = Proxy::simple(&[b.addr]);

    let request = "GET /h?q=1 HTTP/1.1\r\n\
        Host: app.test\r\n\
        X-Forwarded-For: 203.0.113.7\r\n\
        Connection: close, x-hop-req\r\n\
        X-Hop-Req: secret\r\n\
        Keep-Alive: timeout=5\r\n\
        TE: trailers\r\n\
        Proxy-Connection: keep-alive\r\n\
        X-Kept: yes\r\n\
        \r\n";
    let response = raw_exchange(proxy.addr, request.as_bytes(), Duration::from_secs(5)).await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 200"),
        "{response}"
    );

    let seen = b.requests();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    assert_eq!(h["host"], "app.test", "Host kept");
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "app.test");
    assert!(
        h["via"].to_str().unwrap().contains("fulcrum"),
        "via: {:?}",
        h["via"]
    );
    assert_eq!(h["x-kept"], "yes");
    for gone in ["keep-alive", "proxy-connection", "x-hop-req"] {
        assert!(!h.contains_key(gone), "{gone} reached the backend: {h:?}");
    }
    // The client's own Connection list is gone; `TE: trailers` alone is passed on (Fulcrum
    // forwards trailers), with the Connection header HTTP/1.1 requires beside it.
    assert_eq!(h["te"], "trailers", "{h:?}");
    assert_eq!(h["connection"], "te", "{h:?}");
    assert_eq!(seen[0].path, "/h");

    // The response: the backend's hop-by-hop headers do not reach the client.
    let resp = head_headers(&response);
    let has = |name: &str| resp.iter().any(|(n, _)| n == name);
    assert!(has("x-resp-kept"), "{response}");
    for gone in ["keep-alive", "x-hop-resp", "proxy-connection"] {
        assert!(!has(gone), "{gone} reached the client: {response}");
    }
    for (n, v) in &resp {
        if n == "connection" {
            assert!(
                !v.to_ascii_lowercase().contains("x-hop-resp"),
                "backend's Connection passed on: {response}"
            );
        }
    }
}

/// `Connection` may name only hop-by-hop headers: naming `Host`, the framing headers or those
/// Fulcrum sets removed them (the backend got HTTP/1.1 without `Host`, and the client's
/// `X-Forwarded-For` chain was dropped). They stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cannot_remove_host_framing_or_forwarding_headers() {
    let b = BackendBuilder::new("b").start().await;
    let proxy = Proxy::simple(&[b.addr]);
    let request = "POST /c HTTP/1.1\r\n\
        Host: app.test\r\n\
        Connection: host, content-length, x-forwarded-for, x-forwarded-host, \
          x-forwarded-proto, via, x-gone, close\r\n\
        X-Forwarded-For: 203.0.113.7\r\n\
        Via: 1.1 edge\r\n\
        X-Gone: 1\r\n\
        Content-Length: 5\r\n\
        \r\n\
        hello";
    let response = raw_exchange(proxy.addr, request.as_bytes(), Duration::from_secs(5)).await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 200"),
        "{response}"
    );
    let seen = b.requests();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    assert_eq!(
        h.get("host").map(|v| v.as_bytes()),
        Some(&b"app.test"[..]),
        "{h:?}"
    );
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-host"], "app.test");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["via"], "1.1 edge, 1.1 fulcrum");
    assert_eq!(h["content-length"], "5");
    assert_eq!(seen[0].body, "hello");
    assert!(!h.contains_key("x-gone"), "{h:?}");
}

/// RFC 9112 3.2.2: an absolute-form request-target's authority is the request's host, not the
/// `Host` header: `GET http://public.example/x` with `Host: internal.example` was routed to the
/// internal pool. It is routed by the target, and the backend gets `Host: public.example`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_form_target_routes_by_its_authority_not_host() {
    let (proxy, public, internal) = public_and_internal().await;
    let request = "GET http://public.example/x HTTP/1.1\r\n\
        Host: internal.example\r\n\
        Connection: close\r\n\
        \r\n";
    let response = raw_exchange(proxy.addr, request.as_bytes(), Duration::from_secs(5)).await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 200"),
        "{response}"
    );
    assert_eq!(internal.count(), 0, "routed by Host to the internal pool");
    let seen = public.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["host"], "public.example");
    assert_eq!(seen[0].headers["x-forwarded-host"], "public.example");
    assert_eq!(seen[0].path, "/x");
}

/// For HTTP/2, `:authority` is the host: a `host` header beside it neither routes the request
/// nor reaches the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_authority_routes_and_becomes_host() {
    let (proxy, public, internal) = public_and_internal().await;
    let req = http::Request::get("http://public.example/y")
        .header("host", "internal.example")
        .body(http_body_util::Full::<bytes::Bytes>::default())
        .unwrap();
    let r = crate::support::client::h2c(proxy.addr, req).await;
    assert_eq!(r.status, 200);
    assert_eq!(internal.count(), 0, "routed by host to the internal pool");
    let seen = public.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["host"], "public.example");
    assert_eq!(seen[0].headers.get_all("host").iter().count(), 1);
}

/// A proxy whose default pool is "public", with `internal.example` routed to "internal".
async fn public_and_internal() -> (
    Proxy,
    crate::support::backend::TestBackend,
    crate::support::backend::TestBackend,
) {
    use crate::support::proxy::{config, listener, pool};
    use fulcrum::config::{PoolId, RouteConfig};
    let public = BackendBuilder::new("public").start().await;
    let internal = BackendBuilder::new("internal").start().await;
    let mut l = listener();
    l.routes = vec![RouteConfig {
        sni: None,
        host: Some("internal.example".to_string()),
        path_prefix: None,
        header: None,
        pool: PoolId::new(1),
    }];
    let proxy = Proxy::start(config(
        l,
        vec![
            pool("public", &[public.addr]),
            pool("internal", &[internal.addr]),
        ],
    ));
    (proxy, public, internal)
}
