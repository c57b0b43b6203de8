//! Closing client connections that hold a slot without using it, and what a connection's
//! requests tell the proxy about their bodies.
//!
//! # Why
//! A connection costs a descriptor and a `max_connections` slot whether or not it ever sends a
//! request. hyper's own header timeout starts only once hyper has chosen a protocol (the first
//! byte for HTTP/1; h2 needs the whole 24-byte preface) and h2 has no idle timeout at all, so
//! a socket that sent nothing, part of the h2 preface, or the preface and then nothing stayed
//! open for ever: 1,000 of them locked every client out of a `max_connections = 1000`
//! listener. HAProxy and nginx close such sockets after their header timeout.
//!
//! # What it does
//! Every connection has one [`Activity`] (atomics only) and one [`watch`] future beside hyper's
//! connection future; `http::serve` closes the connection when `watch` returns. Its deadline:
//! - a request in flight (from its head to the end of its response body, or its upgrade):
//!   none; `client_body_timeout` and `request_timeout` bound the request itself;
//! - no request yet: accept + `client_header_timeout`, HTTP/1 and h2 alike;
//! - HTTP/1 between requests: `client_idle_timeout` after the last response; once a byte of
//!   the next head has arrived, that byte + `client_header_timeout`;
//! - h2 with no open stream: `client_idle_timeout` after the last stream ended. Frames such as
//!   PING or SETTINGS do not count: a client pinging an idle connection still holds it idle.
//!
//! hyper's HTTP/1 header timeout is off (it also ran between keep-alive requests, where
//! `client_idle_timeout` rules); [`ActivityIo`] sees every byte read to date the heads.
//!
//! # Request bodies
//! The same value counts the connection's request bodies still streaming upstream
//! ([`UploadGuard`]) and when the last one ended, so that `request_timeout` runs from the end
//! of the body: a slow but steady upload is the client's time, not the backend's. HTTP/1 has
//! one request at a time; on h2 the count is the connection's, so a POST whose own body ended
//! waits on while another stream still uploads (never the other way round).
//!
//! # Cost
//! Per read two relaxed loads (and a store for the first byte of an HTTP/1 head); per request
//! an `Arc` clone and a few relaxed atomic operations; one timer per connection, re-armed at
//! most once per `min(client_header_timeout, client_idle_timeout)` (see [`watch`]). Nothing
//! allocates after accept.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::clock;

/// The client timeouts the watchdog applies (from `[global]`).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

/// What one client connection is doing, as far as its deadlines go.
#[derive(Debug)]
pub struct Activity {
    /// `clock::now_ms()` at accept.
    accepted: u64,
    /// Requests whose response has not ended.
    in_flight: AtomicU32,
    /// A request has arrived on this connection.
    seen_request: AtomicBool,
    /// It speaks h2 (its first request said so).
    h2: AtomicBool,
    /// When the last request ended (accept before the first).
    idle_since: AtomicU64,
    /// The first byte read while no request was in flight (HTTP/1: a head arriving); 0: none.
    head_start: AtomicU64,
    /// Request bodies still streaming upstream.
    uploads: AtomicU32,
    /// When a request body last ended; 0: never.
    upload_end: AtomicU64,
}

/// The parts of [`Activity`] a deadline depends on, read once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    accepted: u64,
    in_flight: u32,
    seen_request: bool,
    h2: bool,
    idle_since: u64,
    head_start: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// When a connection in `state` is to be closed (`clock::now_ms()` scale); `None` while a
/// request is in flight. See the module doc for the rules.
fn deadline(state: State, t: Timeouts) -> Option<u64> {
    if state.in_flight > 0 {
        return None;
    }
    if !state.seen_request {
        return Some(state.accepted.saturating_add(ms(t.header)));
    }
    if !state.h2 && state.head_start != 0 {
        return Some(state.head_start.saturating_add(ms(t.header)));
    }
    Some(state.idle_since.saturating_add(ms(t.idle)))
}

impl Activity {
    /// A connection accepted at `accepted` (`clock::now_ms()`).
    pub fn new(accepted: u64) -> Activity {
        Activity {
            accepted,
            in_flight: AtomicU32::new(0),
            seen_request: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            idle_since: AtomicU64::new(accepted),
            head_start: AtomicU64::new(0),
            uploads: AtomicU32::new(0),
            upload_end: AtomicU64::new(0),
        }
    }

    fn state(&self) -> State {
        State {
            accepted: self.accepted,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            seen_request: self.seen_request.load(Ordering::Relaxed),
            h2: self.h2.load(Ordering::Relaxed),
            idle_since: self.idle_since.load(Ordering::Relaxed),
            head_start: self.head_start.load(Ordering::Relaxed),
        }
    }

    /// Bytes arrived from the client.
    #[inline]
    fn read(&self) {
        if self.head_start.load(Ordering::Relaxed) == 0
            && self.in_flight.load(Ordering::Relaxed) == 0
        {
            self.head_start.store(clock::now_ms(), Ordering::Relaxed);
        }
    }

    /// A request arrived (`h2`: over HTTP/2); the connection is busy until the guard drops
    /// (keep it with the response body).
    #[inline]
    pub fn request(self: &Arc<Self>, h2: bool) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if !self.seen_request.load(Ordering::Relaxed) {
            self.seen_request.store(true, Ordering::Relaxed);
            self.h2.store(h2, Ordering::Relaxed);
        }
        RequestGuard(Arc::clone(self))
    }

    /// A request body starts streaming upstream; it has ended when the guard drops.
    pub fn upload(self: &Arc<Self>) -> UploadGuard {
        self.uploads.fetch_add(1, Ordering::Relaxed);
        UploadGuard(Arc::clone(self))
    }

    /// `None` while a request body of this connection is still streaming upstream, else when
    /// the last one ended (`clock::now_ms()`; 0 if none ever did).
    pub fn uploads_done_at(&self) -> Option<u64> {
        if self.uploads.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(self.upload_end.load(Ordering::Relaxed))
    }
}

/// A request in flight on its connection (see [`Activity::request`]).
#[derive(Debug)]
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.0;
        if a.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            a.idle_since.store(clock::now_ms(), Ordering::Relaxed);
            a.head_start.store(0, Ordering::Relaxed);
        }
    }
}

/// A request body streaming upstream (see [`Activity::upload`]).
#[derive(Debug)]
pub struct UploadGuard(Arc<Activity>);

impl Drop for UploadGuard {
    fn drop(&mut self) {
        let a = &self.0;
        a.upload_end.store(clock::now_ms(), Ordering::Relaxed);
        a.uploads.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Returns once the connection of `activity` is past its deadline (see the module doc).
///
/// It sleeps toward the deadline in steps of at most `min(header, idle)`. A deadline can move
/// earlier while it sleeps (the first request ends and the idle timeout is shorter than what
/// was left of the header timeout; an HTTP/1 head starts), but never to less than that step
/// after the event that moved it, and the step in progress began before the event: so the
/// watchdog always wakes by the new deadline, with no wake-up to send and no lateness.
pub async fn watch(activity: &Activity, t: Timeouts) {
    let step = t.header.min(t.idle);
    loop {
        let now = clock::now_ms();
        let wait = match deadline(activity.state(), t) {
            Some(at) if at <= now => return,
            Some(at) => Duration::from_millis(at - now).min(step),
            None => step,
        };
        tokio::time::sleep(wait).await;
    }
}

/// The client socket, telling its [`Activity`] when bytes arrive; otherwise a pass-through.
#[derive(Debug)]
pub struct ActivityIo<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> ActivityIo<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        ActivityIo { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{deadline, State, Timeouts};

    const T: Timeouts = Timeouts {
        header: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    fn fresh() -> State {
        State {
            accepted: 1_000,
            in_flight: 0,
            seen_request: false,
            h2: false,
            idle_since: 1_000,
            head_start: 0,
        }
    }

    #[test]
    fn the_first_request_is_owed_from_accept_whatever_arrived() {
        assert_eq!(deadline(fresh(), T), Some(11_000));
        // Part of a head (or of the h2 preface) changes nothing: still accept + header.
        let partial = State {
            head_start: 5_000,
            ..fresh()
        };
        assert_eq!(deadline(partial, T), Some(11_000));
    }

    #[test]
    fn a_request_in_flight_has_no_deadline() {
        let busy = State {
            in_flight: 2,
            seen_request: true,
            ..fresh()
        };
        assert_eq!(deadline(busy, T), None);
    }

    #[test]
    fn http1_between_requests_is_idle_until_a_head_starts() {
        let idle = State {
            seen_request: true,
            idle_since: 20_000,
            ..fresh()
        };
        assert_eq!(deadline(idle, T), Some(80_000));
        // A byte of the next head at 70 s: it has the header timeout from then.
        let head = State {
            head_start: 70_000,
            ..idle
        };
        assert_eq!(deadline(head, T), Some(80_000));
        let early_head = State {
            head_start: 21_000,
            ..idle
        };
        assert_eq!(deadline(early_head, T), Some(31_000));
    }

    #[test]
    fn h2_with_no_open_stream_is_idle_whatever_frames_arrive() {
        let idle = State {
            seen_request: true,
            h2: true,
            idle_since: 20_000,
            head_start: 25_000, // a PING
            ..fresh()
        };
        assert_eq!(deadline(idle, T), Some(80_000));
    }

    #[test]
    fn huge_timeouts_never_overflow() {
        let t = Timeouts {
            header: Duration::MAX,
            idle: Duration::MAX,
        };
        assert_eq!(deadline(fresh(), t), Some(u64::MAX));
    }
}
