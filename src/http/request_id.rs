//! `X-Request-Id` and W3C trace context (`traceparent`) on every request to a backend, decided
//! once here for both HTTP/1 paths (Fulcrum's engine in `http1` and hyper's in `http::proxy`).
//!
//! Why here and not in `headers`: the id is also the access log's, and the two paths write it
//! differently (hyper sets header values; the engine writes the generated lines straight into
//! the upstream head, without a header value to allocate). The rules:
//! - `X-Request-Id` is kept only from a peer inside `[global] trusted_proxies` (one value,
//!   visible ASCII, at most [`MAX_KEPT`] bytes); anyone else's is replaced by a generated one.
//!   A generated id is 32 lowercase hex digits: a random prefix drawn once per thread and that
//!   thread's counter, so making one takes no lock, no syscall and no allocation.
//! - `traceparent` / `tracestate` pass through as sent. On a listener with `trace = "start"`, a
//!   request without a valid `traceparent` gets a new one (version 00, sampled), whose trace id
//!   is the request id when that was generated here, so log lines and traces meet; an invalid
//!   `traceparent` is then dropped with its `tracestate` (W3C trace context 4.3).

use std::cell::Cell;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::TraceMode;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// A trusted proxy's `X-Request-Id` longer than this is replaced.
pub const MAX_KEPT: usize = 200;

/// `00-` + 32 hex trace id + `-` + 16 hex parent id + `-01`.
const TRACEPARENT_LEN: usize = 55;

/// This request's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestId {
    /// Made here: 32 lowercase hex digits.
    Generated([u8; 32]),
    /// A trusted proxy's, as it sent it (a cheap clone of the parsed value).
    Kept(HeaderValue),
}

#[cfg(test)]
impl RequestId {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            RequestId::Generated(hex) => hex,
            RequestId::Kept(v) => v.as_bytes(),
        }
    }

    /// The id as text (both kinds are visible ASCII).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("-")
    }
}

/// What goes upstream beside the client's own headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub request_id: RequestId,
    /// A trace started here (`trace = "start"`, none valid came); `None`: passed through.
    pub started: Option<[u8; TRACEPARENT_LEN]>,
}

/// Decides the request's id and trace context from the headers the client sent. `trusted`:
/// the peer is one of `trusted_proxies`.
pub fn decide(headers: &HeaderMap, trusted: bool, trace: TraceMode) -> Ids {
    let kept = trusted
        .then(|| single(headers, &X_REQUEST_ID))
        .flatten()
        .filter(|v| valid_id(v.as_bytes()));
    let request_id = match kept {
        Some(v) => RequestId::Kept(v.clone()),
        None => RequestId::Generated(generate()),
    };
    let started = (trace == TraceMode::Start
        && !single(headers, &TRACEPARENT).is_some_and(|v| valid_traceparent(v.as_bytes())))
    .then(|| start_trace(&request_id));
    Ids {
        request_id,
        started,
    }
}

/// hyper's path: the headers as they go upstream (run after `headers::prepare_upstream`).
pub fn apply(headers: &mut HeaderMap, ids: &Ids) {
    match &ids.request_id {
        RequestId::Kept(_) => {}
        RequestId::Generated(hex) => {
            if let Ok(v) = HeaderValue::from_bytes(hex) {
                headers.insert(X_REQUEST_ID, v);
            }
        }
    }
    if let Some(tp) = &ids.started {
        headers.remove(TRACESTATE);
        if let Ok(v) = HeaderValue::from_bytes(tp) {
            headers.insert(TRACEPARENT, v);
        }
    }
}

/// The engine's path, after the head's other lines: the header lines made here, written
/// straight into the upstream head (no header value to allocate).
pub fn write_lines(out: &mut Vec<u8>, ids: &Ids) {
    if let RequestId::Generated(hex) = &ids.request_id {
        out.extend_from_slice(b"x-request-id: ");
        out.extend_from_slice(hex);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(tp) = &ids.started {
        out.extend_from_slice(b"traceparent: ");
        out.extend_from_slice(tp);
        out.extend_from_slice(b"\r\n");
    }
}

/// The header's value when it appears exactly once.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    let mut all = headers.get_all(name).iter();
    match (all.next(), all.next()) {
        (Some(v), None) => Some(v),
        _ => None,
    }
}

fn valid_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= MAX_KEPT && v.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// `version-traceid-parentid-flags` as W3C trace context 3.2 says: lowercase hex, trace id and
/// parent id not all zeros, version not `ff` (a later version may be longer: its first four
/// fields are read as version 00's).
pub fn valid_traceparent(v: &[u8]) -> bool {
    let hex = |s: &[u8]| {
        s.iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    };
    let zeros = |s: &[u8]| s.iter().all(|&b| b == b'0');
    if v.len() < TRACEPARENT_LEN || (v.len() > TRACEPARENT_LEN && v[TRACEPARENT_LEN] != b'-') {
        return false;
    }
    let (version, trace, parent, flags) = (&v[0..2], &v[3..35], &v[36..52], &v[53..55]);
    let dashes = v[2] == b'-' && v[35] == b'-' && v[52] == b'-';
    dashes
        && hex(version)
        && version != b"ff"
        && (version != b"00" || v.len() == TRACEPARENT_LEN)
        && hex(trace)
        && !zeros(trace)
        && hex(parent)
        && !zeros(parent)
        && hex(flags)
}

thread_local! {
    /// This thread's id prefix (random, drawn once; never 0) and its next counter value.
    static NEXT: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// The next 64-bit prefix and counter of this thread.
fn next() -> (u64, u64) {
    NEXT.with(|cell| {
        let (mut prefix, counter) = cell.get();
        if prefix == 0 {
            prefix = fastrand::u64(1..);
        }
        cell.set((prefix, counter.wrapping_add(1)));
        (prefix, counter)
    })
}

fn hex_into(out: &mut [u8], mut n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(n & 0xf) as usize];
        n >>= 4;
    }
}

/// A new id: this thread's prefix, then its counter, in hex.
pub fn generate() -> [u8; 32] {
    let (prefix, counter) = next();
    let mut out = [0u8; 32];
    hex_into(&mut out[..16], prefix);
    hex_into(&mut out[16..], counter);
    out
}

/// A new `traceparent`: trace id = the request id when it was generated here (else a new
/// one), parent id = a mix of this thread's prefix and counter (never 0), sampled.
fn start_trace(id: &RequestId) -> [u8; TRACEPARENT_LEN] {
    let trace = match id {
        RequestId::Generated(hex) => *hex,
        RequestId::Kept(_) => generate(),
    };
    let (prefix, counter) = next();
    // splitmix64's finaliser: distinct counters give distinct, well-spread parent ids.
    let mut z = prefix ^ counter.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let parent = if z == 0 { 1 } else { z };
    let mut out = [0u8; TRACEPARENT_LEN];
    out[..3].copy_from_slice(b"00-");
    out[3..35].copy_from_slice(&trace);
    out[35] = b'-';
    hex_into(&mut out[36..52], parent);
    out[52..].copy_from_slice(b"-01");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn generated_ids_are_hex_and_unique() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(a
            .iter()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(a[..16], b[..16], "one prefix per thread");
        let other = std::thread::spawn(generate).join().unwrap();
        assert_ne!(other[..16], a[..16], "another thread, another prefix");
    }

    #[test]
    fn an_id_is_kept_only_from_a_trusted_peer() {
        let h = map(&[("x-request-id", "abc-123")]);
        let trusted = decide(&h, true, TraceMode::Pass);
        assert_eq!(trusted.request_id.as_str(), "abc-123");
        let untrusted = decide(&h, false, TraceMode::Pass);
        assert_ne!(untrusted.request_id.as_str(), "abc-123");
        assert_eq!(untrusted.request_id.as_bytes().len(), 32);
        let twice = map(&[("x-request-id", "a"), ("x-request-id", "b")]);
        assert!(matches!(
            decide(&twice, true, TraceMode::Pass).request_id,
            RequestId::Generated(_)
        ));
        let long = "x".repeat(MAX_KEPT + 1);
        let long = map(&[("x-request-id", &long)]);
        assert!(matches!(
            decide(&long, true, TraceMode::Pass).request_id,
            RequestId::Generated(_)
        ));
    }

    #[test]
    fn traceparent_passes_and_is_started_when_asked() {
        let with = map(&[("traceparent", TP)]);
        assert_eq!(decide(&with, false, TraceMode::Start).started, None);
        let without = HeaderMap::new();
        assert_eq!(decide(&without, false, TraceMode::Pass).started, None);
        let ids = decide(&without, false, TraceMode::Start);
        let tp = ids.started.unwrap();
        assert!(valid_traceparent(&tp), "{}", String::from_utf8_lossy(&tp));
        assert_eq!(&tp[3..35], ids.request_id.as_bytes());
        let bad = map(&[("traceparent", "00-xyz"), ("tracestate", "a=b")]);
        let ids = decide(&bad, false, TraceMode::Start);
        let mut h = bad.clone();
        apply(&mut h, &ids);
        assert!(valid_traceparent(h[TRACEPARENT].as_bytes()));
        assert!(!h.contains_key(TRACESTATE));
        assert_eq!(h[X_REQUEST_ID].as_bytes(), ids.request_id.as_bytes());
    }

    #[test]
    fn traceparent_validation() {
        assert!(valid_traceparent(TP.as_bytes()));
        let zeros = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        assert!(!valid_traceparent(zeros.as_bytes()));
        assert!(!valid_traceparent(TP.to_uppercase().as_bytes()));
        assert!(!valid_traceparent(TP.replace("00-4b", "ff-4b").as_bytes()));
        assert!(!valid_traceparent(format!("{TP}-x").as_bytes()));
        assert!(valid_traceparent(format!("01{}-x", &TP[2..]).as_bytes()));
    }
}
