//! Clients: hyper-util's legacy client (HTTP/1.1), an h2c client, raw TCP.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single client exchange may take before the test fails.
pub const EXCHANGE_LIMIT: Duration = Duration::from_secs(10);

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A response, read completely.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The `x-backend` header, or "" when absent.
    pub fn backend(&self) -> String {
        self.headers
            .get("x-backend")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
}

/// An HTTP/1.1 keep-alive client.
pub fn http1() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends `req` and reads the whole response (bounded by [`EXCHANGE_LIMIT`]).
pub async fn send(client: &HttpClient, req: Request<Full<Bytes>>) -> Reply {
    tokio::time::timeout(EXCHANGE_LIMIT, async {
        let resp = client.request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    })
    .await
    .expect("exchange took too long")
}

/// `GET http://addr{path}`.
pub async fn get(client: &HttpClient, addr: SocketAddr, path: &str) -> Reply {
    let req = Request::get(format!("http://{addr}{path}"))
        .body(Full::default())
        .unwrap();
    send(client, req).await
}

/// `GET http://addr{path}` over a fresh HTTP/1.1 client.
pub async fn get_once(addr: SocketAddr, path: &str) -> Reply {
    get(&http1(), addr, path).await
}

/// One request over HTTP/2 with prior knowledge (h2c) on a new connection.
pub async fn h2c(addr: SocketAddr, req: Request<Full<Bytes>>) -> Reply {
    tokio::time::timeout(EXCHANGE_LIMIT, async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let resp = sender.send_request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    })
    .await
    .expect("h2c exchange took too long")
}

/// Writes `bytes` on a new connection and reads until the server closes it or `limit` passes;
/// returns what was read, lossily as text.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], limit: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status line of a raw response ("" when none).
pub fn status_line(response: &str) -> &str {
    response.split("\r\n").next().unwrap_or("")
}
