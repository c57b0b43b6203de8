//! `X-Request-Id` and W3C `traceparent` on every request to a backend: generated and unique, kept from a trusted proxy only, in the
//! access log; `traceparent` passed through, and started on a `trace = "start"` listener.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use fulcrum::config::{AccessLogTarget, ListenerConfig, PoolId, TraceMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::support::backend::{BackendBuilder, TestBackend};
use crate::support::client::status_line;
use crate::support::proxy::{any_port, config, listener, pool, Proxy};
use crate::support::wait::eventually;

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRUSTED: &str = "127.9.0.1";
const UNTRUSTED: &str = "127.8.0.1";
const WAIT: Duration = Duration::from_secs(5);

/// One `GET path` from source address `src` with `extra` header lines; the response.
async fn get_from(src: &str, proxy: SocketAddr, path: &str, extra: &str) -> String {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(src.parse().unwrap(), 0))
        .unwrap();
    let mut stream = socket.connect(proxy).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(status_line(&text).starts_with("HTTP/1.1 200"), "{text}");
    text
}

/// The header `name` of the backend's request whose path is `path`.
fn seen(b: &TestBackend, path: &str, name: &str) -> Option<String> {
    let all = b.requests();
    let r = all.iter().find(|r| r.path == path)?;
    r.headers.get(name).map(|v| v.to_str().unwrap().to_string())
}

struct Setup {
    proxy: Proxy,
    traced: SocketAddr,
    backend: TestBackend,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// A proxy with listeners "web" (trace "pass") and "traced" (trace "start"),
/// 127.9.0.0/16 trusted, the access log in a file.
async fn setup() -> Setup {
    let backend = BackendBuilder::new("b").start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut cfg = config(listener(), vec![pool("p", &[backend.addr])]);
    let mut traced = ListenerConfig::http("traced", any_port(), PoolId::new(0));
    traced.trace = TraceMode::Start;
    cfg.listeners.push(traced);
    cfg.global.access_log = AccessLogTarget::File(log.clone());
    cfg.global.trusted_proxies = vec!["127.9.0.0/16".parse().unwrap()];
    let proxy = Proxy::start(cfg);
    let traced = proxy
        .handle
        .as_ref()
        .unwrap()
        .listener_addr("traced")
        .unwrap();
    Setup {
        proxy,
        traced,
        backend,
        log,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_and_traceparent() {
    let s = setup().await;
    let web = s.proxy.addr;

    // Generated: 32 hex digits, a new one each request, also replacing an untrusted client's.
    let mut ids = HashSet::new();
    for i in 0..5 {
        get_from(UNTRUSTED, web, &format!("/gen{i}"), "").await;
        let id = seen(&s.backend, &format!("/gen{i}"), "x-request-id").unwrap();
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        ids.insert(id);
    }
    assert_eq!(ids.len(), 5, "unique: {ids:?}");
    get_from(UNTRUSTED, web, "/forged", "X-Request-Id: forged-1\r\n").await;
    let replaced = seen(&s.backend, "/forged", "x-request-id").unwrap();
    assert_ne!(replaced, "forged-1");
    assert_eq!(replaced.len(), 32);

    // Kept from a trusted proxy.
    get_from(TRUSTED, web, "/kept", "X-Request-Id: edge-42\r\n").await;
    assert_eq!(
        seen(&s.backend, "/kept", "x-request-id").as_deref(),
        Some("edge-42")
    );

    // traceparent: passed through; none started on a "pass" listener.
    let with = format!("traceparent: {TP}\r\ntracestate: a=b\r\n");
    get_from(UNTRUSTED, web, "/tp", &with).await;
    assert_eq!(seen(&s.backend, "/tp", "traceparent").as_deref(), Some(TP));
    assert_eq!(
        seen(&s.backend, "/tp", "tracestate").as_deref(),
        Some("a=b")
    );
    get_from(UNTRUSTED, web, "/notp", "").await;
    assert_eq!(seen(&s.backend, "/notp", "traceparent"), None);

    // trace = "start": kept when valid, started when absent (trace id = the request id).
    get_from(UNTRUSTED, s.traced, "/tp-start", &with).await;
    assert_eq!(
        seen(&s.backend, "/tp-start", "traceparent").as_deref(),
        Some(TP)
    );
    get_from(UNTRUSTED, s.traced, "/started", "").await;
    let tp = seen(&s.backend, "/started", "traceparent").unwrap();
    let id = seen(&s.backend, "/started", "x-request-id").unwrap();
    assert_eq!(tp.len(), 55, "{tp}");
    assert!(tp.starts_with("00-") && tp.ends_with("-01"), "{tp}");
    assert_eq!(&tp[3..35], id, "trace id = request id");

    // The access log has each id as its last field.
    let want = [replaced, "edge-42".to_string(), id];
    let log = &s.log;
    eventually(
        WAIT,
        "the access log lines with the request ids",
        || async {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            want.iter().all(|id| {
                text.lines()
                    .any(|line| line.rsplit(' ').next() == Some(id.as_str()))
            })
        },
    )
    .await;
    s.proxy.shutdown().await;
}
