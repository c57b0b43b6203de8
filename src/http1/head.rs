//! Message heads, parsed once from the raw bytes (httparse) and written back out.
//!
//! The framing of a body is decided here from the raw header lines, before anything is
//! normalised into a map, so an ambiguous head cannot slip through: `Content-Length` together
//! with `Transfer-Encoding`, `Content-Length`s that disagree or are not plain digits, a
//! `Transfer-Encoding` whose last coding is not `chunked` (on a request), obs-fold (httparse
//! refuses it in requests) and bare LF line ends (httparse accepts them; a peer that reads
//! CRLF only would see another message) are all refused. RFC 9112 sections 2.2, 5.2 and 6.

use std::mem::MaybeUninit;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, StatusCode, Uri, Version};

use crate::http::headers::{self as http_headers, Field, Present};

/// Heads longer than this are refused: 431, or 414 when the request line alone is longer.
pub const MAX_HEAD: usize = 64 * 1024;
/// Header fields per head (as many as the retired hyper path allowed).
pub const MAX_HEADERS: usize = 128;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Not complete yet: read more.
    #[error("incomplete head")]
    Partial,
    #[error("request line too long")]
    LineTooLong,
    #[error("header block too large")]
    TooLarge,
    #[error("{0}")]
    Invalid(&'static str),
    /// A response that does not start with an HTTP/1 status line: the backend speaks
    /// another protocol (an h2-only server answering with frames), not HTTP badly.
    #[error("not an HTTP/1 response")]
    NotHttp1,
}

/// A parsed request head: what the request path above reads, and how its body is framed.
#[derive(Debug)]
pub struct RequestHead {
    pub parts: Parts,
    pub framing: Framing,
    /// Bytes of the head, CRLF CRLF included.
    pub len: usize,
    /// The client wants the connection closed after this exchange.
    pub close: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// Which fields the request path looks up by name it has (noted as the map was built).
    pub present: Present,
}

/// A parsed response head. Its fields are kept as the lines to pass on, not as a map: the
/// response path only removes hop-by-hop fields and adds a few, so it copies lines.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    /// The fields passed on to the client, the backend's own lines as it wrote them (names
    /// in its case, as nginx passes them), in its order: hop-by-hop fields and those its
    /// `Connection` names are left out (RFC 9110 7.6.1); a 101 keeps its `Upgrade`, with
    /// `connection: upgrade`.
    pub fields: Vec<u8>,
    /// A `strict-transport-security` line is among `fields`.
    pub sts: bool,
    /// `Upgrade` offers the one protocol passed on (a 101's switch is checked against it).
    pub offers_upgrade: bool,
    pub framing: Framing,
    pub len: usize,
    /// The backend closes (or may close) after this response.
    pub close: bool,
}

/// Refuses a line ending in a bare LF: every `\n` of the head must follow a `\r`.
fn bare_lf(head: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head[i - 1] != b'\r')
}

/// What the length and coding headers say, from their raw values. `request`: a
/// `Transfer-Encoding` not ending in `chunked` is refused (RFC 9112 6.3 item 4).
fn framing_of<'h>(
    headers: impl Iterator<Item = (Field, &'h [u8])>,
    request: bool,
) -> Result<(Framing, bool), &'static str> {
    let mut length: Option<u64> = None;
    let mut chunked = None;
    for (field, value) in headers {
        if field == Field::ContentLength {
            // A list ("5, 5") or a repeated field with the same value is still refused: the
            // retired hyper path refused disagreeing ones only; nothing legitimate sends either.
            let digits = value.trim_ascii();
            if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
                return Err("invalid Content-Length");
            }
            let n = std::str::from_utf8(digits)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or("invalid Content-Length")?;
            if length.is_some_and(|prior| prior != n) {
                return Err("invalid Content-Length");
            }
            length = Some(n);
        } else if field == Field::TransferEncoding {
            let last = value
                .split(|&b| b == b',')
                .map(<[u8]>::trim_ascii)
                .rfind(|t| !t.is_empty());
            let is_chunked = last.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
            // `chunked` twice ("chunked, chunked" or a second line) is refused too.
            let chunks = value
                .split(|&b| b == b',')
                .filter(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
                .count();
            if chunked == Some(true) || chunks > 1 || (chunks == 1 && !is_chunked) {
                return Err("invalid Transfer-Encoding");
            }
            chunked = Some(is_chunked);
        }
    }
    match (length, chunked) {
        (Some(_), Some(_)) => Err("both Content-Length and Transfer-Encoding"),
        (None, Some(true)) => Ok((Framing::Chunked, false)),
        (None, Some(false)) if request => Err("invalid Transfer-Encoding"),
        (None, Some(false)) => Ok((Framing::Close, true)),
        (Some(0), None) => Ok((Framing::None, false)),
        (Some(n), None) => Ok((Framing::Length(n), false)),
        (None, None) => Ok((Framing::None, false)),
    }
}

/// Whether a `Connection` value lists `token`.
pub fn lists(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The head's fields as a map whose values share one copy of the head (`shared`, a copy of
/// `head`): one allocation for all values instead of one each.
fn to_map(
    headers: &[httparse::Header<'_>],
    head: &[u8],
    shared: &Bytes,
    present: &mut Present,
) -> Result<HeaderMap, &'static str> {
    // The engine never grows this map (`headers::write_fields` writes the upstream head
    // from it), so the room is for lookups only: at half full, the many lookups of absent
    // names (Connection, TE, Upgrade, X-Forwarded-For...) end early; a full table made
    // them cost more than its smaller allocation saved.
    let mut map = HeaderMap::with_capacity(headers.len() * 2);
    for h in headers {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| "invalid header name")?;
        present.note(&name);
        let value = HeaderValue::from_maybe_shared(slice_of(shared, head, h.value))
            .map_err(|_| "invalid header value")?;
        map.append(name, value);
    }
    Ok(map)
}

/// `part` (a slice of `head`) as the same range of `shared`.
fn slice_of(shared: &Bytes, head: &[u8], part: &[u8]) -> Bytes {
    let at = (part.as_ptr() as usize).saturating_sub(head.as_ptr() as usize);
    if at + part.len() <= shared.len() {
        shared.slice(at..at + part.len())
    } else {
        Bytes::copy_from_slice(part)
    }
}

fn version_of(minor: Option<u8>) -> Version {
    if minor == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    }
}

/// Parses the request head at the start of `buf`.
///
/// httparse finds the head's end itself (no separate search for CRLF CRLF); a head it
/// calls complete is then refused if any of its line ends is a bare LF, and an incomplete
/// one as soon as it shows one.
pub fn parse_request(buf: &[u8]) -> Result<RequestHead, HeadError> {
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let mut slots = uninit_slots();
    let mut req = httparse::Request::new(&mut []);
    let parsed = req.parse_with_uninit_headers(window, &mut slots);
    let end = match parsed {
        Ok(httparse::Status::Complete(end)) => end,
        _ if bare_lf(window) => return Err(HeadError::Invalid("bare LF")),
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            let line_done = window.windows(2).any(|w| w == b"\r\n");
            return Err(if line_done {
                HeadError::TooLarge
            } else {
                HeadError::LineTooLong
            });
        }
        Ok(httparse::Status::Partial) => return Err(HeadError::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Invalid("malformed head")),
    };
    let head = &buf[..end];
    if bare_lf(head) {
        return Err(HeadError::Invalid("bare LF"));
    }
    let fields = req.headers.iter().map(|h| (Field::of(h.name), h.value));
    let (framing, _) = framing_of(fields, true).map_err(HeadError::Invalid)?;
    let version = version_of(req.version);
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes())
        .map_err(|_| HeadError::Invalid("invalid method"))?;
    let shared = Bytes::copy_from_slice(head);
    let target = slice_of(&shared, head, req.path.unwrap_or("").as_bytes());
    let uri =
        Uri::from_maybe_shared(target).map_err(|_| HeadError::Invalid("invalid request-target"))?;
    let mut present = Present::NONE;
    let headers = to_map(req.headers, head, &shared, &mut present).map_err(HeadError::Invalid)?;
    let connection = |token| {
        present.has(Present::CONNECTION)
            && headers
                .get_all(http::header::CONNECTION)
                .iter()
                .any(|v| lists(v.as_bytes(), token))
    };
    let close = if version == Version::HTTP_10 {
        !connection("keep-alive")
    } else {
        connection("close")
    };
    let expect_continue = version == Version::HTTP_11
        && present.has(Present::EXPECT)
        && headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok(RequestHead {
        parts: request.into_parts().0,
        framing,
        len: end,
        close,
        expect_continue,
        present,
    })
}

/// Header slots for httparse, left uninitialised: it writes only the fields it finds, so
/// a head of five fields does not pay for zeroing 128 slots (4 KiB, twice per request).
fn uninit_slots<'b>() -> [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// Parses the response head at the start of `buf`, for a request with `method`.
pub fn parse_response(buf: &[u8], method: &Method) -> Result<ResponseHead, HeadError> {
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let mut slots = uninit_slots();
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, window, &mut slots);
    let end = match parsed {
        Ok(httparse::Status::Complete(end)) => end,
        // Before the bare-LF check: another protocol's bytes may hold a lone 0x0a.
        Err(httparse::Error::Version | httparse::Error::Status) => return Err(HeadError::NotHttp1),
        _ if bare_lf(window) => return Err(HeadError::Invalid("bare LF")),
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Err(HeadError::Partial),
        Err(_) => return Err(HeadError::Invalid("malformed response head")),
    };
    let head = &buf[..end];
    if bare_lf(head) {
        return Err(HeadError::Invalid("bare LF"));
    }
    let status = StatusCode::from_u16(resp.code.unwrap_or(0))
        .map_err(|_| HeadError::Invalid("invalid status"))?;
    let mut kinds = [Field::Other; MAX_HEADERS];
    for (kind, h) in kinds.iter_mut().zip(resp.headers.iter()) {
        *kind = Field::of(h.name);
    }
    let kinds = &kinds[..resp.headers.len().min(MAX_HEADERS)];
    let fields = || kinds.iter().zip(resp.headers.iter());
    let (mut framing, mut close) =
        framing_of(fields().map(|(k, h)| (*k, h.value)), false).map_err(HeadError::Invalid)?;
    let version = version_of(resp.version);
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let passed = pass_on(resp.headers, kinds, head, switching);
    // One walk for what the framing and the connection's fate need from the fields.
    let (mut has_length, mut says_close, mut says_keep_alive) = (false, false, false);
    for (kind, h) in fields() {
        match kind {
            Field::Connection => {
                says_close |= lists(h.value, "close");
                says_keep_alive |= lists(h.value, "keep-alive");
            }
            Field::ContentLength | Field::TransferEncoding => has_length = true,
            _ => {}
        }
    }
    // RFC 9112 6.3: HEAD, 1xx, 204 and 304 have no body whatever the head says; a response
    // with neither header runs to the close.
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        framing = Framing::None;
    } else if !has_length {
        framing = Framing::Close;
        close = true;
    }
    close |= if version == Version::HTTP_10 {
        !says_keep_alive
    } else {
        says_close
    };
    Ok(ResponseHead {
        status,
        fields: passed.fields,
        sts: passed.sts,
        offers_upgrade: passed.offers_upgrade,
        framing,
        len: end,
        close,
    })
}

/// What [`pass_on`] found.
struct Passed {
    fields: Vec<u8>,
    sts: bool,
    offers_upgrade: bool,
}

/// The response fields to pass on, as lines (see [`ResponseHead::fields`]): runs of the
/// lines kept are copied from `head` whole, one copy per run (a plain response drops only
/// its `Connection`), rather than written again field by field. httparse's default rules
/// for names (tokens) and values (no control bytes but HTAB, no DEL) are `HeaderName`'s and
/// `HeaderValue`'s, and the head has no obs-fold (httparse refuses it) and no bare LF
/// (refused before), so its lines need no second check.
fn pass_on(
    headers: &[httparse::Header<'_>],
    kinds: &[Field],
    head: &[u8],
    switching: bool,
) -> Passed {
    let fields = || kinds.iter().copied().zip(headers.iter());
    let connection = || {
        fields()
            .filter(|(k, _)| *k == Field::Connection)
            .map(|(_, h)| h)
    };
    // Most `Connection` fields list only `keep-alive` or `close` (and fixed hop-by-hop
    // names): then no other field needs looking up in them.
    let names_fields = connection().any(|c| {
        c.value.split(|&b| b == b',').any(|t| {
            let t = t.trim_ascii();
            !t.is_empty()
                && !t.eq_ignore_ascii_case(b"keep-alive")
                && !t.eq_ignore_ascii_case(b"close")
                && !std::str::from_utf8(t).is_ok_and(|t| Field::of(t).is_hop_by_hop())
        })
    });
    let mut out = Passed {
        fields: Vec::with_capacity(head.len()),
        sts: false,
        offers_upgrade: false,
    };
    let mut upgrade: Option<&[u8]> = None;
    // The run of kept fields (indices) not yet copied.
    let mut run: Option<usize> = None;
    for (i, (kind, h)) in fields().enumerate() {
        if kind == Field::Upgrade {
            upgrade.get_or_insert(h.value);
            out.offers_upgrade |= http_headers::offers_allowed(std::iter::once(h.value));
        }
        let dropped = kind.is_hop_by_hop()
            || (names_fields
                && http_headers::connection_may_remove(h.name)
                && connection().any(|c| lists(c.value, h.name)));
        if dropped {
            if let Some(first) = run.take() {
                copy_lines(&mut out.fields, head, headers, first..i);
            }
            continue;
        }
        out.sts |= kind == Field::StrictTransportSecurity;
        run.get_or_insert(i);
    }
    if let Some(first) = run {
        copy_lines(&mut out.fields, head, headers, first..headers.len());
    }
    if let (true, Some(protocol)) = (switching, upgrade) {
        write_field(&mut out.fields, "upgrade", protocol);
        out.fields.extend_from_slice(b"connection: upgrade\r\n");
    }
    out
}

/// The lines of `fields[run]` into `out`, copied from `head` in one piece: from the run's
/// first name to the next field's name, or to the head's final CRLF. Should that range not
/// be the run's lines (it always is for what httparse parsed from `head`), each field is
/// written on its own.
fn copy_lines(
    out: &mut Vec<u8>,
    head: &[u8],
    fields: &[httparse::Header<'_>],
    run: std::ops::Range<usize>,
) {
    let base = head.as_ptr() as usize;
    let at = |h: &httparse::Header<'_>| (h.name.as_ptr() as usize).checked_sub(base);
    let from = fields.get(run.start).and_then(at);
    let to = match fields.get(run.end) {
        Some(next) => at(next),
        None => head.len().checked_sub(2),
    };
    let lines = from.zip(to).and_then(|(from, to)| head.get(from..to));
    match lines {
        Some(lines) if lines.ends_with(b"\r\n") => out.extend_from_slice(lines),
        _ => {
            for h in fields.get(run).unwrap_or_default() {
                write_field(out, h.name, h.value);
            }
        }
    }
}

/// `name: value\r\n` into `out`, the name in lower case.
pub fn write_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend(name.bytes().map(|b| b.to_ascii_lowercase()));
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The lines of `fields` but `strict-transport-security` ones, into `out` (a listener that
/// sets its own replaces the backend's).
pub fn write_fields_without_sts(out: &mut Vec<u8>, fields: &[u8]) {
    const STS: &[u8] = b"strict-transport-security:";
    for line in fields.split_inclusive(|&b| b == b'\n') {
        // The backend's lines keep its case.
        if !line
            .get(..STS.len())
            .is_some_and(|n| n.eq_ignore_ascii_case(STS))
        {
            out.extend_from_slice(line);
        }
    }
}

/// Writes `name: value\r\n` for every header of `headers` into `out`.
pub fn write_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// The upstream request line: origin-form target (an absolute-form one loses its scheme
/// and authority, which `Host` carries), HTTP/1.1.
pub fn write_request_line(out: &mut Vec<u8>, parts: &Parts) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    // `OPTIONS *` goes as it came.
    let target = if parts.uri.path() == "*" { "*" } else { target };
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
}

/// The status line to a client of `version` (an HTTP/1.0 client is answered in 1.0, as
/// hyper did).
pub fn write_status_line(out: &mut Vec<u8>, version: Version, status: StatusCode) {
    out.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
