//! The request body sent upstream: the client's body, streamed, with its first frame read
//! before any backend is chosen (so a malformed body is answered 400 and never reaches one) and
//! the listener's size limit enforced as it streams.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// Why a request body stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds the listener's limit")]
    TooLarge,
    #[error("client body")]
    Client(#[from] hyper::Error),
}

/// The request body sent upstream: the client's body, streamed, with its first frame already
/// read (so a malformed body is answered 400 before anything is sent) and a size limit.
#[derive(Debug)]
pub struct RequestBody {
    first: Option<Frame<Bytes>>,
    rest: Option<Incoming>,
    /// Bytes still allowed; `u64::MAX` when unlimited.
    remaining: u64,
}

impl RequestBody {
    pub fn empty() -> Self {
        RequestBody {
            first: None,
            rest: None,
            remaining: u64::MAX,
        }
    }

    /// `first` was read from `rest` already; `limit` is 0 for no limit.
    pub fn streaming(first: Frame<Bytes>, rest: Incoming, limit: u64) -> Result<Self, BodyError> {
        let mut body = RequestBody {
            first: None,
            rest: Some(rest),
            remaining: if limit == 0 { u64::MAX } else { limit },
        };
        body.charge(&first)?;
        body.first = Some(first);
        Ok(body)
    }

    fn charge(&mut self, frame: &Frame<Bytes>) -> Result<(), BodyError> {
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            if len > self.remaining {
                return Err(BodyError::TooLarge);
            }
            self.remaining -= len;
        }
        Ok(())
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(frame) = self.first.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let Some(rest) = self.rest.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(Pin::new(rest).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Err(e) = self.charge(&frame) {
                    self.rest = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                self.rest = None;
                Poll::Ready(Some(Err(BodyError::Client(e))))
            }
            None => {
                self.rest = None;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
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
