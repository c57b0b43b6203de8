//! Upstream HTTP/2 connections (h2c, or h2 over TLS), multiplexed and kept per worker thread.
//!
//! A request takes a stream on this worker's connection to its backend that has room: fewer
//! streams in flight than the backend's `SETTINGS_MAX_CONCURRENT_STREAMS` (read from hyper's
//! connection as it runs, capped at [`MAX_STREAMS`]). Only when every connection is full is a
//! new one made, so a backend sees a few connections per worker however many requests are in
//! flight. While one is being made, other requests for the same backend wait for it (up to its
//! expected capacity) instead of each opening their own.
//!
//! A new connection carries one stream until it has *settled*: until its first response head
//! (the backend's SETTINGS came before it), or [`SETTLE_WAIT`] at most. Streams sent before the
//! backend's SETTINGS could exceed a limit below the assumed 100 and be refused
//! (REFUSED_STREAM), and a refused request with a body cannot be sent again.
//!
//! A connection that got a GOAWAY stops taking requests (hyper closes its dispatch side; its
//! streams in flight finish); the next request finds it closed and goes to a new connection.
//! One idle for longer than the pool's `idle_timeout` is dropped on the next look. Each
//! connection holds one of its backend's `max_connections` slots while it lives.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::Notify;

use super::error::ProxyError;
use super::request_body::RequestBody;
use super::upstream_key::Key;
use crate::backend::UpstreamSlot as Slot;
use crate::tls::client::UpstreamIo;

/// Streams one connection carries at most, whatever the backend allows (one TCP connection
/// shares one congestion window; past this a second one is cheaper than the queueing).
const MAX_STREAMS: usize = 1000;
/// What a connection is assumed to carry before it settled, for the waiters it may take.
const ASSUMED_STREAMS: usize = 100;
/// The longest requests wait for a new connection to settle before they use it anyway.
const SETTLE_WAIT: Duration = Duration::from_millis(100);

pub type H2Sender = http2::SendRequest<RequestBody>;

struct Conn {
    sender: H2Sender,
    /// Streams in flight (taken by [`StreamGuard`]s).
    streams: Arc<AtomicUsize>,
    /// The backend's current MAX_CONCURRENT_STREAMS, kept by the connection task.
    max: Arc<AtomicUsize>,
    /// Whether the first response head came (or [`SETTLE_WAIT`] passed): until then one stream.
    settled: Arc<AtomicBool>,
    last_used: Instant,
}

/// A connection being made for a key, and how many requests wait for it.
struct Pending {
    done: Arc<Notify>,
    waiters: usize,
}

/// A request waiting for a connection being made (see [`pending`]).
pub struct Wait {
    done: Arc<Notify>,
    key: Key,
}

impl Wait {
    /// Until the connection settled (within [`SETTLE_WAIT`] of its handshake), or failed.
    pub async fn wait(self) {
        self.done.notified().await;
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        PENDING.with(|p| {
            if let Some(pending) = p.borrow_mut().get_mut(&self.key) {
                pending.waiters = pending.waiters.saturating_sub(1);
            }
        });
    }
}

thread_local! {
    static CONNS: RefCell<HashMap<Key, Vec<Conn>>> = RefCell::new(HashMap::new());
    static PENDING: RefCell<HashMap<Key, Pending>> = RefCell::new(HashMap::new());
}

/// One stream of a connection in flight; its slot on the connection is freed when dropped.
#[derive(Debug)]
pub struct StreamGuard(Arc<AtomicUsize>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream on one of this worker's connections for `key` with room, if there is one.
/// Closed connections and ones idle past `idle_timeout` are dropped on the way.
pub fn take(key: Key, idle_timeout: Duration) -> Option<(H2Sender, StreamGuard)> {
    // Dropped outside the borrow (a closing connection must not find the map borrowed).
    let mut closing = Vec::new();
    let found = CONNS.with(|conns| {
        let mut conns = conns.borrow_mut();
        let list = conns.get_mut(&key)?;
        let now = Instant::now();
        let mut found = None;
        let mut i = 0;
        while i < list.len() {
            let c = &mut list[i];
            let streams = c.streams.load(Ordering::Relaxed);
            let stale = c.sender.is_closed()
                || (streams == 0 && now.duration_since(c.last_used) >= idle_timeout);
            if stale {
                closing.push(list.swap_remove(i));
                continue;
            }
            let max = if c.settled.load(Ordering::Relaxed) {
                c.max.load(Ordering::Relaxed).clamp(1, MAX_STREAMS)
            } else {
                1
            };
            if found.is_none() && streams < max {
                c.streams.fetch_add(1, Ordering::Relaxed);
                c.last_used = now;
                found = Some((c.sender.clone(), StreamGuard(Arc::clone(&c.streams))));
            }
            i += 1;
        }
        found
    });
    drop(closing);
    found
}

/// A connection for `key` is being made and can take one more waiter: the wait for it.
pub fn pending(key: Key) -> Option<Wait> {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let pending = p.get_mut(&key)?;
        if pending.waiters >= ASSUMED_STREAMS {
            return None;
        }
        pending.waiters += 1;
        Some(Wait {
            done: Arc::clone(&pending.done),
            key,
        })
    })
}

/// Marks a connection for `key` as being made until dropped (then its waiters look again):
/// held by the request that makes it until its first response head.
#[derive(Debug)]
pub struct Connecting(Key);

impl Connecting {
    pub fn start(key: Key) -> Option<Connecting> {
        PENDING.with(|p| {
            let mut p = p.borrow_mut();
            if p.contains_key(&key) {
                return None;
            }
            p.insert(
                key,
                Pending {
                    done: Arc::new(Notify::new()),
                    waiters: 0,
                },
            );
            Some(Connecting(key))
        })
    }
}

/// A new connection's first request: settles it when its response head (or error) came. The
/// connection task then reads the backend's stream limit (its SETTINGS came before any
/// response), marks the connection settled, and drops the mark the waiters wait on; it does
/// the same by itself [`SETTLE_WAIT`] after the handshake.
#[derive(Debug)]
pub struct Settle(tokio::sync::oneshot::Sender<()>);

impl Settle {
    pub fn done(self) {
        let _ = self.0.send(());
    }
}

impl Drop for Connecting {
    fn drop(&mut self) {
        if let Some(p) = PENDING.with(|p| p.borrow_mut().remove(&self.0)) {
            p.done.notify_waiters();
        }
    }
}

/// The HTTP/2 handshake over `io`; the connection task is spawned on this worker and holds
/// `slot`; the connection joins this worker's list for `key` with one stream taken, unsettled
/// (`connecting`, the mark that others wait on, goes with its [`Settle`]).
pub async fn handshake(
    io: UpstreamIo,
    slot: Slot,
    key: Key,
    connecting: Option<Connecting>,
) -> Result<(H2Sender, StreamGuard, Settle), ProxyError> {
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        // A backend whose SETTINGS name no limit takes up to MAX_STREAMS on one connection.
        .initial_max_send_streams(MAX_STREAMS)
        .handshake(TokioIo::new(io))
        .await
        .map_err(ProxyError::NotSent)?;
    let max = Arc::new(AtomicUsize::new(MAX_STREAMS));
    let settled = Arc::new(AtomicBool::new(false));
    let (tell, told) = tokio::sync::oneshot::channel::<()>();
    let seen = Arc::clone(&max);
    let settled_here = Arc::clone(&settled);
    tokio::spawn(async move {
        let mut conn = pin!(conn);
        let mut told = Some(told);
        let mut mark = connecting;
        let mut timer = pin!(tokio::time::sleep(SETTLE_WAIT));
        // The connection, noting the backend's stream limit as SETTINGS change it.
        std::future::poll_fn(|cx| {
            if let Some(rx) = told.as_mut() {
                let first = std::pin::Pin::new(rx).poll(cx).is_ready();
                if first || timer.as_mut().poll(cx).is_ready() {
                    told = None;
                    seen.store(conn.current_max_send_streams(), Ordering::Relaxed);
                    settled_here.store(true, Ordering::Relaxed);
                    // Waiters look again now, and find the limit.
                    mark = None;
                }
            }
            let polled = conn.as_mut().poll(cx);
            if told.is_none() {
                seen.store(conn.current_max_send_streams(), Ordering::Relaxed);
            }
            match polled {
                Poll::Ready(_) => Poll::Ready(()),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        drop(mark);
        drop(slot);
    });
    let streams = Arc::new(AtomicUsize::new(1));
    let guard = StreamGuard(Arc::clone(&streams));
    CONNS.with(|conns| {
        conns.borrow_mut().entry(key).or_default().push(Conn {
            sender: sender.clone(),
            streams,
            max,
            settled: Arc::clone(&settled),
            last_used: Instant::now(),
        });
    });
    let settle = Settle(tell);
    Ok((sender, guard, settle))
}
