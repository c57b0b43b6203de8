//! `ProxyError`: every way a proxied request can fail, with its status and retryability
//! decided here and only here (one exhaustive match each), so the proxy loop never guesses.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::config::RetryOn;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The request is malformed or ambiguous; nothing was sent upstream.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request body exceeds the listener's `max_request_body`.
    #[error("request body too large")]
    BodyTooLarge,
    /// No backend of the pool is available.
    #[error("no backend available")]
    NoBackend,
    /// The client is over its `[listener.limits] requests_per_second` (and burst); its next
    /// request would pass after this wait. Nothing was sent upstream; the client's fault,
    /// never the backend's.
    #[error("client over its request rate")]
    RateLimited(Duration),
    /// TCP connect to the backend failed; the request was not sent.
    #[error("connect failed")]
    Connect(#[source] std::io::Error),
    /// TCP connect did not finish within `connect_timeout`; the request was not sent.
    #[error("connect timed out")]
    ConnectTimeout,
    /// A connection just made to the backend failed before the request was written (it
    /// closed at once: full, or speaking another protocol). The request was not sent and may
    /// go anywhere else. (A stale *pooled* connection is replaced by a fresh one in
    /// `proxy::send` and never ends here.)
    #[error("the backend closed a new connection before the request was sent")]
    NotSent(#[source] hyper::Error),
    /// The upstream failed after the request was (at least partly) sent and before a
    /// response head arrived.
    #[error("upstream failed")]
    Upstream(#[source] hyper::Error),
    /// No response head within `request_timeout`.
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// The backend's response head must not reach the client: framed both by
    /// `Content-Length` and `Transfer-Encoding` (which one the client would follow is the
    /// response-smuggling question), or switching to a protocol the request did not offer.
    /// Its connection is closed, never reused.
    #[error("invalid response: {0}")]
    BadResponse(&'static str),
}

impl ProxyError {
    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::NoBackend => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::Connect(_)
            | ProxyError::ConnectTimeout
            | ProxyError::NotSent(_)
            | ProxyError::Upstream(_)
            | ProxyError::BadResponse(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Whether another backend may be tried under the pool's `retry_on`. `replayable`: the
    /// request is idempotent and carries no body, so sending it again cannot do anything twice.
    pub fn is_retryable(&self, replayable: bool, on: RetryOn) -> bool {
        match self {
            ProxyError::Connect(_) | ProxyError::ConnectTimeout => on.connect,
            // A stale pooled connection: nothing reached the backend, nothing was its fault.
            ProxyError::NotSent(_) => true,
            // Reset, or an answer that is not HTTP/1 (a backend speaking another protocol),
            // before any response byte reached the client: safe only for a replayable request.
            // A timeout is not retried: the backend may still be working on it.
            ProxyError::Upstream(e) => on.reset && replayable && !e.is_user(),
            // The backend answered (badly): the request did its work there, maybe.
            ProxyError::BadRequest(_)
            | ProxyError::BodyTooLarge
            | ProxyError::NoBackend
            | ProxyError::RateLimited(_)
            | ProxyError::UpstreamTimeout
            | ProxyError::BadResponse(_) => false,
        }
    }

    /// Whether the failure says something about the backend (logs and passive ejection).
    pub fn is_backend_failure(&self) -> bool {
        matches!(
            self,
            ProxyError::Connect(_)
                | ProxyError::ConnectTimeout
                | ProxyError::NotSent(_)
                | ProxyError::Upstream(_)
                | ProxyError::UpstreamTimeout
                | ProxyError::BadResponse(_)
        )
    }

    /// Short body: says what went wrong, never which backend.
    fn body(&self) -> &'static str {
        match self {
            ProxyError::BadRequest(_) => "400 bad request\n",
            ProxyError::BodyTooLarge => "413 request body too large\n",
            ProxyError::NoBackend => "503 no backend available\n",
            ProxyError::RateLimited(_) => "429 too many requests\n",
            ProxyError::Connect(_) | ProxyError::ConnectTimeout | ProxyError::NotSent(_) => {
                "502 bad gateway: backend unreachable\n"
            }
            ProxyError::Upstream(_) => "502 bad gateway: backend failed\n",
            ProxyError::UpstreamTimeout => "504 gateway timeout\n",
            ProxyError::BadResponse(_) => "502 bad gateway: invalid response from the backend\n",
        }
    }

    /// The response sent to the client (its body is the short text; the caller wraps it in
    /// the body type it sends).
    pub fn to_response(&self) -> Response<Bytes> {
        let mut resp = Response::new(Bytes::from_static(self.body().as_bytes()));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        match self {
            ProxyError::NoBackend => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ProxyError::RateLimited(wait) => {
                h.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(*wait)),
                );
            }
            // The rest of a malformed or oversized request cannot be trusted: close.
            ProxyError::BadRequest(_) | ProxyError::BodyTooLarge => {
                h.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        resp
    }
}

/// `Retry-After` for a client that may send again after `wait`: whole seconds rounded up, at
/// least 1 (a `0` would invite an immediate retry that is refused again).
fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::{header, StatusCode};

    use super::ProxyError;
    use crate::config::RetryOn;

    #[test]
    fn rate_limited_is_429_with_the_wait_rounded_up_and_never_retried_or_blamed() {
        let retry_after = |wait: Duration| {
            let resp = ProxyError::RateLimited(wait).to_response();
            assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
            resp.headers()[header::RETRY_AFTER]
                .to_str()
                .map(str::to_string)
                .unwrap_or_default()
        };
        assert_eq!(retry_after(Duration::from_millis(1)), "1");
        assert_eq!(retry_after(Duration::ZERO), "1");
        assert_eq!(retry_after(Duration::from_secs(2)), "2");
        assert_eq!(retry_after(Duration::from_millis(2001)), "3");
        let err = ProxyError::RateLimited(Duration::from_secs(1));
        assert!(!err.is_retryable(true, RetryOn::default()));
        assert!(!err.is_backend_failure());
    }
}
