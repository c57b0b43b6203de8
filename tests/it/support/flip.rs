//! Backends whose health can be changed while they run: an HTTP backend with a switchable
//! `/healthz` status, failure mode and reset mode, that can be killed and restarted on the same
//! address; and a TCP "role" server answering `role:master` or `role:slave`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

#[derive(Debug, Default)]
struct Knobs {
    /// Status of `/healthz`; 0 means 200.
    health: AtomicU16,
    /// Answer 500 to every other request.
    fail: AtomicBool,
    /// Close the connection after reading a request, without answering.
    reset: AtomicBool,
    /// Requests other than `/healthz` (answered, failed or reset).
    hits: AtomicUsize,
}

/// An HTTP backend answering its name (body and `x-backend`), with switchable health.
#[derive(Debug)]
pub struct FlipBackend {
    pub name: String,
    pub addr: SocketAddr,
    knobs: Arc<Knobs>,
    task: Option<JoinHandle<()>>,
}

impl FlipBackend {
    pub async fn start(name: &str) -> FlipBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut b = FlipBackend {
            name: name.to_string(),
            addr: listener.local_addr().unwrap(),
            knobs: Arc::default(),
            task: None,
        };
        b.serve(listener);
        b
    }

    fn serve(&mut self, listener: TcpListener) {
        let knobs = Arc::clone(&self.knobs);
        let name = self.name.clone();
        self.task = Some(tokio::spawn(async move {
            // Connections live in the set: aborting this task drops them all, like a kill.
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                while conns.try_join_next().is_some() {}
                let knobs = Arc::clone(&knobs);
                let name = name.clone();
                conns.spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let knobs = Arc::clone(&knobs);
                        let name = name.clone();
                        async move { answer(&req, &knobs, &name) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }));
    }

    /// Stops listening and drops every open connection, as a SIGKILL of the server would.
    pub fn kill(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Listens again on the same address (after [`kill`](Self::kill)).
    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    /// `/healthz` answers this status from now on.
    pub fn set_health(&self, status: u16) {
        self.knobs.health.store(status, Ordering::Relaxed);
    }

    /// Every other request gets 500 (`true`) or its normal answer.
    pub fn set_fail(&self, fail: bool) {
        self.knobs.fail.store(fail, Ordering::Relaxed);
    }

    /// Requests are read and the connection closed without an answer.
    pub fn set_reset(&self, reset: bool) {
        self.knobs.reset.store(reset, Ordering::Relaxed);
    }

    /// Requests other than `/healthz` received so far.
    pub fn hits(&self) -> usize {
        self.knobs.hits.load(Ordering::Relaxed)
    }
}

impl Drop for FlipBackend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An error makes hyper close the connection without a response.
#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reset")
    }
}

impl std::error::Error for Reset {}

fn answer(
    req: &Request<Incoming>,
    knobs: &Knobs,
    name: &str,
) -> Result<Response<Full<Bytes>>, Reset> {
    let status = if req.uri().path() == "/healthz" {
        match knobs.health.load(Ordering::Relaxed) {
            0 => StatusCode::OK,
            s => StatusCode::from_u16(s).unwrap(),
        }
    } else {
        knobs.hits.fetch_add(1, Ordering::Relaxed);
        if knobs.reset.load(Ordering::Relaxed) {
            return Err(Reset);
        }
        if knobs.fail.load(Ordering::Relaxed) {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        }
    };
    let mut resp = Response::new(Full::new(Bytes::from(format!("{name}\n"))));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("x-backend", name.parse().unwrap());
    Ok(resp)
}

/// A TCP server that answers each read with `role:master` or `role:slave` (Redis-like).
#[derive(Debug)]
pub struct RoleServer {
    pub addr: SocketAddr,
    master: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl RoleServer {
    pub async fn start(master: bool) -> RoleServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let flag = Arc::new(AtomicBool::new(master));
        let role = Arc::clone(&flag);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let role = Arc::clone(&role);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        let reply: &[u8] = if role.load(Ordering::Relaxed) {
                            b"# Replication\r\nrole:master\r\nconnected_slaves:1\r\n"
                        } else {
                            b"# Replication\r\nrole:slave\r\nmaster_link_status:up\r\n"
                        };
                        if stream.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        RoleServer {
            addr,
            master: flag,
            task,
        }
    }

    pub fn set_master(&self, master: bool) {
        self.master.store(master, Ordering::Relaxed);
    }
}

impl Drop for RoleServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
