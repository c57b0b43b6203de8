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
//! Besides, whatever the connection is doing:
//! - a write to the client pending (the socket's buffer full) with no byte taken since T:
//!   T + `client_send_timeout` (nginx `send_timeout`). A client that stops reading held its
//!   connection, and the upstream connection streaming to it, for ever; it is closed at
//!   once (no GOAWAY: it reads nothing), and its upstream connection is dropped with the
//!   unfinished response, never returned to the pool;
//! - h2 streams the client cancels (RST_STREAM, or the stream dropped before its response
//!   ended) are counted as a GCRA ([`CANCEL_BURST`], [`CANCEL_RATE_MS`]); past it the
//!   connection is closed with a GOAWAY. h2's own limit counts only streams reset before
//!   hyper accepts them, so a paced rapid reset (HEADERS, wait, RST_STREAM) was never cut off.
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
//! Per read two relaxed loads (and a store for the first byte of an HTTP/1 head); per write
//! one relaxed load (and a store when a write stalls or resumes); per request
//! an `Arc` clone and a few relaxed atomic operations; one timer per connection, re-armed at
//! most once per `min(client_header_timeout, client_idle_timeout, client_send_timeout)` (see
//! [`watch`]); a cancelled h2 stream costs a load and a store. Nothing
//! allocates after accept.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::clock;

/// The client timeouts the watchdog applies (from `[global]`).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
    /// A write to the client that makes no progress for this long closes the connection.
    pub send: Duration,
}

/// Why [`watch`] gave up on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// No request within the header or idle deadline.
    Quiet,
    /// A write to the client has been stuck for `client_send_timeout`: the client stopped
    /// reading.
    Stalled,
    /// The client cancels streams faster than [`CANCEL_RATE`] allows (h2 rapid reset).
    Abusive,
}

/// Cancelled h2 streams a connection may have at once before it is closed, and how fast that
/// allowance comes back: 1,000 (nginx closes an h2 connection after its 1,000th request) and
/// then 10 a second, as a GCRA. A browser that cancels some navigations is far below it; a
/// paced rapid reset (HEADERS, wait, RST_STREAM) is closed after about 1,000 streams.
pub const CANCEL_BURST: u64 = 1_000;
/// See [`CANCEL_BURST`]: one cancelled stream forgiven every this many milliseconds.
pub const CANCEL_RATE_MS: u64 = 100;

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
    /// Since when a write to the client has been pending with no byte taken; 0: none is.
    write_stalled: AtomicU64,
    /// GCRA of cancelled h2 streams: the theoretical arrival time, `clock::now_ms()` scale.
    cancel_tat: AtomicU64,
    /// Cancelled too many streams: close it (see [`CANCEL_BURST`]).
    abusive: AtomicBool,
    /// Wakes [`watch`] when `abusive` is set.
    wake: Notify,
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
    write_stalled: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// When a connection in `state` is to be closed (`clock::now_ms()` scale) and why; `None`
/// while a request is in flight and no write is stuck. See the module doc for the rules.
fn deadline(state: State, t: Timeouts) -> Option<(u64, Expired)> {
    let quiet = quiet_deadline(state, t).map(|at| (at, Expired::Quiet));
    if state.write_stalled == 0 {
        return quiet;
    }
    let stalled = (
        state.write_stalled.saturating_add(ms(t.send)),
        Expired::Stalled,
    );
    Some(quiet.map_or(stalled, |q| if q.0 <= stalled.0 { q } else { stalled }))
}

/// The header or idle deadline of a connection in `state`.
fn quiet_deadline(state: State, t: Timeouts) -> Option<u64> {
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
            write_stalled: AtomicU64::new(0),
            cancel_tat: AtomicU64::new(0),
            abusive: AtomicBool::new(false),
            wake: Notify::new(),
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
            write_stalled: self.write_stalled.load(Ordering::Relaxed),
        }
    }

    /// A write to the client returned: `stuck` if it took nothing (pending).
    #[inline]
    fn wrote(&self, stuck: bool) {
        let since = self.write_stalled.load(Ordering::Relaxed);
        if stuck && since == 0 {
            self.write_stalled.store(clock::now_ms(), Ordering::Relaxed);
        } else if !stuck && since != 0 {
            self.write_stalled.store(0, Ordering::Relaxed);
        }
    }

    /// An h2 stream was cancelled by the client before its response ended.
    fn cancelled(&self) {
        let now = clock::now_ms();
        let tat = self.cancel_tat.load(Ordering::Relaxed).max(now) + CANCEL_RATE_MS;
        self.cancel_tat.store(tat, Ordering::Relaxed);
        if tat - now > CANCEL_BURST * CANCEL_RATE_MS && !self.abusive.swap(true, Ordering::Relaxed)
        {
            self.wake.notify_one();
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
        RequestGuard {
            activity: Arc::clone(self),
            h2,
            ended: false,
        }
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
pub struct RequestGuard {
    activity: Arc<Activity>,
    h2: bool,
    /// Its response went out whole; dropped without it, an h2 stream counts as cancelled.
    ended: bool,
}

impl RequestGuard {
    /// The response was sent to its end (or the request became an upgrade).
    pub fn ended(&mut self) {
        self.ended = true;
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.activity;
        if self.h2 && !self.ended {
            a.cancelled();
        }
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

/// Returns once the connection of `activity` is past its deadline (see the module doc), or
/// has cancelled too many streams, and why.
///
/// It sleeps toward the deadline in steps of at most `min(header, idle, send)`. A deadline can move
/// earlier while it sleeps (the first request ends and the idle timeout is shorter than what
/// was left of the header timeout; an HTTP/1 head starts), but never to less than that step
/// after the event that moved it, and the step in progress began before the event: so the
/// watchdog always wakes by the new deadline, with no wake-up to send and no lateness.
pub async fn watch(activity: &Activity, t: Timeouts) -> Expired {
    let step = t.header.min(t.idle).min(t.send);
    loop {
        if activity.abusive.load(Ordering::Relaxed) {
            return Expired::Abusive;
        }
        let now = clock::now_ms();
        let wait = match deadline(activity.state(), t) {
            Some((at, why)) if at <= now => return why,
            Some((at, _)) => Duration::from_millis(at - now).min(step),
            None => step,
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = activity.wake.notified() => {}
        }
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
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.activity.wrote(polled.is_pending());
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.activity.wrote(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A plain socket's flush does nothing; the writes above tell the stalls.
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{deadline, Activity, Expired, State, Timeouts, CANCEL_BURST};

    const T: Timeouts = Timeouts {
        header: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        send: Duration::from_secs(30),
    };

    fn fresh() -> State {
        State {
            accepted: 1_000,
            in_flight: 0,
            seen_request: false,
            h2: false,
            idle_since: 1_000,
            head_start: 0,
            write_stalled: 0,
        }
    }

    fn quiet(at: u64) -> Option<(u64, Expired)> {
        Some((at, Expired::Quiet))
    }

    #[test]
    fn the_first_request_is_owed_from_accept_whatever_arrived() {
        assert_eq!(deadline(fresh(), T), quiet(11_000));
        // Part of a head (or of the h2 preface) changes nothing: still accept + header.
        let partial = State {
            head_start: 5_000,
            ..fresh()
        };
        assert_eq!(deadline(partial, T), quiet(11_000));
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
        assert_eq!(deadline(idle, T), quiet(80_000));
        // A byte of the next head at 70 s: it has the header timeout from then.
        let head = State {
            head_start: 70_000,
            ..idle
        };
        assert_eq!(deadline(head, T), quiet(80_000));
        let early_head = State {
            head_start: 21_000,
            ..idle
        };
        assert_eq!(deadline(early_head, T), quiet(31_000));
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
        assert_eq!(deadline(idle, T), quiet(80_000));
    }

    #[test]
    fn huge_timeouts_never_overflow() {
        let t = Timeouts {
            header: Duration::MAX,
            idle: Duration::MAX,
            send: Duration::MAX,
        };
        assert_eq!(deadline(fresh(), t), quiet(u64::MAX));
        let stalled = State {
            write_stalled: 5,
            ..fresh()
        };
        assert_eq!(deadline(stalled, t), quiet(u64::MAX));
    }

    #[test]
    fn a_stuck_write_closes_even_a_busy_connection() {
        let busy = State {
            in_flight: 1,
            seen_request: true,
            write_stalled: 40_000,
            ..fresh()
        };
        assert_eq!(deadline(busy, T), Some((70_000, Expired::Stalled)));
        // Idle with a stuck write (a GOAWAY nobody reads): whichever comes first.
        let idle = State {
            in_flight: 0,
            idle_since: 20_000,
            ..busy
        };
        assert_eq!(deadline(idle, T), Some((70_000, Expired::Stalled)));
        let late = State {
            write_stalled: 79_000,
            ..idle
        };
        assert_eq!(deadline(late, T), quiet(80_000));
    }

    #[test]
    fn cancelled_streams_past_the_burst_mark_the_connection() {
        let a = Activity::new(crate::clock::now_ms());
        // Well within the burst whatever the clock does meanwhile.
        for _ in 0..CANCEL_BURST / 2 {
            a.cancelled();
        }
        assert!(!a.abusive.load(std::sync::atomic::Ordering::Relaxed));
        for _ in 0..CANCEL_BURST {
            a.cancelled();
        }
        assert!(a.abusive.load(std::sync::atomic::Ordering::Relaxed));
    }
}
