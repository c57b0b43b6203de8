//! Upstream HTTP/1.1 keep-alive connections of the engine, pooled per worker thread: plain
//! sockets (the engine speaks HTTP/1 on them itself), each holding its backend's
//! `max_connections` slot for as long as it is open, idle or not.
//!
//! The same rules as `http::client`: the most recently used idle connection first; one idle
//! past the pool's `idle_timeout`, or that the backend closed (a read that does not block),
//! is dropped at checkout; a connection handed back while requests wait for a slot of its
//! backend is closed so the slot goes to a waiter; and a worker that has made capped
//! connections sweeps its idle ones (`http::client`'s sweeper) for backends with waiters.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::deadline;
use crate::backend::{Backend, UpstreamCap, UpstreamSlot};
use crate::http::{client, ProxyError};

const MAX_IDLE_PER_BACKEND: usize = 256;

/// An upstream connection checked out for one exchange.
#[derive(Debug)]
pub struct Upstream {
    pub stream: TcpStream,
    addr: SocketAddr,
    slot: UpstreamSlot,
    since: Instant,
    /// It came from the pool: failing before any response byte may just mean it went stale.
    pub reused: bool,
    /// Bounds the wait for each response head (`deadline::kept`), kept with the connection.
    pub timer: Pin<Box<Sleep>>,
}

thread_local! {
    static IDLE: RefCell<client::IdleMap<SocketAddr, Upstream>> = RefCell::new(client::IdleMap::default());
    static SWEEPER: Cell<Option<tokio::task::AbortHandle>> = const { Cell::new(None) };
}

impl Upstream {
    /// Back to this worker's idle list (its exchange ended cleanly).
    pub fn release(mut self) {
        if self.slot.state().slot_waiters() > 0 {
            return;
        }
        self.since = Instant::now();
        self.reused = true;
        IDLE.with(|pool| {
            let mut pool = pool.borrow_mut();
            let list = pool.entry(self.addr).or_default();
            if list.len() >= MAX_IDLE_PER_BACKEND {
                list.remove(0);
            }
            list.push(self);
        });
    }
}

/// Whether an idle socket is still open with nothing unread (a backend that closed, or sent
/// bytes nobody asked for, is not reused).
fn still_open(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// An idle connection to `backend`, else a new one under `cap`.
pub async fn checkout(
    backend: &Backend,
    cap: UpstreamCap,
    connect_timeout: Duration,
    idle_timeout: Duration,
) -> Result<Upstream, ProxyError> {
    let addr = backend.addr;
    loop {
        let idle = IDLE.with(|pool| pool.borrow_mut().get_mut(&addr).and_then(Vec::pop));
        let Some(idle) = idle else { break };
        if idle.since.elapsed() < idle_timeout && still_open(&idle.stream) {
            return Ok(idle);
        }
    }
    Box::pin(connect(backend, cap, connect_timeout)).await
}

/// A new connection to `backend`, holding one of its slots under `cap`.
pub async fn connect(
    backend: &Backend,
    cap: UpstreamCap,
    connect_timeout: Duration,
) -> Result<Upstream, ProxyError> {
    let slot = backend
        .state
        .take_slot(cap)
        .await
        .map_err(ProxyError::Busy)?;
    if cap.max > 0 {
        ensure_sweeper();
    }
    let addr = backend.addr;
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(ProxyError::connect(e)),
        Err(_) => return Err(ProxyError::ConnectTimeout),
    };
    let _ = stream.set_nodelay(true);
    Ok(Upstream {
        stream,
        addr,
        slot,
        since: Instant::now(),
        reused: false,
        timer: deadline::new_timer(),
    })
}

/// Starts this worker's sweeper (`http::client`'s, over this pool's idle lists).
fn ensure_sweeper() {
    client::ensure_sweeping(&SWEEPER, || {
        client::sweep_every(&IDLE, |up: &Upstream| up.slot.state().slot_waiters() > 0)
    });
}
