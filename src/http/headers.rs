//! Request sanity checks and header rewriting between client and backend.
//!
//! hyper rejects most malformed messages itself (bad chunk sizes, conflicting
//! `Content-Length`s, oversized header blocks); what it lets through but a proxy must not
//! forward ambiguously is refused here. The rewriting follows RFC 9110 section 7.6: hop-by-hop
//! headers (the fixed list and every header the `Connection` header names, except `Host`, the
//! framing headers and those Fulcrum sets) are removed both ways; `X-Forwarded-For` is
//! appended to, `X-Forwarded-Proto` / `X-Forwarded-Host` / `Via` set.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, StatusCode, Uri, Version};

use super::error::ProxyError;
use super::target;

/// Always hop-by-hop, whether or not `Connection` names them. (`Trailer` is not: it declares
/// the trailer fields end to end, and an HTTP/1.1 client gets trailers only when it is there.)
/// `HTTP2-Settings` belongs to the h2c upgrade (RFC 7540 3.2.1), which is never passed on.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("http2-settings"),
];
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// mTLS: what a TLS listener with `client_auth` found, for the backend. Set only by Fulcrum:
/// a client's own are removed on every listener, so a backend can believe them.
pub(crate) const X_CLIENT_VERIFY: HeaderName = HeaderName::from_static("x-client-verify");
pub(crate) const X_CLIENT_CERT_SUBJECT: HeaderName =
    HeaderName::from_static("x-client-cert-subject");
pub(crate) const X_CLIENT_CERT_SAN: HeaderName = HeaderName::from_static("x-client-cert-san");
/// Headers `Connection` cannot remove: `Host`, the body's framing (decided by hyper from these
/// and the body) and those Fulcrum sets itself. `Connection: host` sent the backend an
/// HTTP/1.1 request without `Host`; `Connection: x-forwarded-for` dropped the client's chain.
const NEVER_CONNECTION_NAMED: [HeaderName; 7] = [
    header::HOST,
    super::request_id::X_REQUEST_ID,
    header::CONTENT_LENGTH,
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    header::VIA,
];

/// Which of the fields the request path looks up by name a request has. The engine notes
/// them while it builds the map (`note`, once per field), so the lookups of names a request
/// lacks, a hash and a probe each (about 90 instructions: a plain GET lacks most of them,
/// and they were the largest item of the engine's per-request work after parsing), are
/// skipped. A map built elsewhere (hyper's, for h2) is walked once instead ([`Present::scan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Present(u8);

impl Present {
    pub const NONE: Present = Present(0);
    /// Every lookup made: the tests hold the skipping paths to this one.
    #[cfg(test)]
    pub const ALL: Present = Present(u8::MAX);
    pub const CONNECTION: Present = Present(1);
    pub const TE: Present = Present(1 << 1);
    pub const UPGRADE: Present = Present(1 << 2);
    pub const X_FORWARDED_FOR: Present = Present(1 << 3);
    pub const CONTENT_LENGTH: Present = Present(1 << 4);
    pub const TRANSFER_ENCODING: Present = Present(1 << 5);
    pub const EXPECT: Present = Present(1 << 6);

    /// Notes a field of this name.
    #[inline]
    pub fn note(&mut self, name: &HeaderName) {
        let bit = match name.as_str() {
            "connection" => Self::CONNECTION,
            "te" => Self::TE,
            "upgrade" => Self::UPGRADE,
            "x-forwarded-for" => Self::X_FORWARDED_FOR,
            "content-length" => Self::CONTENT_LENGTH,
            "transfer-encoding" => Self::TRANSFER_ENCODING,
            "expect" => Self::EXPECT,
            _ => return,
        };
        self.0 |= bit.0;
    }

    /// What `headers` has, by one walk over it.
    pub fn scan(headers: &HeaderMap) -> Present {
        let mut present = Present::NONE;
        for name in headers.keys() {
            present.note(name);
        }
        present
    }

    /// Whether a field of `name`'s kind may be there (`name`: one of the constants).
    #[inline]
    pub fn has(self, name: Present) -> bool {
        self.0 & name.0 != 0
    }
}

#[cfg(test)]
impl std::ops::BitOr for Present {
    type Output = Present;
    fn bitor(self, other: Present) -> Present {
        Present(self.0 | other.0)
    }
}

/// Refuses what must not be forwarded: a body framed two ways, several or no `Host` on
/// HTTP/1.1, a CONNECT (Fulcrum is a reverse proxy, not a forward one).
///
/// An HTTP/1 request never shows both framing headers here (hyper drops `Content-Length`);
/// `framing` catches that case on the raw bytes. This check covers every other path.
///
/// `present`: which looked-up fields the request may have (a lookup of one it lacks is
/// skipped).
pub fn check_request(parts: &Parts, present: Present) -> Result<(), ProxyError> {
    let h = &parts.headers;
    if present.has(Present::TRANSFER_ENCODING)
        && present.has(Present::CONTENT_LENGTH)
        && h.contains_key(header::TRANSFER_ENCODING)
        && h.contains_key(header::CONTENT_LENGTH)
    {
        return Err(ProxyError::BadRequest(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if present.has(Present::CONTENT_LENGTH) {
        let mut cl = h.get_all(header::CONTENT_LENGTH).iter();
        if let Some(first) = cl.next() {
            if cl.any(|other| other != first)
                || first
                    .to_str()
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .is_none()
            {
                return Err(ProxyError::BadRequest("invalid Content-Length"));
            }
        }
    }
    let mut hosts = h.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return Err(ProxyError::BadRequest("several Host headers")),
        (None, None) if parts.version == Version::HTTP_11 && parts.uri.authority().is_none() => {
            return Err(ProxyError::BadRequest("missing Host"));
        }
        _ => {}
    }
    if parts.method == Method::CONNECT {
        return Err(ProxyError::BadRequest("CONNECT is not proxied"));
    }
    Ok(())
}

/// The declared body length, if any (already checked by `check_request`).
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The one protocol an upgrade may switch to. Above all not `h2c`: a backend that takes it
/// turns the connection into an HTTP/2 tunnel where routing, X-Forwarded-For,
/// `max_request_body` and the access log no longer apply.
const ALLOWED_UPGRADE: &str = "websocket";

/// Whether the client asks to switch to an allowed protocol (WebSocket); HTTP/1.1 only. Any
/// other `Upgrade` is dropped as hop-by-hop and the request goes as a plain one (RFC 9110
/// 7.8 lets the server ignore it).
/// `present` as for [`check_request`].
pub fn is_upgrade(parts: &Parts, present: Present) -> bool {
    parts.version == Version::HTTP_11
        && present.has(Present::UPGRADE)
        && present.has(Present::CONNECTION)
        && offers_allowed_upgrade(&parts.headers)
        && connection_has(&parts.headers, "upgrade")
}

/// Whether `Upgrade` lists the allowed protocol (`websocket`, any case, maybe `/version`).
fn offers_allowed_upgrade(headers: &HeaderMap) -> bool {
    offers_allowed(
        headers
            .get_all(header::UPGRADE)
            .iter()
            .map(HeaderValue::as_bytes),
    )
}

/// Whether `Upgrade` values offer the one protocol passed on (`websocket`, any version).
pub fn offers_allowed<'v>(values: impl Iterator<Item = &'v [u8]>) -> bool {
    values.flat_map(|v| v.split(|&b| b == b',')).any(|t| {
        let t = t.trim_ascii();
        let name = t.split(|&b| b == b'/').next().unwrap_or(t);
        name.eq_ignore_ascii_case(ALLOWED_UPGRADE.as_bytes())
    })
}

/// Refuses a backend response head that must not reach the client (502): framed both by
/// `Content-Length` and `Transfer-Encoding` (hyper's client decodes the chunked body while the
/// `Content-Length` would go to the client: a truncated or overlong body, a desync), or a
/// `101` that the request did not ask for (`upgrade`: it offered the allowed upgrade) or that
/// switches to another protocol.
pub fn check_response(
    status: StatusCode,
    headers: &HeaderMap,
    upgrade: bool,
) -> Result<(), ProxyError> {
    if headers.contains_key(header::TRANSFER_ENCODING)
        && headers.contains_key(header::CONTENT_LENGTH)
    {
        return Err(ProxyError::BadResponse(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    check_switch(status, offers_allowed_upgrade(headers), upgrade)
}

/// Refuses a `101` the request did not ask for (`upgrade`) or that does not switch to the
/// allowed protocol (`offers`: its `Upgrade` names it).
pub fn check_switch(status: StatusCode, offers: bool, upgrade: bool) -> Result<(), ProxyError> {
    if status == StatusCode::SWITCHING_PROTOCOLS && !(upgrade && offers) {
        return Err(ProxyError::BadResponse("switching protocols unasked"));
    }
    Ok(())
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether the request's `TE` accepts trailers (`TE: trailers`, maybe among codings).
pub fn te_trailers(headers: &HeaderMap) -> bool {
    headers.get_all(header::TE).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
    })
}

/// What a field of an HTTP/1 head is, told once per field from its raw name (a length
/// switch, then one case-insensitive compare): the engine decides the framing, the
/// connection's fate and what is passed on from it, where comparing each name with each of a
/// dozen names cost more than parsing the head. Hop-by-hop whatever `Connection` says: the
/// fixed list [`HOP_BY_HOP`] and `Proxy-Connection`, as [`strip_hop_by_hop`] removes them
/// from maps (a test holds the two lists together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    ContentLength,
    TransferEncoding,
    Connection,
    Upgrade,
    StrictTransportSecurity,
    /// Another hop-by-hop field (`TE`, `Keep-Alive`, `Proxy-*`, `HTTP2-Settings`).
    HopByHop,
    Other,
}

impl Field {
    pub fn of(name: &str) -> Field {
        let n = name.as_bytes();
        let is = |known: &[u8]| n.eq_ignore_ascii_case(known);
        match n.len() {
            2 if is(b"te") => Field::HopByHop,
            7 if is(b"upgrade") => Field::Upgrade,
            10 if is(b"connection") => Field::Connection,
            10 if is(b"keep-alive") => Field::HopByHop,
            14 if is(b"content-length") => Field::ContentLength,
            14 if is(b"http2-settings") => Field::HopByHop,
            16 if is(b"proxy-connection") => Field::HopByHop,
            17 if is(b"transfer-encoding") => Field::TransferEncoding,
            18 if is(b"proxy-authenticate") => Field::HopByHop,
            19 if is(b"proxy-authorization") => Field::HopByHop,
            25 if is(b"strict-transport-security") => Field::StrictTransportSecurity,
            _ => Field::Other,
        }
    }

    /// Never passed on, whatever `Connection` says.
    pub fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            Field::Connection | Field::TransferEncoding | Field::Upgrade | Field::HopByHop
        )
    }
}

/// Whether a `Connection` header that names this field removes it (not `Host`, the framing
/// and what Fulcrum sets; not a field named `close`, the option's own token).
pub fn connection_may_remove(name: &str) -> bool {
    !name.eq_ignore_ascii_case("close")
        && !NEVER_CONNECTION_NAMED
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h.as_str()))
}

/// The fields the `Connection` header names that it may remove: not the fixed hop-by-hop
/// list (removed anyway), not `close`, not [`NEVER_CONNECTION_NAMED`]. Empty, without
/// allocating, for the usual `keep-alive` / `close` / `upgrade` / `te`.
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| {
            !t.eq_ignore_ascii_case("close")
                && !HOP_BY_HOP
                    .iter()
                    .any(|h| t.eq_ignore_ascii_case(h.as_str()))
        })
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .filter(|name| !NEVER_CONNECTION_NAMED.contains(name))
        .collect()
}

/// Removes hop-by-hop headers: the fixed list and those the `Connection` header names, but
/// never one of [`NEVER_CONNECTION_NAMED`].
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry no hop-by-hop header, or only `Connection`: one pass over the names
    // (standard names compare as enum tags) spares the removals' hash lookups.
    if !headers
        .keys()
        .any(|k| HOP_BY_HOP.contains(k) || k == PROXY_CONNECTION)
    {
        return;
    }
    // Its usual tokens are in the fixed list (or are `close`): nothing collected or allocated.
    let named = connection_named(headers);
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(PROXY_CONNECTION);
}

/// Rewrites a client request into the one sent upstream (HTTP/1.1, origin-form target).
/// `upgrade`: keep the upgrade handshake; `proto`: "http" or "https"; `body_prefetched`:
/// the body is already flowing, so an `Expect: 100-continue` was answered here.
pub fn prepare_upstream(
    parts: &mut Parts,
    client: IpAddr,
    proto: &'static str,
    upgrade: bool,
    body_prefetched: bool,
) {
    target::normalize_host(parts);
    // Only the allowed protocol is offered, whatever else the client listed.
    let upgrade_to = upgrade.then(|| HeaderValue::from_static(ALLOWED_UPGRADE));
    let headers = &mut parts.headers;
    // The client takes trailers; Fulcrum passes them on, so the backend may send them.
    let trailers = te_trailers(headers);
    strip_hop_by_hop(headers);
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("te"));
    }
    if body_prefetched {
        headers.remove(header::EXPECT);
    }
    if let Some(protocol) = upgrade_to {
        headers.insert(header::UPGRADE, protocol);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }

    // Host: kept, or the target's authority when it has one (HTTP/2 `:authority`, HTTP/1
    // absolute-form); `target::normalize_host` already ran on the proxy's path.
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert(X_FORWARDED_HOST, host);
    }
    append_forwarded_for(headers, client);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    // The client's own certificate fields, if it sent any: a pass comparing names is cheaper
    // than three removals that each hash a custom name.
    let cert_fields = [X_CLIENT_VERIFY, X_CLIENT_CERT_SUBJECT, X_CLIENT_CERT_SAN];
    if headers.keys().any(|k| cert_fields.contains(k)) {
        for name in cert_fields {
            headers.remove(name);
        }
    }
    let via = match parts.version {
        Version::HTTP_2 => "2 fulcrum",
        Version::HTTP_10 => "1.0 fulcrum",
        _ => "1.1 fulcrum",
    };
    append_value(headers, header::VIA, via);

    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let origin_form = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        if let Ok(uri) = Uri::try_from(origin_form) {
            parts.uri = uri;
        }
    }
    parts.version = Version::HTTP_11;
}

/// mTLS listeners: `X-Client-Verify: SUCCESS` with the verified certificate's subject and
/// subjectAltNames, or `X-Client-Verify: NONE` (a client of `client_auth = "optional"`
/// without one). Run after [`prepare_upstream`], which removed the client's own.
pub fn client_cert(headers: &mut HeaderMap, cert: Option<&crate::tls::PeerCert>) {
    match cert {
        Some(cert) => {
            headers.insert(X_CLIENT_VERIFY, HeaderValue::from_static("SUCCESS"));
            if let Ok(v) = HeaderValue::from_str(&cert.subject) {
                headers.insert(X_CLIENT_CERT_SUBJECT, v);
            }
            if let Ok(v) = HeaderValue::from_str(&cert.san) {
                headers.insert(X_CLIENT_CERT_SAN, v);
            }
        }
        None => {
            headers.insert(X_CLIENT_VERIFY, HeaderValue::from_static("NONE"));
        }
    }
}

fn append_forwarded_for(headers: &mut HeaderMap, client: IpAddr) {
    let mut value = Vec::with_capacity(64);
    forwarded_for(&mut value, headers, client);
    set_owned(headers, X_FORWARDED_FOR, value);
}

/// The upstream `X-Forwarded-For` value into `out`: several lines of the client's are one
/// list, in order, joined; then the client.
fn forwarded_for(out: &mut Vec<u8>, headers: &HeaderMap, client: IpAddr) {
    for prior in headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        let prior = prior.trim();
        if !prior.is_empty() {
            out.extend_from_slice(prior.as_bytes());
            out.extend_from_slice(b", ");
        }
    }
    push_ip(out, client.to_canonical());
}

/// `ip` as text: IPv4 digit by digit into a stack buffer, copied once (std's `Display`
/// formats through a padding buffer, about 900 instructions, a tenth of the engine's
/// per-request work), IPv6 by `Display`.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    use std::io::Write as _;
    match ip {
        IpAddr::V4(v4) => {
            let mut text = [0u8; 15];
            let mut n = 0;
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[n] = b'.';
                    n += 1;
                }
                if o >= 100 {
                    text[n] = b'0' + o / 100;
                    n += 1;
                }
                if o >= 10 {
                    text[n] = b'0' + o / 10 % 10;
                    n += 1;
                }
                text[n] = b'0' + o % 10;
                n += 1;
            }
            out.extend_from_slice(&text[..n]);
        }
        IpAddr::V6(_) => {
            let _ = write!(out, "{ip}");
        }
    }
}

fn append_value(headers: &mut HeaderMap, name: HeaderName, value: &'static str) {
    match headers.get(&name).and_then(|v| v.to_str().ok()) {
        Some(prior) => {
            let joined = format!("{prior}, {value}");
            set_owned(headers, name, joined);
        }
        None => {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
}

/// Sets a header from a `String` or `Vec<u8>` without copying it again.
fn set_owned(headers: &mut HeaderMap, name: HeaderName, value: impl Into<bytes::Bytes>) {
    if let Ok(v) = HeaderValue::from_maybe_shared(value.into()) {
        headers.insert(name, v);
    }
}

/// The request as sent over an HTTP/2 connection to a backend (`prepare_upstream` made an
/// HTTP/1.1 one): `Host` becomes `:authority` (with `:scheme` https over TLS, else http),
/// connection-specific headers go (`Connection` and what it named were removed already; the
/// `Connection: te` added for trailers with them), and `TE` stays only as `trailers`.
pub fn for_h2<B>(req: http::Request<B>, tls: bool) -> http::Request<B> {
    let (mut parts, body) = req.into_parts();
    if parts.version != Version::HTTP_2 {
        let scheme = if tls { "https" } else { "http" };
        let host = parts.headers.remove(header::HOST);
        let authority = host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty())
            .unwrap_or("localhost");
        let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        if let Ok(uri) = Uri::try_from(format!("{scheme}://{authority}{pq}")) {
            parts.uri = uri;
        } else if let Some(host) = host {
            // Not a valid authority: sent as it came, h2 says no, the client gets a 502.
            parts.headers.insert(header::HOST, host);
        }
        // HTTP/2 has no upgrade (RFC 8441's extended CONNECT is not spoken to backends): a
        // WebSocket handshake reaches an h2 backend as a plain request, which refuses it.
        parts.headers.remove(header::CONNECTION);
        parts.headers.remove(header::UPGRADE);
        let trailers = te_trailers(&parts.headers);
        parts.headers.remove(header::TE);
        if trailers {
            parts
                .headers
                .insert(header::TE, HeaderValue::from_static("trailers"));
        }
        parts.version = Version::HTTP_2;
    }
    http::Request::from_parts(parts, body)
}

/// The request as sent over an HTTP/1.1 connection: [`for_h2`] undone when a request made for
/// an HTTP/2 connection goes over HTTP/1.1 after all (a fresh connection of an `auto` pool).
pub fn for_h1<B>(req: http::Request<B>) -> http::Request<B> {
    if req.version() != Version::HTTP_2 {
        return req;
    }
    let (mut parts, body) = req.into_parts();
    if let Some(authority) = parts.uri.authority() {
        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            parts.headers.insert(header::HOST, host);
        }
    }
    let origin_form = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    if let Ok(uri) = Uri::try_from(origin_form) {
        parts.uri = uri;
    }
    if te_trailers(&parts.headers) {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("te"));
    }
    parts.version = Version::HTTP_11;
    http::Request::from_parts(parts, body)
}

/// Whether a request is gRPC (`content-type: application/grpc`, `application/grpc+proto`...):
/// Fulcrum's own errors then answer in gRPC's terms.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// A gRPC request's `grpc-timeout` (`"100m"`, `"5S"`...), if it has a valid one.
pub fn grpc_timeout(headers: &HeaderMap) -> Option<std::time::Duration> {
    use std::time::Duration;
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Cleans a backend response for the client. A `101 Switching Protocols` keeps its
/// `Upgrade` / `Connection`, which are the handshake itself.
pub fn prepare_response(headers: &mut HeaderMap, switching: bool) {
    let upgrade = if switching {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    strip_hop_by_hop(headers);
    if let Some(protocol) = upgrade {
        headers.insert(header::UPGRADE, protocol);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

mod wire;
pub use wire::{write_fields, Upstream};

#[cfg(test)]
mod tests;
