//! `protocol = "tcp"` listeners: bytes through the proxy intact (100 MiB with a checksum),
//! half-close, idle timeout, connect retries, PROXY v2 to backends, `on_down = "close"`, and
//! the validation of tcp-only rules.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use fulcrum::config::{BalanceKind, HealthConfig, ListenerConfig, OnDown, PoolConfig, PoolId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use xxhash_rust::xxh3::Xxh3;

use crate::support::eventually;
use crate::support::proxy::{any_port, config, pool, refused_addr, Config, Proxy};
use crate::support::tcp::{connect_named, echo, named, proxy_reader};

/// A proxy with one tcp listener over `p`.
fn tcp_proxy(p: PoolConfig) -> Proxy {
    Proxy::start(config(
        ListenerConfig::tcp("db", any_port(), PoolId::new(0)),
        vec![p],
    ))
}

async fn round_trip(addr: SocketAddr, msg: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(msg).await.unwrap();
    let mut got = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    got
}

#[tokio::test]
async fn bytes_round_trip() {
    let backend = echo().await;
    let proxy = tcp_proxy(pool("p", &[backend.addr]));
    for i in 0..5 {
        let msg = format!("hello {i}");
        assert_eq!(round_trip(proxy.addr, msg.as_bytes()).await, msg.as_bytes());
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn hundred_mib_arrive_intact() {
    const TOTAL: usize = 100 << 20;
    let backend = echo().await;
    let proxy = tcp_proxy(pool("p", &[backend.addr]));
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    let writer = tokio::spawn(async move {
        let mut hash = Xxh3::new();
        let mut chunk = vec![0u8; 256 * 1024];
        let mut sent = 0usize;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        while sent < TOTAL {
            for b in chunk.chunks_mut(8) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                b.copy_from_slice(&seed.to_le_bytes()[..b.len()]);
            }
            hash.update(&chunk);
            w.write_all(&chunk).await.unwrap();
            sent += chunk.len();
        }
        w.shutdown().await.unwrap();
        hash.digest()
    });
    let mut hash = Xxh3::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut received = 0usize;
    let read = async {
        loop {
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            received += n;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("transfer finished");
    let sent = writer.await.unwrap();
    assert_eq!(received, TOTAL);
    assert_eq!(hash.digest(), sent, "checksum of what came back");
    proxy.shutdown().await;
}

#[tokio::test]
async fn half_close_keeps_the_other_direction_open() {
    let backend = echo().await;
    let proxy = tcp_proxy(pool("p", &[backend.addr]));
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"ping before FIN").await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got, b"ping before FIN",
        "the echo arrives after our FIN, then EOF"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let backend = echo().await;
    let mut p = pool("p", &[backend.addr]);
    p.idle_timeout = Duration::from_millis(300);
    let proxy = tcp_proxy(p);
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    assert_eq!(
        round_trip_on(&mut s, b"x").await,
        b"x",
        "active is not idle"
    );
    let started = Instant::now();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("closed by the idle timeout")
        .unwrap_or(0);
    assert_eq!(n, 0);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed after {waited:?}"
    );
    proxy.shutdown().await;
}

async fn round_trip_on(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).await.unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).await.unwrap();
    got
}

#[tokio::test]
async fn connect_failure_tries_the_next_backend() {
    let backend = echo().await;
    let mut p = pool("p", &[refused_addr(), backend.addr, refused_addr()]);
    p.retries = 2;
    p.passive.consecutive_failures = 0;
    let proxy = tcp_proxy(p);
    for i in 0..6 {
        let msg = format!("attempt {i}");
        assert_eq!(round_trip(proxy.addr, msg.as_bytes()).await, msg.as_bytes());
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn send_proxy_names_the_client() {
    let (backend, mut seen) = proxy_reader().await;
    let mut p = pool("p", &[backend.addr]);
    p.send_proxy = true;
    let proxy = tcp_proxy(p);
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let client = s.local_addr().unwrap();
    assert_eq!(
        round_trip_on(&mut s, b"after header").await,
        b"after header"
    );
    let source = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(source, Some(client));
    proxy.shutdown().await;
}

#[tokio::test]
async fn on_down_close_ends_open_connections() {
    let backend = echo().await;
    // The check goes to a side port the test controls: dropping it marks the backend down.
    let side = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut health = HealthConfig::tcp();
    health.port = side.local_addr().unwrap().port();
    health.interval = Duration::from_millis(100);
    health.timeout = Duration::from_millis(100);
    health.fall = 1;
    let mut p = pool("p", &[backend.addr]);
    p.health = Some(health);
    p.on_down = OnDown::Close;
    let proxy = tcp_proxy(p);
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    assert_eq!(round_trip_on(&mut s, b"up").await, b"up");
    drop(side);
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("closed once the backend is down")
        .unwrap_or(0);
    assert_eq!(n, 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn least_conn_counts_open_connections() {
    let (a, b) = (named("a").await, named("b").await);
    let mut p = pool("p", &[a.addr, b.addr]);
    p.balance = BalanceKind::LeastConn;
    let proxy = tcp_proxy(p);
    // Each new connection goes to the backend with fewer open ones: they alternate while all
    // stay open, and a closed one frees its backend for the next.
    let (first, s1) = connect_named(proxy.addr).await;
    let (second, _s2) = connect_named(proxy.addr).await;
    assert_ne!(first, second);
    let (third, _s3) = connect_named(proxy.addr).await;
    let (fourth, _s4) = connect_named(proxy.addr).await;
    assert_ne!(third, fourth);
    drop(s1);
    // The proxy has seen the close once the listener counts three open connections (the
    // connection's task, and with it the backend's in-flight count, ended first).
    let handle = proxy.handle.as_ref().unwrap();
    eventually(
        Duration::from_secs(5),
        "the proxy to see the first connection close",
        || async { handle.open_connections() == 3 },
    )
    .await;
    let (fifth, _s5) = connect_named(proxy.addr).await;
    assert_eq!(
        fifth, first,
        "the backend whose connection closed has fewer open"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn consistent_hash_keeps_a_client_on_one_backend() {
    let backends = [named("a").await, named("b").await, named("c").await];
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let mut p = pool("p", &addrs);
    p.balance = BalanceKind::ConsistentHash;
    let proxy = tcp_proxy(p);
    let (first, _) = connect_named(proxy.addr).await;
    for _ in 0..8 {
        assert_eq!(
            connect_named(proxy.addr).await.0,
            first,
            "same client IP, same backend"
        );
    }
    proxy.shutdown().await;
}

#[test]
fn tcp_listeners_reject_http_only_balancing() {
    let base = r#"
[[listener]]
name = "db"
bind = "127.0.0.1:0"
protocol = "tcp"
pool = "p"

[[pool]]
name = "p"
backends = [{ address = "127.0.0.1:5432" }]
"#;
    assert!(Config::from_toml(base, Path::new("f.toml")).is_ok());
    for (extra, needle) in [
        (
            "balance = \"consistent_hash\"\nhash_key = \"path\"",
            "hash_key = \"client_ip\"",
        ),
        ("balance = \"sticky_cookie\"", "needs HTTP"),
        ("on_down = \"sometimes\"", "on_down"),
    ] {
        let text = base.replace("name = \"p\"\n", &format!("name = \"p\"\n{extra}\n"));
        let err = Config::from_toml(&text, Path::new("f.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{extra}: {err}");
        assert!(err.contains("f.toml:"), "{err}");
    }
    let ok = base.replace(
        "name = \"p\"\n",
        "name = \"p\"\nbalance = \"consistent_hash\"\nhash_key = \"client_ip\"\nsend_proxy = true\non_down = \"close\"\n",
    );
    assert!(Config::from_toml(&ok, Path::new("f.toml")).is_ok());
}
