//! Upstream HTTP/1.1 keep-alive connections, pooled per worker thread.
//!
//! Each worker is a single-threaded runtime, so its pool is a thread-local: checking a
//! connection out or back in takes no lock and no atomic. A connection goes back only when its
//! response body was read to the end (see `response_body::ResponseBody`); one the backend closed is seen
//! as closed (its connection task ended) and dropped on checkout, as is one idle for longer than
//! the pool's `idle_timeout`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::error::ProxyError;
use super::request_body::RequestBody;

/// Idle connections kept per backend per worker; more are closed on return.
const MAX_IDLE_PER_BACKEND: usize = 256;

pub type Sender = http1::SendRequest<RequestBody>;

struct Idle {
    sender: Sender,
    since: Instant,
}

thread_local! {
    static IDLE: RefCell<HashMap<SocketAddr, Vec<Idle>>> = RefCell::new(HashMap::new());
}

/// An upstream connection checked out of this worker's pool (or freshly made).
#[derive(Debug)]
pub struct PooledConn {
    pub sender: Sender,
    addr: SocketAddr,
    /// Whether it came from the pool (a failure before sending may just mean it went stale).
    pub reused: bool,
}

impl PooledConn {
    /// Returns the connection to this worker's idle list.
    pub fn release(self) {
        if self.sender.is_closed() {
            return;
        }
        let idle = Idle {
            sender: self.sender,
            since: Instant::now(),
        };
        IDLE.with(|pool| {
            let mut pool = pool.borrow_mut();
            let list = pool.entry(self.addr).or_default();
            if list.len() >= MAX_IDLE_PER_BACKEND {
                list.remove(0);
            }
            list.push(idle);
        });
    }
}

/// A ready connection to `addr`: the most recently used idle one, else a new one.
pub async fn checkout(
    addr: SocketAddr,
    connect_timeout: Duration,
    idle_timeout: Duration,
) -> Result<PooledConn, ProxyError> {
    loop {
        let idle = IDLE.with(|pool| pool.borrow_mut().get_mut(&addr).and_then(Vec::pop));
        let Some(mut idle) = idle else { break };
        if idle.sender.is_closed() || idle.since.elapsed() >= idle_timeout {
            continue;
        }
        // Usually ready at once; otherwise the connection task is still finishing the last
        // response, or the connection is closing (an error: try the next one).
        if idle.sender.is_ready() || idle.sender.ready().await.is_ok() {
            return Ok(PooledConn {
                sender: idle.sender,
                addr,
                reused: true,
            });
        }
    }
    // Cold path (a new connection): boxed, so the per-request future stays small.
    Box::pin(connect(addr, connect_timeout)).await
}

/// A new connection to `addr`, its connection task spawned on the current worker.
pub async fn connect(
    addr: SocketAddr,
    connect_timeout: Duration,
) -> Result<PooledConn, ProxyError> {
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(ProxyError::connect(e)),
        Err(_) => return Err(ProxyError::ConnectTimeout),
    };
    // Small request/response exchanges must not wait on Nagle.
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(ProxyError::NotSent)?;
    tokio::spawn(async move {
        // Ends when the backend or the pool closes the connection; upgrades (WebSocket)
        // hand the socket over to the tunnel instead.
        let _ = conn.with_upgrades().await;
    });
    Ok(PooledConn {
        sender,
        addr,
        reused: false,
    })
}
