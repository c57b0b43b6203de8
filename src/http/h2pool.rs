//! Upstream HTTP/2 connections (h2c, or h2 over TLS), multiplexed and kept per worker thread.
//!
//! A request takes a stream on this worker's connection to its backend that has room: fewer
//! streams in flight than the backend's `SETTINGS_MAX_CONCURRENT_STREAMS` (read from hyper's
//! connection as it runs, capped at [`MAX_STREAMS`]). Only when every connection is full is a
//! new one made, so a backend sees a few connections per worker however many requests are in
//! flight. While one is being made, other requests for the same backend wait for it (up to its
//! expected capacity) instead of each opening their own.
//!
//! A connection that got a GOAWAY stops taking requests (hyper closes its dispatch side; its
//! streams in flight finish); the next request finds it closed and goes to a new connection.
//! One idle for longer than the pool's `idle_timeout` is dropped on the next look. Each
//! connection holds one of its backend's `max_connections` slots while it lives.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::Notify;

use super::client::Key;
use super::error::ProxyError;
use super::request_body::RequestBody;
use crate::backend::UpstreamSlot as Slot;
use crate::tls::client::UpstreamIo;

/// Streams one connection carries at most, whatever the backend allows (one TCP connection
/// shares one congestion window; past this a second one is cheaper than the queueing).
const MAX_STREAMS: usize = 1000;
/// What a connection is assumed to carry before the backend's SETTINGS arrive (hyper's and
/// h2's initial value).
const ASSUMED_STREAMS: usize = 100;

pub type H2Sender = http2::SendRequest<RequestBody>;

struct Conn {
    sender: H2Sender,
    /// Streams in flight (taken by [`StreamGuard`]s).
    streams: Arc<AtomicUsize>,
    /// The backend's current MAX_CONCURRENT_STREAMS, kept by the connection task.
    max: Arc<AtomicUsize>,
    last_used: Instant,
}

/// A connection being made for a key, and how many requests wait for it.
struct Pending {
    done: Arc<Notify>,
    waiters: usize,
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
            let max = c.max.load(Ordering::Relaxed).clamp(1, MAX_STREAMS);
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

/// A connection for `key` is being made and can take one more waiter: its notification.
pub fn pending(key: Key) -> Option<Arc<Notify>> {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let pending = p.get_mut(&key)?;
        if pending.waiters >= ASSUMED_STREAMS {
            return None;
        }
        pending.waiters += 1;
        Some(Arc::clone(&pending.done))
    })
}

/// Marks a connection for `key` as being made until dropped (then its waiters look again).
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

impl Drop for Connecting {
    fn drop(&mut self) {
        if let Some(p) = PENDING.with(|p| p.borrow_mut().remove(&self.0)) {
            p.done.notify_waiters();
        }
    }
}

/// The HTTP/2 handshake over `io`; the connection task is spawned on this worker and holds
/// `slot`; the connection joins this worker's list for `key` with one stream taken.
pub async fn handshake(
    io: UpstreamIo,
    slot: Slot,
    key: Key,
) -> Result<(H2Sender, StreamGuard), ProxyError> {
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(io))
        .await
        .map_err(ProxyError::NotSent)?;
    let max = Arc::new(AtomicUsize::new(ASSUMED_STREAMS));
    let seen = Arc::clone(&max);
    tokio::spawn(async move {
        let mut conn = pin!(conn);
        // The connection, noting the backend's stream limit as SETTINGS change it.
        std::future::poll_fn(|cx| {
            let polled = conn.as_mut().poll(cx);
            seen.store(conn.current_max_send_streams(), Ordering::Relaxed);
            match polled {
                Poll::Ready(_) => Poll::Ready(()),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        drop(slot);
    });
    let streams = Arc::new(AtomicUsize::new(1));
    let guard = StreamGuard(Arc::clone(&streams));
    CONNS.with(|conns| {
        conns.borrow_mut().entry(key).or_default().push(Conn {
            sender: sender.clone(),
            streams,
            max,
            last_used: Instant::now(),
        });
    });
    Ok((sender, guard))
}

/// Upstream HTTP/2 connections this worker holds to `key`'s backend (tests and status).
#[cfg(test)]
pub fn open_connections(key: Key) -> usize {
    CONNS.with(|c| c.borrow().get(&key).map_or(0, Vec::len))
}
