//! Regions: clients on different loopback addresses (127.1.0.1, 127.2.0.1, ...; the whole
//! 127.0.0.0/8 is local on Linux) are served by their own region's backends, fail over to the
//! next region when theirs is down and come back when it recovers; unknown clients are split by
//! weight; `X-Forwarded-For` is believed from trusted proxies only; a country database maps a
//! public address to its region; a PROXY header is believed from trusted peers only.
//!
//! The mmdb test needs `@ip-location-db/geo-whois-asn-country-mmdb` (CC0), fetched by
//! `.ci/fetch-test-data` with `npm pack` into `target/test-data/geo-whois-asn-country.mmdb` (or
//! set `FULCRUM_TEST_MMDB`); without it the test skips (`support::require`).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fulcrum::config::{BackendConfig, GeoConfig, PassiveConfig, PoolConfig, RegionConfig};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::flip::FlipBackend;
use crate::support::proxy::{config, listener, Config, Proxy};
use crate::support::{eventually, require};

/// A TCP connection to `proxy` from `source` (any 127/8 address).
async fn connect_from(source: &str, proxy: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    socket.connect(proxy).await.unwrap()
}

/// An HTTP/1.1 connection to the proxy from a chosen local address.
struct Client {
    sender: SendRequest<Full<Bytes>>,
    proxy: SocketAddr,
}

impl Client {
    async fn from(source: &str, proxy: SocketAddr) -> Client {
        Client::with_preamble(source, proxy, b"").await
    }

    /// Like [`from`](Self::from), writing `preamble` (a PROXY header) first.
    async fn with_preamble(source: &str, proxy: SocketAddr, preamble: &[u8]) -> Client {
        let mut stream = connect_from(source, proxy).await;
        stream.write_all(preamble).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Client { sender, proxy }
    }

    /// GET / with extra headers: (status, x-backend).
    async fn get(&mut self, headers: &[(&str, &str)]) -> (StatusCode, String) {
        let mut req = Request::get("/").header("host", self.proxy.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::default()).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), async {
            self.sender.ready().await?;
            let resp = self.sender.send_request(req).await?;
            let status = resp.status();
            let backend = resp
                .headers()
                .get("x-backend")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            resp.into_body().collect().await?;
            Ok::<_, hyper::Error>((status, backend))
        })
        .await
        .expect("exchange took too long");
        resp.unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, format!("client error: {e}")))
    }
}

fn in_region(addr: SocketAddr, region: &str) -> BackendConfig {
    BackendConfig {
        address: addr,
        name: None,
        weight: 1,
        region: Some(region.into()),
    }
}

fn region(name: &str, cidrs: &[&str], failover: &[&str]) -> RegionConfig {
    RegionConfig {
        name: name.into(),
        cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
        countries: Vec::new(),
        failover: failover.iter().map(|f| f.to_string()).collect(),
    }
}

/// A pool `p` over east/west backends, regions us-east = 127.1/16 and us-west = 127.2/16,
/// each failing over to the other.
fn two_regions(east: &[SocketAddr], west: &[SocketAddr]) -> Config {
    let backends = east
        .iter()
        .map(|a| in_region(*a, "us-east"))
        .chain(west.iter().map(|a| in_region(*a, "us-west")))
        .collect();
    let mut pool = PoolConfig::new("p", backends);
    pool.passive = PassiveConfig {
        consecutive_failures: 1,
        eject_for: Duration::from_millis(300),
    };
    let mut c = config(listener(), vec![pool]);
    c.regions = vec![
        region("us-east", &["127.1.0.0/16"], &["us-west"]),
        region("us-west", &["127.2.0.0/16"], &["us-east"]),
    ];
    c
}

/// Two backends per region behind `two_regions`, started.
async fn two_regions_running() -> ([FlipBackend; 2], [FlipBackend; 2], Proxy) {
    two_regions_with(|_| {}).await
}

/// [`two_regions_running`] with `adjust` applied to the config first.
async fn two_regions_with(
    adjust: impl FnOnce(&mut Config),
) -> ([FlipBackend; 2], [FlipBackend; 2], Proxy) {
    let east = [
        FlipBackend::start("east-1").await,
        FlipBackend::start("east-2").await,
    ];
    let west = [
        FlipBackend::start("west-1").await,
        FlipBackend::start("west-2").await,
    ];
    let addrs = |bs: &[FlipBackend]| bs.iter().map(|b| b.addr).collect::<Vec<_>>();
    let mut c = two_regions(&addrs(&east), &addrs(&west));
    adjust(&mut c);
    (east, west, Proxy::start(c))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_use_their_region_fail_over_and_return() {
    let (mut east, _west, proxy) = two_regions_running().await;
    let mut ce = Client::from("127.1.0.1", proxy.addr).await;
    let mut cw = Client::from("127.2.0.1", proxy.addr).await;
    for _ in 0..20 {
        let (s, b) = ce.get(&[]).await;
        assert!(s == 200 && b.starts_with("east-"), "{s} {b}");
        let (s, b) = cw.get(&[]).await;
        assert!(s == 200 && b.starts_with("west-"), "{s} {b}");
    }

    // The whole of us-east goes down: its clients move to us-west, no request fails.
    for b in &mut east {
        b.kill();
    }
    let killed = Instant::now();
    let mut moved = None;
    let mut failed = Vec::new();
    let mut served = 0;
    while killed.elapsed() < Duration::from_millis(1500) {
        let (s, b) = ce.get(&[]).await;
        if s != 200 {
            failed.push(format!("{s} {b}"));
        } else {
            assert!(
                b.starts_with("west-"),
                "served by {b} while us-east is down"
            );
            moved.get_or_insert(killed.elapsed());
            served += 1;
        }
        let (s, b) = cw.get(&[]).await;
        assert!(s == 200 && b.starts_with("west-"), "{s} {b}");
    }
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    let moved = moved.expect("us-east clients were never served");
    eprintln!(
        "region failover: us-east clients served by us-west {:.1} ms after the kill ({served} requests, 0 failed)",
        moved.as_secs_f64() * 1000.0
    );

    // Back on the same ports: once the ejections expire its clients return.
    for b in &mut east {
        b.restart().await;
    }
    let restarted = Instant::now();
    eventually(
        Duration::from_secs(10),
        "us-east clients to return to us-east",
        async || {
            let (s, b) = ce.get(&[]).await;
            assert_eq!(s, 200, "{b}");
            b.starts_with("east-")
        },
    )
    .await;
    eprintln!(
        "region recovery: us-east clients back {:.0} ms after the restart",
        restarted.elapsed().as_secs_f64() * 1000.0
    );
    for _ in 0..20 {
        let (s, b) = ce.get(&[]).await;
        assert!(s == 200 && b.starts_with("east-"), "{s} {b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_clients_are_split_by_weight() {
    let mut east = FlipBackend::start("east").await;
    let west = FlipBackend::start("west").await;
    let mut c = two_regions(&[east.addr], &[west.addr]);
    c.pools[0].region_split = vec![("us-east".into(), 70), ("us-west".into(), 30)];
    let proxy = Proxy::start(c);
    // 127.0.0.1 is in no region.
    let mut client = Client::from("127.0.0.1", proxy.addr).await;
    let mut east_count = 0;
    for _ in 0..1000 {
        let (s, b) = client.get(&[]).await;
        assert_eq!(s, 200, "{b}");
        east_count += usize::from(b == "east");
    }
    eprintln!("region split 70/30 over 1000 requests: {east_count} east");
    assert!(
        (680..=720).contains(&east_count),
        "{east_count} of 1000 to us-east"
    );

    // us-east down: it drops out of the split, its share goes to us-west, nothing fails.
    east.kill();
    for _ in 0..100 {
        let (s, b) = client.get(&[]).await;
        assert_eq!((s.as_u16(), b.as_str()), (200, "west"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_believed_from_trusted_proxies_only() {
    let east = FlipBackend::start("east").await;
    let west = FlipBackend::start("west").await;
    let mut c = two_regions(&[east.addr], &[west.addr]);
    c.regions[0].cidrs.push("203.0.113.0/24".parse().unwrap());
    c.regions[1].cidrs.push("198.51.100.0/24".parse().unwrap());
    c.global.trusted_proxies = vec!["127.9.0.0/16".parse().unwrap()];
    let proxy = Proxy::start(c);

    // Untrusted peer in us-east forging a us-west address: ignored.
    let mut forger = Client::from("127.1.0.1", proxy.addr).await;
    let (s, b) = forger.get(&[("x-forwarded-for", "198.51.100.7")]).await;
    assert_eq!((s.as_u16(), b.as_str()), (200, "east"));

    // Trusted proxy: the right-most untrusted entry counts, the forged left one does not.
    let mut lb = Client::from("127.9.0.1", proxy.addr).await;
    let (s, b) = lb
        .get(&[("x-forwarded-for", "203.0.113.9, 198.51.100.7")])
        .await;
    assert_eq!((s.as_u16(), b.as_str()), (200, "west"));
    let (s, b) = lb
        .get(&[("x-forwarded-for", "198.51.100.7, 203.0.113.9, 127.9.0.2")])
        .await;
    assert_eq!((s.as_u16(), b.as_str()), (200, "east"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn country_database_maps_public_addresses_to_regions() {
    let Some(mmdb) = require("country database") else {
        return;
    };
    let mut us_region = region("us", &[], &[]);
    us_region.countries = vec!["US".into()];
    let mut de_region = region("de", &[], &[]);
    de_region.countries = vec!["DE".into()];
    let regions = vec![us_region, de_region];
    let geo = GeoConfig {
        mmdb: Some(mmdb.clone()),
    };

    // The library lookup: Google DNS is US, heise.de is DE (ip-location-db layout).
    let table = fulcrum::internals::Regions::build(&regions, &geo).unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(table.country(ip("8.8.8.8")), Some(*b"US"));
    assert_eq!(table.lookup(ip("8.8.8.8")), Some(0));
    assert_eq!(table.lookup(ip("193.99.144.80")), Some(1));
    assert_eq!(table.lookup(ip("2001:4860:4860::8888")), Some(0));
    assert_eq!(table.lookup(ip("127.0.0.1")), None);

    // End to end: a trusted proxy says the client is 8.8.8.8 -> served by the us backend.
    let us = FlipBackend::start("us").await;
    let de = FlipBackend::start("de").await;
    let pool = PoolConfig::new(
        "p",
        vec![in_region(us.addr, "us"), in_region(de.addr, "de")],
    );
    let mut c = config(listener(), vec![pool]);
    c.regions = regions;
    c.geo = geo;
    c.global.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let proxy = Proxy::start(c);
    let mut lb = Client::from("127.0.0.1", proxy.addr).await;
    for _ in 0..5 {
        assert_eq!(lb.get(&[("x-forwarded-for", "8.8.8.8")]).await.1, "us");
        assert_eq!(
            lb.get(&[("x-forwarded-for", "193.99.144.80")]).await.1,
            "de"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_header_names_the_client_from_trusted_peers() {
    let east = FlipBackend::start("east").await;
    let west = FlipBackend::start("west").await;
    let mut c = two_regions(&[east.addr], &[west.addr]);
    c.regions[1].cidrs.push("198.51.100.0/24".parse().unwrap());
    c.global.trusted_proxies = vec!["127.9.0.0/16".parse().unwrap()];
    c.listeners[0].proxy_protocol = true;
    let proxy = Proxy::start(c);

    // v1 from a trusted balancer: the client is 198.51.100.7 (us-west).
    let v1 = b"PROXY TCP4 198.51.100.7 127.0.0.1 5555 80\r\n";
    let mut lb = Client::with_preamble("127.9.0.1", proxy.addr, v1).await;
    assert_eq!(lb.get(&[]).await, (StatusCode::OK, "west".to_string()));
    assert_eq!(lb.get(&[]).await, (StatusCode::OK, "west".to_string()));
    // v2 likewise.
    let v2 = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (
            "198.51.100.8:4000".parse::<SocketAddr>().unwrap(),
            "127.0.0.1:80".parse::<SocketAddr>().unwrap(),
        ),
    )
    .build()
    .unwrap();
    let mut lb2 = Client::with_preamble("127.9.0.2", proxy.addr, &v2).await;
    assert_eq!(lb2.get(&[]).await, (StatusCode::OK, "west".to_string()));

    // An untrusted peer is not read: no header needed, and it is its own client (us-east).
    let mut direct = Client::from("127.1.0.1", proxy.addr).await;
    assert_eq!(direct.get(&[]).await, (StatusCode::OK, "east".to_string()));

    // A trusted peer without a header is disconnected.
    let mut bare = connect_from("127.9.0.3", proxy.addr).await;
    bare.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), bare.read_to_end(&mut out)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "expected a close, got {read:?} {:?}",
        String::from_utf8_lossy(&out)
    );
}

/// Round robin within a region stays even when picks for other regions interleave (one cycle
/// shared by all regions gave the first backend of each region three turns in four).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_is_even_within_each_region_when_regions_interleave() {
    let (_east, _west, proxy) = two_regions_running().await;
    let mut ce = Client::from("127.1.0.1", proxy.addr).await;
    let mut cw = Client::from("127.2.0.1", proxy.addr).await;
    let mut counts = std::collections::HashMap::<String, u32>::new();
    for _ in 0..40 {
        for client in [&mut ce, &mut cw] {
            let (s, b) = client.get(&[]).await;
            assert_eq!(s, 200, "{b}");
            *counts.entry(b).or_default() += 1;
        }
    }
    for name in ["east-1", "east-2", "west-1", "west-2"] {
        assert_eq!(counts.get(name), Some(&20), "{counts:?}");
    }
}

/// Both backends of the client's region die under steady traffic: no request fails, in the
/// detection window either. A retry never returns to a backend it tried, so once both east
/// backends failed a request it goes to us-west (the failover region) at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_region_costs_its_clients_no_failed_request() {
    // The default passive settings: several failures per backend before it is ejected, the
    // window in which retries alone must save every request.
    let (mut east, _west, proxy) =
        two_regions_with(|c| c.pools[0].passive = PassiveConfig::default()).await;
    let mut ce = Client::from("127.1.0.1", proxy.addr).await;
    let mut served = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for i in 0..150 {
        tick.tick().await;
        if i == 30 {
            east[0].kill();
            east[1].kill();
        }
        let (status, by) = ce.get(&[]).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "request {i} failed (served by {by:?})"
        );
        served.push(by);
    }
    assert!(
        served[..30].iter().all(|b| b.starts_with("east-")),
        "{served:?}"
    );
    assert!(
        served[31..].iter().all(|b| b.starts_with("west-")),
        "{served:?}"
    );
}
