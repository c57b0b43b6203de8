//! `[listener.limits]` with real clients on distinct loopback addresses (127.x.y.z, each a
//! client of its own): a client over its rate gets 429 with `Retry-After` while another is
//! served; a trusted proxy's `X-Forwarded-For` clients are limited one by one; a client over
//! `connections_per_client` is closed at accept (the PROXY header's client when there is one)
//! while others connect; the limiter's state survives a reload; `fulcrum_limited_total` moves.
//!
//! Outcomes are made deterministic by the rates: a client's first `rps + burst` requests always
//! pass, and a loop that stops at the first 429 (within a bound) never depends on how fast the
//! machine is.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use fulcrum::config::LimitsConfig;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::admin::{admin_of, promtool_check, sample, with_admin};
use crate::support::backend::{BackendBuilder, TestBackend};
use crate::support::client::{get as get_path, http1, EXCHANGE_LIMIT};
use crate::support::proxy::{any_port, config, listener, pool, toml_text, write_file, Proxy};
use crate::support::{eventually, require};

/// A TCP connection to `proxy` from `source` (any 127/8 address), after `preamble` (a PROXY
/// header, or nothing).
async fn connect_from(source: &str, proxy: SocketAddr, preamble: &[u8]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    let mut stream = socket.connect(proxy).await.unwrap();
    stream.write_all(preamble).await.unwrap();
    stream
}

/// One keep-alive HTTP/1.1 connection from a chosen loopback address.
struct Client {
    sender: SendRequest<Full<Bytes>>,
}

/// A response: status, `Retry-After` ("" when absent), body.
type Answer = (StatusCode, String, String);

impl Client {
    async fn from(source: &str, proxy: SocketAddr) -> Client {
        Client::with_preamble(source, proxy, b"").await
    }

    async fn with_preamble(source: &str, proxy: SocketAddr, preamble: &[u8]) -> Client {
        let stream = connect_from(source, proxy, preamble).await;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Client { sender }
    }

    /// GET / with an `X-Forwarded-For` when `xff` is not empty.
    async fn get(&mut self, xff: &str) -> Answer {
        let mut req = Request::get("/").header("host", "limits.test");
        if !xff.is_empty() {
            req = req.header("x-forwarded-for", xff);
        }
        let req = req.body(Full::default()).unwrap();
        tokio::time::timeout(EXCHANGE_LIMIT, async {
            self.sender.ready().await.unwrap();
            let resp = self.sender.send_request(req).await.unwrap();
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                retry_after,
                String::from_utf8_lossy(&body).into_owned(),
            )
        })
        .await
        .expect("exchange took too long")
    }

    /// Requests until the first 429 (at most `bound`): how many passed before it, and the 429.
    async fn until_limited(&mut self, xff: &str, bound: usize) -> (usize, Answer) {
        for passed in 0..bound {
            let answer = self.get(xff).await;
            if answer.0 == StatusCode::TOO_MANY_REQUESTS {
                return (passed, answer);
            }
            assert_eq!(answer.0, StatusCode::OK, "{answer:?}");
        }
        panic!("no 429 in {bound} requests");
    }
}

/// Whether Fulcrum closes a connection from `source` (after `preamble`) without answering
/// a request on it (an accepted one answers, then closes: `Connection: close`).
async fn closed_at_accept(source: &str, proxy: SocketAddr, preamble: &[u8]) -> bool {
    let mut stream = connect_from(source, proxy, preamble).await;
    // The write may meet the close already (a reset): that is a close too.
    let _ = stream
        .write_all(b"GET / HTTP/1.1\r\nHost: limits.test\r\nConnection: close\r\n\r\n")
        .await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(EXCHANGE_LIMIT, stream.read_to_end(&mut got)).await;
    let read = read.expect("neither answered nor closed");
    read.is_err() || got.is_empty()
}

fn limits(requests_per_second: u32, burst: u32, connections_per_client: u32) -> LimitsConfig {
    LimitsConfig {
        requests_per_second,
        burst,
        connections_per_client,
    }
}

/// A proxy over one backend whose listener `name` has `limits`; `trusted`: trusted_proxies.
async fn start(name: &str, limits: LimitsConfig, trusted: &[&str]) -> (Proxy, TestBackend) {
    start_with(name, limits, trusted, false).await
}

/// [`start`], with `proxy_protocol` on the listener when `proxy_protocol`; admin on.
async fn start_with(
    name: &str,
    limits: LimitsConfig,
    trusted: &[&str],
    proxy_protocol: bool,
) -> (Proxy, TestBackend) {
    let backend = BackendBuilder::new("b").start().await;
    let mut l = listener();
    l.name = name.to_string();
    l.limits = limits;
    l.proxy_protocol = proxy_protocol;
    let mut c = config(l, vec![pool("p", &[backend.addr])]);
    c.global.trusted_proxies = trusted.iter().map(|t| t.parse().unwrap()).collect();
    (Proxy::start(with_admin(c)), backend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_gets_429_while_another_is_served() {
    // 1/s with a burst of 2: three requests at once, then one a second.
    let (proxy, _backend) = start("rate", limits(1, 2, 0), &[]).await;
    let mut greedy = Client::from("127.3.0.1", proxy.addr).await;
    let mut other = Client::from("127.3.0.2", proxy.addr).await;

    // A fresh client always has its three; the 429 says when to come back and why.
    let (passed, limited) = greedy.until_limited("", 20).await;
    assert!(passed >= 3, "only {passed} passed");
    assert_eq!(limited.1, "1", "Retry-After of {limited:?}");
    assert_eq!(limited.2, "429 too many requests\n");

    // While the greedy client keeps sending, the other one is served every time.
    let flood = async {
        let mut refused = 0;
        for _ in 0..20 {
            if greedy.get("").await.0 == StatusCode::TOO_MANY_REQUESTS {
                refused += 1;
            }
        }
        refused
    };
    let polite = async {
        let mut answers = Vec::new();
        for _ in 0..3 {
            answers.push(other.get("").await.0);
        }
        answers
    };
    let (refused, answers) = tokio::join!(flood, polite);
    assert!(refused > 0, "the greedy client was never refused");
    assert_eq!(answers, [StatusCode::OK; 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_forwarded_clients_are_limited_separately() {
    let (proxy, _backend) = start("xff", limits(1, 2, 0), &["127.4.0.0/16"]).await;
    let mut lb = Client::from("127.4.0.1", proxy.addr).await;

    let (passed, limited) = lb.until_limited("203.0.113.1", 20).await;
    assert!(passed >= 3, "only {passed} passed");
    assert_eq!(limited.1, "1");
    // The same balancer's other clients, and the balancer itself, have their own rates; the
    // entries left of the client (forgeable) do not choose the key.
    for xff in ["203.0.113.2", "", "203.0.113.1, 203.0.113.3"] {
        assert_eq!(
            lb.get(xff).await.0,
            StatusCode::OK,
            "X-Forwarded-For {xff:?}"
        );
    }
    // An untrusted peer naming the limited client is itself the client: served.
    let mut forger = Client::from("127.5.0.1", proxy.addr).await;
    assert_eq!(forger.get("203.0.113.1").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_client_closes_the_extra_connection_at_accept() {
    let (proxy, _backend) = start("conns", limits(0, 0, 2), &[]).await;
    let mut first = Client::from("127.6.0.1", proxy.addr).await;
    let mut second = Client::from("127.6.0.1", proxy.addr).await;
    assert_eq!(first.get("").await.0, StatusCode::OK);
    assert_eq!(second.get("").await.0, StatusCode::OK);

    assert!(closed_at_accept("127.6.0.1", proxy.addr, b"").await);
    // Another client connects and is served meanwhile, more than once.
    let mut other = Client::from("127.6.0.2", proxy.addr).await;
    let mut another = Client::from("127.6.0.2", proxy.addr).await;
    assert_eq!(other.get("").await.0, StatusCode::OK);
    assert_eq!(another.get("").await.0, StatusCode::OK);
    // Still open: the first two keep working.
    assert_eq!(first.get("").await.0, StatusCode::OK);

    // One closed: the client may open one again.
    drop(first);
    eventually(
        Duration::from_secs(5),
        "a connection to be accepted once one closed",
        || async { !closed_at_accept("127.6.0.1", proxy.addr, b"").await },
    )
    .await;
    assert_eq!(second.get("").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_counted_per_proxy_header_client() {
    let (proxy, _backend) =
        start_with("proxyconns", limits(0, 0, 1), &["127.7.0.0/16"], true).await;
    let v1 = |client: &str| format!("PROXY TCP4 {client} 127.0.0.1 5555 80\r\n").into_bytes();

    // One balancer, two clients behind it: each has its own share of one connection.
    let mut a = Client::with_preamble("127.7.0.1", proxy.addr, &v1("198.51.100.1")).await;
    assert_eq!(a.get("").await.0, StatusCode::OK);
    assert!(closed_at_accept("127.7.0.1", proxy.addr, &v1("198.51.100.1")).await);
    let mut b = Client::with_preamble("127.7.0.1", proxy.addr, &v1("198.51.100.2")).await;
    assert_eq!(b.get("").await.0, StatusCode::OK);
    assert_eq!(a.get("").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limiter_survives_a_reload() {
    let a = BackendBuilder::new("a").start().await;
    let b = BackendBuilder::new("b").start().await;
    // 1/s with a burst of 99: a fresh client has 100 requests, a drained one gains one a second.
    let table = "\n[listener.limits]\nrequests_per_second = 1\nburst = 99\n";
    let text = |backends: &[SocketAddr]| {
        let t = toml_text(&[("reload", any_port())], backends);
        // The limits table belongs to the listener: right after its keys.
        t.replacen("pool = \"p\"\n", &format!("pool = \"p\"\n{table}"), 1)
    };
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "fulcrum.toml", &text(&[a.addr]));
    let mut handle = fulcrum::start(fulcrum::Config::from_file(&path).unwrap()).unwrap();
    handle.stop_watching();
    let addr = handle.listener_addr("reload").unwrap();

    let mut client = Client::from("127.8.0.1", addr).await;
    let (passed, _) = client.until_limited("", 300).await;
    assert!(passed >= 100, "only {passed} passed");

    // A reload that keeps the listener (a backend added): the client is still drained.
    std::fs::write(&path, text(&[a.addr, b.addr])).unwrap();
    let reloader = handle.reloader();
    tokio::task::spawn_blocking(move || reloader.reload(fulcrum::Trigger::Api))
        .await
        .unwrap()
        .unwrap();
    let mut client = Client::from("127.8.0.1", addr).await;
    let (passed, _) = client.until_limited("", 300).await;
    // A fresh state would pass 100; a kept one only what the seconds since refilled.
    assert!(
        passed < 50,
        "{passed} passed after the reload: the state was reset"
    );
    tokio::task::spawn_blocking(move || handle.shutdown())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limited_requests_and_connections_are_counted_and_pass_promtool() {
    let (proxy, _backend) = start("limited", limits(1, 4, 1), &[]).await;
    let admin = admin_of(&proxy);
    let metrics = || async { get_path(&http1(), admin, "/metrics").await.body };
    let value = |text: &str, kind: &str| {
        sample(
            text,
            "fulcrum_limited_total",
            &[("listener", "limited"), ("kind", kind)],
        )
    };
    // Both series are there from the start, at 0.
    let text = metrics().await;
    assert_eq!(value(&text, "requests"), Some(0.0), "{text}");
    assert_eq!(value(&text, "connections"), Some(0.0), "{text}");

    let mut client = Client::from("127.9.1.1", proxy.addr).await;
    client.until_limited("", 50).await;
    assert!(closed_at_accept("127.9.1.1", proxy.addr, b"").await);
    let text = metrics().await;
    assert_eq!(value(&text, "requests"), Some(1.0), "{text}");
    assert_eq!(value(&text, "connections"), Some(1.0), "{text}");
    // The 429 is counted as the listener's answer too.
    let answered = sample(
        &text,
        "fulcrum_requests_total",
        &[("listener", "limited"), ("code", "429")],
    );
    assert_eq!(answered, Some(1.0), "{text}");
    let Some(promtool) = require("promtool") else {
        return;
    };
    promtool_check(&promtool, &text);
}
