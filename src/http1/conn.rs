//! One client connection: wait for a request without holding a buffer, read its head (within
//! `client_header_timeout`), hand the exchange to `forward`, and loop while both sides keep
//! the connection alive. Pipelined requests are answered in order: what follows a request in
//! the buffer is the next one's start, and the buffer is kept (not returned) only then.
//!
//! The deadlines are the watchdog's (`http::watchdog`), enforced here directly: a new
//! connection owes its first head within `client_header_timeout`; between requests it may
//! idle for `client_idle_timeout`, and once a byte of the next head has come, the rest is
//! owed within `client_header_timeout`. Past a deadline the connection is closed.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use super::buffers::Buf;
use super::head::{self, HeadError, RequestHead, MAX_HEAD};
use super::park::{self, Parking};
use super::{deadline, forward, Stream};
use crate::http::{ConnContext, ProxyError};

/// What a connection holds while it waits for its next request: this, beside the timer and
/// the shutdown wait `run` keeps for the connection's life, and no buffer. `size_of` is
/// printed by a test (`idle_connection_state_is_small`); `benches/load/idle.sh` measures
/// the whole (the task, its future, the socket's registration).
#[derive(Debug)]
pub struct IdleState<S> {
    pub stream: S,
    pub cx: Arc<ConnContext>,
    pub shutdown: watch::Receiver<bool>,
    /// Where the connection goes once it has been quiet for `park::PARK_AFTER` (plain TCP
    /// only, see `Stream::park`); `None`: it waits on its task.
    pub parking: Option<Parking>,
}

/// How a wait for the client's next bytes ended.
enum Next {
    Bytes(Buf),
    /// Nothing came before the wait's end.
    Quiet,
    /// The client closed or failed, or shutdown.
    End,
}

/// Serves the connection until it ends. Not an async fn: its parameters would be held twice
/// in the future for its whole life (rustc keeps them and moves them into a local of the
/// body); the `async move` block below holds `conn` once, used in place.
#[allow(clippy::manual_async_fn)] // on purpose, see above: an async fn is 56 bytes larger
pub fn run<S: Stream>(conn: IdleState<S>) -> impl Future<Output = ()> + Send {
    drive(conn, true, None)
}

/// Serves a connection that was parked (`park`) and is ready again: its wait for a next
/// request goes on to `until`, the deadline it was parked with.
pub fn resume<S: Stream>(conn: IdleState<S>, until: Instant) -> impl Future<Output = ()> + Send {
    drive(
        conn,
        false,
        Some(Mark {
            at: until,
            ended: false,
        }),
    )
}

/// What the next wait for a request knows of the time without reading the clock; `None`:
/// nothing. Kept in the connection's future for its whole life, in 16 bytes (`Instant`'s
/// spare values hold `Option`'s tag, a byte beside it this one's).
#[derive(Clone, Copy)]
struct Mark {
    at: Instant,
    /// `at` is when the last exchange ended (the wait starts there); else it is a resumed
    /// connection's deadline, from when it was parked.
    ended: bool,
}

#[allow(clippy::manual_async_fn)] // see `run`
fn drive<S: Stream>(
    mut conn: IdleState<S>,
    mut first: bool,
    mut mark: Option<Mark>,
) -> impl Future<Output = ()> + Send {
    async move {
        let mut leftover: Option<Buf> = None;
        // Bounds every wait for a next request (see `deadline::kept`).
        let mut timer = pin!(tokio::time::sleep_until(Instant::now()));
        // Ends those waits on shutdown. Kept for the connection's life like the timer: a wait
        // made anew each time enrolled in the channel's waiter list (a lock) and left it again
        // (another) per request.
        let mut stop = pin!(stopping(conn.shutdown.clone()));
        loop {
            let mut buf = match leftover.take() {
                Some(buf) if !buf.is_empty() => buf,
                other => {
                    if let Some(buf) = other {
                        buf.release();
                    }
                    let shared = &conn.cx.shared;
                    let wait = if first {
                        shared.client_header_timeout
                    } else {
                        shared.client_idle_timeout
                    };
                    let (now, until) = match mark.take() {
                        Some(Mark { at, ended: true }) => (at, at + wait),
                        Some(Mark { at, ended: false }) => (Instant::now(), at),
                        None => {
                            let now = Instant::now();
                            (now, now + wait)
                        }
                    };
                    // Quiet for the grace, a long wait for a next request goes on off the
                    // task (`park`). Not a first one: it is bounded by
                    // `client_header_timeout`, not the idle timeout the sweeps follow (and a
                    // plain connection's first bytes came before it is served: the h2 sniff).
                    let parks = S::PARKABLE
                        && !first
                        && conn.parking.is_some()
                        && park::worth_parking(until.saturating_duration_since(now));
                    let first_until = if parks { now + park::PARK_AFTER } else { until };
                    let mut next =
                        next_bytes(&mut conn.stream, timer.as_mut(), stop.as_mut(), first_until)
                            .await;
                    if parks && matches!(next, Next::Quiet) {
                        match S::park(conn, until) {
                            Ok(()) => return,
                            // The parked set is gone: the wait goes on here.
                            Err(back) => conn = back,
                        }
                        next = next_bytes(&mut conn.stream, timer.as_mut(), stop.as_mut(), until)
                            .await;
                    }
                    match next {
                        Next::Bytes(buf) => buf,
                        Next::Quiet | Next::End => {
                            if *conn.shutdown.borrow() {
                                Box::pin(linger(&mut conn.stream)).await;
                            }
                            return;
                        }
                    }
                }
            };
            let owed = conn.cx.shared.client_header_timeout;
            let head = match read_head(&mut conn.stream, &mut buf, owed).await {
                Ok(Some(head)) => head,
                Ok(None) => {
                    buf.release();
                    return;
                }
                Err(err) => {
                    let send = conn.cx.shared.client_send_timeout;
                    // Boxed (a refused head is rare): inline, this state would set the size of
                    // every connection's future, idle ones included.
                    let answer = forward::write_response(
                        &mut conn.stream,
                        http::Version::HTTP_11,
                        err.to_response(),
                        true,
                        send,
                    );
                    let _ = Box::into_pin(Box::write(Box::new_uninit(), answer)).await;
                    buf.release();
                    return;
                }
            };
            // Boxed: the exchange's state exists only while it runs, not while the connection
            // idles. The box is made first and the future written into it: `Box::pin(future)`
            // built the whole future (over 5 KiB, most of it states not entered yet) on the
            // stack and copied all of it, the largest copy of the request path.
            let slot = Box::new_uninit();
            let exchange = forward::exchange(&mut conn.stream, &mut buf, head, &conn.cx);
            let keep = match Box::into_pin(Box::write(slot, exchange)).await {
                Some(end) => {
                    mark = Some(Mark {
                        at: end,
                        ended: true,
                    });
                    true
                }
                None => false,
            };
            if !keep || *conn.shutdown.borrow() {
                buf.release();
                if keep {
                    // Kept alive until shutdown: the client may be sending its next request.
                    Box::pin(linger(&mut conn.stream)).await;
                }
                return;
            }
            leftover = Some(buf);
            first = false;
        }
    }
}

/// How long, and for how many bytes, a connection closed by a shutdown keeps reading.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;

/// Closes a keep-alive connection the client may be writing to as it closes (shutdown, a
/// binary upgrade): FIN first, then what the client still sends is read and dropped, bounded
/// in time and bytes. Closing a socket with unread bytes sends a reset instead, which the
/// client sees as a failed request; an end of stream tells it the request was never taken,
/// safe to send again on a new connection (RFC 9112 sections 9.3.1 and 9.6, nginx's
/// `lingering_close`).
async fn linger<S: Stream>(stream: &mut S) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        let mut total = 0;
        while let Ok(n) = stream.read(&mut sink).await {
            total += n;
            if n == 0 || total > LINGER_BYTES {
                break;
            }
        }
    })
    .await;
}

/// Waits until `until` for the client's next bytes.
async fn next_bytes<S: Stream>(
    stream: &mut S,
    timer: Pin<&mut Sleep>,
    stop: Pin<&mut impl Future<Output = ()>>,
    until: Instant,
) -> Next {
    let waiting = async {
        tokio::select! {
            biased;
            got = stream.next_bytes() => match got {
                Ok(Some(buf)) => Next::Bytes(buf),
                Ok(None) | Err(_) => Next::End,
            },
            () = stop => Next::End,
        }
    };
    deadline::kept(timer, until, waiting)
        .await
        .unwrap_or(Next::Quiet)
}

/// Resolves once shutdown is signalled (or its sender is gone). Polled only until then: the
/// connection ends when it resolves.
pub(super) async fn stopping(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Reads until `buf` starts with a complete head, owed within `owed` of its first bytes.
/// `Ok(None)`: the client closed or timed out (nothing to answer); `Err`: a head to refuse.
async fn read_head<S: Stream>(
    stream: &mut S,
    buf: &mut Buf,
    owed: Duration,
) -> Result<Option<RequestHead>, ProxyError> {
    // The clock is read only for a head that did not come whole with its first bytes.
    let mut by = None;
    loop {
        if !buf.is_empty() {
            match head::parse_request(buf.data()) {
                Ok(head) => return Ok(Some(head)),
                Err(HeadError::Partial) => {}
                Err(HeadError::LineTooLong) => return Err(ProxyError::UriTooLong),
                Err(HeadError::TooLarge) => return Err(ProxyError::HeadTooLarge),
                Err(HeadError::Invalid(why)) => return Err(ProxyError::BadRequest(why)),
                Err(HeadError::NotHttp1) => return Err(ProxyError::BadRequest("malformed head")),
            }
        }
        let by = *by.get_or_insert_with(|| Instant::now() + owed);
        let read = deadline::within_at(by, buf.fill(stream, MAX_HEAD + 1)).await;
        match read {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Ok(None),
        }
    }
}
