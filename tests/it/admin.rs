//! The admin API: metrics move with traffic and pass `promtool`, drain/enable, the token,
//! JSON errors, reload through the API, and the status page in headless Chromium.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;

use crate::support::backend::BackendBuilder;
use crate::support::client::{http1, send, HttpClient, Reply};
use crate::support::proxy::{any_port, config, listener, pool, write_file, Config, Proxy};
use crate::support::{eventually, require};
use fulcrum::config::{ListenerConfig, PoolId};

/// A quiet config with the admin server on 127.0.0.1:0.
pub(crate) fn with_admin(mut c: Config) -> Config {
    c.global.admin = Some(any_port());
    c
}

pub(crate) fn admin_of(proxy: &Proxy) -> SocketAddr {
    proxy.handle.as_ref().unwrap().admin_addr().unwrap()
}

pub(crate) async fn call(
    client: &HttpClient,
    method: Method,
    url: String,
    token: Option<&str>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    send(client, req.body(Full::new(Bytes::new())).unwrap()).await
}

pub(crate) async fn get(client: &HttpClient, url: String) -> Reply {
    call(client, Method::GET, url, None).await
}

fn json(reply: &Reply) -> Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body))
}

/// The value of the sample of `name` whose labels include every `labels` pair.
pub(crate) fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// `promtool check metrics` accepts `text` (`promtool`: from [`require`]).
pub(crate) fn promtool_check(promtool: &Path, text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "metrics.txt", text);
    let out = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_traffic_and_pass_promtool() {
    let a = BackendBuilder::new("a").start().await;
    let b = BackendBuilder::new("b").start().await;
    let proxy = Proxy::start(with_admin(config(
        listener(),
        vec![pool("metrics-pool", &[a.addr, b.addr])],
    )));
    let admin = admin_of(&proxy);
    let client = http1();
    for _ in 0..10 {
        let r = get(&client, format!("http://{}/x", proxy.addr)).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    // A request is counted when its exchange finishes, which may be just after the client
    // read the last byte of its response: the scrape waits for all ten.
    let per_backend_in = |text: &str, addr: SocketAddr| {
        sample(
            text,
            "fulcrum_requests_total",
            &[
                ("pool", "metrics-pool"),
                ("backend", &addr.to_string()),
                ("code", "200"),
            ],
        )
        .unwrap_or(0.0)
    };
    let text = eventually(Duration::from_secs(5), "10 requests counted", || async {
        let metrics = get(&client, format!("http://{admin}/metrics")).await;
        assert_eq!(metrics.status, StatusCode::OK);
        let text = metrics.body;
        (per_backend_in(&text, a.addr) + per_backend_in(&text, b.addr) == 10.0).then_some(text)
    })
    .await;
    let per_backend = |addr: SocketAddr| {
        sample(
            &text,
            "fulcrum_requests_total",
            &[
                ("pool", "metrics-pool"),
                ("backend", &addr.to_string()),
                ("code", "200"),
            ],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(per_backend(a.addr), 5.0, "{text}");
    assert_eq!(per_backend(b.addr), 5.0, "{text}");
    let count = sample(
        &text,
        "fulcrum_request_duration_seconds_count",
        &[("listener", "web"), ("pool", "metrics-pool")],
    );
    assert!(count.is_some_and(|c| c >= 10.0), "{text}");
    let up = sample(
        &text,
        "fulcrum_backend_up",
        &[("pool", "metrics-pool"), ("backend", &a.addr.to_string())],
    );
    assert_eq!(up, Some(1.0), "{text}");
    for name in [
        "fulcrum_backend_inflight",
        "fulcrum_connections_active",
        "fulcrum_config_reloads_total",
        "process_cpu_seconds_total",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    // More traffic: the counter moves.
    for _ in 0..4 {
        get(&client, format!("http://{}/y", proxy.addr)).await;
    }
    let text = eventually(Duration::from_secs(5), "14 requests counted", || async {
        let text = get(&client, format!("http://{admin}/metrics")).await.body;
        (per_backend_in(&text, a.addr) + per_backend_in(&text, b.addr) == 14.0).then_some(text)
    })
    .await;
    // Last, so that without promtool everything above is still checked.
    let Some(promtool) = require("promtool") else {
        return;
    };
    promtool_check(&promtool, &text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_lets_in_flight_finish_and_enable_restores() {
    let slow = Duration::from_millis(600);
    let a = BackendBuilder::new("a").delay(slow).start().await;
    let b = BackendBuilder::new("b").delay(slow).start().await;
    let proxy = Proxy::start(with_admin(config(
        listener(),
        vec![pool("drain-pool", &[a.addr, b.addr])],
    )));
    let admin = admin_of(&proxy);
    let client = http1();
    let url = format!("http://{}/", proxy.addr);
    let first = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move { get(&client, url).await }
    });
    eventually(
        Duration::from_secs(5),
        "the first request to reach a backend",
        || async { a.count() + b.count() == 1 },
    )
    .await;
    let (busy, other) = if a.count() == 1 { (&a, &b) } else { (&b, &a) };
    let action = |what: &str| {
        format!(
            "http://{admin}/api/v1/pools/drain-pool/backends/{}/{what}",
            busy.addr
        )
    };
    let r = call(&client, Method::POST, action("drain"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let status = json(&get(&client, format!("http://{admin}/api/v1/status")).await);
    let backends = status["pools"][0]["backends"].as_array().unwrap().clone();
    let drained = backends
        .iter()
        .find(|b| b["address"] == busy.addr.to_string())
        .unwrap();
    assert_eq!(drained["state"], "draining", "{status}");
    assert_eq!(drained["inflight"], 1, "{status}");

    let burst: Vec<_> = (0..4)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { get(&client, url).await })
        })
        .collect();
    for r in burst {
        assert_eq!(r.await.unwrap().backend(), other.name);
    }
    let first = first.await.unwrap();
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.backend(), busy.name, "the in-flight request finished");
    assert_eq!(busy.count(), 1);

    let r = call(&client, Method::POST, action("enable"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let burst: Vec<_> = (0..4)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { get(&client, url).await })
        })
        .collect();
    for r in burst {
        r.await.unwrap();
    }
    assert!(busy.count() > 1, "enable restores the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_enforced_and_errors_are_json() {
    let a = BackendBuilder::new("a").start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = write_file(dir.path(), "token", "s3cret\n");
    let mut c = with_admin(config(listener(), vec![pool("p", &[a.addr])]));
    c.global.admin_token_file = Some(token);
    let proxy = Proxy::start(c);
    let admin = admin_of(&proxy);
    let client = http1();
    let status = format!("http://{admin}/api/v1/status");

    let r = get(&client, status.clone()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(json(&r)["error"].is_string());
    let r = call(&client, Method::GET, status.clone(), Some("wrong")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = call(
        &client,
        Method::GET,
        format!("http://{admin}/metrics"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = call(&client, Method::GET, status.clone(), Some("s3cret")).await;
    assert_eq!(r.status, StatusCode::OK);
    let body = json(&r);
    assert_eq!(body["pools"][0]["backends"][0]["state"], "up");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    // The page itself carries no data.
    let r = get(&client, format!("http://{admin}/")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("<html"));

    let t = Some("s3cret");
    let r = call(&client, Method::GET, format!("http://{admin}/nope"), t).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(json(&r)["status"], 404);
    let r = call(
        &client,
        Method::GET,
        format!("http://{admin}/api/v1/reload"),
        t,
    )
    .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(json(&r)["status"], 405);
    let r = call(
        &client,
        Method::DELETE,
        format!("http://{admin}/metrics"),
        t,
    )
    .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let drain = format!("http://{admin}/api/v1/pools/p/backends/10.9.9.9:1/drain");
    let r = call(&client, Method::POST, drain, t).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(json(&r)["error"].as_str().unwrap().contains("backend"));
}

#[test]
fn a_public_admin_address_needs_a_token() {
    let mut c = config(
        listener(),
        vec![pool("p", &["127.0.0.1:9".parse().unwrap()])],
    );
    c.global.admin = Some("0.0.0.0:0".parse().unwrap());
    let err = fulcrum::start(c).unwrap_err().to_string();
    assert!(err.contains("not loopback"), "{err}");
}

fn file_config(dir: &Path, backend: SocketAddr, extra: &str) -> std::path::PathBuf {
    let text = format!(
        "[global]\naccess_log = \"off\"\nworkers = 1\nadmin = \"127.0.0.1:0\"\n\n\
         [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"p\"\n\n\
         [[pool]]\nname = \"p\"\n{extra}backends = [{{ address = \"{backend}\" }}]\n"
    );
    write_file(dir, "fulcrum.toml", &text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_through_the_api_reports_errors_as_json() {
    let a = BackendBuilder::new("a").start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = file_config(dir.path(), a.addr, "");
    let mut handle = fulcrum::start(fulcrum::Config::from_file(&path).unwrap()).unwrap();
    handle.stop_watching();
    let admin = handle.admin_addr().unwrap();
    let client = http1();
    let reload = format!("http://{admin}/api/v1/reload");

    file_config(dir.path(), a.addr, "retries = 1\n");
    let r = call(
        &client,
        Method::POST,
        format!("{reload}?dry_run=true"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let body = json(&r);
    assert!(body["changes"].to_string().contains("retries"), "{body}");

    let r = call(&client, Method::POST, reload.clone(), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(json(&r)["result"]["ok"], true);

    // Series of a backend a reload removed leave the output.
    let web = handle.listener_addr("web").unwrap();
    assert_eq!(
        get(&client, format!("http://{web}/")).await.status,
        StatusCode::OK
    );
    let metrics = get(&client, format!("http://{admin}/metrics")).await.body;
    assert!(
        metrics.contains(&format!("backend=\"{}\"", a.addr)),
        "{metrics}"
    );
    let b = BackendBuilder::new("b").start().await;
    file_config(dir.path(), b.addr, "");
    let r = call(&client, Method::POST, reload.clone(), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let metrics = get(&client, format!("http://{admin}/metrics")).await.body;
    assert!(!metrics.contains(&format!("{}", a.addr)), "{metrics}");
    assert!(
        metrics.contains(&format!("backend=\"{}\"", b.addr)),
        "{metrics}"
    );

    file_config(dir.path(), a.addr, "retries = -1\n");
    let r = call(&client, Method::POST, reload.clone(), None).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let body = json(&r);
    assert_eq!(body["ok"], false);
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("fulcrum.toml:13:") && error.contains("retries"),
        "{error}"
    );

    let status = json(&get(&client, format!("http://{admin}/api/v1/status")).await);
    assert_eq!(status["last_reload"]["ok"], false, "{status}");
    assert!(status["last_reload"]["message"]
        .as_str()
        .unwrap()
        .contains("retries"));
    let metrics = get(&client, format!("http://{admin}/metrics")).await.body;
    assert!(
        sample(
            &metrics,
            "fulcrum_config_reloads_total",
            &[("result", "error")]
        )
        .is_some_and(|v| v >= 1.0),
        "{metrics}"
    );
    drop(handle);
}

/// Headless Chromium loads the status page of a running Fulcrum; every backend of the config
/// shows with its state. The screenshot lands in `target/status.png`.
/// `GET /api/v1/history`: per-second samples of the listener and pool move with traffic
/// (requests/s, error rate, p50/p99), and the token guards it. The names are this test's
/// own: the metrics registry is the process's, shared by every test of this binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_samples_move_with_traffic() {
    let ok = BackendBuilder::new("ok").start().await;
    let bad = BackendBuilder::new("bad").status(500).start().await;
    let mut c = config(
        ListenerConfig::http("hist-web", any_port(), PoolId::new(0)),
        vec![pool("hist-pool", &[ok.addr, bad.addr])],
    );
    c.pools[0].retries = 0;
    let proxy = Proxy::start(with_admin(c));
    let admin = admin_of(&proxy);
    let client = http1();
    let url = format!("http://{admin}/api/v1/history");
    let series = |doc: &Value, kind: &str, name: &str| -> Value {
        doc[kind]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["name"] == name).cloned())
            .unwrap_or(Value::Null)
    };
    let moving = |s: &Value| -> bool {
        s["rps"]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| x.as_f64().is_some_and(|r| r > 0.0)))
    };
    // Traffic until a sample shows it (the sampler runs once a second).
    let doc = eventually(Duration::from_secs(10), "a sample with traffic", || async {
        for _ in 0..10 {
            get(&client, format!("http://{}/", proxy.addr)).await;
        }
        let doc = json(&get(&client, url.clone()).await);
        let (l, p) = (
            series(&doc, "listeners", "hist-web"),
            series(&doc, "pools", "hist-pool"),
        );
        (moving(&l) && moving(&p)).then_some(doc)
    })
    .await;
    assert_eq!(doc["interval_seconds"], 1, "{doc}");
    assert_eq!(doc["samples"], 600, "{doc}");
    let pool_series = series(&doc, "pools", "hist-pool");
    assert_eq!(pool_series["protocol"], "http");
    let busy = pool_series["rps"]
        .as_array()
        .unwrap()
        .iter()
        .position(|x| x.as_f64().is_some_and(|r| r > 0.0))
        .unwrap();
    let at = |field: &str| pool_series[field][busy].as_f64();
    let error_rate = at("error_rate").unwrap();
    assert!(error_rate > 0.0 && error_rate < 1.0, "{pool_series}");
    let (p50, p99) = (at("p50_ms").unwrap(), at("p99_ms").unwrap());
    assert!(p50 > 0.0 && p99 >= p50, "{pool_series}");
    for field in ["rps", "error_rate", "p50_ms", "p99_ms"] {
        assert_eq!(
            pool_series[field].as_array().unwrap().len(),
            pool_series["rps"].as_array().unwrap().len(),
            "{field}"
        );
    }
    let backends = pool_series["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 2, "{pool_series}");

    // The rings grow a sample a second.
    let len = |doc: &Value| {
        series(doc, "pools", "hist-pool")["rps"]
            .as_array()
            .map_or(0, Vec::len)
    };
    let before = len(&doc);
    eventually(Duration::from_secs(5), "another sample", || async {
        len(&json(&get(&client, url.clone()).await)) > before
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_headless_chromium_shows_every_backend() {
    let Some(chromium) = require("chromium") else {
        return;
    };
    let a = BackendBuilder::new("a").start().await;
    let b = BackendBuilder::new("b").start().await;
    let c = BackendBuilder::new("c").start().await;
    let proxy = Proxy::start(with_admin(config(
        listener(),
        vec![pool("web", &[a.addr, b.addr]), pool("api", &[c.addr])],
    )));
    let admin = admin_of(&proxy);
    let client = http1();
    for _ in 0..6 {
        get(&client, format!("http://{}/", proxy.addr)).await;
    }
    let drain = format!("http://{admin}/api/v1/pools/web/backends/{}/drain", b.addr);
    assert_eq!(
        call(&client, Method::POST, drain, None).await.status,
        StatusCode::OK
    );

    let profile = tempfile::tempdir().unwrap();
    let target = concat!(env!("CARGO_MANIFEST_DIR"), "/target");
    let url = format!("http://{admin}/");
    let chromium = |extra: &[String]| {
        let mut cmd = std::process::Command::new(&chromium);
        cmd.args(crate::support::browser::HEADLESS)
            .arg("--virtual-time-budget=5000")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url);
        cmd
    };
    let dump = tokio::task::spawn_blocking({
        let mut cmd = chromium(&["--dump-dom".to_string()]);
        move || cmd.output()
    })
    .await
    .unwrap()
    .unwrap();
    let dom = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    for (addr, state) in [(a.addr, "up"), (b.addr, "draining"), (c.addr, "up")] {
        let row = format!("data-backend=\"{addr}\" data-state=\"{state}\"");
        assert!(dom.contains(&row), "{row} not in the page:\n{dom}");
    }
    assert!(dom.contains(">web<") || dom.contains(">web<span"), "{dom}");

    let shot = tokio::task::spawn_blocking({
        let mut cmd = chromium(&[
            format!("--screenshot={target}/status.png"),
            "--window-size=1280,720".to_string(),
        ]);
        move || cmd.output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    assert!(Path::new(target).join("status.png").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_bytes_are_counted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = crate::support::tcp::echo().await;
    let proxy = Proxy::start(with_admin(config(
        fulcrum::config::ListenerConfig::tcp(
            "admin-tcp",
            any_port(),
            fulcrum::config::PoolId::new(0),
        ),
        vec![pool("tcp-pool", &[backend.addr])],
    )));
    let admin = admin_of(&proxy);
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(&[7u8; 1000]).await.unwrap();
    let mut back = [0u8; 1000];
    s.read_exact(&mut back).await.unwrap();
    drop(s);
    let client = http1();
    let what = "1000 bytes counted each way";
    let text = eventually(Duration::from_secs(5), what, || async {
        let text = get(&client, format!("http://{admin}/metrics")).await.body;
        let bytes = |direction| {
            sample(
                &text,
                "fulcrum_tcp_bytes_total",
                &[("listener", "admin-tcp"), ("direction", direction)],
            )
            .unwrap_or(0.0)
        };
        if bytes("upstream") >= 1000.0 && bytes("downstream") >= 1000.0 {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await;
    let Some(promtool) = require("promtool") else {
        return;
    };
    promtool_check(&promtool, &text);
}

#[test]
fn demo_backend_killed_and_revived_from_the_admin_api() {
    // The demo's own pieces, in process: its backends (their own runtime, so started and
    // dropped outside the test's), its config (admin on :0).
    let demo = fulcrum::demo::start_backends().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(demo_kill_and_revive(&demo));
    drop(rt);
    drop(demo);
}

async fn demo_kill_and_revive(demo: &fulcrum::demo::DemoBackends) {
    let mut cfg = fulcrum::demo::config(any_port(), Some(any_port()), &demo.addrs);
    cfg.global.access_log = fulcrum::config::AccessLogTarget::Off;
    // A short ejection, so the revived backend is back in rotation quickly.
    cfg.pools[0].passive.eject_for = Duration::from_millis(200);
    let options = fulcrum::Options {
        admin_extension: Some(demo.admin_extension()),
        ..fulcrum::Options::default()
    };
    let proxy = Proxy::start_with(cfg, options);
    let admin = admin_of(&proxy);
    let client = http1();
    let served_by = |r: &Reply| r.body.split_whitespace().nth(2).unwrap_or("").to_string();

    // The page's data names the demo backends.
    let status = json(&get(&client, format!("http://{admin}/api/v1/status")).await);
    assert_eq!(status["demo"].as_array().map(Vec::len), Some(4), "{status}");

    let kill = format!("http://{admin}/api/v1/demo/backends/east-1/kill");
    assert_eq!(call(&client, Method::POST, kill, None).await.status, 200);
    // Killed: every request still succeeds (retried elsewhere, then ejected), none from east-1.
    for _ in 0..40 {
        let r = crate::support::client::get(&client, proxy.addr, "/").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_ne!(served_by(&r), "east-1", "a killed backend answered");
    }
    let revive = format!("http://{admin}/api/v1/demo/backends/east-1/revive");
    assert_eq!(call(&client, Method::POST, revive, None).await.status, 200);
    // Back in rotation once its (short) ejection ends: traffic until it answers, bounded.
    eventually(
        Duration::from_secs(5),
        "east-1 to serve again after revive",
        || async {
            let r = crate::support::client::get(&client, proxy.addr, "/").await;
            assert_eq!(r.status, 200);
            served_by(&r) == "east-1"
        },
    )
    .await;
    let unknown = format!("http://{admin}/api/v1/demo/backends/nope/kill");
    assert_eq!(call(&client, Method::POST, unknown, None).await.status, 404);
}

/// One `Connection: close` GET to `proxy` from `source` (a client of the demo's regions);
/// the demo backend that answered.
async fn demo_get_from(source: &str, proxy: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    let mut stream = socket.connect(proxy).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    // "hello from east-1 (us-east): GET /"
    reply
        .split("hello from ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("")
        .to_string()
}

/// The demo's status page, as its banner tells a new user: drain both us-east backends by
/// clicking their buttons, and us-east clients fail over to us-west; enable them again and
/// they come back. A failed button request shows on the page.
#[test]
fn the_demo_page_drains_and_enables_backends_by_click() {
    let Some(chromium) = require("chromium") else {
        return;
    };
    // The demo's backends run on their own runtime: started and dropped outside the test's.
    let demo = fulcrum::demo::start_backends().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(click_drain_and_enable(&chromium, &demo));
    drop(rt);
    drop(demo);
}

async fn click_drain_and_enable(chromium: &Path, demo: &fulcrum::demo::DemoBackends) {
    use crate::support::browser::Browser;
    let mut cfg = fulcrum::demo::config(any_port(), Some(any_port()), &demo.addrs);
    cfg.global.access_log = fulcrum::config::AccessLogTarget::Off;
    let options = fulcrum::Options {
        admin_extension: Some(demo.admin_extension()),
        ..fulcrum::Options::default()
    };
    let proxy = Proxy::start_with(cfg, options);
    let admin = admin_of(&proxy);
    // east-1 and east-2, the first two demo backends.
    let east = [demo.addrs[0], demo.addrs[1]];
    assert!(demo_get_from("127.1.0.1", proxy.addr)
        .await
        .starts_with("east-"));

    let mut page = Browser::open(chromium, &format!("http://{admin}/")).await;
    let state = |addr: SocketAddr| {
        format!("document.querySelector('tr[data-backend=\"{addr}\"]')?.dataset.state ?? null")
    };
    // Clicks the row's drain/enable button (its first button).
    let click = |addr: SocketAddr| {
        format!("document.querySelector('tr[data-backend=\"{addr}\"] button').click(); true")
    };
    for (action, want) in [("drain", "draining"), ("enable", "up")] {
        for addr in east {
            eventually(Duration::from_secs(10), "the row to be drawn", async || {
                page.eval(&state(addr)).await.is_string()
            })
            .await;
            let label = page
                .eval(&format!(
                    "document.querySelector('tr[data-backend=\"{addr}\"] button').textContent"
                ))
                .await;
            assert_eq!(label, action, "the button of {addr}");
            page.eval(&click(addr)).await;
            let what = format!("{addr} shown {want} after the click");
            eventually(Duration::from_secs(10), &what, async || {
                page.eval(&state(addr)).await == want
            })
            .await;
        }
        // What the page shows is what the balancer does.
        let served = demo_get_from("127.1.0.1", proxy.addr).await;
        if action == "drain" {
            assert!(
                served.starts_with("west-"),
                "an east client was served by {served}"
            );
        } else {
            eventually(
                Duration::from_secs(5),
                "east clients back in us-east",
                || async {
                    demo_get_from("127.1.0.1", proxy.addr)
                        .await
                        .starts_with("east-")
                },
            )
            .await;
        }
    }

    // The demo's kill and revive buttons (the row's second button) switch the backend.
    let second = format!(
        "document.querySelector('tr[data-backend=\"{}\"] button + button')",
        east[0]
    );
    for (label, next) in [("kill", "revive"), ("revive", "kill")] {
        let shown = page.eval(&format!("{second}.textContent")).await;
        assert!(
            shown.as_str().is_some_and(|t| t.starts_with(label)),
            "the demo button of {}: {shown}",
            east[0]
        );
        page.eval(&format!("{second}.click(); true")).await;
        let what = format!("the demo button to offer {next} after {label}");
        eventually(Duration::from_secs(10), &what, async || {
            let shown = page.eval(&format!("{second}?.textContent ?? null")).await;
            shown.as_str().is_some_and(|t| t.starts_with(next))
        })
        .await;
    }

    // A request the API refuses is shown, not swallowed.
    page.eval("act('no-such-pool', '127.0.0.1:1', 'drain')")
        .await;
    let shown = page
        .eval("document.getElementById('action-error').textContent")
        .await;
    assert!(
        shown.as_str().is_some_and(|t| t.contains("404")),
        "error shown on the page: {shown}"
    );
    drop(page);
    drop(proxy);
}

/// A tcp pool on the status document: a node answering with the other role is `standby`
/// (not `down`), connections are counted per backend, and the tcp listener shows its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_pool_shows_connections_bytes_and_standby_nodes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::support::flip::RoleServer;
    let primary = RoleServer::start(true).await;
    let replica = RoleServer::start(false).await;
    let mut p = pool("write", &[primary.addr, replica.addr]);
    let mut health = fulcrum::config::HealthConfig::tcp();
    health.send = "INFO replication\r\n".into();
    health.expect = "role:master".into();
    health.interval = Duration::from_millis(200);
    health.rise = 1;
    health.fall = 1;
    p.health = Some(health);
    let proxy = Proxy::start(with_admin(config(
        fulcrum::config::ListenerConfig::tcp("write", any_port(), fulcrum::config::PoolId::new(0)),
        vec![p],
    )));
    let admin = admin_of(&proxy);
    let client = http1();
    let status = async || json(&get(&client, format!("http://{admin}/api/v1/status")).await);
    eventually(
        Duration::from_secs(5),
        "the replica shown as standby",
        async || {
            let s = status().await;
            let states: Vec<String> = s["pools"][0]["backends"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| b["state"].as_str().unwrap_or("").to_string())
                .collect();
            if states == ["up", "standby"] {
                Ok(())
            } else {
                Err(s)
            }
        },
    )
    .await;
    for _ in 0..3 {
        let mut c = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        c.write_all(b"INFO\r\n").await.unwrap();
        let mut reply = [0u8; 64];
        assert!(c.read(&mut reply).await.unwrap() > 0);
    }
    eventually(
        Duration::from_secs(5),
        "connections and bytes counted",
        async || {
            let s = status().await;
            let ok = s["pools"][0]["protocol"] == "tcp"
                && s["pools"][0]["backends"][0]["connections"] == 3
                && s["pools"][0]["backends"][1]["connections"] == 0
                && s["listeners"][0]["bytes_up"]
                    .as_u64()
                    .is_some_and(|b| b >= 18)
                && s["listeners"][0]["bytes_down"]
                    .as_u64()
                    .is_some_and(|b| b > 0);
            if ok {
                Ok(())
            } else {
                Err(s)
            }
        },
    )
    .await;
}
