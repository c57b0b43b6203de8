//! Refusing ambiguous HTTP/1.1 framing: a request with both `Content-Length` and
//! `Transfer-Encoding`.
//!
//! # Why this exists
//! Such a request is the classic request-smuggling vector: a front proxy that frames the body
//! by one header and a server that frames it by the other disagree about where the next
//! request starts. RFC 9112 section 6.3 lets a server reject it outright, and Fulcrum's
//! contract is to refuse ambiguous framing (400, nothing forwarded). hyper's HTTP/1 parser
//! does not reject it: it drops `Content-Length`, frames the body as chunked and only marks the
//! connection not to be kept alive, so by the time the service sees the request the evidence
//! is gone, and no public hyper option exposes it.
//!
//! # What it does
//! [`FramingIo`] sits between the socket and hyper and shows every byte hyper reads to a
//! [`Tracker`], which follows HTTP/1.1 message boundaries (request head, then a
//! `Content-Length` or chunked body, then the next head) and records, in the shared
//! [`FramingFlags`], the index of the first request whose head carries both headers. The
//! service counts its HTTP/1 requests on the connection the same way and refuses the flagged
//! one (hyper calls the service for one request at a time, in order).
//!
//! This is not a parser of its own: `httparse`, the crate hyper itself parses with, parses the
//! heads (`Request::parse`, same default configuration as hyper's) and the chunk-size lines
//! (`parse_chunk_size`); the tracker only follows boundaries, byte for byte as hyper's chunked
//! decoder does for the CRLFs and trailers.
//!
//! # Counting
//! Request indexes are 0-based: the first request head on a connection is index 0. Only heads
//! that parse count; a head hyper would reject ends the connection anyway.
//!
//! # When it stops ("off": bytes pass through with no work)
//! - the connection starts with the HTTP/2 preface (h2c; HTTP/2 frames bodies itself);
//! - a head that does not parse, is over [`MAX_HEAD`], or has more than [`MAX_HEADERS`]
//!   headers, an invalid `Content-Length`, a `Transfer-Encoding` that does not end in
//!   `chunked`, a bad chunk-size line or a missing CRLF: hyper answers 400/431 and closes;
//! - after an ambiguous request (hyper closes the connection after it).
//!
//! # 414 for an over-long request line
//! hyper answers any head that fills its buffer ([`MAX_HEAD`]) with an automatic 431, even when
//! the request line alone filled it; RFC 9112 section 3 wants 414 there, and hyper has no
//! option for it (its own 414 needs a complete head with a URI over 64 KiB, which the buffer
//! never holds). The tracker sees the same bytes: when a head stops tracking for its size and
//! its request line has no end, [`FramingIo`] rewrites hyper's automatic
//! `431 Request Header Fields Too Large` status line, when it starts a write, into
//! `414 URI Too Long`. hyper still writes the answer itself, in order after what it owed the
//! client, and closes; the request never reaches the service. A header block over the limit
//! keeps its 431.
//!
//! An `Upgrade` or CONNECT request does not stop tracking: when the upgrade is refused, hyper
//! keeps the connection for further requests, which must still be checked. When it is
//! accepted, the tunnelled bytes are followed as if they were requests until they fail to
//! parse (a WebSocket frame fails at its first byte); a flag raised there names a request
//! index the service never sees, so it is harmless.
//!
//! # Cost
//! One `httparse` pass over each head (hyper makes another), a skip over `Content-Length`
//! bodies, a `parse_chunk_size` call per chunk. No allocation while a head or a chunk-size
//! line arrives in one read; a reusable buffer otherwise (released if it grew large).

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Heads (and chunk-size lines) longer than this stop tracking; hyper answers 431 itself.
pub const MAX_HEAD: usize = super::MAX_HEADER_BYTES;
/// Header slots per head; more headers stop tracking (hyper's own limit, 100, is lower).
pub const MAX_HEADERS: usize = 128;
/// The start of the HTTP/2 connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";
/// "No ambiguous request".
const NONE: u32 = u32::MAX;
/// A split-head buffer larger than this is released rather than kept for the connection.
const KEEP_BUF: usize = 4 * 1024;

/// What the tracker found, shared with the requests of the connection.
#[derive(Debug)]
pub struct FramingFlags {
    /// Index of the first ambiguous request, or `NONE`.
    first_ambiguous: AtomicU32,
}

impl FramingFlags {
    pub fn new() -> Self {
        FramingFlags {
            first_ambiguous: AtomicU32::new(NONE),
        }
    }

    /// Whether HTTP/1 request `request_index` (0-based, in order on the connection) carried
    /// both `Content-Length` and `Transfer-Encoding`.
    pub fn is_ambiguous(&self, request_index: u32) -> bool {
        request_index != NONE && self.first_ambiguous.load(Ordering::Acquire) == request_index
    }

    fn flag(&self, request_index: u32) {
        // Only the first counts; the tracker stops after it anyway.
        let _ = self.first_ambiguous.compare_exchange(
            NONE,
            request_index,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
}

impl Default for FramingFlags {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the tracker is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a request head.
    Head,
    /// Skipping a `Content-Length` body: bytes left (never 0).
    Body(u64),
    /// Reading a chunk-size line.
    ChunkSize,
    /// Skipping chunk data: bytes left (never 0).
    ChunkData(u64),
    /// The CR after chunk data.
    ChunkCr,
    /// The LF after chunk data.
    ChunkLf,
    /// After the last chunk: at the start of a trailer line or of the final empty line.
    LineStart,
    /// Inside a trailer line, up to its CR.
    Trailer,
    /// The LF ending a trailer line.
    TrailerLf,
    /// The LF ending the message.
    EndLf,
    /// Not tracking: bytes pass through.
    Off,
}

/// How a complete head frames what follows it.
enum Framing {
    /// Both `Content-Length` and `Transfer-Encoding`.
    Ambiguous,
    /// Something hyper rejects.
    Invalid,
    Chunked,
    Length(u64),
    /// No body; the next head follows.
    Empty,
}

/// Follows HTTP/1.1 request boundaries over the bytes a connection reads.
#[derive(Debug)]
pub struct Tracker {
    state: State,
    /// A head or chunk-size line split across reads; empty otherwise.
    buf: Vec<u8>,
    /// Complete heads seen: the index the next head gets.
    heads: u32,
    /// No byte seen yet (for the HTTP/2 preface).
    fresh: bool,
    /// The head that stopped tracking for its size had no end to its request line.
    line_too_long: bool,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    pub fn new() -> Self {
        Tracker {
            state: State::Head,
            buf: Vec::new(),
            heads: 0,
            fresh: true,
            line_too_long: false,
        }
    }

    /// Whether tracking stopped at a head whose request line alone filled [`MAX_HEAD`]
    /// (hyper answers it 431; see the module doc).
    pub fn request_line_too_long(&self) -> bool {
        self.line_too_long
    }

    /// Whether bytes still need to be fed.
    pub fn is_tracking(&self) -> bool {
        self.state != State::Off
    }

    /// Follows `data`, the next bytes read from the connection. Returns the index of a
    /// request found ambiguous in them (tracking stops after it).
    pub fn feed(&mut self, mut data: &[u8]) -> Option<u32> {
        if self.fresh && !data.is_empty() {
            self.fresh = false;
            if data.starts_with(H2_PREFACE) {
                self.off();
                return None;
            }
        }
        while let Some((&byte, rest)) = data.split_first() {
            match self.state {
                State::Head => match self.head(data) {
                    Ok(used) => data = &data[used..],
                    Err(ambiguous) => return ambiguous,
                },
                State::Body(left) => {
                    let (used, state) = skip(data, left, State::Head);
                    data = &data[used..];
                    self.state = state;
                }
                State::ChunkSize => data = &data[self.chunk_size(data)..],
                State::ChunkData(left) => {
                    let (used, state) = skip(data, left, State::ChunkCr);
                    data = &data[used..];
                    self.state = state;
                }
                State::ChunkCr => {
                    self.one(byte, b'\r', State::ChunkLf);
                    data = rest;
                }
                State::ChunkLf => {
                    self.one(byte, b'\n', State::ChunkSize);
                    data = rest;
                }
                State::LineStart => {
                    // hyper: a CR here starts the final CRLF, anything else a trailer line.
                    self.state = if byte == b'\r' {
                        State::EndLf
                    } else {
                        State::Trailer
                    };
                    data = rest;
                }
                State::Trailer => match data.iter().position(|&b| b == b'\r') {
                    Some(cr) => {
                        self.state = State::TrailerLf;
                        data = &data[cr + 1..];
                    }
                    None => data = &[],
                },
                State::TrailerLf => {
                    self.one(byte, b'\n', State::LineStart);
                    data = rest;
                }
                State::EndLf => {
                    self.one(byte, b'\n', State::Head);
                    data = rest;
                }
                State::Off => return None,
            }
        }
        None
    }

    fn off(&mut self) {
        self.state = State::Off;
        self.buf = Vec::new();
    }

    /// Stops at a partial head of `MAX_HEAD` bytes or more, where hyper answers 431.
    /// `line_ended`: whether its request line ended (see [`has_line_end`]).
    fn too_large(&mut self, line_ended: bool) {
        self.line_too_long = !line_ended;
        self.off();
    }

    /// One byte that must be `want` (hyper's chunked decoder is strict about CRLFs).
    fn one(&mut self, byte: u8, want: u8, next: State) {
        if byte == want {
            self.state = next;
        } else {
            self.off();
        }
    }

    /// Reads (part of) a head from `data`: `Ok(bytes used)`, or `Err(ambiguous index)` once
    /// tracking stopped.
    fn head(&mut self, data: &[u8]) -> Result<usize, Option<u32>> {
        if self.buf.is_empty() {
            // The common case: the whole head in this read, parsed in place.
            return match parse_head(data) {
                Ok(httparse::Status::Complete((len, framing))) => {
                    self.after_head(framing).map(|()| len)
                }
                Ok(httparse::Status::Partial) if data.len() < MAX_HEAD => {
                    self.buf.extend_from_slice(data);
                    Ok(data.len())
                }
                Ok(httparse::Status::Partial) => {
                    self.too_large(has_line_end(data));
                    Err(None)
                }
                Err(_) => {
                    self.off();
                    Err(None)
                }
            };
        }
        // A head split across reads: append (at most one byte over the limit) and parse again
        // only when an empty line may have arrived.
        let old = self.buf.len();
        let take = data.len().min(MAX_HEAD + 1 - old);
        self.buf.extend_from_slice(&data[..take]);
        if !has_empty_line(&self.buf[old.saturating_sub(2)..]) {
            if self.buf.len() >= MAX_HEAD {
                self.too_large(has_line_end(&self.buf));
                return Err(None);
            }
            return Ok(take);
        }
        match parse_head(&self.buf) {
            Ok(httparse::Status::Complete((len, framing))) => {
                self.release_buf();
                self.after_head(framing).map(|()| len.saturating_sub(old))
            }
            Ok(httparse::Status::Partial) if self.buf.len() < MAX_HEAD => Ok(take),
            Ok(httparse::Status::Partial) => {
                self.too_large(has_line_end(&self.buf));
                Err(None)
            }
            Err(_) => {
                self.off();
                Err(None)
            }
        }
    }

    /// Counts a complete head and sets the state for what follows it.
    fn after_head(&mut self, framing: Framing) -> Result<(), Option<u32>> {
        let index = self.heads;
        if index == NONE - 1 {
            // Out of indexes (billions of requests on one connection): stop.
            self.off();
            return Err(None);
        }
        self.heads += 1;
        self.state = match framing {
            Framing::Ambiguous => {
                self.off();
                return Err(Some(index));
            }
            Framing::Invalid => {
                self.off();
                return Err(None);
            }
            Framing::Chunked => State::ChunkSize,
            Framing::Length(0) | Framing::Empty => State::Head,
            Framing::Length(n) => State::Body(n),
        };
        Ok(())
    }

    /// Reads (part of) a chunk-size line from `data`; returns the bytes used.
    fn chunk_size(&mut self, data: &[u8]) -> usize {
        if self.buf.is_empty() {
            match httparse::parse_chunk_size(data) {
                Ok(httparse::Status::Complete((len, size))) => {
                    self.after_chunk_size(size);
                    len
                }
                Ok(httparse::Status::Partial) if data.len() <= MAX_HEAD => {
                    self.buf.extend_from_slice(data);
                    data.len()
                }
                _ => {
                    self.off();
                    data.len()
                }
            }
        } else {
            let old = self.buf.len();
            let take = data.len().min(MAX_HEAD + 1 - old);
            self.buf.extend_from_slice(&data[..take]);
            if !self.buf[old.saturating_sub(1)..].contains(&b'\n') {
                if self.buf.len() > MAX_HEAD {
                    self.off();
                }
                return take;
            }
            match httparse::parse_chunk_size(&self.buf) {
                Ok(httparse::Status::Complete((len, size))) => {
                    self.release_buf();
                    self.after_chunk_size(size);
                    len.saturating_sub(old)
                }
                Ok(httparse::Status::Partial) if self.buf.len() <= MAX_HEAD => take,
                _ => {
                    self.off();
                    take
                }
            }
        }
    }

    fn after_chunk_size(&mut self, size: u64) {
        self.state = if size == 0 {
            State::LineStart
        } else {
            State::ChunkData(size)
        };
    }

    /// Empties the split buffer, keeping it for the next split unless it grew large.
    fn release_buf(&mut self) {
        if self.buf.capacity() > KEEP_BUF {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }
}

/// Skips up to `left` bytes of `data`: (bytes used, next state).
fn skip(data: &[u8], left: u64, then: State) -> (usize, State) {
    match usize::try_from(left) {
        Ok(left) if left <= data.len() => (left, then),
        _ => {
            let used = data.len();
            // `used < left` here, so the rest is never 0.
            let rest = left - used as u64;
            let state = if then == State::Head {
                State::Body(rest)
            } else {
                State::ChunkData(rest)
            };
            (used, state)
        }
    }
}

/// Whether `bytes` holds an empty line ("\n\n" or "\n\r\n"), which a complete head ends with.
fn has_empty_line(bytes: &[u8]) -> bool {
    bytes.windows(2).enumerate().any(|(i, w)| {
        w[0] == b'\n' && (w[1] == b'\n' || (w[1] == b'\r' && bytes.get(i + 2) == Some(&b'\n')))
    })
}

/// Whether a partial head has ended its request line (httparse skips empty lines before it).
fn has_line_end(head: &[u8]) -> bool {
    let start = head
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(head.len());
    head[start..].contains(&b'\n')
}

/// Parses a request head with httparse's defaults (hyper's too): its length and framing.
fn parse_head(bytes: &[u8]) -> httparse::Result<(usize, Framing)> {
    // Uninitialised header slots: nothing to fill 128 times per head (as hyper does).
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    Ok(match req.parse_with_uninit_headers(bytes, &mut headers)? {
        httparse::Status::Complete(len) => httparse::Status::Complete((len, framing(&req))),
        httparse::Status::Partial => httparse::Status::Partial,
    })
}

/// How hyper frames the body of a parsed head (`hyper::proto::h1::role::Server::parse`).
fn framing(req: &httparse::Request<'_, '_>) -> Framing {
    let mut content_length: Option<Option<u64>> = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    for header in req.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let len = digits(header.value);
            content_length = match content_length {
                // Several must agree; a bad one is remembered as `Some(None)`.
                Some(prev) if prev != len => Some(None),
                _ => Some(len),
            };
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            // hyper: the last Transfer-Encoding decides, and chunked must be its last coding.
            chunked = last_coding_is_chunked(header.value);
        }
    }
    match (content_length, transfer_encoding) {
        (Some(_), true) => Framing::Ambiguous,
        (None, true) if chunked && req.version == Some(1) => Framing::Chunked,
        (None, true) => Framing::Invalid,
        (Some(Some(len)), false) => Framing::Length(len),
        (Some(None), false) => Framing::Invalid,
        (None, false) => Framing::Empty,
    }
}

/// A `Content-Length` value: ASCII digits only, as hyper reads it (no sign, no list).
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

fn last_coding_is_chunked(value: &[u8]) -> bool {
    let last = match value.iter().rposition(|&b| b == b',') {
        Some(comma) => &value[comma + 1..],
        None => value,
    };
    last.trim_ascii().eq_ignore_ascii_case(b"chunked")
}

/// hyper's automatic answer to a head that fills its buffer, after the 8-byte version.
const HYPER_431: &[u8] = b" 431 Request Header Fields Too Large\r\n";
/// What it becomes when the request line alone filled the buffer, after the same version.
const STATUS_414: &[u8] = b" 414 URI Too Long\r\n";
/// "HTTP/1.1" or "HTTP/1.0".
const VERSION_LEN: usize = 8;
/// The rewritten status line.
type Line414 = [u8; VERSION_LEN + STATUS_414.len()];

/// Where the 431 -> 414 rewrite is (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rewrite {
    /// Writes pass through.
    Off,
    /// The tracker saw an over-long request line: the next write that starts with hyper's
    /// automatic 431 status line is rewritten.
    Armed,
    /// The 414 status line, of which `written` bytes went out; hyper's 431 line counts as
    /// written once all of it did.
    Writing { line: Line414, written: usize },
}

/// The connection's socket with a [`Tracker`] watching what hyper reads; writes pass through,
/// but for hyper's 431 to an over-long request line, which goes out as 414.
#[derive(Debug)]
pub struct FramingIo<T> {
    inner: T,
    tracker: Tracker,
    flags: Arc<FramingFlags>,
    rewrite: Rewrite,
}

impl<T> FramingIo<T> {
    /// Wraps `inner`; what the tracker finds goes to `flags`.
    pub fn new(inner: T, flags: Arc<FramingFlags>) -> Self {
        FramingIo {
            inner,
            tracker: Tracker::new(),
            flags,
            rewrite: Rewrite::Off,
        }
    }
}

impl<T: AsyncWrite + Unpin> FramingIo<T> {
    /// `poll_write` once the rewrite is armed: hyper's automatic 431 status line, when it
    /// starts `buf`, goes out as `414 URI Too Long` (and counts as written when that did);
    /// anything else passes through.
    fn poll_write_armed(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let (line, mut written) = match self.rewrite {
            Rewrite::Writing { line, written } => (line, written),
            Rewrite::Armed
                if buf
                    .get(VERSION_LEN..)
                    .is_some_and(|s| s.starts_with(HYPER_431)) =>
            {
                let mut line: Line414 = [0; VERSION_LEN + STATUS_414.len()];
                line[..VERSION_LEN].copy_from_slice(&buf[..VERSION_LEN]);
                line[VERSION_LEN..].copy_from_slice(STATUS_414);
                (line, 0)
            }
            _ => return Pin::new(&mut self.inner).poll_write(cx, buf),
        };
        while written < line.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &line[written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(0)),
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.rewrite = Rewrite::Writing { line, written };
                    return Poll::Pending;
                }
            }
        }
        self.rewrite = Rewrite::Off;
        Poll::Ready(Ok(VERSION_LEN + HYPER_431.len()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FramingIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.tracker.is_tracking() {
            if let Poll::Ready(Ok(())) = polled {
                if let Some(index) = this.tracker.feed(&buf.filled()[before..]) {
                    this.flags.flag(index);
                }
                if this.tracker.request_line_too_long() && this.rewrite == Rewrite::Off {
                    this.rewrite = Rewrite::Armed;
                }
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FramingIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.rewrite {
            Rewrite::Off => Pin::new(&mut this.inner).poll_write(cx, buf),
            _ => this.poll_write_armed(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.rewrite {
            Rewrite::Off => Pin::new(&mut this.inner).poll_write_vectored(cx, bufs),
            // One slice at a time while armed, so that hyper's status line starts a write.
            _ => {
                let first = bufs
                    .iter()
                    .find(|b| !b.is_empty())
                    .map_or(&[][..], |b| &b[..]);
                this.poll_write_armed(cx, first)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
