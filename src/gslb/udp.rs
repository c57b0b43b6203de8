//! DNS over UDP: one task receives each datagram, answers it in place and sends the answer,
//! with one receive buffer and one answer buffer reused for every query.
//!
//! Why not hickory-server's UDP server: it spawns a task per datagram and sends each answer
//! through a channel to a sender task, which costs more than the answer itself at the rates
//! a GeoDNS responder sees. The wire format stays hickory's: `Request::from_bytes` decodes,
//! `MessageResponse::destructive_emit` encodes.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Header, MessageType, ResponseCode};
use hickory_server::proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::server::Request;
use hickory_server::zone_handler::{MessageResponseBuilder, Queries};
use tokio::net::UdpSocket;

use super::Handler;

/// The largest datagram read whole (a UDP payload's maximum); a longer one is cut and answered
/// FORMERR.
const MAX_DATAGRAM: usize = 65_535;

/// Answers datagrams on `socket` until the runtime stops.
pub(super) async fn serve(socket: UdpSocket, handler: Arc<Handler>) {
    let mut query = vec![0u8; MAX_DATAGRAM];
    let mut out = Vec::with_capacity(usize::from(super::EDNS_PAYLOAD));
    loop {
        let (n, src) = match socket.recv_from(&mut query).await {
            Ok(got) => got,
            Err(e) if transient(&e) => continue,
            Err(e) => {
                tracing::error!(error = %e, "gslb: the UDP socket failed; DNS over UDP stopped");
                return;
            }
        };
        let Some(bytes) = query.get(..n) else {
            continue;
        };
        if !answerable(src) {
            continue;
        }
        out.clear();
        if !handler.answer_datagram(bytes, src, &mut out) {
            continue;
        }
        if let Err(e) = socket.send_to(&out, src).await {
            tracing::debug!(error = %e, %src, "gslb: cannot send an answer");
        }
    }
}

impl Handler {
    /// Writes the answer to the datagram `bytes` from `src` into `out`; false: no answer
    /// (shorter than a header, or a response: answering those would make a reflector).
    fn answer_datagram(&self, bytes: &[u8], src: SocketAddr, out: &mut Vec<u8>) -> bool {
        let Ok(header) = Header::read(&mut BinDecoder::new(bytes)) else {
            return false;
        };
        if header.metadata.message_type == MessageType::Response {
            return false;
        }
        let mut encoder = BinEncoder::new(out);
        let emitted = match Request::from_bytes(bytes.to_vec(), src, Protocol::Udp) {
            Ok(request) => {
                // One snapshot load per query.
                let snap = self.live.snapshot.load();
                let zone = self.zone(&snap);
                let answer = self.answer(zone.as_deref(), &snap, &request);
                drop(snap);
                answer.response(&request).destructive_emit(&mut encoder)
            }
            Err(_) => {
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
