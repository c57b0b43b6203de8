//! The request path's decisions (routing, selection, retries, header rewriting, the access
//! log) and hyper's side of Fulcrum: serving an HTTP/2 client connection (h2c prior
//! knowledge, or ALPN h2 once the listener has done the TLS handshake: [`serve_io`] takes
//! any stream), graceful close on shutdown, closed when it holds its slot without using it
//! (`watchdog`); and hyper's client for backends spoken to in h2 or over TLS (`client`).
//! HTTP/1 clients are served by Fulcrum's own engine (`http1`, the layer above).

// `affinity`, `exchange`, `headers`, `request_id`, `target` and `ProxyError` are also the HTTP/1 engine's
// (`http1`, the layer above): the request path's decisions live here once, for both engines.
pub(crate) mod affinity;
pub(crate) mod client;
mod error;
pub(crate) mod exchange;
mod h2pool;
pub(crate) mod headers;
pub(crate) mod local;
pub(crate) mod proxy;
pub(crate) mod request_body;
pub(crate) mod request_id;
mod response_body;
pub(crate) mod target;
pub(crate) mod upstream_key;
mod watchdog;

pub use error::ProxyError;
pub use proxy::{ConnContext, Held};
pub use watchdog::Activity;

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Request header blocks larger than this are answered 431 (nginx's large_client_header_buffers
/// is 32 KiB; HAProxy's tune.bufsize 16 KiB).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Unsent bytes a client socket may queue before writes to it block (`TCP_NOTSENT_LOWAT`).
#[cfg(any(target_os = "linux", target_os = "android"))]
const UNSENT_LOW_WATER: u32 = 128 * 1024;

/// h2: streams reset by the client before being accepted, at once, before a GOAWAY.
const MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// h2: streams reset by h2 for the client's protocol errors before a GOAWAY.
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// How long a connection the watchdog closes may take to say goodbye (an h2 GOAWAY) before it
/// is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// hyper's connection builder, configured once per worker: HTTP/2 only (h2c prior
/// knowledge, ALPN h2), every HTTP/1 connection is the engine's (`http1`). `watchdog` times
/// heads from accept (and between requests).
pub fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new()).http2_only();
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        // Rapid reset: streams the client resets before hyper accepts them (h2's default, made
        // explicit), and streams h2 itself resets for the client's errors (hyper's default).
        // Streams reset after they were accepted (paced rapid reset) are counted by
        // `watchdog` instead: neither limit sees them.
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS);
    builder
}

/// Socket options of a client connection, set before anything (a TLS handshake) is sent.
pub fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    // Writes block (and `client_send_timeout` counts) once this much is queued unsent, not
    // once the kernel's send buffer (autotuned to MiBs) is full: a client that reads, however
    // slowly, lets each write progress; one that stops reading stalls them.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = socket2::SockRef::from(stream).set_tcp_notsent_lowat(UNSENT_LOW_WATER);
}

/// Serves an HTTP/2 client connection on `stream` (a TCP socket already [`tune`]d, or TLS
/// over one) until the client closes, or until `shutdown` fires, after which the requests in
/// flight finish and the connection is closed; or until the watchdog finds it past its
/// header or idle deadline, when it is closed with a GOAWAY.
pub async fn serve_io<S>(
    builder: &auto::Builder<TokioExecutor>,
    stream: S,
    cx: Arc<ConnContext>,
    activity: Arc<Activity>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = cx.peer;
    let timeouts = watchdog::Timeouts {
        header: cx.shared.client_header_timeout,
        idle: cx.shared.client_idle_timeout,
        send: cx.shared.client_send_timeout,
    };
    let io = watchdog::ActivityIo::new(stream, Arc::clone(&activity));
    let service = {
        let activity = Arc::clone(&activity);
        service_fn(move |req| proxy::handle(req, Arc::clone(&cx), Arc::clone(&activity)))
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let idle = watchdog::watch(&activity, timeouts);
    enum End {
        Closed,
        Stopping,
        Expired(watchdog::Expired),
    }
    let end = tokio::select! {
        _ = conn.as_mut() => End::Closed,
        stop = shutdown.wait_for(|stop| *stop) => if stop.is_ok() { End::Stopping } else { End::Closed },
        why = idle => End::Expired(why),
    };
    match end {
        End::Closed => {}
        End::Stopping => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        End::Expired(watchdog::Expired::Stalled) => {
            // It reads nothing, a GOAWAY included: dropped now, with its requests' upstream
            // connections (their responses unfinished, they are not reused).
            tracing::debug!("client connection closed: it read nothing for client_send_timeout");
        }
        End::Expired(why) => {
            if why == watchdog::Expired::Abusive {
                tracing::info!(
                    peer = %peer,
                    "client connection closed: it cancelled too many h2 streams (rapid reset)"
                );
            } else {
                tracing::debug!(
                    "client connection closed: no request within client_header_timeout or client_idle_timeout"
                );
            }
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
        }
    }
}
