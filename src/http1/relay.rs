//! Moving one body from one socket to another through the exchange's bounded buffer: read
//! only when what was read has been written (backpressure both ways), framing decoded on the
//! way in and written again on the way out only where it must change (a chunked body to an
//! HTTP/1.0 client; `Content-Length` and close-delimited bodies go through untouched, from
//! the buffer itself).

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::buffers::{Buf, SIZE};
use super::chunked::{self, Decoder};
use super::deadline;
use super::head::Framing;

/// How the destination receives the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encode {
    /// As the data comes (`Content-Length`, close-delimited, or a decoded chunked body).
    Raw,
    /// Chunked (the source was chunked): chunks written again, trailers when allowed.
    Chunked { trailers: bool },
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most data bytes (0: no limit).
    pub max: u64,
    /// Longest wait for the source (`None`: none).
    pub read: Option<Duration>,
    /// Longest write to the destination without progress.
    pub write: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("reading the body failed")]
    Read(#[source] io::Error),
    #[error("the body ended early")]
    Eof,
    #[error("invalid chunked framing")]
    Framing,
    #[error("the body is over its limit")]
    TooLarge,
    #[error("the body stopped arriving")]
    ReadTimeout,
    #[error("writing the body failed")]
    Write(#[source] io::Error),
    #[error("the receiver stopped reading")]
    WriteTimeout,
}

/// Writes all of `data`; each write must progress within `timeout`.
pub async fn write_all<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut data: &[u8],
    timeout: Duration,
) -> Result<(), RelayError> {
    while !data.is_empty() {
        match deadline::within(timeout, w.write(data)).await {
            Err(_) => return Err(RelayError::WriteTimeout),
            Ok(Ok(0)) => return Err(RelayError::Write(io::ErrorKind::WriteZero.into())),
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) => return Err(RelayError::Write(e)),
        }
    }
    Ok(())
}

/// Relays one body framed as `framing` from `src` (its first bytes maybe already in `buf`)
/// to `dst`, after the bytes already in `out` (a head, written with the first data). Returns
/// the data bytes relayed; leaves in `buf` what follows the body (a pipelined request).
#[allow(clippy::too_many_arguments)]
pub async fn relay<R, W>(
    src: &mut R,
    buf: &mut Buf,
    dst: &mut W,
    out: &mut Vec<u8>,
    framing: Framing,
    encode: Encode,
    limits: Limits,
) -> Result<u64, RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut sent = 0u64;
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    let keep = matches!(encode, Encode::Chunked { trailers: true });
    let mut decoder = (framing == Framing::Chunked).then(|| Decoder::new(keep));
    loop {
        let done = match (framing, decoder.as_mut()) {
            (Framing::None, _) => true,
            (Framing::Length(_) | Framing::Close, _) => {
                let take = if framing == Framing::Close {
                    buf.len()
                } else {
                    buf.len().min(usize::try_from(left).unwrap_or(usize::MAX))
                };
                if take > 0 {
                    sent += take as u64;
                    if limits.max > 0 && sent > limits.max {
                        return Err(RelayError::TooLarge);
                    }
                    if out.is_empty() {
                        // The common case: straight from the buffer, no copy.
                        write_all(dst, &buf.data()[..take], limits.write).await?;
                    } else {
                        out.extend_from_slice(&buf.data()[..take]);
                    }
                    buf.consume(take);
                    if framing != Framing::Close {
                        left -= take as u64;
                    }
                }
                framing != Framing::Close && left == 0
            }
            (Framing::Chunked, Some(dec)) => {
                while !buf.is_empty() && !dec.is_done() {
                    let step = dec.feed(buf.data()).map_err(|_| RelayError::Framing)?;
                    let (from, to) = step.data;
                    if to > from {
                        sent += (to - from) as u64;
                        if limits.max > 0 && sent > limits.max {
                            return Err(RelayError::TooLarge);
                        }
                        if let Encode::Chunked { .. } = encode {
                            chunked::chunk_header(out, to - from);
                        }
                        out.extend_from_slice(&buf.data()[from..to]);
                        if let Encode::Chunked { .. } = encode {
                            out.extend_from_slice(b"\r\n");
                        }
                    }
                    buf.consume(step.consumed);
                }
                if dec.is_done() {
                    if let Encode::Chunked { .. } = encode {
                        chunked::last_chunk(out, dec.trailers());
                    }
                }
                dec.is_done()
            }
            (Framing::Chunked, None) => true,
        };
        if !out.is_empty() {
            write_all(dst, out, limits.write).await?;
            out.clear();
        }
        if done {
            // Over TLS the last records may wait in the session (a no-op on a socket).
            flush(dst).await?;
            return Ok(sent);
        }
        let read = buf.fill(src, SIZE);
        let n = match limits.read {
            Some(wait) => deadline::within(wait, read)
                .await
                .map_err(|_| RelayError::ReadTimeout)?,
            None => read.await,
        }
        .map_err(RelayError::Read)?;
        if n == 0 {
            return if framing == Framing::Close {
                Ok(sent)
            } else {
                Err(RelayError::Eof)
            };
        }
    }
}

/// Flushes `w` (TLS streams buffer).
pub async fn flush<W: AsyncWrite + Unpin>(w: &mut W) -> Result<(), RelayError> {
    w.flush().await.map_err(RelayError::Write)
}

/// Sends the bytes in `out` to the client (errors only close the connection).
pub async fn send<S: AsyncWrite + Unpin>(stream: &mut S, out: &[u8], timeout: Duration) -> bool {
    write_all(stream, out, timeout).await.is_ok() && flush(stream).await.is_ok()
}
