//! Moving bytes one way between two sockets: `splice(2)` through a pipe on Linux, a userspace
//! copy elsewhere (or when forced, for comparison).
//!
//! Why splice: the payload never enters user space. Each direction owns one pipe; a chunk is
//! spliced socket -> pipe when the source is readable, then pipe -> socket while the
//! destination is writable, so the pipe is always empty before the next read and a would-block
//! always belongs to the socket whose readiness it clears. The syscalls go through `rustix`
//! (a safe wrapper; `unsafe_code` is forbidden), driven by tokio's readiness (`readable()` /
//! `writable()` + `try_io`) on the same sockets the runtime already polls.
//!
//! The copy path (`Forwarding::Copy`, or any non-Linux target) reads into a 64 KiB buffer and
//! writes it out, the same loop as `tokio::io::copy_bidirectional` but with the byte count and
//! activity stamp the proxy needs for metrics and the idle timeout.
//!
//! [`pump`] returns at the source's EOF (after everything read was written); the caller then
//! half-closes the destination.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::TcpStream;

use crate::clock;

/// Userspace copy buffer size.
const COPY_BUF: usize = 64 * 1024;

/// How bytes are moved (a start option; the binary's `FULCRUM_TCP_COPY=1` picks `Copy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Forwarding {
    /// `splice(2)` through a pipe on Linux; the copy loop elsewhere.
    #[default]
    Splice,
    /// The userspace copy loop everywhere (for comparison).
    Copy,
}

/// Per-direction bookkeeping shared with the connection's watchdog.
#[derive(Debug)]
pub struct Flow<'a> {
    /// Bytes moved this way, for the listener (all its connections together).
    pub bytes: &'a AtomicU64,
    /// `clock::now_ms()` of the last byte moved either way (the idle timeout reads it).
    pub last_active: &'a AtomicU64,
}

impl Flow<'_> {
    #[inline]
    fn moved(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.last_active.store(clock::now_ms(), Ordering::Relaxed);
    }
}

/// Moves bytes `from` -> `to` until `from` reaches EOF; returns the bytes moved.
pub async fn pump(
    from: &TcpStream,
    to: &TcpStream,
    flow: &Flow<'_>,
    mode: Forwarding,
) -> io::Result<u64> {
    #[cfg(target_os = "linux")]
    if mode == Forwarding::Splice {
        return linux::splice_pump(from, to, flow).await;
    }
    copy_pump(from, to, flow).await
}

/// The userspace copy: read into a buffer, write all of it, repeat.
pub async fn copy_pump(from: &TcpStream, to: &TcpStream, flow: &Flow<'_>) -> io::Result<u64> {
    let mut buf = vec![0u8; COPY_BUF];
    let mut total = 0u64;
    loop {
        from.readable().await?;
        let n = match from.try_read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        let mut at = 0;
        while at < n {
            to.writable().await?;
            match to.try_write(&buf[at..n]) {
                Ok(m) => at += m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
        flow.moved(n);
    }
}

/// The copy for streams that are not plain sockets (TLS terminated on a tcp listener): read,
/// write all of it, flush (TLS buffers records), repeat; `Ok` at `from`'s EOF.
pub async fn copy_io<R, W>(from: &mut R, to: &mut W, flow: &Flow<'_>) -> io::Result<u64>
where
    R: tokio::io::AsyncRead + Unpin + ?Sized,
    W: tokio::io::AsyncWrite + Unpin + ?Sized,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; COPY_BUF];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
        total += n as u64;
        flow.moved(n);
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;

    use rustix::pipe::{fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags};
    use tokio::io::Interest;
    use tokio::net::TcpStream;

    use super::Flow;

    /// Pipe capacity asked for (the kernel may keep its 64 KiB default when over its limit).
    const PIPE_SIZE: usize = 1 << 20;

    pub(super) async fn splice_pump(
        from: &TcpStream,
        to: &TcpStream,
        flow: &Flow<'_>,
    ) -> io::Result<u64> {
        let (pipe_r, pipe_w) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        let chunk = fcntl_setpipe_size(&pipe_w, PIPE_SIZE).unwrap_or(64 * 1024);
        let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
        let mut total = 0u64;
        loop {
            from.readable().await?;
            let read = from.try_io(Interest::READABLE, || {
                Ok(splice(from, None, &pipe_w, None, chunk, flags)?)
            });
            let n = match read {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            };
            let mut pending = n;
            while pending > 0 {
                to.writable().await?;
                let written = to.try_io(Interest::WRITABLE, || {
                    Ok(splice(&pipe_r, None, to, None, pending, flags)?)
                });
                match written {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(m) => pending -= m,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
            total += n as u64;
            flow.moved(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::Flow;

    /// A connected loopback pair.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let a = TcpStream::connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (b, _) = l.accept().await.expect("accept");
        (a, b)
    }

    /// Both paths: 1 MiB in at one pair, out at the other, counted, ended by the EOF.
    #[tokio::test]
    async fn both_paths_move_everything_until_eof() {
        for splice in [false, true] {
            let (mut writer, from) = pair().await;
            let (to, mut reader) = pair().await;
            let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
            let expected = data.clone();
            let feed = tokio::spawn(async move {
                writer.write_all(&data).await.expect("write");
                writer.shutdown().await.expect("shutdown");
            });
            let drain = tokio::spawn(async move {
                let mut got = Vec::new();
                reader.read_to_end(&mut got).await.expect("read");
                got
            });
            let (bytes, last) = (AtomicU64::new(0), AtomicU64::new(0));
            let flow = Flow {
                bytes: &bytes,
                last_active: &last,
            };
            let moved = if splice {
                #[cfg(target_os = "linux")]
                let moved = super::linux::splice_pump(&from, &to, &flow).await;
                #[cfg(not(target_os = "linux"))]
                let moved = super::copy_pump(&from, &to, &flow).await;
                moved
            } else {
                super::copy_pump(&from, &to, &flow).await
            }
            .expect("pump");
            drop(to);
            feed.await.expect("feed");
            assert_eq!(moved, 1 << 20);
            assert_eq!(bytes.load(Ordering::Relaxed), 1 << 20);
            assert!(last.load(Ordering::Relaxed) > 0);
            assert_eq!(drain.await.expect("drain"), expected, "splice = {splice}");
        }
    }
}
