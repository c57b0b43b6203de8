//! The request body sent upstream: the client's body, streamed, with its first frame read
//! before any backend is chosen (so a malformed body is answered 400 and never reaches one),
//! the listener's size limit enforced as it streams, and `client_body_timeout` between the
//! client's frames.
//!
//! # A client that stops sending
//! While the body waits on the client, a timer runs (made at the first wait, so a body that
//! arrives in one piece never has one); nothing for `client_body_timeout` ends the body with
//! [`BodyError::Timeout`], which the proxy answers 408 and counts against the client, never
//! the backend (a stalled body used to end in the backend's 504 after `request_timeout`, and
//! ten slow POSTs ejected a healthy backend). The body also tells its connection's
//! `watchdog::Activity` while it streams, so `request_timeout` starts when it ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::watchdog::UploadGuard;

/// Why a request body stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds the listener's limit")]
    TooLarge,
    #[error("no request body byte within client_body_timeout")]
    Timeout,
    #[error("client body")]
    Client(#[from] hyper::Error),
    /// The HTTP/1 engine stopped relaying the client's body before its end (the client
    /// failed, stalled or sent too much: the engine answers that itself).
    #[error("the client's body broke off")]
    Aborted,
}

/// The request body sent upstream: the client's body, streamed, with its first frame
/// already read (so a malformed body is answered 400 before anything is sent), a size
/// limit and a timeout between frames. `Unpin` (its timer boxed, made only when a body
/// waits): hyper's HTTP/2 client connection needs its bodies to be.
#[derive(Debug)]
pub struct RequestBody {
    first: Option<Frame<Bytes>>,
    rest: Option<Incoming>,
    // Bytes still allowed; `u64::MAX` when unlimited.
    remaining: u64,
    // `client_body_timeout`.
    timeout: Duration,
    // When the client last sent a frame (`None`: an empty body).
    last: Option<Instant>,
    // Runs while the body waits on the client; made at the first wait.
    stall: Option<Pin<Box<Sleep>>>,
    // The connection counts this body as streaming until it ends.
    upload: Option<UploadGuard>,
    // A body the HTTP/1 engine relays (decoded, its limits enforced there).
    relayed: Option<Relayed>,
}

/// A request body the HTTP/1 engine (`http1`) decodes from its client and writes into a pipe
/// (`tokio::io::duplex`), for a backend that hyper's client speaks to (HTTP/2, TLS). The
/// pipe's end is the body's end only when the engine said the body was whole: a pipe closed
/// without that breaks the body off, so a backend never takes a cut body as complete.
#[derive(Debug)]
struct Relayed {
    pipe: DuplexStream,
    whole: Arc<AtomicBool>,
    /// Data bytes still to come, when the client's framing said (`Content-Length`).
    left: Option<u64>,
    chunk: BytesMut,
}

/// The engine's end of a relayed body (see [`RequestBody::relayed`]): write the decoded data
/// into it, then [`BodyPipe::finish`] it.
#[derive(Debug)]
pub struct BodyPipe {
    pub pipe: DuplexStream,
    whole: Arc<AtomicBool>,
}

impl BodyPipe {
    /// The body was relayed to its end: the reader sees a clean end.
    pub async fn finish(mut self) -> std::io::Result<()> {
        self.whole.store(true, Ordering::Release);
        self.pipe.shutdown().await
    }
}

/// Bytes a relayed body's pipe holds before the engine's writes wait (backpressure).
const PIPE: usize = 16 * 1024;

impl RequestBody {
    pub fn empty() -> Self {
        RequestBody {
            first: None,
            rest: None,
            remaining: u64::MAX,
            timeout: Duration::ZERO,
            last: None,
            stall: None,
            upload: None,
            relayed: None,
        }
    }

    /// A body the HTTP/1 engine relays into the returned pipe; `len`: its data length, when
    /// the client's `Content-Length` said.
    pub fn relayed(len: Option<u64>) -> (Self, BodyPipe) {
        let (reader, writer) = tokio::io::duplex(PIPE);
        let whole = Arc::new(AtomicBool::new(false));
        let body = RequestBody {
            relayed: Some(Relayed {
                pipe: reader,
                whole: Arc::clone(&whole),
                left: len,
                chunk: BytesMut::new(),
            }),
            ..RequestBody::empty()
        };
        (
            body,
            BodyPipe {
                pipe: writer,
                whole,
            },
        )
    }

    /// `first` was read from `rest` already; `limit` is 0 for no limit; `timeout` is
    /// `client_body_timeout`; `upload` counts it on its connection until it ends.
    pub fn streaming(
        first: Frame<Bytes>,
        rest: Incoming,
        limit: u64,
        timeout: Duration,
        upload: UploadGuard,
    ) -> Result<Self, BodyError> {
        // A body whose first frame was all of it is not streaming any more.
        let upload = (!rest.is_end_stream()).then_some(upload);
        let mut body = RequestBody {
            first: None,
            rest: Some(rest),
            remaining: if limit == 0 { u64::MAX } else { limit },
            timeout,
            last: Some(Instant::now()),
            stall: None,
            upload,
            relayed: None,
        };
        charge(&mut body.remaining, &first)?;
        body.first = Some(first);
        Ok(body)
    }
}

impl RequestBody {
    /// A body streamed as it comes, nothing read yet and no timeout between frames: a gRPC
    /// stream, whose client may send its first message (or its next one) only after the
    /// server's, or minutes later; the size limit still holds.
    pub fn unread(rest: Incoming, limit: u64, upload: UploadGuard) -> Self {
        RequestBody {
            first: None,
            rest: Some(rest),
            remaining: if limit == 0 { u64::MAX } else { limit },
            // No deadline: `Instant + Duration::MAX` does not exist, so no timer is made.
            timeout: Duration::MAX,
            last: None,
            stall: None,
            upload: Some(upload),
            relayed: None,
        }
    }
}

fn charge(remaining: &mut u64, frame: &Frame<Bytes>) -> Result<(), BodyError> {
    if let Some(data) = frame.data_ref() {
        let len = data.len() as u64;
        if len > *remaining {
            return Err(BodyError::TooLarge);
        }
        *remaining -= len;
    }
    Ok(())
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(relayed) = this.relayed.as_mut() {
            let polled = relayed.poll_frame(cx);
            if !matches!(polled, Poll::Pending | Poll::Ready(Some(Ok(_)))) {
                this.relayed = None;
            }
            return polled;
        }
        if let Some(frame) = this.first.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let Some(rest) = this.rest.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = match Pin::new(rest).poll_frame(cx) {
            Poll::Ready(polled) => polled,
            Poll::Pending => {
                // Waiting on the client: at most `timeout` after its last frame.
                let Some(deadline) = this.last.and_then(|l| l.checked_add(this.timeout)) else {
                    return Poll::Pending;
                };
                match this.stall.as_mut() {
                    Some(stall) if stall.deadline() == deadline => {}
                    Some(stall) => stall.as_mut().reset(deadline),
                    None => this.stall = Some(Box::pin(tokio::time::sleep_until(deadline))),
                }
                let expired = this
                    .stall
                    .as_mut()
                    .is_some_and(|stall| stall.as_mut().poll(cx).is_ready());
                if !expired {
                    return Poll::Pending;
                }
                this.rest = None;
                this.upload = None;
                return Poll::Ready(Some(Err(BodyError::Timeout)));
            }
        };
        match polled {
            Some(Ok(frame)) => {
                this.last = Some(Instant::now());
                if let Err(e) = charge(&mut this.remaining, &frame) {
                    this.rest = None;
                    this.upload = None;
                    return Poll::Ready(Some(Err(e)));
                }
                if this.rest.as_ref().is_some_and(Incoming::is_end_stream) {
                    // hyper may not ask again after the last frame.
                    this.upload = None;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                this.rest = None;
                this.upload = None;
                Poll::Ready(Some(Err(BodyError::Client(e))))
            }
            None => {
                this.rest = None;
                this.upload = None;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        if let Some(relayed) = &self.relayed {
            return relayed.left == Some(0);
        }
        self.first.is_none() && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        if let Some(relayed) = &self.relayed {
            return relayed
                .left
                .map_or_else(SizeHint::new, SizeHint::with_exact);
        }
        let mut hint = self
            .rest
            .as_ref()
            .map(|r| r.size_hint())
            .unwrap_or_else(|| SizeHint::with_exact(0));
        if let Some(len) = self
            .first
            .as_ref()
            .and_then(|f| f.data_ref())
            .map(|d| d.len() as u64)
        {
            let lower = hint.lower().saturating_add(len);
            let upper = hint.upper().map(|u| u.saturating_add(len));
            hint = SizeHint::new();
            hint.set_lower(lower);
            if let Some(u) = upper {
                hint.set_upper(u);
            }
        }
        hint
    }
}

impl Relayed {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.left == Some(0) {
            return Poll::Ready(None);
        }
        self.chunk.resize(PIPE, 0);
        let mut read = ReadBuf::new(&mut self.chunk);
        match Pin::new(&mut self.pipe).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_)) => Poll::Ready(Some(Err(BodyError::Aborted))),
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                if n == 0 {
                    return Poll::Ready(if self.whole.load(Ordering::Acquire) {
                        None
                    } else {
                        Some(Err(BodyError::Aborted))
                    });
                }
                if let Some(left) = self.left.as_mut() {
                    *left = left.saturating_sub(n as u64);
                }
                self.chunk.truncate(n);
                Poll::Ready(Some(Ok(Frame::data(self.chunk.split().freeze()))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;

    use super::{BodyError, RequestBody};

    /// A relayed body ends cleanly only when the engine finished it: a pipe closed in the
    /// middle is an error, so no backend takes a cut body (a chunked one has no length to
    /// betray it) as complete.
    #[tokio::test]
    async fn a_relayed_body_ends_cleanly_only_when_finished() {
        let (body, mut pipe) = RequestBody::relayed(None);
        pipe.pipe.write_all(b"whole body").await.expect("pipe");
        pipe.finish().await.expect("finish");
        let got = body.collect().await.expect("a finished body ends cleanly");
        assert_eq!(got.to_bytes(), "whole body");

        let (body, mut pipe) = RequestBody::relayed(None);
        pipe.pipe.write_all(b"cut").await.expect("pipe");
        drop(pipe);
        assert!(matches!(body.collect().await, Err(BodyError::Aborted)));
    }

    /// With a length the body ends at it, and says so (hyper sends it without waiting for
    /// the pipe's end).
    #[tokio::test]
    async fn a_relayed_body_with_a_length_ends_at_it() {
        let (mut body, mut pipe) = RequestBody::relayed(Some(4));
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(4));
        pipe.pipe.write_all(b"abcd").await.expect("pipe");
        let frame = body.frame().await.expect("a frame").expect("data");
        assert_eq!(
            frame.into_data().ok(),
            Some(bytes::Bytes::from_static(b"abcd"))
        );
        assert!(http_body::Body::is_end_stream(&body));
        assert!(body.frame().await.is_none());
    }
}
