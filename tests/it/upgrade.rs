//! Binary upgrade (SIGUSR2) and the orchestrator probes, driving the real binary: a new
//! process takes over under load with no failed request and no refused connection and the
//! old one is gone within `shutdown_grace`; a config broken before SIGUSR2 leaves the old
//! process serving; `/ready` turns 503 the moment a shutdown begins while the request in
//! flight finishes; `/live` and `/ready` need no admin token.
//!
//! The old and the new process share stderr (the new one inherits it), so these tests read
//! the log from a file (`support::logged`) rather than through `support::proxy::Process`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::support::backend::BackendBuilder;
use crate::support::client::{get_once, http1};
use crate::support::eventually;
use crate::support::flip::FlipBackend;
use crate::support::logged::{alive, field, status_of, Logged};
use crate::support::proxy::write_file;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: AtomicUsize,
    refused: AtomicUsize,
    /// Requests retried because the old process closed an idle keep-alive connection as the
    /// request was sent (what HTTP clients do for idempotent requests, RFC 9112 9.3.1).
    retried: AtomicUsize,
}

/// A keep-alive client: requests back to back on one connection, reconnecting when the
/// server closes it; a request that met a closing idle connection is sent again once.
async fn keep_alive_client(addr: SocketAddr, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut sender = None;
    let mut used = false;
    while !stop.load(Ordering::Relaxed) {
        if sender
            .as_ref()
            .is_none_or(|s: &hyper::client::conn::http1::SendRequest<Empty<Bytes>>| s.is_closed())
        {
            let Ok(stream) = TcpStream::connect(addr).await else {
                tally.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let Ok((s, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
            else {
                tally.failed.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            tokio::spawn(conn);
            sender = Some(s);
            used = false;
        }
        let Some(s) = sender.as_mut() else { continue };
        if s.ready().await.is_err() {
            sender = None;
            continue;
        }
        let req = Request::get("/ka")
            .header("host", "t")
            .body(Empty::new())
            .unwrap();
        let answered = match s.send_request(req).await {
            Ok(resp) => resp.status() == 200 && resp.into_body().collect().await.is_ok(),
            Err(e) if used && (e.is_incomplete_message() || e.is_canceled()) => {
                tally.retried.fetch_add(1, Ordering::Relaxed);
                sender = None;
                continue;
            }
            Err(_) => false,
        };
        if answered {
            tally.ok.fetch_add(1, Ordering::Relaxed);
            used = true;
        } else {
            tally.failed.fetch_add(1, Ordering::Relaxed);
            sender = None;
        }
    }
}

/// A new connection every 20 ms, one request each.
async fn new_connections(addr: SocketAddr, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut every = tokio::time::interval(Duration::from_millis(20));
    while !stop.load(Ordering::Relaxed) {
        every.tick().await;
        let tally = Arc::clone(&tally);
        tokio::spawn(async move {
            match status_of(addr, "/new", None).await {
                Some(200) => tally.ok.fetch_add(1, Ordering::Relaxed),
                Some(_) => tally.failed.fetch_add(1, Ordering::Relaxed),
                None => tally.refused.fetch_add(1, Ordering::Relaxed),
            };
        });
    }
}

fn config_text(backends: &[SocketAddr], grace: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|a| format!("{{ address = \"{a}\" }}"))
        .collect();
    format!(
        r#"[global]
access_log = "off"
admin = "127.0.0.1:0"
shutdown_grace = "{grace}"

[[listener]]
name = "web"
bind = "127.0.0.1:0"
pool = "p"

[[pool]]
name = "p"
backends = [{}]
[pool.health]
kind = "http"
path = "/healthz"
interval = "10s"
fall = 1
rise = 2
"#,
        list.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigusr2_under_load_hands_over_without_a_failed_request() {
    let good = FlipBackend::start("good").await;
    // Serves requests but fails its checks: down in the old process, and it must get nothing
    // from the new one before the new one's own checks (the down set is handed over).
    let sick = FlipBackend::start("sick").await;
    sick.set_health(503);
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "fulcrum.toml",
        &config_text(&[good.addr, sick.addr], "5s"),
    );
    let p = Logged::run(&path, dir.path().join("log"));
    let started = p.line("fulcrum started", 0).await;
    let addr: SocketAddr = field(&started, "(\"web\", ").unwrap().parse().unwrap();
    p.line(&format!("{} down", sick.addr), 0).await;
    let sick_before = sick.hits();

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        load.push(tokio::spawn(keep_alive_client(
            addr,
            Arc::clone(&tally),
            Arc::clone(&stop),
        )));
    }
    load.push(tokio::spawn(new_connections(
        addr,
        Arc::clone(&tally),
        Arc::clone(&stop),
    )));
    eventually(WAIT, "load flowing", || async {
        tally.ok.load(Ordering::Relaxed) > 50
    })
    .await;

    let old = p.child.id();
    p.signal(old, "USR2");
    let sent = Instant::now();
    let spawned = p.line("new process started", 0).await;
    let new: u32 = field(&spawned, "pid=").unwrap().parse().unwrap();
    p.line("the new process serves; draining", 0).await;
    eventually(
        Duration::from_secs(7),
        "the old process to exit",
        || async { !alive(old) },
    )
    .await;
    let gone = sent.elapsed();
    let served_before = tally.ok.load(Ordering::Relaxed);
    // The new process alone serves now.
    eventually(WAIT, "requests served by the new process", || async {
        tally.ok.load(Ordering::Relaxed) > served_before + 100
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    assert!(alive(new), "the new process {new} is not running");
    let (ok, failed, refused, retried) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
        tally.retried.load(Ordering::Relaxed),
    );
    eprintln!("upgrade under load: {ok} ok, {failed} failed, {refused} refused, {retried} retried on a closing keep-alive connection; old process gone {gone:?} after SIGUSR2");
    assert_eq!((failed, refused), (0, 0), "{}", p.text());
    assert!(gone < Duration::from_secs(6), "old process took {gone:?}");
    assert_eq!(
        sick.hits(),
        sick_before,
        "the new process sent traffic to a backend the old one had down"
    );

    // The new process reloads and stops like any other.
    let admin = field(&p.line("admin API and status page", 1).await, "bound=").unwrap();
    let admin: SocketAddr = admin.parse().unwrap();
    assert_eq!(status_of(admin, "/ready", None).await, Some(200));
    p.signal(new, "TERM");
    eventually(WAIT, "the new process to exit", || async { !alive(new) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_leaves_the_old_process_serving() {
    let b = BackendBuilder::new("b").start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&[b.addr], "5s").replace(
        "[pool.health]\nkind = \"http\"\npath = \"/healthz\"\n",
        "[pool.health]\nkind = \"tcp\"\n",
    );
    let path = write_file(dir.path(), "fulcrum.toml", &text);
    let p = Logged::run(&path, dir.path().join("log"));
    let started = p.line("fulcrum started", 0).await;
    let addr: SocketAddr = field(&started, "(\"web\", ").unwrap().parse().unwrap();
    assert_eq!(get_once(addr, "/").await.status, 200);

    let admin: SocketAddr = field(&p.line("admin API and status page", 0).await, "bound=")
        .unwrap()
        .parse()
        .unwrap();
    eventually(WAIT, "/ready 200", || async {
        status_of(admin, "/ready", None).await == Some(200)
    })
    .await;

    std::fs::write(&path, format!("{text}\n[pool.bogus]\n")).unwrap();
    p.signal(p.child.id(), "USR2");
    p.line("this process keeps serving", 0).await;
    let log = p.text();
    assert!(log.contains("the new process failed"), "{log}");
    assert!(
        p.text().contains("fulcrum.toml:"),
        "the reason names the file: {}",
        p.text()
    );
    assert!(alive(p.child.id()));
    let client = http1();
    for _ in 0..5 {
        assert_eq!(
            crate::support::client::get(&client, addr, "/").await.status,
            200
        );
    }
    assert_eq!(
        status_of(admin, "/ready", None).await,
        Some(200),
        "ready again after the failed upgrade"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_turns_503_when_shutdown_begins_while_the_request_finishes() {
    let slow = BackendBuilder::new("slow")
        .delay(Duration::from_millis(1500))
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "token", "s3cret\n");
    let text = config_text(&[slow.addr], "5s")
        .replace(
            "admin = \"127.0.0.1:0\"",
            "admin = \"127.0.0.1:0\"\nadmin_token_file = \"token\"",
        )
        .replace(
            "[pool.health]\nkind = \"http\"\npath = \"/healthz\"\n",
            "[pool.health]\nkind = \"tcp\"\n",
        );
    let path = write_file(dir.path(), "fulcrum.toml", &text);
    let mut p = Logged::run(&path, dir.path().join("log"));
    let started = p.line("fulcrum started", 0).await;
    let addr: SocketAddr = field(&started, "(\"web\", ").unwrap().parse().unwrap();
    let admin: SocketAddr = field(&p.line("admin API and status page", 0).await, "bound=")
        .unwrap()
        .parse()
        .unwrap();
    // Probes need no token; everything else still does.
    eventually(WAIT, "/ready 200", || async {
        status_of(admin, "/ready", None).await == Some(200)
    })
    .await;
    assert_eq!(status_of(admin, "/live", None).await, Some(200));
    assert_eq!(status_of(admin, "/api/v1/status", None).await, Some(401));
    assert_eq!(
        status_of(admin, "/api/v1/status", Some("s3cret")).await,
        Some(200)
    );

    let request = tokio::spawn(async move { get_once(addr, "/slow").await });
    eventually(WAIT, "the request at the backend", || async {
        slow.count() == 1
    })
    .await;
    p.signal(p.child.id(), "TERM");
    eventually(
        Duration::from_secs(1),
        "/ready 503 while draining",
        || async { status_of(admin, "/ready", None).await == Some(503) },
    )
    .await;
    assert!(
        !request.is_finished(),
        "the request finished before /ready said 503"
    );
    assert_eq!(
        status_of(admin, "/live", None).await,
        Some(200),
        "live while draining"
    );
    let r = request.await.unwrap();
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "slow\n"));
    let status = eventually(WAIT, "exit", async || p.child.try_wait().unwrap()).await;
    assert!(status.success(), "{status:?}: {}", p.text());
}

/// A backend passively ejected in the old process stays ejected in the new one for the rest of
/// its time: the new process sends it nothing (round robin would send it every other request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passively_ejected_backend_stays_ejected_across_the_upgrade() {
    let good = FlipBackend::start("good").await;
    let bad = FlipBackend::start("bad").await;
    bad.set_fail(true);
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"[global]
access_log = "off"
admin = "127.0.0.1:0"
shutdown_grace = "5s"

[[listener]]
name = "web"
bind = "127.0.0.1:0"
pool = "p"

[[pool]]
name = "p"
backends = [{{ address = "{}" }}, {{ address = "{}" }}]
[pool.passive]
consecutive_failures = 1
eject_for = "1m"
"#,
        good.addr, bad.addr
    );
    let path = write_file(dir.path(), "fulcrum.toml", &text);
    let p = Logged::run(&path, dir.path().join("log"));
    let started = p.line("fulcrum started", 0).await;
    let addr: SocketAddr = field(&started, "(\"web\", ").unwrap().parse().unwrap();
    eventually(WAIT, "the bad backend ejected", || async {
        let _ = get_once(addr, "/").await;
        bad.hits() > 0 && get_once(addr, "/").await.status == 200 && p.text().contains("ejected")
    })
    .await;
    let bad_before = bad.hits();

    p.signal(p.child.id(), "USR2");
    p.line("the new process serves; draining", 0).await;
    let old = p.child.id();
    eventually(WAIT, "the old process to exit", || async { !alive(old) }).await;
    for _ in 0..20 {
        let r = get_once(addr, "/").await;
        assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "good\n"));
    }
    assert_eq!(
        bad.hits(),
        bad_before,
        "the new process sent requests to the ejected backend"
    );
}
