//! `[pool.tls]`: TLS to the backends, for requests and health checks: the right CA (200), a
//! wrong one (502, logged as a failed certificate verification), mTLS to a backend that
//! requires client certificates, ALPN for `protocol = "h2"` / `"auto"`, and `check` naming
//! unreadable files.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::client::{get, http1};
use crate::support::eventually;
use crate::support::proxy::{run_cli, write_file, Config, Process, Proxy};
use crate::support::tls::Ca;
use crate::support::tls_backend::TlsBackend;

/// A config file with one http listener on port 0 and pool "p" over `backend`, the pool's
/// extra lines (`protocol`, `[pool.tls]`...) appended.
fn config_text(backend: std::net::SocketAddr, pool_extra: &str) -> String {
    format!(
        "[global]\naccess_log = \"off\"\nworkers = 2\nshutdown_grace = \"1s\"\n\n\
         [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"p\"\n\n\
         [[pool]]\nname = \"p\"\nretries = 0\nbackends = [{{ address = \"{backend}\" }}]\n{pool_extra}"
    )
}

fn start(dir: &Path, text: &str) -> Proxy {
    let path = write_file(dir, "fulcrum.toml", text);
    let config = Config::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    Proxy::start(config)
}

/// An HTTP/1.1 TLS backend with a certificate for 127.0.0.1 from a CA the pool trusts
/// (`[pool.tls] ca`), and a proxy in front of it; `extra`: more pool tables after
/// `[pool.tls]`. The folder holds the config and the CA: keep it while the proxy runs.
async fn trusted_backend(extra: &str) -> (tempfile::TempDir, TlsBackend, Proxy) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("backend CA");
    ca.write(dir.path(), "ca.pem");
    let backend =
        TlsBackend::start(&ca.issue(&["127.0.0.1", "localhost"]), &["http/1.1"], None).await;
    let pool = format!("[pool.tls]\nca = \"ca.pem\"\n{extra}");
    let proxy = start(dir.path(), &config_text(backend.addr, &pool));
    (dir, backend, proxy)
}

#[tokio::test]
async fn the_right_ca_reaches_a_tls_backend_and_health_checks_go_over_tls() {
    let health =
        "[pool.health]\nkind = \"http\"\npath = \"/\"\ninterval = \"100ms\"\nfall = 1\nrise = 1\n";
    let (_dir, backend, proxy) = trusted_backend(health).await;
    let client = http1();
    for _ in 0..3 {
        let reply = get(&client, proxy.addr, "/").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body, "tls ok");
        assert_eq!(reply.headers["x-version"], "HTTP/1.1");
    }
    // The checks went over TLS too: they pass (a plain GET to a TLS port would fail), and
    // each made its own connection.
    let connections = &backend.connections;
    eventually(Duration::from_secs(5), "health checks over TLS", || async {
        connections.load(Ordering::SeqCst) >= 3
    })
    .await;
    let status = proxy.handle.as_ref().unwrap().status();
    let b = &status[0].backends[0];
    assert!(b.healthy, "{:?}", b.last_change);
}

/// HTTP/1 clients' bodies, chunked and with a length, reach a TLS backend whole, and the
/// client connection carries its next request.
#[tokio::test]
async fn request_bodies_reach_a_tls_backend_over_one_client_connection() {
    let (_dir, _backend, proxy) = trusted_backend("").await;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {0}\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n\
         POST / HTTP/1.1\r\nHost: {0}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        proxy.addr
    );
    let response = crate::support::client::raw_exchange(
        proxy.addr,
        request.as_bytes(),
        Duration::from_secs(10),
    )
    .await
    .to_ascii_lowercase();
    assert_eq!(response.matches("http/1.1 200").count(), 2, "{response}");
    let first = response
        .find("x-body-len: 11")
        .expect("the chunked body, whole");
    let second = response
        .find("x-body-len: 3")
        .expect("the body with a length");
    assert!(first < second, "{response}");
    assert_eq!(response.matches("tls ok").count(), 2, "{response}");
}

/// A client that stops in the middle of a chunked body: the TLS backend's HTTP/1 body is
/// broken off, never ended with a last chunk (which would make a cut body look complete).
#[tokio::test]
async fn a_chunked_body_cut_off_by_the_client_never_reaches_a_tls_backend_as_whole() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_dir, backend, proxy) = trusted_backend("").await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        proxy.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = &backend.started;
    eventually(
        Duration::from_secs(5),
        "the request reaches the backend",
        || async { started.load(Ordering::SeqCst) > 0 },
    )
    .await;
    stream.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(!String::from_utf8_lossy(&rest).contains("HTTP/1.1 200"));
    let bodies = &backend.bodies;
    eventually(
        Duration::from_secs(5),
        "the backend's body ends",
        || async { !bodies.lock().unwrap().is_empty() },
    )
    .await;
    assert_eq!(*backend.bodies.lock().unwrap(), ["broken"]);
}

/// A WebSocket upgrade to a TLS backend: the 101 and the tunnel after it, both ways, over
/// `pool_extra`'s protocol.
async fn websocket_to_a_tls_backend(pool_extra: &str) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("backend CA");
    ca.write(dir.path(), "ca.pem");
    let backend =
        crate::support::tls_backend::start_ws_echo(&ca.issue(&["127.0.0.1", "localhost"])).await;
    let extra = format!("{pool_extra}[pool.tls]\nca = \"ca.pem\"\n");
    let proxy = start(dir.path(), &config_text(backend, &extra));
    tokio::time::timeout(Duration::from_secs(10), async {
        let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", proxy.addr))
            .await
            .unwrap();
        assert_eq!(resp.status(), 101);
        for msg in [
            Message::text("over tls"),
            Message::binary(vec![0u8, 1, 255]),
        ] {
            ws.send(msg.clone()).await.unwrap();
            assert_eq!(ws.next().await.unwrap().unwrap(), msg);
        }
        ws.close(None).await.unwrap();
    })
    .await
    .expect("websocket exchange took too long");
}

/// On the engine's own TLS connection (an HTTP/1.1 pool).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_reaches_a_tls_backend() {
    websocket_to_a_tls_backend("").await;
}

/// Through hyper's client (`http1::bridge`): an `auto` pool whose backend's ALPN says
/// HTTP/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_reaches_a_tls_backend_of_an_auto_pool() {
    websocket_to_a_tls_backend("protocol = \"auto\"\n").await;
}

/// Keep-alive to a TLS backend: one client connection's requests share one upstream TLS
/// connection (no health checks here to open others).
#[tokio::test]
async fn requests_reuse_one_tls_connection_to_the_backend() {
    let (_dir, backend, proxy) = trusted_backend("").await;
    let client = http1();
    for _ in 0..5 {
        let reply = get(&client, proxy.addr, "/").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body, "tls ok");
    }
    assert_eq!(backend.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn server_name_is_sent_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("backend CA");
    ca.write(dir.path(), "ca.pem");
    // The certificate names only "backend.internal": the IP address would not verify.
    let backend = TlsBackend::start(&ca.issue(&["backend.internal"]), &["http/1.1"], None).await;
    let client = http1();
    let named = start(
        dir.path(),
        &config_text(
            backend.addr,
            "[pool.tls]\nca = \"ca.pem\"\nserver_name = \"backend.internal\"\n",
        ),
    );
    assert_eq!(get(&client, named.addr, "/").await.status, 200);
    let unnamed = start(
        dir.path(),
        &config_text(backend.addr, "[pool.tls]\nca = \"ca.pem\"\n"),
    );
    assert_eq!(get(&client, unnamed.addr, "/").await.status, 502);
    // verify = false: any certificate goes (logged loudly at start).
    let blind = start(
        dir.path(),
        &config_text(backend.addr, "[pool.tls]\nverify = false\n"),
    );
    assert_eq!(get(&client, blind.addr, "/").await.status, 200);
}

#[tokio::test]
async fn a_wrong_ca_is_a_502_logged_as_certificate_verification_failed() {
    let dir = tempfile::tempdir().unwrap();
    let right = Ca::new("backend CA");
    let wrong = Ca::new("another CA");
    wrong.write(dir.path(), "ca.pem");
    let backend = TlsBackend::start(&right.issue(&["127.0.0.1"]), &["http/1.1"], None).await;
    let path = write_file(
        dir.path(),
        "fulcrum.toml",
        &config_text(backend.addr, "[pool.tls]\nca = \"ca.pem\"\n"),
    );
    let mut fulcrum = Process::run(&path);
    let addr = fulcrum.addr("web");
    let client = http1();
    let reply = get(&client, addr, "/").await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert!(reply.body.contains("TLS"), "{}", reply.body);
    assert_eq!(backend.connections.load(Ordering::SeqCst), 0);
    fulcrum.signal("TERM");
    fulcrum.wait_exit(Duration::from_secs(10));
    let log = fulcrum.stderr();
    assert!(
        log.contains("certificate verification failed"),
        "the log does not say why: {log}"
    );
}

#[tokio::test]
async fn mtls_to_a_backend_that_requires_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("backend CA");
    let clients = Ca::new("client CA");
    ca.write(dir.path(), "ca.pem");
    clients.issue(&["fulcrum"]).write(dir.path(), "client");
    let backend = TlsBackend::start(&ca.issue(&["127.0.0.1"]), &["http/1.1"], Some(&clients)).await;
    let client = http1();
    let without = start(
        dir.path(),
        &config_text(backend.addr, "[pool.tls]\nca = \"ca.pem\"\n"),
    );
    assert_eq!(get(&client, without.addr, "/").await.status, 502);
    let with = start(
        dir.path(),
        &config_text(
            backend.addr,
            "[pool.tls]\nca = \"ca.pem\"\ncert = \"client.pem\"\nkey = \"client.key\"\n",
        ),
    );
    let reply = get(&client, with.addr, "/").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.headers["x-client-cert"], "yes");
}

#[tokio::test]
async fn alpn_picks_h2_for_h2_and_auto_pools() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("backend CA");
    ca.write(dir.path(), "ca.pem");
    let issued = ca.issue(&["127.0.0.1"]);
    let both = TlsBackend::start(&issued, &["h2", "http/1.1"], None).await;
    let h1_only = TlsBackend::start(&issued, &["http/1.1"], None).await;
    let client = http1();
    for (backend, protocol, want) in [
        (both.addr, "h2", "HTTP/2.0"),
        (both.addr, "auto", "HTTP/2.0"),
        (h1_only.addr, "auto", "HTTP/1.1"),
        (both.addr, "http1", "HTTP/1.1"),
    ] {
        let extra = format!("protocol = \"{protocol}\"\n[pool.tls]\nca = \"ca.pem\"\n");
        let proxy = start(dir.path(), &config_text(backend, &extra));
        for _ in 0..2 {
            let reply = get(&client, proxy.addr, "/").await;
            assert_eq!(reply.status, 200, "{protocol}: {}", reply.body);
            assert_eq!(reply.headers["x-version"], want, "{protocol}");
        }
    }
}

#[test]
fn check_names_unreadable_and_malformed_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "garbage.pem", "not a certificate\n");
    let text = config_text(
        "127.0.0.1:9".parse().unwrap(),
        "protocol = \"h2\"\n[pool.tls]\nca = \"missing-ca.pem\"\ncert = \"garbage.pem\"\nkey = \"missing.key\"\n",
    );
    let path = write_file(dir.path(), "fulcrum.toml", &text);
    let (status, _, stderr) = run_cli(&["check", "-c", path.to_str().unwrap()]);
    assert!(!status.success());
    for needed in [
        "pool \"p\": tls: ca",
        "missing-ca.pem",
        "pool \"p\": tls: cert",
        "garbage.pem",
        "pool \"p\": tls: key",
        "missing.key",
    ] {
        assert!(stderr.contains(needed), "{needed:?} not in: {stderr}");
    }
    let h2_without_tls = config_text("127.0.0.1:9".parse().unwrap(), "protocol = \"h2\"\n");
    let path = write_file(dir.path(), "fulcrum.toml", &h2_without_tls);
    let (status, _, stderr) = run_cli(&["check", "-c", path.to_str().unwrap()]);
    assert!(!status.success());
    assert!(stderr.contains("pool \"p\": protocol"), "{stderr}");
}
