//! Upstream HTTP/1.1 keep-alive connections of the engine, pooled per worker thread: plain
//! sockets or TLS over them (`[pool.tls]`; the engine speaks HTTP/1 on them itself), kept
//! under the backend's address and the pool's TLS settings (`http::upstream_key`), each
//! holding its backend's `max_connections` slot for as long as it is open, idle or not.
//!
//! The same rules as `http::client`: the most recently used idle connection first; one idle
//! past the pool's `idle_timeout`, or that the backend closed (a read that does not block),
//! is dropped at checkout; a connection handed back while requests wait for a slot of its
//! backend is closed so the slot goes to a waiter; and a worker that has made capped
//! connections sweeps its idle ones (`http::client`'s sweeper) for backends with waiters.

use std::cell::{Cell, RefCell};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::client::TlsStream;

use super::deadline;
use crate::backend::{Backend, UpstreamSlot};
use crate::http::upstream_key::Key;
use crate::http::{client, ProxyError};
use crate::pool::Pool;
use crate::tls::client::UpstreamIo;

const MAX_IDLE_PER_BACKEND: usize = 256;

/// An upstream connection checked out for one exchange.
#[derive(Debug)]
pub struct Upstream {
    pub stream: UpstreamIo,
    key: Key,
    slot: UpstreamSlot,
    since: Instant,
    /// It came from the pool: failing before any response byte may just mean it went stale.
    pub reused: bool,
    /// Bounds the wait for each response head (`deadline::kept`), kept with the connection.
    pub timer: Pin<Box<Sleep>>,
}

thread_local! {
    static IDLE: RefCell<client::IdleMap<Key, Upstream>> = RefCell::new(client::IdleMap::default());
    static SWEEPER: Cell<Option<tokio::task::AbortHandle>> = const { Cell::new(None) };
}

impl Upstream {
    /// Back to this worker's idle list (its exchange ended cleanly `at`).
    pub fn release(mut self, at: Instant) {
        if self.slot.state().slot_waiters() > 0 {
            return;
        }
        self.since = at;
        self.reused = true;
        IDLE.with(|pool| {
            let mut pool = pool.borrow_mut();
            let list = pool.entry(self.key).or_default();
            if list.len() >= MAX_IDLE_PER_BACKEND {
                list.remove(0);
            }
            list.push(self);
        });
    }
}

/// Whether an idle socket is still open with nothing unread (a backend that closed, or sent
/// bytes nobody asked for, is not reused). Over TLS, plaintext or a `close_notify` the session
/// already holds retires it, and so do bytes waiting on the socket (a session ticket sent
/// late among them), which costs at most a new handshake, never a request sent into a
/// closing connection or answered by stale bytes.
fn still_open(stream: &mut UpstreamIo) -> bool {
    let tcp = match stream {
        UpstreamIo::Plain(tcp) => &*tcp,
        UpstreamIo::Tls(tls) => {
            let (tcp, session) = tls.get_mut();
            match session.process_new_packets() {
                Ok(state) if state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed() => {}
                _ => return false,
            }
            &*tcp
        }
    };
    let mut probe = [0u8; 1];
    matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// An idle connection to `backend` of `pool`, else a new one under the pool's cap. `now`:
/// the exchange's clock reading, against which idle connections are aged.
pub async fn checkout(
    pool: &Pool,
    backend: &Backend,
    now: Instant,
) -> Result<Upstream, ProxyError> {
    let key = Key::of(pool, backend);
    loop {
        let idle = IDLE.with(|idle| idle.borrow_mut().get_mut(&key).and_then(Vec::pop));
        let Some(mut idle) = idle else { break };
        let age = now.saturating_duration_since(idle.since);
        if age < pool.idle_timeout && still_open(&mut idle.stream) {
            return Ok(idle);
        }
    }
    Box::pin(connect(pool, backend)).await
}

/// A new connection to `backend` of `pool`, holding one of its slots under the pool's cap:
/// TCP, then TLS when the pool has it (the handshake within the connect timeout).
pub async fn connect(pool: &Pool, backend: &Backend) -> Result<Upstream, ProxyError> {
    let cap = pool.upstream;
    let slot = backend
        .state
        .take_slot(cap)
        .await
        .map_err(ProxyError::Busy)?;
    if cap.max > 0 {
        ensure_sweeper();
    }
    let stream = client::dial(pool, backend.addr).await?;
    Ok(Upstream {
        stream,
        key: Key::of(pool, backend),
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

/// The read half of an upstream connection, for an exchange that sends the request body
/// while it reads the response head.
pub enum UpRead<'a> {
    Plain(tokio::net::tcp::ReadHalf<'a>),
    Tls(tokio::io::ReadHalf<&'a mut TlsStream<TcpStream>>),
}

/// The write half (see [`UpRead`]).
pub enum UpWrite<'a> {
    Plain(tokio::net::tcp::WriteHalf<'a>),
    Tls(tokio::io::WriteHalf<&'a mut TlsStream<TcpStream>>),
}

/// Splits `stream` for reading and writing at once: a plain socket's halves borrow it (no
/// cost); TLS takes tokio's split (one session, shared by the halves behind a lock).
pub fn split(stream: &mut UpstreamIo) -> (UpRead<'_>, UpWrite<'_>) {
    match stream {
        UpstreamIo::Plain(tcp) => {
            let (r, w) = tcp.split();
            (UpRead::Plain(r), UpWrite::Plain(w))
        }
        UpstreamIo::Tls(tls) => {
            let (r, w) = tokio::io::split(&mut **tls);
            (UpRead::Tls(r), UpWrite::Tls(w))
        }
    }
}

impl AsyncRead for UpRead<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpRead::Plain(r) => Pin::new(r).poll_read(cx, buf),
            UpRead::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpWrite<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpWrite::Plain(w) => Pin::new(w).poll_write(cx, buf),
            UpWrite::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpWrite::Plain(w) => Pin::new(w).poll_flush(cx),
            UpWrite::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpWrite::Plain(w) => Pin::new(w).poll_shutdown(cx),
            UpWrite::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}
