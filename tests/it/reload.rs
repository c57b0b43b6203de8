//! Hot reload: the file watcher, SIGHUP and `Handle::reload` all go through one reload that
//! validates completely, then swaps; listeners are reconciled; a bad file changes nothing;
//! systemd hears READY / RELOADING / READY; long-lived connections survive.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::support::backend::{BackendBuilder, WsEchoBackend};
use crate::support::client::{get, get_once, http1, HttpClient};
use crate::support::eventually;
use crate::support::proxy::{
    accepts, any_port, free_addr, refused_addr, run_cli, toml_text as toml, write_file, Process,
};

/// How long a reload may take to show in the answers.
const RELOAD_WAIT: Duration = Duration::from_secs(5);

/// Sends requests to `addr` on `client` until `want` answers one; panics naming `what` after
/// [`RELOAD_WAIT`].
async fn until_served_by(client: &HttpClient, addr: SocketAddr, want: &str, what: &str) {
    eventually(RELOAD_WAIT, what, || async {
        get(client, addr, "/").await.backend() == want
    })
    .await;
}

/// Replaces `path` by writing a sibling and renaming it over (what most editors and tools do).
fn replace_by_rename(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Starts the library with the config file at `path`, file watcher included.
fn start_watching(path: &Path) -> fulcrum::Handle {
    let config = fulcrum::Config::from_file(path).unwrap();
    fulcrum::start(config).unwrap()
}

/// Starts the library with the config file at `path`; only the test's `reload()` reloads it.
fn start(path: &Path) -> fulcrum::Handle {
    let mut handle = start_watching(path);
    handle.stop_watching();
    handle
}

async fn reload(
    handle: &std::sync::Arc<fulcrum::Reloader>,
) -> Result<fulcrum::ReloadResult, String> {
    let r = std::sync::Arc::clone(handle);
    tokio::task::spawn_blocking(move || r.reload(fulcrum::Trigger::Api).map_err(|e| e.to_string()))
        .await
        .unwrap()
}

/// `fulcrum run` without the file watcher, so only SIGHUP can reload it; returns once started.
fn run_without_watch(path: &Path, env: &[(&str, &str)]) -> Process {
    let mut all = vec![("FULCRUM_WATCH", "0")];
    all.extend_from_slice(env);
    Process::spawn_with_env(&["run", "-c", path.to_str().unwrap()], &all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_added_to_the_file_gets_traffic_within_a_second() {
    let a = BackendBuilder::new("a").start().await;
    let b = BackendBuilder::new("b").start().await;
    let bind = any_port();
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "fulcrum.toml",
        &toml(&[("web", bind)], &[a.addr]),
    );
    let p = path.clone();
    let process = tokio::task::spawn_blocking(move || Process::run(&p))
        .await
        .unwrap();
    let addr = process.addr("web");
    let client = http1();
    assert_eq!(get(&client, addr, "/").await.backend(), "a");

    // Written in place, as `echo > file` or an editor without backup copies does.
    std::fs::write(&path, toml(&[("web", bind)], &[a.addr, b.addr])).unwrap();
    let written = Instant::now();
    until_served_by(&client, addr, "b", "the added backend to get traffic").await;
    let took = written.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_backend_finishes_its_in_flight_request_and_gets_no_new_one() {
    let slow = BackendBuilder::new("slow")
        .delay(Duration::from_millis(1500))
        .start()
        .await;
    let fast = BackendBuilder::new("fast").start().await;
    let dir = tempfile::tempdir().unwrap();
    let bind = any_port();
    let path = write_file(dir.path(), "f.toml", &toml(&[("web", bind)], &[slow.addr]));
    let handle = start(&path);
    let addr = handle.listener_addr("web").unwrap();
    let reloader = handle.reloader();

    let in_flight = tokio::spawn(async move { get_once(addr, "/slow").await });
    eventually(
        Duration::from_secs(5),
        "the slow backend to get the request",
        || async { slow.count() == 1 },
    )
    .await;

    std::fs::write(&path, toml(&[("web", bind)], &[fast.addr])).unwrap();
    reload(&reloader).await.unwrap();
    let client = http1();
    for _ in 0..6 {
        assert_eq!(get(&client, addr, "/").await.backend(), "fast");
    }
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "slow\n");
    assert_eq!(slow.count(), 1, "the removed backend got new work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_listeners_and_keeps_the_others() {
    let a = BackendBuilder::new("a").start().await;
    let bind = any_port();
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "f.toml",
        &toml(&[("keep", bind), ("old", bind)], &[a.addr]),
    );
    let handle = start(&path);
    let keep = handle.listener_addr("keep").unwrap();
    let old = handle.listener_addr("old").unwrap();
    // The added listener's port is named in the file: the test checks it is not bound before
    // the reload (nor by the dry run), so it cannot be port 0. Taken after `keep` and `old`
    // hold theirs, so it is none of them.
    let new = free_addr();
    let reloader = handle.reloader();
    let client = http1();
    // A keep-alive connection on the kept listener, opened before the reload.
    assert_eq!(get(&client, keep, "/").await.status, 200);
    assert_eq!(get(&client, old, "/").await.status, 200);
    assert!(!accepts(new));

    // An idle keep-alive connection on the listener about to be removed.
    let mut idle = tokio::net::TcpStream::connect(old).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    std::fs::write(&path, toml(&[("keep", bind), ("new", new)], &[a.addr])).unwrap();
    // The dry run names the change (with the configured binds) and changes nothing.
    let diff = reloader.dry_run().unwrap();
    assert_eq!(diff.listeners.added, [format!("listener \"new\" ({new})")]);
    assert_eq!(
        diff.listeners.removed,
        [format!("listener \"old\" ({bind})")]
    );
    assert!(diff.backends.is_empty() && diff.routes.is_empty());
    assert!(!accepts(new));
    reload(&reloader).await.unwrap();
    // Drained: the idle connection is closed by Fulcrum.
    let eof = tokio::time::timeout(Duration::from_secs(3), idle.read(&mut buf)).await;
    assert!(matches!(eof, Ok(Ok(0)) | Ok(Err(_))), "{eof:?}");

    assert_eq!(handle.listener_addr("new"), Some(new));
    assert_eq!(handle.listener_addr("old"), None);
    // Every worker accepts on the new listener: many fresh connections all succeed.
    for _ in 0..8 {
        assert_eq!(get_once(new, "/").await.status, 200);
    }
    eventually(
        Duration::from_secs(2),
        "the removed listener to stop accepting",
        || async { !accepts(old) },
    )
    .await;
    assert_eq!(get(&client, keep, "/").await.status, 200);
    assert_eq!(get_once(keep, "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_changes_nothing_and_names_file_line_and_key() {
    let a = BackendBuilder::new("a").start().await;
    let b = BackendBuilder::new("b").start().await;
    let dir = tempfile::tempdir().unwrap();
    let bind = any_port();
    let path = write_file(
        dir.path(),
        "broken.toml",
        &toml(&[("web", bind)], &[a.addr]),
    );
    let handle = start(&path);
    let addr = handle.listener_addr("web").unwrap();
    let reloader = handle.reloader();
    let client = http1();

    // A syntax error (an unclosed array), with b added: b must not appear.
    let good = toml(&[("web", bind)], &[a.addr, b.addr]);
    std::fs::write(&path, good.replace("weight = 1 }]", "weight = 1 }")).unwrap();
    let err = reload(&reloader).await.unwrap_err();
    let last_line = good.lines().count();
    assert!(err.contains(&format!("broken.toml:{last_line}:")), "{err}");
    assert!(err.contains("syntax"), "{err}");
    let last = handle.last_reload().unwrap();
    assert!(!last.ok);
    assert_eq!(last.message, err);
    assert!(last.hash.is_some());
    for _ in 0..4 {
        assert_eq!(get(&client, addr, "/").await.backend(), "a");
    }

    // A semantic error: the listener names a pool that does not exist.
    std::fs::write(&path, good.replace("pool = \"p\"", "pool = \"nope\"")).unwrap();
    let err = reload(&reloader).await.unwrap_err();
    let line = good
        .lines()
        .position(|l| l == "pool = \"p\"")
        .map(|i| i + 1)
        .unwrap();
    assert!(err.contains(&format!("broken.toml:{line}:")), "{err}");
    assert!(err.contains("listener \"web\": pool:"), "{err}");
    assert!(err.contains("\"nope\""), "{err}");
    for _ in 0..4 {
        assert_eq!(get(&client, addr, "/").await.backend(), "a");
    }

    // A listener whose port is taken: the bind fails, nothing changes (b is not added).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap();
    std::fs::write(
        &path,
        toml(&[("web", bind), ("busy", busy)], &[a.addr, b.addr]),
    )
    .unwrap();
    let err = reload(&reloader).await.unwrap_err();
    assert!(err.contains("listener \"busy\": cannot bind"), "{err}");
    for _ in 0..4 {
        assert_eq!(get(&client, addr, "/").await.backend(), "a");
    }
    assert_eq!(handle.listener_addr("busy"), None);

    // The next good file is taken normally.
    std::fs::write(&path, &good).unwrap();
    let ok = reload(&reloader).await.unwrap();
    assert!(ok.ok);
    assert!(handle.last_reload().unwrap().ok);
    let mut seen_b = false;
    for _ in 0..4 {
        seen_b |= get(&client, addr, "/").await.backend() == "b";
    }
    assert!(seen_b);
}

/// A fake systemd: a datagram socket for `NOTIFY_SOCKET`.
struct Notify {
    socket: std::os::unix::net::UnixDatagram,
    path: PathBuf,
}

impl Notify {
    fn bind(dir: &Path) -> Notify {
        let path = dir.join("notify.sock");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Notify { socket, path }
    }

    fn env(&self) -> (&'static str, &str) {
        ("NOTIFY_SOCKET", self.path.to_str().unwrap())
    }

    /// The next notification (bounded by the read timeout).
    fn next(&self) -> String {
        let mut buf = [0u8; 512];
        let n = self.socket.recv(&mut buf).expect("no notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads() {
    let a = BackendBuilder::new("a").start().await;
    let b = BackendBuilder::new("b").start().await;
    let bind = any_port();
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "f.toml", &toml(&[("web", bind)], &[a.addr]));
    let notify = Notify::bind(dir.path());
    let process = run_without_watch(&path, &[notify.env()]);
    let addr = process.addr("web");
    // READY=1 is sent once SIGHUP is handled (systemd's own order).
    assert_eq!(notify.next(), "READY=1\n");
    let client = http1();
    std::fs::write(&path, toml(&[("web", bind)], &[b.addr])).unwrap();
    // The watcher is off: nothing changes until the signal.
    for _ in 0..3 {
        assert_eq!(get(&client, addr, "/").await.backend(), "a");
    }
    process.signal("HUP");
    until_served_by(&client, addr, "b", "SIGHUP to reload").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_replace_and_symlink_swap_reload() {
    let a = BackendBuilder::new("a").start().await;
    let b = BackendBuilder::new("b").start().await;
    let c = BackendBuilder::new("c").start().await;
    let bind = any_port();
    let dir = tempfile::tempdir().unwrap();
    // Kubernetes ConfigMap layout: f.toml -> ..data/f.toml, ..data -> v1.
    let v1 = dir.path().join("v1");
    std::fs::create_dir(&v1).unwrap();
    write_file(&v1, "f.toml", &toml(&[("web", bind)], &[a.addr]));
    std::os::unix::fs::symlink("v1", dir.path().join("..data")).unwrap();
    let path: PathBuf = dir.path().join("f.toml");
    std::os::unix::fs::symlink("..data/f.toml", &path).unwrap();
    let handle = start_watching(&path);
    let addr = handle.listener_addr("web").unwrap();
    let client = http1();
    assert_eq!(get(&client, addr, "/").await.backend(), "a");

    // The ConfigMap swap: a new version directory, `..data` re-pointed by an atomic rename.
    let v2 = dir.path().join("v2");
    std::fs::create_dir(&v2).unwrap();
    write_file(&v2, "f.toml", &toml(&[("web", bind)], &[b.addr]));
    std::os::unix::fs::symlink("v2", dir.path().join("..data_tmp")).unwrap();
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
    until_served_by(&client, addr, "b", "the symlink swap to reload").await;

    // Replace-by-rename of the file itself (the link is replaced by a plain file).
    replace_by_rename(&path, &toml(&[("web", bind)], &[c.addr]));
    until_served_by(&client, addr, "c", "rename-replace to reload").await;
    assert_eq!(
        handle.last_reload().unwrap().trigger,
        fulcrum::Trigger::File
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_reloading_ready_and_stopping() {
    let a = BackendBuilder::new("a").start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "f.toml",
        &toml(&[("web", any_port())], &[a.addr]),
    );
    let notify = Notify::bind(dir.path());
    let mut process = run_without_watch(&path, &[notify.env()]);
    let next = || notify.next();
    assert_eq!(next(), "READY=1\n");
    process.signal("HUP");
    let reloading = next();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    let ready = next();
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    process.signal("TERM");
    assert_eq!(next(), "STOPPING=1\n");
    process.wait_exit(Duration::from_secs(8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_survives_ten_reloads() {
    let echo = WsEchoBackend::start().await;
    let extra = BackendBuilder::new("extra").start().await;
    let bind = any_port();
    let dir = tempfile::tempdir().unwrap();
    let one = toml(&[("web", bind)], &[echo.addr]);
    let path = write_file(dir.path(), "f.toml", &one);
    let handle = start(&path);
    let addr = handle.listener_addr("web").unwrap();
    let reloader = handle.reloader();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("before"));

    for i in 0..10 {
        // Alternate: a backend added, then removed again (a listener-level no-op).
        let text = if i % 2 == 0 {
            toml(&[("web", bind)], &[echo.addr, extra.addr])
        } else {
            one.clone()
        };
        std::fs::write(&path, text).unwrap();
        assert!(reload(&reloader).await.unwrap().ok);
    }
    for i in 0..3 {
        let msg = format!("after {i}");
        ws.send(Message::text(msg.clone())).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no echo")
            .unwrap()
            .unwrap();
        assert_eq!(got, Message::text(msg));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_during_shutdown_is_ignored() {
    let slow = BackendBuilder::new("slow")
        .delay(Duration::from_millis(1500))
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "f.toml",
        &toml(&[("web", any_port())], &[slow.addr]),
    );
    let handle = start(&path);
    let addr = handle.listener_addr("web").unwrap();
    let reloader = handle.reloader();
    let in_flight = tokio::spawn(async move { get_once(addr, "/").await });
    eventually(
        Duration::from_secs(5),
        "the slow backend to get the request",
        || async { slow.count() == 1 },
    )
    .await;
    let stopping = tokio::task::spawn_blocking(move || handle.shutdown());
    // The in-flight request holds the shutdown open for about 1.5 s.
    eventually(
        Duration::from_secs(2),
        "a reload during shutdown to be ignored",
        || async { matches!(reload(&reloader).await, Err(e) if e.contains("shutting down")) },
    )
    .await;
    assert_eq!(in_flight.await.unwrap().status, 200);
    stopping.await.unwrap();
}

#[test]
fn dry_run_diff_names_exactly_what_changed() {
    // `fulcrum check` binds and connects nothing: any distinct addresses do.
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    let (a, b, c) = (
        addr("192.0.2.1:80"),
        addr("192.0.2.2:80"),
        addr("192.0.2.3:80"),
    );
    let (web, old_l, new_l) = (
        addr("127.0.0.1:8080"),
        addr("127.0.0.1:8081"),
        addr("127.0.0.1:8082"),
    );
    let dir = tempfile::tempdir().unwrap();
    let old = write_file(
        dir.path(),
        "old.toml",
        &toml(&[("web", web), ("old", old_l)], &[a, b]),
    );
    let new = write_file(
        dir.path(),
        "new.toml",
        &toml(&[("web", web), ("new", new_l)], &[a, c]),
    );
    let (status, out, err) = run_cli(&[
        "check",
        "-c",
        new.to_str().unwrap(),
        "--diff-against",
        old.to_str().unwrap(),
    ]);
    assert!(status.success(), "{err}");
    let changes: Vec<&str> = out.lines().skip(2).collect();
    assert_eq!(
        changes,
        [
            format!("+ listener \"new\" ({new_l})"),
            format!("- listener \"old\" ({old_l})"),
            format!("+ pool \"p\": backend {c}"),
            format!("- pool \"p\": backend {b}"),
            format!("draining: pool \"p\": backend {b}"),
        ],
        "{out}"
    );
    let (status, out, _) = run_cli(&[
        "check",
        "-c",
        new.to_str().unwrap(),
        "--diff-against",
        new.to_str().unwrap(),
    ]);
    assert!(status.success());
    assert!(out.ends_with("no changes\n"), "{out}");
}

/// A backend that answers every request with a chunked body of `chunks` chunks, one every 50 ms.
/// Returns its address and how many requests it has started answering.
async fn streaming_backend(chunks: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&started);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                counter.fetch_add(1, Ordering::SeqCst);
                let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for i in 0..chunks {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let chunk = format!("chunk {i:02}\n");
                    let frame = format!("{:x}\r\n{chunk}\r\n", chunk.len());
                    if s.write_all(frame.as_bytes()).await.is_err() {
                        return;
                    }
                }
                let _ = s.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    (addr, started)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_response_survives_reloads() {
    let (stream, started) = streaming_backend(30).await;
    let other = BackendBuilder::new("other").start().await;
    let bind = any_port();
    let dir = tempfile::tempdir().unwrap();
    let one = toml(&[("web", bind)], &[stream]);
    let path = write_file(dir.path(), "f.toml", &one);
    let handle = start(&path);
    let addr = handle.listener_addr("web").unwrap();
    let reloader = handle.reloader();
    let body = tokio::spawn(async move { get_once(addr, "/stream").await });
    eventually(
        Duration::from_secs(5),
        "the streaming backend to get the request",
        || async { started.load(Ordering::SeqCst) == 1 },
    )
    .await;
    // Reload while the response streams (1.5 s): the stream's backend removed and re-added.
    for i in 0..6 {
        let text = if i % 2 == 0 {
            toml(&[("web", bind)], &[other.addr])
        } else {
            one.clone()
        };
        std::fs::write(&path, text).unwrap();
        assert!(reload(&reloader).await.unwrap().ok);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = body.await.unwrap();
    assert_eq!(r.status, 200);
    let expected: String = (0..30).map(|i| format!("chunk {i:02}\n")).collect();
    assert_eq!(r.body, expected);
    drop(handle);
}

#[test]
fn systemd_watchdog_pings_at_half_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "f.toml",
        &toml(&[("web", any_port())], &[refused_addr()]),
    );
    let notify = Notify::bind(dir.path());
    // WatchdogSec=400ms: a ping every 200 ms.
    let _process = run_without_watch(&path, &[notify.env(), ("WATCHDOG_USEC", "400000")]);
    let started = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        if notify.next() == "WATCHDOG=1\n" {
            pings += 1;
        }
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "3 pings took {took:?}");
}

/// The watcher compares with the file as loaded at start: a write to another file of the
/// config's directory (and the events of the start itself) reloads nothing, and the admin
/// API's last reload stays empty; a real change still reloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_changed_nothing_reloads_nothing() {
    let a = BackendBuilder::new("a").start().await;
    let b = BackendBuilder::new("b").start().await;
    let dir = tempfile::tempdir().unwrap();
    let web = ("web", SocketAddr::from(([127, 0, 0, 1], 0)));
    let path = write_file(dir.path(), "fulcrum.toml", &toml(&[web], &[a.addr]));
    let handle = start_watching(&path);
    write_file(dir.path(), "notes.txt", "not the config");
    // No readiness signal exists for "nothing happened": three debounce periods of quiet.
    tokio::time::sleep(fulcrum_debounce() * 3).await;
    assert_eq!(handle.last_reload(), None, "a reload that changed nothing");

    replace_by_rename(&path, &toml(&[web], &[b.addr]));
    eventually(RELOAD_WAIT, "the change to be reloaded", || async {
        handle
            .last_reload()
            .is_some_and(|r| r.ok && r.trigger == fulcrum::Trigger::File)
    })
    .await;
    drop(handle);
}

/// The watcher's debounce (200 ms, README).
fn fulcrum_debounce() -> Duration {
    Duration::from_millis(200)
}
