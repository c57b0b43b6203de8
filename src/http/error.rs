//! `ProxyError`: every way a proxied request can fail, with its status, retryability and
//! whose failure it is decided here and only here (one exhaustive match each, and the two
//! constructors that sort raw connect and exchange errors), so the proxy loop never guesses.
//!
//! # Whose failure
//! Only the backend's failures count toward passive health. A client whose body stalls
//! (`client_body_timeout`) or breaks off, and Fulcrum itself out of descriptors, memory or
//! local ports when it connects, say nothing about the backend: before, ten slow POSTs or one
//! burst of `EMFILE` ejected a healthy backend.

use std::io;

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use super::request_body::BodyError;
use crate::backend::Busy;
use crate::config::RetryOn;
use crate::tls::client::TlsError;

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
    /// The TLS handshake with the backend failed (its certificate did not verify, or it
    /// refused ours); the request was not sent.
    #[error("TLS to the backend failed")]
    Tls(#[source] TlsError),
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
    /// The client's request body stopped arriving for `client_body_timeout`.
    #[error("client request body timed out")]
    ClientTimeout,
    /// The client's request body broke off (the client closed or sent a bad chunk mid-body).
    #[error("client request body failed")]
    ClientAborted(#[source] hyper::Error),
    /// Connecting failed for lack of a local resource (descriptors, memory, ports): this
    /// process's trouble, not the backend's. The request was not sent.
    #[error("local resources exhausted")]
    LocalResources(#[source] io::Error),
    /// The backend is at its pool's `max_connections` and no connection was freed within
    /// `queue_timeout` (or its wait queue was full). Nothing was sent: another backend may take
    /// it; the backend did nothing wrong (it is protected, not failing).
    #[error("backend busy")]
    Busy(#[source] Busy),
    /// Not a failure: a `redirect_https` listener answers every request with 308 to this
    /// `https://` location (the request's own host). Nothing was sent upstream.
    #[error("redirected to https")]
    RedirectHttps(HeaderValue),
    /// HTTP/1 engine (`http1`): a request head over 64 KiB.
    #[error("request header block too large")]
    HeadTooLarge,
    /// HTTP/1 engine: a request line over 64 KiB.
    #[error("request line too long")]
    UriTooLong,
    /// HTTP/1 engine: as [`ProxyError::NotSent`], the socket's own error.
    #[error("the backend closed a new connection before the request was sent")]
    NotSentIo(#[source] io::Error),
    /// HTTP/1 engine: as [`ProxyError::Upstream`] (reset or closed before a response head).
    #[error("upstream failed")]
    UpstreamIo(#[source] io::Error),
    /// HTTP/1 engine: as [`ProxyError::ClientAborted`].
    #[error("client request body failed")]
    ClientIo(#[source] io::Error),
}

/// `EMFILE` and `ENFILE` (the same numbers on Linux, macOS and the BSDs).
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;
/// `ENOBUFS`.
#[cfg(target_os = "linux")]
const ENOBUFS: i32 = 105;
#[cfg(not(target_os = "linux"))]
const ENOBUFS: i32 = 55;

/// Whether a connect error is this process's own shortage rather than the peer's answer.
fn is_local_shortage(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::OutOfMemory | io::ErrorKind::AddrNotAvailable
    ) || matches!(e.raw_os_error(), Some(EMFILE | ENFILE | ENOBUFS))
}

impl ProxyError {
    /// A failed TCP connect to a backend: the backend's failure, unless this process ran out
    /// of descriptors, memory or ports (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`,
    /// `EADDRNOTAVAIL`).
    pub fn connect(e: io::Error) -> ProxyError {
        if is_local_shortage(&e) {
            ProxyError::LocalResources(e)
        } else {
            ProxyError::Connect(e)
        }
    }

    /// A sent request whose exchange failed before a response head: the client's body when
    /// that is what failed (too large, stalled, broken off), else the upstream.
    pub fn exchange(err: hyper::Error) -> ProxyError {
        let mut source = std::error::Error::source(&err);
        while let Some(e) = source {
            match e.downcast_ref::<BodyError>() {
                Some(BodyError::TooLarge) => return ProxyError::BodyTooLarge,
                Some(BodyError::Timeout) => return ProxyError::ClientTimeout,
                Some(BodyError::Client(_) | BodyError::Aborted) => {
                    return ProxyError::ClientAborted(err)
                }
                None => source = e.source(),
            }
        }
        ProxyError::Upstream(err)
    }

    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) | ProxyError::ClientIo(_) => StatusCode::BAD_REQUEST,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::UriTooLong => StatusCode::URI_TOO_LONG,
            ProxyError::NoBackend => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::Connect(_)
            | ProxyError::Tls(_)
            | ProxyError::ConnectTimeout
            | ProxyError::NotSent(_)
            | ProxyError::NotSentIo(_)
            | ProxyError::Upstream(_)
            | ProxyError::UpstreamIo(_)
            | ProxyError::BadResponse(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::ClientAborted(_) => StatusCode::BAD_REQUEST,
            ProxyError::LocalResources(_) | ProxyError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::RedirectHttps(_) => StatusCode::PERMANENT_REDIRECT,
        }
    }

    /// Whether another backend may be tried under the pool's `retry_on`. `replayable`: the
    /// request is idempotent and carries no body, so sending it again cannot do anything twice.
    pub fn is_retryable(&self, replayable: bool, on: RetryOn) -> bool {
        match self {
            ProxyError::Connect(_) | ProxyError::ConnectTimeout | ProxyError::Tls(_) => on.connect,
            // A stale pooled connection: nothing reached the backend, nothing was its fault.
            ProxyError::NotSent(_) | ProxyError::NotSentIo(_) => true,
            // Nothing was sent; another backend may have a free connection.
            ProxyError::Busy(_) => true,
            // Reset, or an answer that is not HTTP/1 (a backend speaking another protocol),
            // before any response byte reached the client: safe only for a replayable request.
            // A timeout is not retried: the backend may still be working on it.
            ProxyError::Upstream(e) => on.reset && replayable && !e.is_user(),
            ProxyError::UpstreamIo(_) => on.reset && replayable,
            // The backend answered (badly): the request did its work there, maybe. Or
            // another backend would meet the same client, or the same shortage.
            ProxyError::BadRequest(_)
            | ProxyError::BodyTooLarge
            | ProxyError::NoBackend
            | ProxyError::RateLimited(_)
            | ProxyError::UpstreamTimeout
            | ProxyError::BadResponse(_)
            | ProxyError::ClientTimeout
            | ProxyError::ClientAborted(_)
            | ProxyError::ClientIo(_)
            | ProxyError::HeadTooLarge
            | ProxyError::UriTooLong
            | ProxyError::LocalResources(_)
            | ProxyError::RedirectHttps(_) => false,
        }
    }

    /// Whether the failure says something about the backend (logs and passive ejection).
    pub fn is_backend_failure(&self) -> bool {
        match self {
            ProxyError::Connect(_)
            | ProxyError::Tls(_)
            | ProxyError::ConnectTimeout
            | ProxyError::NotSent(_)
            | ProxyError::NotSentIo(_)
            | ProxyError::Upstream(_)
            | ProxyError::UpstreamIo(_)
            | ProxyError::UpstreamTimeout
            | ProxyError::BadResponse(_) => true,
            ProxyError::BadRequest(_)
            | ProxyError::BodyTooLarge
            | ProxyError::NoBackend
            | ProxyError::ClientTimeout
            | ProxyError::ClientAborted(_)
            | ProxyError::ClientIo(_)
            | ProxyError::HeadTooLarge
            | ProxyError::UriTooLong
            | ProxyError::LocalResources(_)
            | ProxyError::RateLimited(_)
            | ProxyError::Busy(_)
            | ProxyError::RedirectHttps(_) => false,
        }
    }

    /// Whether this process ran short of descriptors, memory or ports (logged as such).
    pub fn is_local_shortage(&self) -> bool {
        matches!(self, ProxyError::LocalResources(_))
    }

    /// Short body: says what went wrong, never which backend.
    fn body(&self) -> &'static str {
        match self {
            ProxyError::BadRequest(_) => "400 bad request\n",
            ProxyError::BodyTooLarge => "413 request body too large\n",
            ProxyError::NoBackend => "503 no backend available\n",
            ProxyError::RateLimited(_) => "429 too many requests\n",
            ProxyError::Connect(_)
            | ProxyError::ConnectTimeout
            | ProxyError::NotSent(_)
            | ProxyError::NotSentIo(_) => "502 bad gateway: backend unreachable\n",
            ProxyError::Upstream(_) | ProxyError::UpstreamIo(_) => {
                "502 bad gateway: backend failed\n"
            }
            ProxyError::Tls(_) => "502 bad gateway: TLS to the backend failed\n",
            ProxyError::HeadTooLarge => "431 request header fields too large\n",
            ProxyError::UriTooLong => "414 URI too long\n",
            ProxyError::UpstreamTimeout => "504 gateway timeout\n",
            ProxyError::BadResponse(_) => "502 bad gateway: invalid response from the backend\n",
            ProxyError::ClientTimeout => "408 request timeout: the request body stopped arriving\n",
            ProxyError::ClientAborted(_) | ProxyError::ClientIo(_) => {
                "400 bad request: the request body broke off\n"
            }
            ProxyError::LocalResources(_) => {
                "503 service unavailable: the proxy is out of resources\n"
            }
            ProxyError::Busy(_) => "503 service unavailable: backends at their connection limit\n",
            ProxyError::RedirectHttps(_) => "308 permanent redirect to https\n",
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
            ProxyError::NoBackend | ProxyError::LocalResources(_) | ProxyError::Busy(_) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ProxyError::RateLimited(wait) => {
                h.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(*wait)),
                );
            }
            ProxyError::RedirectHttps(location) => {
                h.insert(header::LOCATION, location.clone());
            }
            // The rest of a malformed, oversized, stalled or broken request cannot be
            // trusted (or is not coming): close.
            ProxyError::BadRequest(_)
            | ProxyError::BodyTooLarge
            | ProxyError::ClientTimeout
            | ProxyError::ClientAborted(_)
            | ProxyError::ClientIo(_)
            | ProxyError::HeadTooLarge
            | ProxyError::UriTooLong => {
                h.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        resp
    }
}

/// Whether an HTTP/2 backend left the request unprocessed: it refused the stream
/// (REFUSED_STREAM) or said GOAWAY with a last stream below it (RFC 9113 8.7). Such a request
/// may go again, on another connection, whatever its method.
pub fn is_unprocessed(err: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h2.is_go_away() && h2.is_remote());
        }
        source = e.source();
    }
    false
}

impl ProxyError {
    /// The gRPC status and message for a gRPC request: 502 and 503 are UNAVAILABLE (14, the
    /// client may retry), 504 DEADLINE_EXCEEDED (4), the client's own faults their codes.
    pub fn grpc_status(&self) -> (u8, &'static str) {
        match self.status().as_u16() {
            502 | 503 => (14, "unavailable"),
            504 => (4, "deadline exceeded"),
            408 => (4, "request body timed out"),
            413 => (8, "request too large"),
            429 => (8, "too many requests"),
            _ => (13, "bad request"),
        }
    }

    /// The answer to a gRPC request: a trailers-only response (HTTP 200, `grpc-status`,
    /// `grpc-message`, no body), which every gRPC client reads as the call's status; a bare
    /// HTTP 502 reaches the application as a confusing UNKNOWN or INTERNAL.
    pub fn to_grpc_response(&self) -> Response<Bytes> {
        let (code, message) = self.grpc_status();
        let mut resp = Response::new(Bytes::new());
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert("grpc-status", HeaderValue::from(u16::from(code)));
        // Plain ASCII without '%': nothing to percent-encode.
        h.insert("grpc-message", HeaderValue::from_static(message));
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
    use std::io;
    use std::time::Duration;

    use http::{header, StatusCode};

    use super::ProxyError;
    use crate::config::RetryOn;

    /// Fulcrum's own "Too many open files" on connect (and its kin) is not the backend's
    /// failure: it ejected a healthy backend before.
    #[test]
    fn a_local_shortage_on_connect_is_not_the_backends_failure() {
        for (what, e) in [
            ("EMFILE", io::Error::from_raw_os_error(24)),
            ("ENFILE", io::Error::from_raw_os_error(23)),
            ("ENOMEM", io::Error::from(io::ErrorKind::OutOfMemory)),
            (
                "EADDRNOTAVAIL",
                io::Error::from(io::ErrorKind::AddrNotAvailable),
            ),
        ] {
            let err = ProxyError::connect(e);
            assert!(err.is_local_shortage(), "{what}: {err:?}");
            assert!(!err.is_backend_failure(), "{what}");
            assert!(!err.is_retryable(false, RetryOn::default()), "{what}");
            assert_eq!(err.status(), 503, "{what}");
            assert!(err.to_response().headers().contains_key("retry-after"));
        }
        let refused = ProxyError::connect(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(matches!(refused, ProxyError::Connect(_)));
        assert!(refused.is_backend_failure());
        assert_eq!(refused.status(), 502);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_errno_numbers_are_the_systems() {
        // The real errors, not hand-made ones: what connect(2) returns is what is checked.
        for errno in [
            rustix::io::Errno::MFILE,
            rustix::io::Errno::NFILE,
            rustix::io::Errno::NOBUFS,
        ] {
            let err = ProxyError::connect(io::Error::from_raw_os_error(errno.raw_os_error()));
            assert!(err.is_local_shortage(), "{errno:?}");
        }
    }

    #[test]
    fn grpc_requests_get_trailers_only_statuses() {
        let unavailable = ProxyError::NoBackend.to_grpc_response();
        assert_eq!(unavailable.status(), StatusCode::OK);
        assert_eq!(unavailable.headers()["grpc-status"], "14");
        assert!(unavailable.body().is_empty());
        let refused = ProxyError::connect(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(refused.to_grpc_response().headers()["grpc-status"], "14");
        let late = ProxyError::UpstreamTimeout.to_grpc_response();
        assert_eq!(late.headers()["grpc-status"], "4");
        assert_eq!(late.headers()["content-type"], "application/grpc");
    }

    #[test]
    fn a_stalled_client_body_is_408_and_not_the_backends() {
        let err = ProxyError::ClientTimeout;
        assert_eq!(err.status(), 408);
        assert!(!err.is_backend_failure());
        assert!(!err.is_retryable(true, RetryOn::default()));
        assert_eq!(err.to_response().headers()["connection"], "close");
    }

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
