//! Fulcrum's own HTTP/1.1 engine (issue 17): one task per client connection drives the client
//! side and the pooled upstream connection itself, no hyper state machine and no task hop per
//! request. The head is parsed once (httparse, [`head`]) and its framing decided from the raw
//! lines, so an ambiguous request is refused by construction; bodies are relayed through two
//! bounded buffers lent from a per-worker pool ([`buffers`]) only while an exchange is active:
//! a keep-alive connection waiting for its next request holds none, and once it has been
//! quiet for a moment it leaves its task too ([`park`]): an entry in its accept loop's parked
//! set is all it holds.
//!
//! The request path's decisions (routing, region, selection, retries, affinity, header
//! rewriting, metrics, access log) are `http`'s, called from [`forward`]; this layer sits just
//! above `http` and owns only HTTP/1 framing and I/O. h2c (prior knowledge) is recognised by a
//! peek at the preface and goes to hyper, as does ALPN h2 on TLS: hyper serves HTTP/2 only.
//! A pool that speaks h2 or TLS to its backends is reached through hyper's client
//! ([`bridge`]).

mod attempt;
mod bridge;
mod buffers;
pub(crate) mod chunked;
mod conn;
mod deadline;
mod forward;
pub mod fuzz;
pub(crate) mod head;
pub mod park;
mod relay;
mod upstream;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;

use self::buffers::{Buf, SIZE};
use crate::http::ConnContext;

#[cfg(test)]
mod tests;

/// A client stream the engine can serve: TCP, or TLS over it.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Waits for the client's next bytes and returns them in a buffer of the worker's pool
    /// (`None`: the client closed). The default takes the buffer before it waits (a stream
    /// that cannot say whether bytes are there without reading); TCP takes it only once they
    /// are, so a connection waiting for its next request holds none.
    fn next_bytes(&mut self) -> impl std::future::Future<Output = io::Result<Option<Buf>>> + Send {
        read_into_pooled(self)
    }

    /// Whether [`Stream::park`] can take this stream off its task.
    const PARKABLE: bool = false;

    /// Parks an idle connection (`park`) until its next bytes or `until`; `Err` gives it back
    /// where this stream is not parked: TLS, whose session state is most of what an idle
    /// HTTPS connection holds (a task around it adds little).
    fn park(
        conn: conn::IdleState<Self>,
        until: tokio::time::Instant,
    ) -> Result<(), conn::IdleState<Self>>
    where
        Self: Sized,
    {
        let _ = until;
        Err(conn)
    }
}

impl Stream for TcpStream {
    const PARKABLE: bool = true;

    fn park(
        conn: conn::IdleState<Self>,
        until: tokio::time::Instant,
    ) -> Result<(), conn::IdleState<Self>> {
        let conn::IdleState {
            stream,
            cx,
            shutdown,
            parking,
        } = conn;
        let Some(parking) = parking else {
            return Err(conn::IdleState {
                stream,
                cx,
                shutdown,
                parking: None,
            });
        };
        let parked = park::Conn { stream, cx, until };
        parking.park(parked).map_err(|back| conn::IdleState {
            stream: back.stream,
            cx: back.cx,
            shutdown,
            parking: Some(parking),
        })
    }

    async fn next_bytes(&mut self) -> io::Result<Option<Buf>> {
        loop {
            // Readiness may be stale (the last read took everything): a read that would
            // block gives the buffer back at once and clears it.
            self.readable().await?;
            let mut buf = Buf::take();
            match buf.try_fill(self) {
                Ok(0) => {
                    buf.release();
                    return Ok(None);
                }
                Ok(_) => return Ok(Some(buf)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => buf.release(),
                Err(e) => {
                    buf.release();
                    return Err(e);
                }
            }
        }
    }
}

/// TLS (the TLS listener's handshake runs in the connection task, then hands the stream here
/// when ALPN chose HTTP/1.1 or nothing). rustls may hold decrypted bytes the socket's
/// readiness does not show: those are read at once; otherwise the socket is waited on first,
/// so an idle keep-alive HTTPS connection holds no buffer of the pool either.
impl Stream for tokio_rustls::server::TlsStream<TcpStream> {
    async fn next_bytes(&mut self) -> io::Result<Option<Buf>> {
        let (tcp, tls) = self.get_mut();
        let buffered = tls
            .process_new_packets()
            .map_err(io::Error::other)?
            .plaintext_bytes_to_read();
        if buffered == 0 && !tls.wants_write() {
            tcp.readable().await?;
        }
        read_into_pooled(self).await
    }
}

/// Takes a buffer of the pool and reads into it (waiting if nothing is there yet); the
/// buffer goes back when the client closed or failed.
async fn read_into_pooled<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
) -> io::Result<Option<Buf>> {
    let mut buf = Buf::take();
    match buf.fill(stream, SIZE).await {
        Ok(n) if n > 0 => Ok(Some(buf)),
        other => {
            buf.release();
            other.map(|_| None)
        }
    }
}

/// The h2 connection preface's first line (RFC 9113 3.4); no HTTP/1 method is `PRI`.
const PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Whether a plain TCP client connection speaks h2 (prior knowledge, for hyper) or HTTP/1
/// (for this engine), told by its first bytes within `within`; `None`: it closed, failed or
/// said nothing in time. A step of its own, not a wrapper around serving: a wrapping async
/// fn would hold the connection's stream and context a second time for its whole life.
pub async fn speaks_h2(stream: &TcpStream, within: Duration) -> Option<bool> {
    tokio::time::timeout(within, is_h2(stream)).await.ok()?.ok()
}

/// Peeks until the first bytes tell h2's preface from an HTTP/1 request line.
async fn is_h2(stream: &TcpStream) -> io::Result<bool> {
    let mut peek = [0u8; PREFACE.len()];
    loop {
        let n = stream.peek(&mut peek).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if !PREFACE.starts_with(&peek[..n]) {
            return Ok(false);
        }
        if n == PREFACE.len() {
            return Ok(true);
        }
        // A prefix of the preface so far: wait for more without spinning.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Serves an HTTP/1 client connection on `stream` (plain or TLS) until either side closes,
/// `shutdown` fires (the exchange in progress finishes first) or a client timeout expires.
/// Not an async fn: the connection's future is `conn::run`'s alone (see there). `parking`:
/// the accept loop's parked set, which takes the connection off its task while it idles
/// (plain TCP; see `park`).
pub fn serve<S: Stream>(
    stream: S,
    cx: Arc<ConnContext>,
    shutdown: watch::Receiver<bool>,
    parking: Option<park::Parking>,
) -> impl std::future::Future<Output = ()> + Send {
    conn::run(conn::IdleState {
        stream,
        cx,
        shutdown,
        parking,
    })
}
