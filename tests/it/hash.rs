//! consistent_hash and sticky_cookie through the proxy: a key keeps its backend, two instances
//! (one in-process, one the real binary) agree on every key, a sticky client stays put until its
//! backend dies, and backends never see the sticky cookie.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use fulcrum::config::{BalanceKind, HashKey, PoolConfig};

use crate::support::backend::{BackendBuilder, TestBackend};
use crate::support::client::{get, http1, send, HttpClient, Reply};
use crate::support::eventually;
use crate::support::proxy::{accepts, backend, config, listener, write_file, Process, Proxy};

async fn backends(names: &[&str]) -> Vec<TestBackend> {
    let mut out = Vec::new();
    for name in names {
        // `Connection: close`: no pooled upstream connection outlives a stopped backend, so
        // stopping one makes the next connect fail for real.
        let b = BackendBuilder::new(name)
            .response_header("connection", "close")
            .start()
            .await;
        out.push(b);
    }
    out
}

fn hash_pool(addrs: &[SocketAddr]) -> PoolConfig {
    let mut pool = PoolConfig::new("cache", addrs.iter().map(|a| backend(*a, 1)).collect());
    pool.balance = BalanceKind::ConsistentHash;
    pool.hash_key = HashKey::Header(http::HeaderName::from_static("x-user-id"));
    pool
}

async fn get_with(client: &HttpClient, addr: SocketAddr, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::get(format!("http://{addr}/"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    send(client, req.body(Full::<Bytes>::default()).unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_user_id_same_backend() {
    let b = backends(&["a", "b", "c"]).await;
    let addrs: Vec<SocketAddr> = b.iter().map(|b| b.addr).collect();
    let proxy = Proxy::start(config(listener(), vec![hash_pool(&addrs)]));
    let client = http1();
    let mut seen: HashMap<String, String> = HashMap::new();
    for round in 0..4 {
        for user in 0..30 {
            let id = format!("user-{user}");
            let r = get_with(&client, proxy.addr, &[("x-user-id", &id)]).await;
            assert_eq!(r.status, 200);
            let first = seen.entry(id.clone()).or_insert_with(|| r.backend());
            assert_eq!(*first, r.backend(), "{id} moved in round {round}");
        }
    }
    let mut used: Vec<&String> = seen.values().collect();
    used.sort();
    used.dedup();
    assert_eq!(used.len(), 3, "30 users all on {used:?}");
    // No key: round robin over all three.
    let mut rr = Vec::new();
    for _ in 0..3 {
        rr.push(get(&client, proxy.addr, "/").await.backend());
    }
    rr.sort();
    assert_eq!(rr, ["a", "b", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_agree_on_every_key() {
    let b = backends(&["a", "b", "c", "d"]).await;
    let addrs: Vec<SocketAddr> = b.iter().map(|b| b.addr).collect();
    // Instance 1: the library, in this process.
    let one = Proxy::start(config(listener(), vec![hash_pool(&addrs)]));
    // Instance 2: the binary, another process, from the same pool written as a file.
    let list: Vec<String> = addrs
        .iter()
        .map(|a| format!("{{ address = \"{a}\" }}"))
        .collect();
    let text = format!(
        "[global]\naccess_log = \"off\"\n\n[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"cache\"\n\n[[pool]]\nname = \"cache\"\nbalance = \"consistent_hash\"\nhash_key = \"header:x-user-id\"\nbackends = [{}]\n",
        list.join(", ")
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "fulcrum.toml", &text);
    let two = tokio::task::spawn_blocking(move || Process::run(&path))
        .await
        .unwrap();
    let bind = two.addr("web");

    let client = http1();
    let mut per_backend: HashMap<String, usize> = HashMap::new();
    for key in 0..1_000 {
        let id = format!("{key}");
        let x = get_with(&client, one.addr, &[("x-user-id", &id)]).await;
        let y = get_with(&client, bind, &[("x-user-id", &id)]).await;
        assert_eq!((x.status.as_u16(), y.status.as_u16()), (200, 200));
        assert_eq!(x.backend(), y.backend(), "instances disagree on key {id}");
        *per_backend.entry(x.backend()).or_default() += 1;
    }
    assert_eq!(per_backend.len(), 4, "{per_backend:?}");
}

/// The value of the `FULCRUM_STICKY` cookie a response sets, if any.
fn sticky_set(r: &Reply) -> Option<String> {
    let all: Vec<&str> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(all.len() <= 1, "{all:?}");
    let v = all.first()?;
    assert!(
        v.ends_with("; Path=/; HttpOnly; SameSite=Lax"),
        "attributes: {v}"
    );
    Some(v.split(';').next().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_cookie_keeps_a_client_until_its_backend_dies() {
    let mut b = backends(&["a", "b", "c"]).await;
    let addrs: Vec<SocketAddr> = b.iter().map(|b| b.addr).collect();
    let mut pool = PoolConfig::new("web", addrs.iter().map(|a| backend(*a, 1)).collect());
    pool.balance = BalanceKind::StickyCookie;
    let proxy = Proxy::start(config(listener(), vec![pool]));
    let client = http1();

    // First visit: a backend is picked and the cookie set; it names the backend, not its address.
    let first = get_with(&client, proxy.addr, &[("cookie", "theme=dark")]).await;
    let home = first.backend();
    let cookie = sticky_set(&first).expect("first response sets the sticky cookie");
    assert!(cookie.starts_with("FULCRUM_STICKY="));
    for a in &addrs {
        assert!(!cookie.contains(&a.ip().to_string()) && !cookie.contains(&a.port().to_string()));
    }
    // 50 more: all on the same backend, no new cookie.
    let header = format!("theme=dark; {cookie}");
    for i in 0..50 {
        let r = get_with(&client, proxy.addr, &[("cookie", &header)]).await;
        assert_eq!(r.backend(), home, "request {i} left its backend");
        assert_eq!(sticky_set(&r), None, "request {i} re-set the cookie");
    }

    // The backend goes away: the client moves, and gets a cookie for its new backend.
    let at = b.iter().position(|x| x.name == home).unwrap();
    let dead = b.remove(at);
    let dead_addr = dead.addr;
    assert_cookies_clean(&dead);
    drop(dead);
    eventually(
        Duration::from_secs(5),
        "the dead backend to stop accepting",
        || async { !accepts(dead_addr) },
    )
    .await;
    let moved = get_with(&client, proxy.addr, &[("cookie", &header)]).await;
    assert_eq!(moved.status, 200);
    let new_home = moved.backend();
    assert_ne!(new_home, home);
    let new_cookie = sticky_set(&moved).expect("the cookie is replaced");
    assert_ne!(new_cookie, cookie);
    let header = format!("theme=dark; {new_cookie}");
    for i in 0..10 {
        let r = get_with(&client, proxy.addr, &[("cookie", &header)]).await;
        assert_eq!(r.backend(), new_home, "request {i} after the move");
        assert_eq!(sticky_set(&r), None);
    }

    b.iter().for_each(assert_cookies_clean);
    assert!(b.iter().map(TestBackend::count).sum::<usize>() >= 11);
}

/// The backend never saw the sticky cookie; the client's other cookie arrived intact.
fn assert_cookies_clean(backend: &TestBackend) {
    for req in backend.requests() {
        let cookies: Vec<&str> = req
            .headers
            .get_all("cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(cookies, ["theme=dark"], "{} saw {cookies:?}", backend.name);
    }
}
