//! I/O buffers lent per exchange from a per-worker pool, so a keep-alive connection waiting for
//! its next request holds none (nginx frees its request buffers the same way; hyper kept two
//! per connection, 32 KiB, for as long as it stayed open).
//!
//! Each worker is a single-threaded runtime: the pool is a thread-local, no lock, no atomic.
//! It keeps at most [`KEPT`] buffers of [`SIZE`]; a buffer grown past that (a large head) is
//! freed instead of kept.

use std::cell::RefCell;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes per buffer: the most a relay holds per direction (the backpressure bound).
pub const SIZE: usize = 16 * 1024;
/// Idle buffers kept per worker.
const KEPT: usize = 64;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A byte buffer: `v[start..]` holds bytes read and not yet used.
#[derive(Debug, Default)]
pub struct Buf {
    v: Vec<u8>,
    start: usize,
}

impl Buf {
    /// A buffer from this worker's pool (or a new one).
    pub fn take() -> Buf {
        let v = FREE
            .with(|free| free.borrow_mut().pop())
            .unwrap_or_else(|| Vec::with_capacity(SIZE));
        Buf { v, start: 0 }
    }

    /// Back to the pool (its content is dropped).
    pub fn release(self) {
        let mut v = self.v;
        if v.capacity() != SIZE {
            return;
        }
        v.clear();
        FREE.with(|free| {
            let mut free = free.borrow_mut();
            if free.len() < KEPT {
                free.push(v);
            }
        });
    }

    pub fn data(&self) -> &[u8] {
        &self.v[self.start..]
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.v.len()
    }

    pub fn len(&self) -> usize {
        self.v.len() - self.start
    }

    /// Marks `n` bytes as used.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.v.len());
        if self.start == self.v.len() {
            self.v.clear();
            self.start = 0;
        }
    }

    /// Reads what `stream` has without waiting (`WouldBlock`: nothing yet), through its
    /// `AsyncRead`, polled once: a read shorter than the room clears the socket's readiness
    /// there (tokio does so on epoll), so the next wait goes straight to the poller. A
    /// `try_read` kept the readiness, and the next wait for a request began with a read that
    /// found nothing: one `recv` syscall per request, for nothing.
    pub fn try_fill(&mut self, stream: &mut tokio::net::TcpStream) -> io::Result<usize> {
        let reading = std::pin::pin!(self.fill(stream, SIZE));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::future::Future::poll(reading, &mut cx) {
            std::task::Poll::Ready(read) => read,
            std::task::Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Reads once from `r`, appending; grows the buffer up to `max` bytes held. `Ok(0)`: end
    /// of stream (or the buffer is full at `max`).
    pub async fn fill<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        r: &mut R,
        max: usize,
    ) -> io::Result<usize> {
        if self.start > 0 && self.v.capacity() - self.v.len() < SIZE / 4 {
            self.v.drain(..self.start);
            self.start = 0;
        }
        if self.v.len() == self.v.capacity() {
            if self.len() >= max {
                return Ok(0);
            }
            self.v
                .reserve((max - self.len()).min(self.v.capacity().max(SIZE)));
        }
        let room = (max.saturating_sub(self.len())).min(self.v.capacity() - self.v.len());
        let mut limited = (&mut *r).take(room as u64);
        limited.read_buf(&mut self.v).await
    }
}
