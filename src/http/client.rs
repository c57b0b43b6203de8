//! Upstream connections, pooled per worker thread: HTTP/1.1 keep-alive connections here, HTTP/2
//! ones (multiplexed) in `h2pool`; TCP, then TLS when the pool has `[pool.tls]`
//! (`tls::client`, whose handshake counts within `connect_timeout`), then the protocol the
//! pool's `protocol` names (or, for `auto`, the one ALPN chose).
//!
//! Idle lists are keyed by the backend's address and the pool's TLS settings (`upstream_key`), so a
//! plain and a TLS pool to the same address never share a connection.
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

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, TrySendError};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::error::ProxyError;
use super::h2pool::{self, H2Sender, StreamGuard};
use super::headers;
use super::request_body::RequestBody;
use super::upstream_key::Key;
use crate::backend::{Backend, BackendState};
use crate::config::UpstreamProtocol;
use crate::pool::Pool;
use crate::tls::client::UpstreamIo;

/// Idle connections kept per backend per worker; more are closed on return.
const MAX_IDLE_PER_BACKEND: usize = 256;

pub type H1Sender = http1::SendRequest<RequestBody>;

/// Which connection a request goes over.
#[derive(Debug)]
pub enum Sender {
    H1(H1Sender),
    /// A stream on a shared HTTP/2 connection; `true`: over TLS (`https` as `:scheme`).
    H2(H2Sender, bool),
}

struct Idle {
    sender: H1Sender,
    since: Instant,
    state: Arc<BackendState>,
}

/// A worker's idle connections by backend. foldhash, not SipHash: the map is looked up twice
/// per request, and its keys are backend addresses from the config (no flooding to resist).
pub(crate) type IdleMap<K, T> = HashMap<K, Vec<T>, foldhash::fast::RandomState>;

/// How often a worker with capped connections looks for idle ones that waiters need.
const SWEEP_EVERY: Duration = Duration::from_millis(50);

thread_local! {
    static IDLE: RefCell<IdleMap<Key, Idle>> = RefCell::new(IdleMap::default());
    /// This worker's sweeper, once a capped connection was made here (`None` before; a
    /// finished one, after its runtime ended, is replaced).
    static SWEEPER: Cell<Option<tokio::task::AbortHandle>> = const { Cell::new(None) };
}

/// Starts this worker's sweeper unless it runs already (new connections only).
fn ensure_sweeper() {
    ensure_sweeping(&SWEEPER, || {
        sweep_every(&IDLE, |idle: &Idle| idle.state.slot_waiters() > 0)
    });
}

/// Starts `sweep` as the task whose handle `cell` keeps, unless it runs already (a finished
/// one, after its runtime ended, is replaced). Shared with the HTTP/1 engine's pool.
pub(crate) fn ensure_sweeping<F>(
    cell: &'static std::thread::LocalKey<Cell<Option<tokio::task::AbortHandle>>>,
    sweep: impl FnOnce() -> F,
) where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    cell.with(|cell| {
        let running = cell.take().filter(|h| !h.is_finished());
        let handle = running.unwrap_or_else(|| tokio::spawn(sweep()).abort_handle());
        cell.set(Some(handle));
    });
}

/// Closes, every [`SWEEP_EVERY`], the idle connections in `idle` that `waited` says requests
/// wait for a slot of (their backend's): the slots go to the waiters, on whatever worker.
/// Per entry, not per key: one address may be a backend of two pools (two states).
pub(crate) async fn sweep_every<K: 'static, T: 'static>(
    idle: &'static std::thread::LocalKey<RefCell<IdleMap<K, T>>>,
    waited: impl Fn(&T) -> bool,
) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Dropped outside the borrow: a closing connection must not find the map borrowed.
        let mut closing = Vec::new();
        idle.with(|pool| {
            for list in pool.borrow_mut().values_mut() {
                let mut i = 0;
                while i < list.len() {
                    if waited(&list[i]) {
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

/// An upstream connection checked out of this worker's pool (or freshly made): an HTTP/1.1
/// connection of its own, or a stream on a shared HTTP/2 one.
#[derive(Debug)]
pub struct PooledConn {
    sender: Sender,
    key: Key,
    /// Whether it came from the pool (a failure before sending may just mean it went stale).
    pub reused: bool,
    /// Its backend's shared state (moved along with the connection, never cloned per request).
    state: Arc<BackendState>,
    /// h2: this request's stream on the connection, freed with it.
    _stream: Option<StreamGuard>,
    /// h2, a new connection's first request: settles it once the response head came.
    settle: Option<h2pool::Settle>,
}

impl PooledConn {
    /// Sends `req` over this connection (rewritten for HTTP/2 when it is one); a request that
    /// never left comes back in the error.
    pub async fn send(
        &mut self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<RequestBody>>> {
        match &mut self.sender {
            Sender::H1(sender) => sender.try_send_request(headers::for_h1(req)).await,
            Sender::H2(sender, tls) => {
                let tls = *tls;
                let sent = sender.try_send_request(headers::for_h2(req, tls)).await;
                if let Some(settle) = self.settle.take() {
                    settle.done();
                }
                sent
            }
        }
    }

    /// Whether it is a stream on an HTTP/2 connection.
    pub fn is_h2(&self) -> bool {
        matches!(self.sender, Sender::H2(..))
    }

    /// Returns the connection to this worker's idle list (h1), or frees its stream (h2).
    pub fn release(self) {
        let Sender::H1(sender) = self.sender else {
            return;
        };
        // Requests wait for a slot of this backend (maybe on another worker): closing this
        // connection frees its slot for them.
        if sender.is_closed() || self.state.slot_waiters() > 0 {
            return;
        }
        let idle = Idle {
            sender,
            since: Instant::now(),
            state: self.state,
        };
        IDLE.with(|pool| {
            let mut pool = pool.borrow_mut();
            let list = pool.entry(self.key).or_default();
            if list.len() >= MAX_IDLE_PER_BACKEND {
                list.remove(0);
            }
            list.push(idle);
        });
    }
}

/// A ready connection to `backend` of `pool`: h2 pools a stream on a connection with room,
/// h1 the most recently used idle connection; else a new one (under the pool's cap).
pub async fn checkout(pool: &Pool, backend: &Backend) -> Result<PooledConn, ProxyError> {
    let key = Key::of(pool, backend);
    let tls = pool.tls.is_some();
    if pool.protocol != UpstreamProtocol::Http1 {
        loop {
            if let Some((sender, stream)) = h2pool::take(key, pool.idle_timeout) {
                return Ok(PooledConn {
                    sender: Sender::H2(sender, tls),
                    key,
                    reused: true,
                    state: Arc::clone(&backend.state),
                    _stream: Some(stream),
                    settle: None,
                });
            }
            // A connection to it is being made on this worker: wait for it rather than open
            // another (ALPN may yet pick HTTP/1.1 for `auto`: then look again below).
            match h2pool::pending(key) {
                Some(wait) => wait.wait().await,
                None => break,
            }
        }
    }
    if pool.protocol == UpstreamProtocol::Http1 || pool.protocol == UpstreamProtocol::Auto {
        loop {
            let idle = IDLE.with(|idle| idle.borrow_mut().get_mut(&key).and_then(Vec::pop));
            let Some(mut idle) = idle else { break };
            if idle.sender.is_closed() || idle.since.elapsed() >= pool.idle_timeout {
                continue;
            }
            // Usually ready at once; otherwise the connection task is still finishing the last
            // response, or the connection is closing (an error: try the next one).
            if idle.sender.is_ready() || idle.sender.ready().await.is_ok() {
                return Ok(PooledConn {
                    sender: Sender::H1(idle.sender),
                    key,
                    reused: true,
                    state: idle.state,
                    _stream: None,
                    settle: None,
                });
            }
        }
    }
    // Cold path (a new connection): boxed, so the per-request future stays small.
    Box::pin(connect(pool, backend)).await
}

/// A socket to `addr` for `pool`: TCP, then TLS when the pool has it, the handshake within
/// the connect timeout. Both HTTP/1 clients (this one and the engine's `http1::upstream`)
/// dial through it.
pub(crate) async fn dial(pool: &Pool, addr: SocketAddr) -> Result<UpstreamIo, ProxyError> {
    tokio::time::timeout(pool.connect_timeout, async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(ProxyError::connect)?;
        // Small request/response exchanges must not wait on Nagle.
        let _ = stream.set_nodelay(true);
        match &pool.tls {
            None => Ok(UpstreamIo::Plain(stream)),
            Some(tls) => tls.connect(stream, addr).await.map_err(ProxyError::Tls),
        }
    })
    .await
    .map_err(|_| ProxyError::ConnectTimeout)?
}

/// A new connection to `backend` of `pool`, its connection task spawned on the current worker
/// and holding one of the backend's slots under the pool's cap (waited for when all are
/// taken): TCP, TLS when the pool has it, then HTTP/1.1 or HTTP/2.
pub async fn connect(pool: &Pool, backend: &Backend) -> Result<PooledConn, ProxyError> {
    let addr = backend.addr;
    let key = Key::of(pool, backend);
    let cap = pool.upstream;
    let slot = backend
        .state
        .take_slot(cap)
        .await
        .map_err(ProxyError::Busy)?;
    if cap.max > 0 {
        ensure_sweeper();
    }
    // Other requests of this worker for an h2 backend wait for this one (until it settled).
    let connecting = match pool.protocol {
        UpstreamProtocol::Http1 => None,
        _ => h2pool::Connecting::start(key),
    };
    // A failed connect drops `slot`: freed at once.
    let io = dial(pool, addr).await?;
    let h2 = match pool.protocol {
        UpstreamProtocol::Http1 => false,
        UpstreamProtocol::H2c | UpstreamProtocol::H2 => true,
        UpstreamProtocol::Auto => io.alpn_h2(),
    };
    let state = Arc::clone(slot.state());
    if h2 {
        let (sender, stream, settle) = h2pool::handshake(io, slot, key, connecting).await?;
        return Ok(PooledConn {
            sender: Sender::H2(sender, pool.tls.is_some()),
            key,
            reused: false,
            state,
            _stream: Some(stream),
            settle: Some(settle),
        });
    }
    drop(connecting);
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(ProxyError::NotSent)?;
    tokio::spawn(async move {
        // Ends when the backend or the pool closes the connection; upgrades (WebSocket)
        // hand the socket over to the tunnel instead. The slot is freed here, with it.
        let _ = conn.with_upgrades().await;
        drop(slot);
    });
    Ok(PooledConn {
        sender: Sender::H1(sender),
        key,
        reused: false,
        state,
        _stream: None,
        settle: None,
    })
}
