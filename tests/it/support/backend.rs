//! Backends the proxy talks to: a recording hyper server, a raw-TCP recorder, a canned-reply
//! server, a WebSocket echo.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Method, Request, Response, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Aborts the server task when the backend is dropped.
#[derive(Debug)]
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One request as the backend saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A running recording backend.
#[derive(Debug)]
pub struct TestBackend {
    pub name: String,
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    _task: Task,
}

impl TestBackend {
    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// How many requests were received so far.
    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// Builds a [`TestBackend`]: answers `name` (body and `x-backend` header).
#[derive(Debug, Clone)]
pub struct BackendBuilder {
    name: String,
    delay: Duration,
    echo_headers: bool,
    response_headers: Vec<(String, String)>,
    status: u16,
}

impl BackendBuilder {
    pub fn new(name: &str) -> Self {
        BackendBuilder {
            name: name.to_string(),
            delay: Duration::ZERO,
            echo_headers: false,
            response_headers: Vec::new(),
            status: 200,
        }
    }

    /// Answers every request with this status (default 200).
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Waits this long (after recording the request) before answering.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Answers with the request headers, one `name: value` line each, after the name line.
    pub fn echo_headers(mut self) -> Self {
        self.echo_headers = true;
        self
    }

    /// Adds a header to every response.
    pub fn response_header(mut self, name: &str, value: &str) -> Self {
        self.response_headers
            .push((name.to_string(), value.to_string()));
        self
    }

    pub async fn start(self) -> TestBackend {
        self.start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Listens on `bind` (another 127.x address, a port another backend uses on its own IP).
    pub async fn start_on(self, bind: SocketAddr) -> TestBackend {
        let listener = TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let cfg = Arc::new(self.clone());
        let recorded = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let cfg = Arc::clone(&cfg);
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let cfg = Arc::clone(&cfg);
                        let recorded = Arc::clone(&recorded);
                        async move { Ok::<_, Infallible>(answer(req, &cfg, &recorded).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestBackend {
            name: self.name,
            addr,
            requests,
            _task: Task(task),
        }
    }
}

async fn answer(
    req: Request<Incoming>,
    cfg: &BackendBuilder,
    recorded: &Mutex<Vec<Recorded>>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut text = format!("{}\n", cfg.name);
    if cfg.echo_headers {
        for (name, value) in &parts.headers {
            text.push_str(&format!(
                "{}: {}\n",
                name,
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
    }
    recorded.lock().unwrap().push(Recorded {
        method: parts.method,
        path: parts.uri.path().to_string(),
        version: parts.version,
        headers: parts.headers,
        body,
    });
    if !cfg.delay.is_zero() {
        tokio::time::sleep(cfg.delay).await;
    }
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = http::StatusCode::from_u16(cfg.status).unwrap();
    let h = resp.headers_mut();
    h.insert("x-backend", cfg.name.parse().unwrap());
    for (name, value) in &cfg.response_headers {
        h.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    resp
}

/// A raw TCP backend: records every byte received (all connections, in arrival order) and
/// answers `200 ok` each time it has seen a header block end (requests without a body only).
#[derive(Debug)]
pub struct RawBackend {
    pub addr: SocketAddr,
    bytes: Arc<Mutex<Vec<u8>>>,
    _task: Task,
}

impl RawBackend {
    pub async fn start() -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let all = Arc::clone(&bytes);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let all = Arc::clone(&all);
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        all.lock().unwrap().extend_from_slice(&buf[..n]);
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(end) = find(&pending, b"\r\n\r\n") {
                            pending.drain(..end + 4);
                            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(reply).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        RawBackend {
            addr,
            bytes,
            _task: Task(task),
        }
    }

    /// Everything received so far, lossily as text.
    pub fn received(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }
}

/// A backend that answers every request with `reply`, as written, then closes (one request
/// per connection; what it received is not kept).
pub async fn canned(reply: &'static [u8]) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if !read_head(&mut stream, &mut Vec::new()).await {
                    return;
                }
                let _ = stream.write_all(reply).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, task)
}

/// Reads from `stream` into `head` until it holds a whole request head (`\r\n\r\n`);
/// `false` when the peer closed or failed first.
pub async fn read_head(stream: &mut TcpStream, head: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    while find(head, b"\r\n\r\n").is_none() {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    true
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A WebSocket server echoing every text and binary message.
#[derive(Debug)]
pub struct WsEchoBackend {
    pub addr: SocketAddr,
    _task: Task,
}

impl WsEchoBackend {
    pub async fn start() -> WsEchoBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        if msg.is_text() || msg.is_binary() {
                            if ws.send(msg).await.is_err() {
                                return;
                            }
                        } else if msg.is_close() {
                            return;
                        }
                    }
                });
            }
        });
        WsEchoBackend {
            addr,
            _task: Task(task),
        }
    }
}
