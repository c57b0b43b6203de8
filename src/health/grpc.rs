//! The grpc check: the standard `grpc.health.v1.Health/Check` over HTTP/2 (h2c, or h2 over the
//! pool's TLS), up when the answer is SERVING.
//!
//! The messages are a few bytes, encoded and read here by hand instead of generated code:
//! `HealthCheckRequest { string service = 1; }` and `HealthCheckResponse { ServingStatus
//! status = 1; }` with `SERVING = 1`, each in gRPC's 5-byte frame (a compressed flag and a
//! big-endian length).

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::probe::{open, ProbeError, Transport};
use crate::config::HealthConfig;

const PATH: &str = "/grpc.health.v1.Health/Check";

/// `Check(service)`: Ok when the server answers SERVING.
pub(super) async fn check(
    addr: SocketAddr,
    cfg: &HealthConfig,
    transport: Transport<'_>,
) -> Result<(), ProbeError> {
    let (io, _) = open(addr, transport).await?;
    let scheme = if transport.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .map_err(ProbeError::Http)?;
    // Drives the connection; aborted once the answer is in.
    let driver = tokio::spawn(conn);
    let req = Request::post(format!("{scheme}://{addr}{PATH}"))
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .header(header::USER_AGENT, "fulcrum-health")
        .body(Full::new(request(&cfg.service)))
        .map_err(ProbeError::Request)?;
    let answer = async {
        let resp = sender.send_request(req).await.map_err(ProbeError::Http)?;
        if resp.status() != http::StatusCode::OK {
            return Err(ProbeError::Status(resp.status().as_u16()));
        }
        let (parts, body) = resp.into_parts();
        let collected = body.collect().await.map_err(ProbeError::Http)?;
        let trailers = collected.trailers().cloned();
        // Trailers-only answers carry the status in the head.
        let status = trailers
            .as_ref()
            .and_then(grpc_status)
            .or_else(|| grpc_status(&parts.headers));
        match status {
            Some((0, _)) => {}
            Some((code, message)) => return Err(ProbeError::GrpcStatus(code, message)),
            None => return Err(ProbeError::GrpcReply),
        }
        serving(&collected.to_bytes())
    }
    .await;
    driver.abort();
    answer
}

/// A framed `HealthCheckRequest`: field 1 (`service`) as a length-delimited string, left out
/// when empty (proto3's default).
fn request(service: &str) -> Bytes {
    let mut msg = BytesMut::new();
    if !service.is_empty() {
        msg.put_u8(0x0a);
        varint(&mut msg, service.len() as u64);
        msg.put_slice(service.as_bytes());
    }
    let mut framed = BytesMut::with_capacity(5 + msg.len());
    framed.put_u8(0);
    framed.put_u32(u32::try_from(msg.len()).unwrap_or(u32::MAX));
    framed.put_slice(&msg);
    framed.freeze()
}

fn varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Reads a varint at `*at`; `None` when truncated or longer than 10 bytes.
fn read_varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// `grpc-status` and `grpc-message` of a head or trailers.
fn grpc_status(h: &HeaderMap) -> Option<(u32, String)> {
    let code = h.get("grpc-status")?.to_str().ok()?.trim().parse().ok()?;
    let message = h
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(|m| {
            percent_encoding::percent_decode_str(m)
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    Some((code, message))
}

/// The framed `HealthCheckResponse`: Ok for SERVING (1), else the status named.
fn serving(body: &[u8]) -> Result<(), ProbeError> {
    let status = response_status(body).ok_or(ProbeError::GrpcReply)?;
    match status {
        1 => Ok(()),
        0 => Err(ProbeError::NotServing("UNKNOWN")),
        2 => Err(ProbeError::NotServing("NOT_SERVING")),
        3 => Err(ProbeError::NotServing("SERVICE_UNKNOWN")),
        _ => Err(ProbeError::NotServing("an unknown status")),
    }
}

/// Field 1 of the one message in `body` (0 when absent: proto3's default, UNKNOWN).
fn response_status(body: &[u8]) -> Option<u64> {
    let (flag, rest) = body.split_first()?;
    if *flag != 0 || rest.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let msg = rest.get(4..4 + len)?;
    let mut at = 0;
    let mut status = 0;
    while at < msg.len() {
        let tag = read_varint(msg, &mut at)?;
        match tag & 7 {
            0 => {
                let v = read_varint(msg, &mut at)?;
                if tag >> 3 == 1 {
                    status = v;
                }
            }
            2 => {
                let n = usize::try_from(read_varint(msg, &mut at)?).ok()?;
                at = at.checked_add(n)?;
            }
            5 => at += 4,
            1 => at += 8,
            _ => return None,
        }
    }
    (at == msg.len()).then_some(status)
}

#[cfg(test)]
mod tests {
    use super::{request, response_status};

    #[test]
    fn the_request_is_the_protobuf_of_the_service_name() {
        assert_eq!(&request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(&request("ab")[..], &[0, 0, 0, 0, 4, 0x0a, 2, b'a', b'b']);
    }

    #[test]
    fn the_response_status_is_field_one() {
        assert_eq!(response_status(&[0, 0, 0, 0, 2, 0x08, 1]), Some(1));
        assert_eq!(response_status(&[0, 0, 0, 0, 2, 0x08, 2]), Some(2));
        assert_eq!(response_status(&[0, 0, 0, 0, 0]), Some(0));
        assert_eq!(response_status(&[0, 0, 0, 0, 3, 0x08]), None);
        assert_eq!(response_status(&[1, 0, 0, 0, 0]), None);
    }
}
