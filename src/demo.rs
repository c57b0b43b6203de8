//! `fulcrum demo`: a complete setup with no config file and no other program. Four demo
//! backends run in-process (two per region), and a balancer listens on 127.0.0.1:8080.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::config::{AccessLogTarget, BackendConfig, Config, Global, ListenerConfig, PoolConfig};

/// The demo backends: name and region.
pub const BACKENDS: [(&str, &str); 4] = [
    ("east-1", "us-east"),
    ("east-2", "us-east"),
    ("west-1", "us-west"),
    ("west-2", "us-west"),
];

/// The running demo backends; they stop when this is dropped.
pub struct DemoBackends {
    pub addrs: Vec<SocketAddr>,
    _runtime: tokio::runtime::Runtime,
}

/// Starts the demo backends on 127.0.0.1 ports chosen by the system.
pub fn start_backends() -> std::io::Result<DemoBackends> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fulcrum-demo")
        .enable_all()
        .build()?;
    let mut addrs = Vec::new();
    for (name, region) in BACKENDS {
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        addrs.push(listener.local_addr()?);
        runtime.spawn(serve_backend(listener, name, region));
    }
    Ok(DemoBackends {
        addrs,
        _runtime: runtime,
    })
}

async fn serve_backend(listener: TcpListener, name: &'static str, region: &'static str) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| async move {
                let text = format!(
                    "hello from {name} ({region}): {} {}\n",
                    req.method(),
                    req.uri().path()
                );
                let mut resp = Response::new(Full::new(Bytes::from(text)));
                resp.headers_mut()
                    .insert("x-backend", http::HeaderValue::from_static(name));
                Ok::<_, std::convert::Infallible>(resp)
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The demo's config: one listener on `bind`, one round-robin pool over the demo backends.
pub fn config(bind: SocketAddr, backends: &[SocketAddr]) -> Config {
    let backends = backends
        .iter()
        .zip(BACKENDS)
        .map(|(addr, (_, region))| BackendConfig {
            address: *addr,
            weight: 1,
            region: Some(region.to_string()),
        })
        .collect();
    Config {
        source: None,
        global: Global {
            access_log: AccessLogTarget::Stdout,
            shutdown_grace: Duration::from_secs(5),
            ..Global::default()
        },
        listeners: vec![ListenerConfig::http("demo", bind, "demo")],
        pools: vec![PoolConfig::new("demo", backends)],
        regions: Vec::new(),
        geo: Default::default(),
    }
}

/// What the demo prints at start.
pub fn banner(addr: SocketAddr) -> String {
    format!(
        "Fulcrum demo: a balancer on http://{addr}/ in front of 4 demo backends (2 in us-east, 2 in us-west).\n\
         Try:\n  \
           curl http://{addr}/                  # round robin: run it a few times\n  \
           curl -s --http2-prior-knowledge http://{addr}/   # h2c\n  \
           for i in $(seq 8); do curl -s http://{addr}/; done\n\
         Access log below. Ctrl-C stops.\n"
    )
}
