//! DNS over UDP: one task receives datagrams in batches (`recvmmsg`), answers each in place
//! and sends the answers back in one batch (`sendmmsg`), with receive and answer buffers
//! reused for every query.
//!
//! Why not hickory-server's UDP server: it spawns a task per datagram and sends each answer
//! through a channel to a sender task, which costs more than the answer itself at the rates
//! a GeoDNS responder sees. Why batches: four of every five microseconds a query costs are the
//! kernel's, and a loaded responder finds several datagrams queued at each wakeup; one system
//! call per batch instead of two per query is the part of that cost a server can remove
//! (nix wraps the calls; this crate forbids `unsafe`). The wire format stays hickory's:
//! `Request::from_bytes` decodes, `MessageResponse::destructive_emit` encodes.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Header, MessageType, ResponseCode};
use hickory_server::proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::server::Request;
use hickory_server::zone_handler::{MessageResponseBuilder, Queries};
use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::Handler;

/// Datagrams taken per `recvmmsg` (and answers per `sendmmsg`).
const BATCH: usize = 32;

/// The longest query read whole. Queries are a few dozen bytes (a few hundred with EDNS
/// options); a longer datagram is cut by the kernel, seen as such, and answered FORMERR.
const MAX_QUERY: usize = 4096;

/// One received datagram: its length, its source, and whether the kernel cut it.
#[derive(Clone, Copy)]
struct Received {
    len: usize,
    src: Option<SocketAddr>,
    cut: bool,
}

const NONE_RECEIVED: Received = Received {
    len: 0,
    src: None,
    cut: false,
};

/// Answers datagrams on `socket` until the runtime stops.
pub(super) async fn serve(socket: UdpSocket, handler: Arc<Handler>) {
    let fd = socket.as_raw_fd();
    let mut queries = vec![[0u8; MAX_QUERY]; BATCH];
    let mut answers: Vec<Vec<u8>> = (0..BATCH)
        .map(|_| Vec::with_capacity(usize::from(super::EDNS_PAYLOAD)))
        .collect();
    let mut received = [NONE_RECEIVED; BATCH];
    let mut to: Vec<Option<SockaddrStorage>> = Vec::with_capacity(BATCH);
    let mut ready: Vec<usize> = Vec::with_capacity(BATCH);
    loop {
        let got = socket
            .async_io(Interest::READABLE, || {
                receive(fd, &mut queries, &mut received)
            })
            .await;
        let n = match got {
            Ok(n) => n,
            Err(e) if transient(&e) => continue,
            Err(e) => {
                tracing::error!(error = %e, "gslb: the UDP socket failed; DNS over UDP stopped");
                return;
            }
        };
        ready.clear();
        to.clear();
        for (i, got) in received.iter().take(n).enumerate() {
            let (Some(src), Some(query), Some(out)) = (got.src, queries.get(i), answers.get_mut(i))
            else {
                continue;
            };
            if !answerable(src) {
                continue;
            }
            out.clear();
            let bytes = query.get(..got.len).unwrap_or_default();
            if handler.answer_datagram(bytes, got.cut, src, out) {
                ready.push(i);
                to.push(Some(SockaddrStorage::from(src)));
            }
        }
        send_all(&socket, fd, &answers, &ready, &to).await;
    }
}

/// One `recvmmsg` without waiting: fills `received` and returns how many came. The message
/// headers are made per call (two small allocations per batch): nix's hold raw pointers, so
/// they cannot be kept across an await in a task that may move between threads.
fn receive(
    fd: i32,
    queries: &mut [[u8; MAX_QUERY]],
    received: &mut [Received; BATCH],
) -> io::Result<usize> {
    let mut slices: Vec<[IoSliceMut<'_>; 1]> =
        queries.iter_mut().map(|q| [IoSliceMut::new(q)]).collect();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let results = recvmmsg(
        fd,
        &mut headers,
        slices.iter_mut(),
        MsgFlags::MSG_DONTWAIT,
        None,
    )
    .map_err(io::Error::from)?;
    let mut n = 0;
    for (slot, msg) in received.iter_mut().zip(results) {
        *slot = Received {
            len: msg.bytes,
            src: msg.address.as_ref().and_then(socket_addr),
            cut: msg.flags.contains(MsgFlags::MSG_TRUNC),
        };
        n += 1;
    }
    Ok(n)
}

/// Sends `answers[ready[k]]` to `to[k]` for every k, in as few `sendmmsg` calls as the kernel
/// takes; an answer the kernel refuses alone (an unroutable source) is dropped and logged.
async fn send_all(
    socket: &UdpSocket,
    fd: i32,
    answers: &[Vec<u8>],
    ready: &[usize],
    to: &[Option<SockaddrStorage>],
) {
    let mut from = 0;
    while from < ready.len() {
        let sent = socket
            .async_io(Interest::WRITABLE, || {
                let slices: Vec<[IoSlice<'_>; 1]> = ready[from..]
                    .iter()
                    .map(|&i| [IoSlice::new(answers.get(i).map_or(&[][..], Vec::as_slice))])
                    .collect();
                let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(slices.len(), None);
                let results = sendmmsg(
                    fd,
                    &mut headers,
                    slices.iter(),
                    &to[from..],
                    [],
                    MsgFlags::MSG_DONTWAIT,
                )
                .map_err(io::Error::from)?;
                Ok(results.count())
            })
            .await;
        match sent {
            Ok(0) => return,
            Ok(k) => from += k,
            Err(e) => {
                tracing::debug!(error = %e, to = ?to.get(from), "gslb: cannot send an answer");
                from += 1;
            }
        }
    }
}

fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

impl Handler {
    /// Writes the answer to the datagram `bytes` from `src` into `out`; false: no answer
    /// (shorter than a header, or a response: answering those would make a reflector).
    /// `cut`: the kernel cut the datagram to fit the buffer; it is answered FORMERR.
    fn answer_datagram(&self, bytes: &[u8], cut: bool, src: SocketAddr, out: &mut Vec<u8>) -> bool {
        let Ok(header) = Header::read(&mut BinDecoder::new(bytes)) else {
            return false;
        };
        if header.metadata.message_type == MessageType::Response {
            return false;
        }
        let mut encoder = BinEncoder::new(out);
        let request = if cut {
            None
        } else {
            Request::from_bytes(bytes.to_vec(), src, Protocol::Udp).ok()
        };
        let emitted = match request {
            Some(request) => {
                // One snapshot load per query.
                let snap = self.live.snapshot.load();
                let zone = self.zone(&snap);
                let answer = self.answer(zone.as_deref(), &snap, &request);
                drop(snap);
                answer.response(&request).destructive_emit(&mut encoder)
            }
            None => {
                // A bare FORMERR: the header's id and opcode, no question repeated.
                let none = Queries::read(&mut BinDecoder::new(&[]), 0);
                match none {
                    Ok(queries) => MessageResponseBuilder::new(&queries, None)
                        .error_msg(&header.metadata, ResponseCode::FormErr)
                        .destructive_emit(&mut encoder),
                    Err(_) => return false,
                }
            }
        };
        match emitted {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(error = %e, %src, "gslb: cannot encode an answer");
                false
            }
        }
    }
}

/// Errors of one datagram, not of the socket (an ICMP error reported late, a signal).
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    )
}

/// A source an answer can go to: not port 0, not an unspecified or broadcast address.
fn answerable(src: SocketAddr) -> bool {
    src.port() != 0
        && match src.ip() {
            IpAddr::V4(ip) => !ip.is_unspecified() && !ip.is_broadcast(),
            IpAddr::V6(ip) => !ip.is_unspecified(),
        }
}
