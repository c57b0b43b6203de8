//! Request-path micro benchmarks: one balancer pick and one route lookup.
//!
//! These are the per-request costs Fulcrum adds before any I/O, so they must stay in the
//! nanoseconds. Balancers are measured over 3 backends (a typical small pool) and 100 (where
//! `O(n)` scans such as least connections start to show), with the `eligible` predicate the proxy
//! uses (health + drain flags read from the shared atomics) and some load in flight. Routes are
//! measured over a 20-route table for a request matching late in the table and one that matches
//! nothing (the worst case: every route is tried before the default pool). Regions: a client
//! address looked up in a 10,000-prefix CIDR table (random prefixes /12 to /28 over 10 regions;
//! the share of sample addresses that hit is printed) and in the country database
//! (`target/test-data/geo-whois-asn-country.mmdb` from `.ci/fetch-test-data`, or
//! `FULCRUM_TEST_MMDB`; skipped with a message when absent).
//!
//! `cargo bench --bench hot_path` (add `-- --quick` for a fast run).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{HeaderMap, HeaderValue};

use fulcrum::config::{BalanceKind, GeoConfig, HeaderMatch, PoolId, RegionConfig, RouteConfig};
use fulcrum::internals::Regions;
use fulcrum::internals::RouteTable;
use fulcrum::internals::{key_hash, Affinity, Balancer};
use fulcrum::internals::{Backend, BackendState, InflightGuard};

/// `n` backends with weights 1..=3 and a few requests in flight on some of them; one is down so
/// the skip paths are exercised too.
fn pool(n: usize) -> (Vec<Backend>, Vec<InflightGuard>) {
    let backends: Vec<Backend> = (0..n)
        .map(|i| {
            let addr = SocketAddr::from((
                Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1),
                80,
            ));
            Backend::new(
                addr,
                (i % 3) as u32 + 1,
                None,
                Arc::new(BackendState::default()),
            )
        })
        .collect();
    let guards = backends
        .iter()
        .enumerate()
        .flat_map(|(i, b)| (0..i % 4).map(move |_| b.state.acquire()))
        .collect();
    if n > 2 {
        backends[n / 2].state.set_healthy(false);
    }
    (backends, guards)
}

fn balancers(c: &mut Criterion) {
    let mut group = c.benchmark_group("balance_pick");
    for (name, kind) in [
        ("round_robin", BalanceKind::RoundRobin),
        ("least_conn", BalanceKind::LeastConn),
        ("random_two", BalanceKind::RandomTwo),
    ] {
        for n in [3, 100] {
            let (backends, _guards) = pool(n);
            let balancer = Balancer::new(kind, &backends);
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    let backends = black_box(&backends);
                    balancer.pick(backends, |i| backends[i].state.is_available())
                })
            });
        }
    }
    // consistent_hash: the key hash (a 16-byte user id, as the proxy computes it from a header)
    // plus the pick; keys rotate over 1024 users so the table is read at scattered entries.
    // "down" measures keys whose backend is unavailable (the fallback path).
    let users: Vec<Vec<u8>> = (0..1024)
        .map(|i| format!("user-{i:011}").into_bytes())
        .collect();
    for n in [3, 100] {
        let (backends, _guards) = pool(n);
        let balancer = Balancer::new(BalanceKind::ConsistentHash, &backends);
        let mut next = 0usize;
        group.bench_with_input(BenchmarkId::new("consistent_hash", n), &n, |b, _| {
            b.iter(|| {
                next = (next + 1) & 1023;
                let backends = black_box(&backends);
                let key = Affinity::Hash(key_hash(black_box(&users[next])));
                balancer.pick_for(backends, key, |i| backends[i].state.is_available())
            })
        });
        let down: Vec<Affinity> = users
            .iter()
            .map(|u| Affinity::Hash(key_hash(u)))
            .filter(|&k| balancer.pick_for(&backends, k, |_| true) == Some(n / 2))
            .collect();
        if !down.is_empty() && n > 2 {
            let mut next = 0usize;
            group.bench_with_input(BenchmarkId::new("consistent_hash_down", n), &n, |b, _| {
                b.iter(|| {
                    next = (next + 1) % down.len();
                    let backends = black_box(&backends);
                    balancer.pick_for(backends, down[next], |i| backends[i].state.is_available())
                })
            });
        }
    }
    group.finish();
}

/// A 20-route table mixing exact hosts, wildcards, path prefixes and headers.
fn route_table() -> RouteTable {
    let route = |host: Option<&str>,
                 path: Option<&str>,
                 header: Option<(&str, &str)>,
                 pool: usize| RouteConfig {
        sni: None,
        host: host.map(String::from),
        path_prefix: path.map(String::from),
        header: header.map(|(name, value)| HeaderMatch {
            name: name.into(),
            value: value.into(),
        }),
        pool: PoolId::new(pool),
    };
    let mut routes = Vec::new();
    for i in 0..5 {
        routes.push(route(
            Some(&format!("svc{i}.example.com")),
            None,
            None,
            routes.len() + 1,
        ));
        routes.push(route(
            Some(&format!("*.tenant{i}.example.net")),
            Some("/api/"),
            None,
            routes.len() + 1,
        ));
        routes.push(route(
            None,
            Some(&format!("/static/v{i}/")),
            None,
            routes.len() + 1,
        ));
        routes.push(route(
            Some("api.example.com"),
            Some("/v2/"),
            Some(("x-canary", if i == 4 { "yes" } else { "no" })),
            routes.len() + 1,
        ));
    }
    RouteTable::new(&routes, PoolId::new(0))
}

fn routes(c: &mut Criterion) {
    let table = route_table();
    let mut headers = HeaderMap::new();
    headers.insert("user-agent", HeaderValue::from_static("bench/1.0"));
    headers.insert("accept", HeaderValue::from_static("*/*"));
    headers.insert("x-canary", HeaderValue::from_static("yes"));
    let mut group = c.benchmark_group("route_pick");
    // Matches the last route (api.example.com + /v2/ + x-canary: yes).
    group.bench_function("match_last_of_20", |b| {
        b.iter(|| {
            table.pick(
                black_box(Some("API.example.com:8443")),
                black_box("/v2/users/42"),
                black_box(&headers),
            )
        })
    });
    group.bench_function("match_wildcard", |b| {
        b.iter(|| {
            table.pick(
                black_box(Some("a.b.tenant3.example.net")),
                black_box("/api/x"),
                black_box(&headers),
            )
        })
    });
    group.bench_function("no_match_of_20", |b| {
        b.iter(|| {
            table.pick(
                black_box(Some("www.other.org")),
                black_box("/index.html"),
                black_box(&headers),
            )
        })
    });
    group.finish();
}

/// 1,024 random IPv4 addresses, cycled through by the lookups.
fn addresses(rng: &mut fastrand::Rng) -> Vec<IpAddr> {
    (0..1024)
        .map(|_| IpAddr::V4(Ipv4Addr::from(rng.u32(..))))
        .collect()
}

fn regions(c: &mut Criterion) {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut configs: Vec<RegionConfig> = (0..10)
        .map(|i| RegionConfig {
            name: format!("r{i}"),
            ..Default::default()
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 10_000 {
        let len = rng.u8(12..=28);
        let net = ipnet::Ipv4Net::new(Ipv4Addr::from(rng.u32(..)), len)
            .expect("prefix length <= 32")
            .trunc();
        if seen.insert(net) {
            configs[rng.usize(..10)].cidrs.push(net.into());
        }
    }
    let table = Regions::build(&configs, &GeoConfig::default()).expect("table");
    let ips = addresses(&mut rng);
    let hits = ips.iter().filter(|ip| table.lookup(**ip).is_some()).count();
    eprintln!("region CIDR table: 10000 prefixes, {hits}/1024 sample addresses match");
    let mut group = c.benchmark_group("region");
    let mut i = 0;
    group.bench_function("cidr_lookup/10000_prefixes", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(table.lookup(black_box(ips[i])))
        })
    });

    let mmdb = std::env::var_os("FULCRUM_TEST_MMDB").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/test-data/geo-whois-asn-country.mmdb")
        },
        PathBuf::from,
    );
    if !mmdb.is_file() {
        eprintln!(
            "SKIPPED region/mmdb_lookup: no database at {} (run .ci/fetch-test-data)",
            mmdb.display()
        );
        group.finish();
        return;
    }
    let geo = GeoConfig { mmdb: Some(mmdb) };
    let countries = [
        ("us", ["US", "CA"]),
        ("eu", ["DE", "FR"]),
        ("ap", ["JP", "AU"]),
    ];
    let configs: Vec<RegionConfig> = countries
        .iter()
        .map(|(name, cs)| RegionConfig {
            name: (*name).into(),
            countries: cs.iter().map(|c| (*c).into()).collect(),
            ..Default::default()
        })
        .collect();
    let db = Regions::build(&configs, &geo).expect("database opens");
    let mut i = 0;
    group.bench_function("mmdb_lookup/country_to_region", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(db.lookup(black_box(ips[i])))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = balancers, routes, regions
}
criterion_main!(benches);
