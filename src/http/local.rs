//! What Fulcrum answers itself, before any routing, on both HTTP/1 paths (hyper's and the
//! engine's) and h2: ACME HTTP-01 challenges of this process's orders, `redirect_https`, and
//! the `hsts` header of TLS listeners. One decision in one place, so the two paths cannot
//! drift.

use bytes::Bytes;
use http::{header, request, HeaderMap, HeaderValue, Response, StatusCode};

use super::{target, ProxyError};
use crate::acme_state::{self, AcmeState};
use crate::snapshot::ListenerSnapshot;

/// A request Fulcrum answers without a backend.
pub enum Local {
    /// An ACME CA fetching a challenge of this process: 200 with the key authorization.
    Answer(Response<Bytes>),
    /// A `redirect_https` listener's 308 (or 400 for a Host that cannot be redirected to).
    Refuse(ProxyError),
}

/// Whether `parts` (its Host normalized) is answered here. ACME first: any http listener
/// answers it, before any redirect (the certificate it validates for may not exist yet).
pub fn decide(
    parts: &request::Parts,
    listener: &ListenerSnapshot,
    acme: &AcmeState,
) -> Option<Local> {
    if parts.uri.path().starts_with(acme_state::WELL_KNOWN_PREFIX) {
        if let Some(answer) = acme.challenges.answer(parts.uri.path()) {
            let body = Bytes::from(answer.as_bytes().to_vec());
            return Some(Local::Answer(text(StatusCode::OK, body)));
        }
    }
    if listener.redirect_https {
        return Some(Local::Refuse(match target::https_location(parts) {
            Ok(location) => ProxyError::RedirectHttps(location),
            Err(e) => e,
        }));
    }
    None
}

/// A plain-text response made by Fulcrum itself.
pub fn text(status: StatusCode, body: Bytes) -> Response<Bytes> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// `hsts` of a TLS listener: `Strict-Transport-Security` on every response (the backend's
/// own, if it sent one, is replaced).
#[inline]
pub fn hsts(listener: Option<&ListenerSnapshot>, headers: &mut HeaderMap) {
    if let Some(value) = hsts_value(listener) {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, value.clone());
    }
}

/// The `Strict-Transport-Security` value [`hsts`] sets (it replaces the backend's own).
pub fn hsts_value(listener: Option<&ListenerSnapshot>) -> Option<&HeaderValue> {
    listener
        .and_then(|l| l.tls.as_ref())
        .and_then(|t| t.hsts.as_ref())
}
