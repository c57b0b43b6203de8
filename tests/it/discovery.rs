//! DNS discovery against a DNS server started by the test (`support::dns`): `dns` backends
//! follow record changes within TTL + 1 s with no failed request, SRV weights and priorities
//! are honoured, a DNS outage keeps the last good set, AAAA records become IPv6 backends, a
//! name that does not resolve yet leaves its pool waiting (503) unless `require = true`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::Value;

use crate::admin::{get as admin_get, sample};
use crate::support::backend::{BackendBuilder, TestBackend};
use crate::support::client::{get, http1, HttpClient};
use crate::support::dns::DnsServer;
use crate::support::eventually;
use crate::support::proxy::Proxy;

/// Records' TTL in these tests (seconds); `min_ttl` is lowered so it is used as is.
const TTL: u32 = 1;

/// Longest a change may take to show: TTL + 1 s, as the issue asks, plus room for a loaded
/// machine (the measured figure is printed).
const FOLLOW: Duration = Duration::from_secs(TTL as u64 + 1 + 3);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Fulcrum on 127.0.0.1:0 with one pool `web` whose backends are `backends` (TOML inline
/// tables), resolving through `dns`; admin on 127.0.0.1:0.
fn start(dns: &DnsServer, backends: &str, pool_dns: &str) -> Proxy {
    let text = format!(
        r#"
[global]
access_log = "off"
admin = "127.0.0.1:0"
resolvers = ["{}"]

[[listener]]
name = "web"
bind = "127.0.0.1:0"
pool = "web"

[[pool]]
name = "web"
backends = [{backends}]
[pool.dns]
min_ttl = "200ms"
{pool_dns}
"#,
        dns.addr
    );
    let config = fulcrum::config::Config::from_toml(&text, Path::new("dns.toml")).unwrap();
    Proxy::start(config)
}

/// Two backends on the same port, at 127.0.0.2 and 127.0.0.3 (one `dns` name, one port).
async fn pair() -> (TestBackend, TestBackend) {
    for _ in 0..20 {
        let a = BackendBuilder::new("a")
            .start_on("127.0.0.2:0".parse().unwrap())
            .await;
        let port = a.addr.port();
        let b_addr: SocketAddr = format!("127.0.0.3:{port}").parse().unwrap();
        if std::net::TcpListener::bind(b_addr).is_ok() {
            let b = BackendBuilder::new("b").start_on(b_addr).await;
            return (a, b);
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

/// Sends `n` requests; every one must be answered 200. Returns the count per backend.
async fn spread(client: &HttpClient, addr: SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let r = get(client, addr, "/").await;
        assert_eq!(r.status, StatusCode::OK, "a request failed: {}", r.body);
        *seen.entry(r.backend()).or_insert(0) += 1;
    }
    seen
}

async fn status(proxy: &Proxy) -> Value {
    let admin = crate::admin::admin_of(proxy);
    let body = admin_get(&http1(), format!("http://{admin}/api/v1/status"))
        .await
        .body;
    serde_json::from_str(&body).unwrap()
}

async fn metrics(proxy: &Proxy) -> String {
    let admin = crate::admin::admin_of(proxy);
    admin_get(&http1(), format!("http://{admin}/metrics"))
        .await
        .body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_backends_follow_record_changes_with_no_failed_request() {
    let dns = DnsServer::start().await;
    let (a, _b) = pair().await;
    let port = a.addr.port();
    dns.set_host("web.test", &[ip("127.0.0.2")], TTL);
    let proxy = start(&dns, &format!(r#"{{ dns = "web.test:{port}" }}"#), "");
    let client = http1();
    assert_eq!(
        spread(&client, proxy.addr, 10).await,
        [("a".into(), 10)].into()
    );

    // Scale out: b's address is added to the record.
    dns.set_host("web.test", &[ip("127.0.0.2"), ip("127.0.0.3")], TTL);
    let changed = Instant::now();
    eventually(FOLLOW, "b added from DNS", || async {
        spread(&client, proxy.addr, 4).await.contains_key("b")
    })
    .await;
    let added = changed.elapsed();

    // Scale in: a's address goes away; a drains, b serves everything.
    dns.set_host("web.test", &[ip("127.0.0.3")], TTL);
    let changed = Instant::now();
    eventually(FOLLOW, "a removed from DNS", || async {
        spread(&client, proxy.addr, 4).await == [("b".into(), 4)].into()
    })
    .await;
    let removed = changed.elapsed();
    eprintln!("record change followed in {added:?} (add), {removed:?} (remove); TTL {TTL} s");
    assert_eq!(
        spread(&client, proxy.addr, 10).await,
        [("b".into(), 10)].into()
    );

    // The status shows the name and what it resolves to now.
    let s = status(&proxy).await;
    let names = &s["pools"][0]["dns"];
    assert_eq!(names[0]["kind"], "dns");
    assert_eq!(names[0]["name"], format!("web.test:{port}"));
    assert_eq!(
        names[0]["addresses"],
        serde_json::json!([format!("127.0.0.3:{port}")])
    );
    let ok = sample(
        &metrics(&proxy).await,
        "fulcrum_dns_resolutions_total",
        &[("pool", "web"), ("result", "ok")],
    );
    assert!(ok.unwrap_or(0.0) >= 3.0, "ok resolutions: {ok:?}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_give_targets_ports_and_weights() {
    let dns = DnsServer::start().await;
    let heavy = BackendBuilder::new("heavy").start().await;
    let light = BackendBuilder::new("light").start().await;
    let fallback = BackendBuilder::new("fallback").start().await;
    dns.set_host("h.web.test", &[ip("127.0.0.1")], TTL);
    dns.set_host("l.web.test", &[ip("127.0.0.1")], TTL);
    dns.set_srv(
        "_http._tcp.web.test",
        &[
            (10, 3, heavy.addr.port(), "h.web.test"),
            (10, 1, light.addr.port(), "l.web.test"),
            // A higher priority value is a fallback: not used while priority 10 has targets.
            (20, 100, fallback.addr.port(), "l.web.test"),
        ],
        TTL,
    );
    let proxy = start(&dns, r#"{ srv = "_http._tcp.web.test" }"#, "");
    let client = http1();
    // Smooth weighted round robin: exactly 3 to 1 over whole cycles.
    let seen = spread(&client, proxy.addr, 400).await;
    assert_eq!(seen, [("heavy".into(), 300), ("light".into(), 100)].into());
    assert_eq!(fallback.count(), 0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_outage_keeps_the_last_good_set() {
    let dns = DnsServer::start().await;
    let (a, b) = pair().await;
    let port = a.addr.port();
    dns.set_host("web.test", &[ip("127.0.0.2"), ip("127.0.0.3")], TTL);
    let proxy = start(&dns, &format!(r#"{{ dns = "web.test:{port}" }}"#), "");
    let client = http1();
    let seen = spread(&client, proxy.addr, 10).await;
    assert_eq!(seen, [("a".into(), 5), ("b".into(), 5)].into());

    // The DNS server stops answering: resolutions time out, the pool keeps both backends.
    dns.silence(true);
    let before = dns.queries();
    eventually(FOLLOW * 3, "a resolution timed out", || async {
        let text = metrics(&proxy).await;
        sample(
            &text,
            "fulcrum_dns_resolutions_total",
            &[("pool", "web"), ("result", "timeout")],
        )
        .unwrap_or(0.0)
            >= 1.0
    })
    .await;
    assert!(dns.queries() > before, "Fulcrum kept asking");
    let seen = spread(&client, proxy.addr, 10).await;
    assert_eq!(seen, [("a".into(), 5), ("b".into(), 5)].into());
    let s = status(&proxy).await;
    let name = &s["pools"][0]["dns"][0];
    assert_eq!(name["addresses"].as_array().map(Vec::len), Some(2));
    assert!(
        name["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{name}"
    );
    drop(b);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aaaa_records_become_ipv6_backends() {
    let dns = DnsServer::start().await;
    let v6 = BackendBuilder::new("v6")
        .start_on("[::1]:0".parse().unwrap())
        .await;
    dns.set_host("web6.test", &[ip("::1")], TTL);
    let proxy = start(
        &dns,
        &format!(r#"{{ dns = "web6.test:{}" }}"#, v6.addr.port()),
        "",
    );
    let seen = spread(&http1(), proxy.addr, 3).await;
    assert_eq!(seen, [("v6".into(), 3)].into());
    let s = status(&proxy).await;
    assert_eq!(
        s["pools"][0]["backends"][0]["address"],
        format!("[::1]:{}", v6.addr.port())
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_does_not_resolve_yet_leaves_the_pool_waiting() {
    let dns = DnsServer::start().await;
    let a = BackendBuilder::new("a").start().await;
    let proxy = start(
        &dns,
        &format!(r#"{{ dns = "later.test:{}" }}"#, a.addr.port()),
        "",
    );
    let client = http1();
    // Started with no backend: 503, and the status says why.
    assert_eq!(
        get(&client, proxy.addr, "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let s = status(&proxy).await;
    let name = &s["pools"][0]["dns"][0];
    assert_eq!(name["addresses"], serde_json::json!([]));
    assert!(name["error"].as_str().is_some(), "{name}");
    let nx = sample(
        &metrics(&proxy).await,
        "fulcrum_dns_resolutions_total",
        &[("pool", "web"), ("result", "nxdomain")],
    );
    assert!(nx.unwrap_or(0.0) >= 1.0, "nxdomain resolutions: {nx:?}");
    // The name appears: the pool fills without a restart or a reload.
    dns.set_host("later.test", &[ip("127.0.0.1")], TTL);
    eventually(FOLLOW, "the pool filled from DNS", || async {
        get(&client, proxy.addr, "/").await.backend() == "a"
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_refuses_to_start_while_a_name_does_not_resolve() {
    let dns = DnsServer::start().await;
    let text = format!(
        r#"
[global]
access_log = "off"
resolvers = ["{}"]
[[listener]]
name = "web"
bind = "127.0.0.1:0"
pool = "web"
[[pool]]
name = "web"
backends = [{{ dns = "missing.test:80" }}]
[pool.dns]
require = true
"#,
        dns.addr
    );
    let config = fulcrum::config::Config::from_toml(&text, Path::new("dns.toml")).unwrap();
    let err = tokio::task::spawn_blocking(move || fulcrum::start(config).err())
        .await
        .unwrap()
        .expect("start must fail");
    let message = err.to_string();
    assert!(
        message.contains("missing.test:80") && message.contains("require"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_adds_a_name_fills_the_pool_from_dns() {
    let dns = DnsServer::start().await;
    let literal = BackendBuilder::new("literal").start().await;
    let found = BackendBuilder::new("found").start().await;
    dns.set_host("found.test", &[ip("127.0.0.1")], TTL);
    let dir = tempfile::tempdir().unwrap();
    let text = |backends: &str| {
        format!(
            "[global]\naccess_log = \"off\"\nresolvers = [\"{}\"]\n[[listener]]\nname = \"web\"\n\
             bind = \"127.0.0.1:0\"\npool = \"web\"\n[[pool]]\nname = \"web\"\nbackends = [{backends}]\n",
            dns.addr
        )
    };
    let path = dir.path().join("fulcrum.toml");
    std::fs::write(
        &path,
        text(&format!(r#"{{ address = "{}" }}"#, literal.addr)),
    )
    .unwrap();
    let mut proxy = Proxy::start(fulcrum::config::Config::from_file(&path).unwrap());
    proxy.handle.as_mut().unwrap().stop_watching();
    let client = http1();
    assert_eq!(
        spread(&client, proxy.addr, 4).await,
        [("literal".into(), 4)].into()
    );

    std::fs::write(
        &path,
        text(&format!(
            r#"{{ address = "{}" }}, {{ dns = "found.test:{}" }}"#,
            literal.addr,
            found.addr.port()
        )),
    )
    .unwrap();
    let handle = proxy.handle.take().unwrap();
    let (handle, reloaded) = tokio::task::spawn_blocking(move || {
        let r = handle.reload();
        (handle, r)
    })
    .await
    .unwrap();
    reloaded.expect("reload applies");
    proxy.handle = Some(handle);
    eventually(FOLLOW, "the added name's backend serves", || async {
        spread(&client, proxy.addr, 4).await.contains_key("found")
    })
    .await;
    assert_eq!(
        spread(&client, proxy.addr, 10).await,
        [("literal".into(), 5), ("found".into(), 5)].into()
    );
    proxy.shutdown().await;
}
