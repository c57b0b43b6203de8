//! `fulcrum demo`: a complete setup with no config file and no other program. Four demo
//! backends run in-process (two per region), and a balancer listens on 127.0.0.1:8080, with
//! the status page on 127.0.0.1:9901. A light synthetic load comes from a client in each
//! region (127.1.0.1 is us-east, 127.2.0.1 us-west), so the page is alive from the first
//! second; draining a backend from the page shows regional failover.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::admin::Extension;
use crate::config::{
    AccessLogTarget, BackendConfig, Config, Global, ListenerConfig, PoolConfig, PoolId,
    RegionConfig,
};

/// The demo clients: source address and the region its CIDR maps to.
pub const CLIENTS: [(&str, &str, &str); 2] = [
    ("127.1.0.1", "127.1.0.0/16", "us-east"),
    ("127.2.0.1", "127.2.0.0/16", "us-west"),
];

/// The demo backends: name and region.
pub const BACKENDS: [(&str, &str); 4] = [
    ("east-1", "us-east"),
    ("east-2", "us-east"),
    ("west-1", "us-west"),
    ("west-2", "us-west"),
];

/// One demo backend the status page can kill and revive (`fulcrum demo` only).
#[derive(Debug)]
struct DemoSwitch {
    name: &'static str,
    addr: SocketAddr,
    alive: Arc<AtomicBool>,
}

/// The demo's admin endpoints: `POST /api/v1/demo/backends/{name}/kill` and `/revive`, and the
/// switches' state as the status document's `"demo"` field (the status page draws buttons).
#[derive(Debug)]
struct DemoAdmin {
    switches: Arc<[DemoSwitch]>,
}

impl DemoAdmin {
    /// Kills (`alive = false`) or revives a demo backend by name; false when there is none.
    /// A killed backend closes every connection without answering, like a crashed server.
    fn set_alive(&self, name: &str, alive: bool) -> bool {
        let Some(switch) = self.switches.iter().find(|s| s.name == name) else {
            return false;
        };
        switch.alive.store(alive, Ordering::Relaxed);
        tracing::info!(
            backend = name,
            alive,
            "demo backend {}",
            if alive { "revived" } else { "killed" }
        );
        true
    }
}

impl Extension for DemoAdmin {
    fn handle(&self, method: &Method, segments: &[&str]) -> Option<(StatusCode, Value)> {
        let ["api", "v1", "demo", "backends", name, action @ ("kill" | "revive")] = segments else {
            return None;
        };
        if method != Method::POST {
            return Some((
                StatusCode::METHOD_NOT_ALLOWED,
                json!({ "error": "method not allowed", "status": 405 }),
            ));
        }
        let alive = *action == "revive";
        Some(if self.set_alive(name, alive) {
            (
                StatusCode::OK,
                json!({ "ok": true, "backend": name, "alive": alive }),
            )
        } else {
            (
                StatusCode::NOT_FOUND,
                json!({ "error": "no such demo backend", "status": 404 }),
            )
        })
    }

    fn status(&self) -> Option<(&'static str, Value)> {
        let switches = self
            .switches
            .iter()
            .map(|d| {
                json!({
                    "name": d.name,
                    "address": d.addr.to_string(),
                    "alive": d.alive.load(Ordering::Relaxed),
                })
            })
            .collect();
        Some(("demo", Value::Array(switches)))
    }
}

/// The running demo backends; they stop when this is dropped.
pub struct DemoBackends {
    pub addrs: Vec<SocketAddr>,
    switches: Arc<[DemoSwitch]>,
    runtime: tokio::runtime::Runtime,
}

impl DemoBackends {
    /// The admin endpoints that kill and revive these backends, for `Options::admin_extension`.
    pub fn admin_extension(&self) -> Arc<dyn Extension> {
        Arc::new(DemoAdmin {
            switches: Arc::clone(&self.switches),
        })
    }

    /// Sends a few requests a second to `target` from each demo client, forever (until the
    /// backends' runtime stops). Failures are ignored: the status page shows them.
    pub fn drive_load(&self, target: SocketAddr) {
        for (source, _, _) in CLIENTS {
            let Ok(ip) = source.parse::<std::net::IpAddr>() else {
                continue;
            };
            self.runtime.spawn(async move {
                let mut n: u64 = 0;
                loop {
                    n += 1;
                    let _ = one_request(SocketAddr::new(ip, 0), target, n).await;
                    let pause = 150 + fastrand::u64(0..200);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            });
        }
    }
}

/// One `Connection: close` request from `source`, read to the end.
async fn one_request(source: SocketAddr, target: SocketAddr, n: u64) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(source)?;
    let mut stream = tokio::time::timeout(Duration::from_secs(2), socket.connect(target)).await??;
    let path = ["/", "/products", "/cart", "/api/items"][usize::try_from(n % 4).unwrap_or(0)];
    let head = format!("GET {path} HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sink)).await??;
    Ok(())
}

/// Starts the demo backends on 127.0.0.1 ports chosen by the system.
pub fn start_backends() -> std::io::Result<DemoBackends> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fulcrum-demo")
        .enable_all()
        .build()?;
    let mut addrs = Vec::new();
    let mut switches = Vec::new();
    for (name, region) in BACKENDS {
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let alive = Arc::new(AtomicBool::new(true));
        addrs.push(addr);
        switches.push(DemoSwitch {
            name,
            addr,
            alive: Arc::clone(&alive),
        });
        runtime.spawn(serve_backend(listener, name, region, alive));
    }
    Ok(DemoBackends {
        addrs,
        switches: switches.into(),
        runtime,
    })
}

async fn serve_backend(
    listener: TcpListener,
    name: &'static str,
    region: &'static str,
    alive: Arc<AtomicBool>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if !alive.load(Ordering::Relaxed) {
            continue; // killed: the connection is closed unanswered
        }
        let alive = Arc::clone(&alive);
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let alive = alive.load(Ordering::Relaxed);
                async move {
                    if !alive {
                        // A service error makes hyper drop the connection without a response.
                        return Err(std::io::Error::other("demo backend killed"));
                    }
                    let text = format!(
                        "hello from {name} ({region}): {} {}\n",
                        req.method(),
                        req.uri().path()
                    );
                    let mut resp = Response::new(Full::new(Bytes::from(text)));
                    resp.headers_mut()
                        .insert("x-backend", http::HeaderValue::from_static(name));
                    Ok::<_, std::io::Error>(resp)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The demo's config: one listener on `bind`, one round-robin pool over the demo backends.
pub fn config(bind: SocketAddr, admin: Option<SocketAddr>, backends: &[SocketAddr]) -> Config {
    let backends = backends
        .iter()
        .zip(BACKENDS)
        .map(|(addr, (name, region))| BackendConfig {
            address: *addr,
            name: Some(name.to_string()),
            weight: 1,
            region: Some(region.to_string()),
        })
        .collect();
    Config {
        source: None,
        fingerprint: None,
        global: Global {
            // The synthetic load would drown the terminal; the status page shows the traffic.
            access_log: AccessLogTarget::Off,
            shutdown_grace: Duration::from_secs(5),
            admin,
            ..Global::default()
        },
        listeners: vec![ListenerConfig::http("demo", bind, PoolId::new(0))],
        pools: vec![PoolConfig::new("demo", backends)],
        regions: CLIENTS
            .iter()
            .zip(CLIENTS.iter().rev())
            .map(|((_, cidr, name), (_, _, other))| RegionConfig {
                name: name.to_string(),
                cidrs: cidr.parse().into_iter().collect(),
                countries: Vec::new(),
                failover: vec![other.to_string()],
            })
            .collect(),
        geo: Default::default(),
        gslb: None,
    }
}

/// What the demo prints at start.
pub fn banner(addr: SocketAddr, admin: Option<SocketAddr>) -> String {
    let page = admin.map_or_else(
        || "(the admin address was taken: no status page)\n".to_string(),
        |a| {
            format!(
                "Status page: http://{a}/   (metrics: http://{a}/metrics)\n\
                 Synthetic clients in us-east (127.1.0.1) and us-west (127.2.0.1) send a few requests a second;\n\
                 drain both us-east backends on the page to watch us-east clients fail over to us-west.\n"
            )
        },
    );
    format!(
        "Fulcrum demo: a balancer on http://{addr}/ in front of 4 demo backends (2 in us-east, 2 in us-west).\n{page}\
         Try:\n  \
           curl http://{addr}/                  # round robin: run it a few times\n  \
           curl -s --http2-prior-knowledge http://{addr}/   # h2c\n  \
           for i in $(seq 8); do curl -s http://{addr}/; done\n\
         Ctrl-C stops.\n"
    )
}
