//! gRPC end to end with a real gRPC implementation on both sides (Python grpcio, generic
//! handlers: no generated code): every streaming kind through an h2c listener to an h2c pool,
//! status details and trailers intact, a server stream arriving message by message, deadlines
//! (the client's, and Fulcrum's `request_timeout` as DEADLINE_EXCEEDED), a killed backend as
//! UNAVAILABLE and ejected, and `[pool.health] kind = "grpc"` following the health service.
//! The streaming kinds also through an HTTPS listener (ALPN h2, the client verifying the
//! listener's certificate against a test CA) to the same h2c pool.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fulcrum::config::{HealthConfig, HealthKind, UpstreamProtocol};
use serde_json::Value;

use crate::support::proxy::{config, listener, pool, Proxy};
use crate::support::{eventually, require};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/grpc")
        .join(name)
}

/// A Python gRPC server; killed when dropped.
struct PyServer {
    child: Child,
    addr: SocketAddr,
}

impl PyServer {
    fn start(python: &Path, name: &str) -> PyServer {
        let mut child = Command::new(python)
            .arg(script("server.py"))
            .arg(name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("server said {line:?}"));
        PyServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the client's `scenarios` against `target` (off the test's runtime): one JSON object
/// each.
async fn client(python: &Path, target: SocketAddr, scenarios: &[&str]) -> Vec<Value> {
    client_with(python, target, scenarios, &[]).await
}

/// [`client`] with environment variables (`GRPC_TLS_CA`, `GRPC_TLS_NAME`: over TLS).
async fn client_with(
    python: &Path,
    target: SocketAddr,
    scenarios: &[&str],
    env: &[(&str, &Path)],
) -> Vec<Value> {
    let mut cmd = Command::new(python);
    cmd.envs(env.iter().copied());
    cmd.arg(script("client.py"))
        .arg(target.to_string())
        .args(scenarios);
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || cmd.output().unwrap()),
    )
    .await
    .expect("the gRPC client took too long")
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let values: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(
        values.len(),
        scenarios.len(),
        "client output: {text}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    values
}

fn h2c_pool(backends: &[SocketAddr]) -> fulcrum::config::PoolConfig {
    let mut p = pool("grpc", backends);
    p.protocol = UpstreamProtocol::H2c;
    p
}

#[tokio::test]
async fn every_streaming_kind_passes_with_its_status_and_trailers() {
    let Some(python) = require("python grpc") else {
        return;
    };
    let backend = PyServer::start(&python, "a");
    let proxy = Proxy::start(config(listener(), vec![h2c_pool(&[backend.addr])]));
    let r = client(&python, proxy.addr, &EVERY_KIND).await;
    assert_every_kind(&r);
}

#[tokio::test]
async fn every_streaming_kind_passes_through_an_https_listener_with_alpn_h2() {
    let Some(python) = require("python grpc") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::support::tls::Ca::new("grpc test CA");
    let leaf = ca.leaf(&["grpc.test"], 7);
    let ca_file = ca.write(dir.path(), "ca");
    let backend = PyServer::start(&python, "a");
    let l = crate::tls::tls_listener(dir.path(), &[("grpc", &leaf)]);
    let proxy = Proxy::start(config(l, vec![h2c_pool(&[backend.addr])]));
    let name = Path::new("grpc.test");
    let env = [("GRPC_TLS_CA", ca_file.as_path()), ("GRPC_TLS_NAME", name)];
    let r = client_with(&python, proxy.addr, &EVERY_KIND, &env).await;
    assert_every_kind(&r);
    // And a plaintext h2c client is refused by the TLS listener.
    let r = client(&python, proxy.addr, &["unary"]).await;
    assert_eq!(r[0]["code"], "UNAVAILABLE", "{}", r[0]);
}

const EVERY_KIND: [&str; 5] = ["unary", "fail", "server_stream", "client_stream", "bidi"];

/// The replies of [`EVERY_KIND`] as the test server sends them, through Fulcrum.
fn assert_every_kind(r: &[Value]) {
    assert_eq!(r[0]["code"], "OK", "{}", r[0]);
    assert_eq!(r[0]["reply"], "echo:hi from a");
    assert_eq!(r[0]["trailers"]["x-trailer"], "kept", "{}", r[0]);
    // The backend's status, details and trailing metadata, untouched.
    assert_eq!(r[1]["code"], "NOT_FOUND", "{}", r[1]);
    assert_eq!(r[1]["details"], "no such thing");
    assert_eq!(r[1]["trailers"]["x-trailer"], "kept");
    assert_eq!(r[2]["code"], "OK", "{}", r[2]);
    assert_eq!(r[2]["messages"].as_array().unwrap().len(), 5);
    // Message by message (0.2 s apart at the server), not buffered to the end.
    let times: Vec<f64> = r[2]["times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    assert!(times[4] - times[0] > 0.5, "arrived together: {times:?}");
    assert_eq!(r[3]["reply"], "a+b+c", "{}", r[3]);
    assert_eq!(
        r[4]["messages"],
        serde_json::json!(["re:1", "re:2", "re:3"]),
        "{}",
        r[4]
    );
}

#[tokio::test]
async fn deadlines_are_deadline_exceeded_the_clients_and_fulcrums() {
    let Some(python) = require("python grpc") else {
        return;
    };
    let backend = PyServer::start(&python, "a");
    let mut p = h2c_pool(&[backend.addr]);
    p.request_timeout = Duration::from_millis(700);
    let proxy = Proxy::start(config(listener(), vec![p]));
    let r = client(&python, proxy.addr, &["deadline", "slow", "unary"]).await;
    // The client's own 0.5 s deadline (sent as grpc-timeout, honoured by Fulcrum too).
    assert_eq!(r[0]["code"], "DEADLINE_EXCEEDED", "{}", r[0]);
    // No client deadline: Fulcrum's request_timeout, answered as a gRPC status.
    assert_eq!(r[1]["code"], "DEADLINE_EXCEEDED", "{}", r[1]);
    assert_eq!(r[1]["details"], "deadline exceeded", "{}", r[1]);
    assert_eq!(r[2]["code"], "OK", "{}", r[2]);
}

#[tokio::test]
async fn a_killed_backend_is_unavailable_and_ejected() {
    let Some(python) = require("python grpc") else {
        return;
    };
    let alive = PyServer::start(&python, "alive");
    let mut killed = PyServer::start(&python, "killed");
    let mut p = h2c_pool(&[alive.addr, killed.addr]);
    p.retries = 0;
    p.passive.consecutive_failures = 1;
    p.passive.eject_for = Duration::from_secs(30);
    let proxy = Proxy::start(config(listener(), vec![p]));
    let r = client(&python, proxy.addr, &["unary", "unary"]).await;
    assert!(r.iter().all(|v| v["code"] == "OK"), "{r:?}");
    killed.kill();
    let r = client(&python, proxy.addr, &["unary"; 6]).await;
    let unavailable: Vec<&Value> = r.iter().filter(|v| v["code"] != "OK").collect();
    assert!(
        !unavailable.is_empty(),
        "the killed backend was never tried: {r:?}"
    );
    for v in &unavailable {
        assert_eq!(v["code"], "UNAVAILABLE", "{v}");
        assert_eq!(v["details"], "unavailable", "a proxy-made status: {v}");
    }
    // Ejected: the last calls all went to the live one.
    assert!(r[3..].iter().all(|v| v["code"] == "OK"), "{r:?}");
    let status = proxy.handle.as_ref().unwrap().status();
    let b = status[0]
        .backends
        .iter()
        .find(|b| b.address == killed.addr)
        .unwrap();
    assert!(b.ejected, "{:?}", b.last_change);
    // The only backend gone: UNAVAILABLE too (no backend, 503).
    drop(alive);
    let r = client(&python, proxy.addr, &["unary"]).await;
    assert_eq!(r[0]["code"], "UNAVAILABLE", "{}", r[0]);
}

#[tokio::test]
async fn a_grpc_health_check_follows_the_health_service() {
    let Some(python) = require("python grpc") else {
        return;
    };
    let backend = PyServer::start(&python, "a");
    let mut p = h2c_pool(&[backend.addr]);
    p.health = Some(HealthConfig {
        kind: HealthKind::Grpc,
        service: "test.Echo".into(),
        interval: Duration::from_millis(100),
        rise: 1,
        fall: 1,
        ..HealthConfig::tcp()
    });
    let proxy = Proxy::start(config(listener(), vec![p]));
    let handle = proxy.handle.as_ref().unwrap();
    let healthy = || handle.status()[0].backends[0].healthy;
    eventually(Duration::from_secs(10), "first check SERVING", || async {
        healthy()
    })
    .await;
    let r = client(&python, proxy.addr, &["health_down"]).await;
    assert_eq!(r[0]["code"], "OK", "{}", r[0]);
    eventually(
        Duration::from_secs(10),
        "NOT_SERVING marks it down",
        || async { !healthy() },
    )
    .await;
    let reason = handle.status()[0].backends[0]
        .last_change
        .as_ref()
        .map(|c| format!("{c:?}"))
        .unwrap_or_default();
    assert!(reason.contains("NOT_SERVING"), "{reason}");
    // Down and the only backend: requests get UNAVAILABLE. Set it up again directly.
    let direct = client(&python, backend.addr, &["health_up"]).await;
    assert_eq!(direct[0]["code"], "OK");
    eventually(Duration::from_secs(10), "SERVING marks it up", || async {
        healthy()
    })
    .await;
}
