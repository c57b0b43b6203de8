//! What the fuzz target `fuzz/fuzz_targets/http1_head.rs` drives: the request and response
//! head parsers and the chunked decoder on any bytes, with the invariants the engine relies
//! on checked (a panic is a finding): a head's length is within its input; the framing agrees
//! with the header map; a chunked body decodes the same whole and byte by byte, and what it
//! decodes to, encoded again, decodes to the same data.

use http::{header, Method};

use super::chunked::{self, Decoder};
use super::head::{self, Framing};

/// Runs every parser of the engine's framing on `data`.
pub fn head_and_framing(data: &[u8]) {
    if let Ok(req) = head::parse_request(data) {
        assert!(req.len <= data.len() && req.len <= head::MAX_HEAD);
        let h = &req.parts.headers;
        match req.framing {
            Framing::Chunked => assert!(!h.contains_key(header::CONTENT_LENGTH)),
            Framing::Length(n) => {
                assert!(n > 0 && !h.contains_key(header::TRANSFER_ENCODING));
                let all_n = h
                    .get_all(header::CONTENT_LENGTH)
                    .iter()
                    .all(|v| v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) == Some(n));
                assert!(all_n);
            }
            Framing::None => assert!(!h.contains_key(header::TRANSFER_ENCODING)),
            Framing::Close => unreachable!("requests are never close-delimited"),
        }
        if req.framing == Framing::Chunked {
            body(&data[req.len..]);
        }
    }
    for method in [Method::GET, Method::HEAD] {
        if let Ok(resp) = head::parse_response(data, &method) {
            assert!(resp.len <= data.len());
            if method == Method::HEAD {
                assert_eq!(resp.framing, Framing::None);
            }
        }
    }
    body(data);
}

/// The chunked decoder on `data`: whole and byte by byte alike; a decoded body round-trips.
fn body(data: &[u8]) {
    let whole = chunked::decode_all(data, true);
    let mut d = Decoder::new(true);
    let mut bytewise = Vec::new();
    let mut failed = false;
    for i in 0..data.len() {
        if d.is_done() {
            break;
        }
        match d.feed(&data[i..=i]) {
            Ok(step) => bytewise.extend_from_slice(&data[i..=i][step.data.0..step.data.1]),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    match whole {
        Ok((decoded, trailers, _)) => {
            assert!(!failed && d.is_done());
            assert_eq!(decoded, bytewise);
            let mut again = Vec::new();
            if !decoded.is_empty() {
                chunked::chunk_header(&mut again, decoded.len());
                again.extend_from_slice(&decoded);
                again.extend_from_slice(b"\r\n");
            }
            chunked::last_chunk(&mut again, &trailers);
            let (round, round_trailers, used) =
                chunked::decode_all(&again, true).unwrap_or_default();
            assert_eq!(round, decoded);
            assert_eq!(round_trailers, trailers);
            assert_eq!(used, again.len());
        }
        Err(_) => assert!(failed || !d.is_done()),
    }
}
