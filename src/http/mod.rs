//! Serving one client connection: HTTP/1.1 and h2c (prior knowledge) on the same socket,
//! upgrades passed through, graceful close on shutdown.

mod affinity;
mod client;
mod error;
mod exchange;
mod framing;
mod headers;
mod proxy;
mod request_body;
mod response_body;
mod target;

pub use framing::FramingFlags;
pub use proxy::ConnContext;

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Request header blocks larger than this are answered 431 (nginx's large_client_header_buffers
/// is 32 KiB; HAProxy's tune.bufsize 16 KiB).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// hyper's connection builder, configured once per worker.
pub fn builder(header_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    builder
}

/// Serves `stream` until the client closes, or until `shutdown` fires, after which the
/// request in flight finishes and the connection is closed.
pub async fn serve(
    builder: &auto::Builder<TokioExecutor>,
    stream: TcpStream,
    cx: Arc<ConnContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    // hyper hides a request framed by both Content-Length and Transfer-Encoding; the framing
    // tracker sees the raw bytes and tells the service (see `framing`).
    let io = framing::FramingIo::new(stream, Arc::clone(&cx.framing));
    let service = service_fn(move |req| proxy::handle(req, Arc::clone(&cx)));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let stopping = tokio::select! {
        _ = conn.as_mut() => false,
        stop = shutdown.wait_for(|stop| *stop) => stop.is_ok(),
    };
    if stopping {
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }
}
