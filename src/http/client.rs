//! Upstream HTTP/1.1 keep-alive connections, pooled per worker thread.
//!
//! Each worker is a single-threaded runtime, so its pool is a thread-local: checking a
//! connection out or back in takes no lock and no atomic. A connection goes back only when its
//! response body was read to the end (see `response_body::ResponseBody`); one the backend closed is seen
//! as closed (its connection task ended) and dropped on checkout, as is one idle for longer than
//! the pool's `idle_timeout`.
//!
//! Under the pool's `max_connections` a new connection takes one of its backend's slots
//! (`BackendState::take_slot`, waiting in the backend's bounded queue when all are taken) and
//! its connection task holds it until the connection closes; a pooled connection keeps its
//! slot while idle and reuses it. A connection handed back while requests wait for a slot of
//! its backend is closed instead of kept idle, so the slot goes to a waiter on any worker; and
//! a worker that has made capped connections sweeps its idle list every
//! [`SWEEP_EVERY`], closing idle connections of backends that requests wait for (a worker with
//! no traffic would otherwise hold their slots until it next checks one out).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::error::ProxyError;
use super::request_body::RequestBody;
use crate::backend::{Backend, BackendState, UpstreamCap};

/// Idle connections kept per backend per worker; more are closed on return.
const MAX_IDLE_PER_BACKEND: usize = 256;

pub type Sender = http1::SendRequest<RequestBody>;

struct Idle {
    sender: Sender,
    since: Instant,
    state: Arc<BackendState>,
}

/// How often a worker with capped connections looks for idle ones that waiters need.
const SWEEP_EVERY: Duration = Duration::from_millis(50);

thread_local! {
    static IDLE: RefCell<HashMap<SocketAddr, Vec<Idle>>> = RefCell::new(HashMap::new());
    /// This worker's sweeper, once a capped connection was made here (`None` before; a
    /// finished one, after its runtime ended, is replaced).
    static SWEEPER: Cell<Option<tokio::task::AbortHandle>> = const { Cell::new(None) };
}

/// Starts this worker's sweeper unless it runs already (new connections only).
fn ensure_sweeper() {
    SWEEPER.with(|cell| {
        let running = cell.take().filter(|h| !h.is_finished());
        let handle = running.unwrap_or_else(|| tokio::spawn(sweep()).abort_handle());
        cell.set(Some(handle));
    });
}

/// Closes, every [`SWEEP_EVERY`], the idle connections of backends that requests wait for a
/// slot of: their slots go to the waiters, on whatever worker.
async fn sweep() {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Dropped outside the borrow: a closing connection must not find the map borrowed.
        let mut closing = Vec::new();
        IDLE.with(|pool| {
            for list in pool.borrow_mut().values_mut() {
                // Per entry: one address may be a backend of two pools (two states).
                let mut i = 0;
                while i < list.len() {
                    if list[i].state.slot_waiters() > 0 {
                        closing.push(list.remove(i));
                    } else {
                        i += 1;
                    }
                }
            }
        });
        drop(closing);
    }
}

/// An upstream connection checked out of this worker's pool (or freshly made).
#[derive(Debug)]
pub struct PooledConn {
    pub sender: Sender,
    addr: SocketAddr,
    /// Whether it came from the pool (a failure before sending may just mean it went stale).
    pub reused: bool,
    /// Its backend's shared state (moved along with the connection, never cloned per request).
    state: Arc<BackendState>,
}

impl PooledConn {
    /// Returns the connection to this worker's idle list.
    pub fn release(self) {
        // Requests wait for a slot of this backend (maybe on another worker): closing this
        // connection frees its slot for them.
        if self.sender.is_closed() || self.state.slot_waiters() > 0 {
            return;
        }
        let idle = Idle {
            sender: self.sender,
            since: Instant::now(),
            state: self.state,
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

/// A ready connection to `backend`: the most recently used idle one, else a new one (under
/// `cap`).
pub async fn checkout(
    backend: &Backend,
    cap: UpstreamCap,
    connect_timeout: Duration,
    idle_timeout: Duration,
) -> Result<PooledConn, ProxyError> {
    let addr = backend.addr;
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
                state: idle.state,
            });
        }
    }
    // Cold path (a new connection): boxed, so the per-request future stays small.
    Box::pin(connect(backend, cap, connect_timeout)).await
}

/// A new connection to `backend`, its connection task spawned on the current worker and
/// holding one of the backend's slots under `cap` (waited for when all are taken).
pub async fn connect(
    backend: &Backend,
    cap: UpstreamCap,
    connect_timeout: Duration,
) -> Result<PooledConn, ProxyError> {
    let addr = backend.addr;
    let slot = backend
        .state
        .take_slot(cap)
        .await
        .map_err(ProxyError::Busy)?;
    if cap.max > 0 {
        ensure_sweeper();
    }
    // A failed connect drops `slot`: freed at once.
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
    let state = Arc::clone(slot.state());
    tokio::spawn(async move {
        // Ends when the backend or the pool closes the connection; upgrades (WebSocket)
        // hand the socket over to the tunnel instead. The slot is freed here, with it.
        let _ = conn.with_upgrades().await;
        drop(slot);
    });
    Ok(PooledConn {
        sender,
        addr,
        reused: false,
        state,
    })
}
