//! One attempt of an exchange on one backend: an upstream connection checked out (or made),
//! the request head and body sent while the response head is awaited, 1xx heads set aside,
//! and a pooled connection found stale replaced once by a fresh one to the same backend.
//! Kept apart from `forward` (the request path's loop) so each stays one readable screen.

use std::io;

use http::{Method, StatusCode};
use tokio::time::Instant;

use super::buffers::Buf;
use super::deadline;
use super::head::{self, Framing, ResponseHead, MAX_HEAD};
use super::relay::{self, Encode, Limits, RelayError};
use super::upstream::{self, Upstream};
use super::Stream;
use crate::backend::InflightGuard;
use crate::config::BackendId;
use crate::http::{headers, ProxyError};
use crate::pool::Pool;

/// A backend's answer, not yet relayed.
pub struct Got {
    pub head: ResponseHead,
    pub up: Upstream,
    /// What followed the head (the body's start).
    pub upbuf: Buf,
    pub inflight: InflightGuard,
    /// 1xx heads to pass on before the final one.
    pub interim: Vec<u8>,
    /// It came before the request body ended: the client connection closes after it.
    pub early: bool,
}

/// What an attempt sends.
#[derive(Clone, Copy)]
pub struct Shape<'a> {
    pub up_head: &'a [u8],
    pub method: &'a Method,
    pub replayable: bool,
    pub upgrade: bool,
    pub body: BodyIn,
}

#[derive(Debug, Clone, Copy)]
pub struct BodyIn {
    pub framing: Framing,
    pub limits: Limits,
}

enum Fail {
    /// Failed before any response byte on a connection that may have gone stale.
    Stale(io::Error),
    Other(ProxyError),
}

/// One attempt on one backend: connect (or reuse), send, read the response head. `now`:
/// a clock reading taken just before (the exchange's start for its first attempt); a new
/// connection's wait is timed from a reading of its own, after the connect.
pub async fn attempt_once<S: Stream>(
    pool: &Pool,
    index: BackendId,
    client: &mut S,
    buf: &mut Buf,
    shape: Shape<'_>,
    touched: &mut bool,
    now: Instant,
) -> Result<Got, ProxyError> {
    let backend = pool.backend(index);
    let inflight = backend.state.acquire();
    let mut up = upstream::checkout(pool, backend, now.into_std()).await?;
    let mut upbuf = Buf::take();
    for fresh in [false, true] {
        let mut interim = Vec::new();
        let sent = if up.reused { now } else { Instant::now() };
        match send_receive(
            pool,
            &mut up,
            &mut upbuf,
            client,
            buf,
            shape,
            touched,
            &mut interim,
            sent,
        )
        .await
        {
            Ok((head, early)) => {
                // A bad head: the connection is dropped with `up`, its body unread.
                headers::check_switch(head.status, head.offers_upgrade, shape.upgrade)?;
                return Ok(Got {
                    head,
                    up,
                    upbuf,
                    inflight,
                    interim,
                    early,
                });
            }
            Err(Fail::Stale(e)) => {
                if up.reused && !fresh && !*touched {
                    up = Box::pin(upstream::connect(pool, backend)).await?;
                    continue;
                }
                return Err(if up.reused || *touched {
                    ProxyError::UpstreamIo(e)
                } else {
                    ProxyError::NotSentIo(e)
                });
            }
            Err(Fail::Other(err)) => return Err(err),
        }
    }
    Err(ProxyError::NoBackend)
}

/// Sends the head (and body) and reads the response head (skipping 1xx into `interim`),
/// within the pool's request timeout of `sent` for a request without a body.
#[allow(clippy::too_many_arguments)]
async fn send_receive<S: Stream>(
    pool: &Pool,
    up: &mut Upstream,
    upbuf: &mut Buf,
    client: &mut S,
    buf: &mut Buf,
    shape: Shape<'_>,
    touched: &mut bool,
    interim: &mut Vec<u8>,
    sent: Instant,
) -> Result<(ResponseHead, bool), Fail> {
    let timeout = pool.request_timeout;
    let (mut r, mut w) = upstream::split(&mut up.stream);
    if shape.body.framing == Framing::None {
        // Flushed: over TLS the records may wait in the session (a no-op on a socket).
        let written = match relay::write_all(&mut w, shape.up_head, timeout).await {
            Ok(()) => relay::flush(&mut w).await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            return Err(Fail::Stale(relay_io(e)));
        }
        let reading = read_head(&mut r, upbuf, shape.method, interim);
        let got = deadline::kept(up.timer.as_mut(), sent + timeout, reading).await;
        return match got {
            None => Err(Fail::Other(ProxyError::UpstreamTimeout)),
            Some(Err(Fail::Stale(e))) if !shape.replayable => {
                Err(Fail::Other(ProxyError::UpstreamIo(e)))
            }
            Some(got) => got.map(|h| (h, false)),
        };
    }
    *touched = true;
    let mut out = shape.up_head.to_vec();
    let encode = match shape.body.framing {
        Framing::Chunked => Encode::Chunked { trailers: false },
        _ => Encode::Raw,
    };
    let sending = relay::relay(
        client,
        buf,
        &mut w,
        &mut out,
        shape.body.framing,
        encode,
        shape.body.limits,
    );
    let receiving = read_head(&mut r, upbuf, shape.method, interim);
    tokio::pin!(sending, receiving);
    tokio::select! {
        sent = &mut sending => match sent {
            Ok(_) => match tokio::time::timeout(timeout, receiving).await {
                Err(_) => Err(Fail::Other(ProxyError::UpstreamTimeout)),
                Ok(Err(Fail::Stale(e))) => Err(Fail::Other(ProxyError::UpstreamIo(e))),
                Ok(got) => got.map(|h| (h, false)),
            },
            // The backend stopped reading: it may have answered already (an early 413).
            Err(RelayError::Write(_) | RelayError::WriteTimeout) => {
                match tokio::time::timeout(timeout, receiving).await {
                    Ok(Ok(h)) => Ok((h, true)),
                    Ok(Err(Fail::Stale(e))) => Err(Fail::Other(ProxyError::UpstreamIo(e))),
                    Ok(Err(fail)) => Err(fail),
                    Err(_) => Err(Fail::Other(ProxyError::UpstreamTimeout)),
                }
            }
            Err(e) => Err(Fail::Other(request_body_error(e))),
        },
        got = &mut receiving => match got {
            Err(Fail::Stale(e)) => Err(Fail::Other(ProxyError::UpstreamIo(e))),
            got => got.map(|h| (h, true)),
        },
    }
}

/// What a request body's relay failing means for the exchange: the client's failure (too
/// large, stalled, malformed, broken off), or the upstream's.
pub fn request_body_error(e: RelayError) -> ProxyError {
    match e {
        RelayError::TooLarge => ProxyError::BodyTooLarge,
        RelayError::ReadTimeout => ProxyError::ClientTimeout,
        RelayError::Framing => ProxyError::BadRequest("malformed request body"),
        RelayError::Eof => ProxyError::ClientIo(io::ErrorKind::UnexpectedEof.into()),
        RelayError::Read(e) => ProxyError::ClientIo(e),
        e => ProxyError::UpstreamIo(relay_io(e)),
    }
}

fn relay_io(e: RelayError) -> io::Error {
    match e {
        RelayError::Read(e) | RelayError::Write(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// Reads a response head into `upbuf`; 1xx heads (but 101) go to `interim`.
async fn read_head<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    upbuf: &mut Buf,
    method: &Method,
    interim: &mut Vec<u8>,
) -> Result<ResponseHead, Fail> {
    let mut any = false;
    loop {
        if !upbuf.is_empty() {
            match head::parse_response(upbuf.data(), method) {
                Ok(h)
                    if h.status.is_informational()
                        && h.status != StatusCode::SWITCHING_PROTOCOLS =>
                {
                    interim.extend_from_slice(&upbuf.data()[..h.len]);
                    upbuf.consume(h.len);
                    continue;
                }
                Ok(h) => {
                    upbuf.consume(h.len);
                    return Ok(h);
                }
                Err(head::HeadError::Partial) => {}
                // Like a reset (and like hyper's parse error on the other path): retried on
                // another backend when the request is replayable, blamed on this one.
                Err(head::HeadError::NotHttp1) => {
                    return Err(Fail::Other(ProxyError::UpstreamIo(io::Error::new(
                        io::ErrorKind::InvalidData,
                        head::HeadError::NotHttp1,
                    ))))
                }
                Err(head::HeadError::Invalid("both Content-Length and Transfer-Encoding")) => {
                    return Err(Fail::Other(ProxyError::BadResponse(
                        "both Content-Length and Transfer-Encoding",
                    )))
                }
                Err(_) => {
                    return Err(Fail::Other(ProxyError::BadResponse(
                        "malformed response head",
                    )))
                }
            }
        }
        match upbuf.fill(r, MAX_HEAD + 1).await {
            Ok(0) if !any => return Err(Fail::Stale(io::ErrorKind::UnexpectedEof.into())),
            Ok(0) => {
                return Err(Fail::Other(ProxyError::UpstreamIo(
                    io::ErrorKind::UnexpectedEof.into(),
                )))
            }
            Ok(_) => any = true,
            Err(e) if !any => return Err(Fail::Stale(e)),
            Err(e) => return Err(Fail::Other(ProxyError::UpstreamIo(e))),
        }
    }
}
