//! The upstream request's header fields written straight from the client's map as HTTP/1
//! lines (the engine's path). [`prepare_upstream`](super::prepare_upstream),
//! `request_id::apply` and [`client_cert`](super::client_cert) edit a map: every
//! removal and insertion hashes a name, and the map is then walked once more to write it.
//! Here each field is kept, dropped or replaced as it is written, in one walk; what Fulcrum
//! adds follows. The tests check that both give the same fields on one corpus, so the two
//! stay one behaviour (h2 and hyper's path still need the map).

use std::net::IpAddr;

use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::Version;

use super::{
    connection_named, forwarded_for, push_ip, te_trailers, Present, ALLOWED_UPGRADE, HOP_BY_HOP,
    PROXY_CONNECTION, X_CLIENT_CERT_SAN, X_CLIENT_CERT_SUBJECT, X_CLIENT_VERIFY, X_FORWARDED_HOST,
    X_FORWARDED_PROTO,
};
use crate::http::request_id::{Ids, RequestId};
use crate::tls::PeerCert;

/// What the upstream request gets beside the client's fields.
pub struct Upstream<'a> {
    /// The client's address (the peer's: X-Forwarded-For's last hop).
    pub client: IpAddr,
    /// "http" or "https", for X-Forwarded-Proto.
    pub proto: &'static str,
    /// Keep the (allowed) upgrade handshake.
    pub upgrade: bool,
    /// The body already flows: an `Expect: 100-continue` was answered here.
    pub body_prefetched: bool,
    pub ids: &'a Ids,
    /// `Some` on an mTLS listener: the client's verified certificate, if it sent one.
    pub cert: Option<Option<&'a PeerCert>>,
    /// Which looked-up fields the client's map may have (see `Present`).
    pub present: Present,
}

/// Writes the upstream request's fields (`name: value\r\n` lines, names in lower case) for
/// the client request `parts`, as `prepare_upstream` + `request_id::apply` + `client_cert`
/// would leave its map, less the ids `request_id::write_lines` writes after; the framing
/// comes last.
pub fn write_fields(out: &mut Vec<u8>, parts: &Parts, up: &Upstream<'_>) {
    let headers = &parts.headers;
    let named = if up.present.has(Present::CONNECTION) {
        connection_named(headers)
    } else {
        Vec::new()
    };
    let host = headers.get(header::HOST);
    let generated_id = matches!(up.ids.request_id, RequestId::Generated(_));
    let trace_started = up.ids.started.is_some();
    let mut via_first: Option<&HeaderValue> = None;
    for (name, value) in headers {
        let n = name.as_str();
        // A field `Connection` names goes first (none of Fulcrum's own can be named).
        let dropped = (!named.is_empty() && named.contains(name))
            || match n {
                "x-forwarded-for" => true,
                "via" => {
                    via_first.get_or_insert(value);
                    true
                }
                "x-forwarded-proto"
                | "x-client-verify"
                | "x-client-cert-subject"
                | "x-client-cert-san" => true,
                "x-forwarded-host" => host.is_some(),
                "expect" => up.body_prefetched,
                "x-request-id" => generated_id,
                "traceparent" | "tracestate" => trace_started,
                _ => is_hop_by_hop(name),
            };
        if !dropped {
            line(out, n, value.as_bytes());
        }
    }
    // The client takes trailers; Fulcrum passes them on, so the backend may send them.
    let trailers = up.present.has(Present::TE) && te_trailers(headers);
    if trailers {
        line(out, header::TE.as_str(), b"trailers");
    }
    if up.upgrade {
        line(out, header::UPGRADE.as_str(), ALLOWED_UPGRADE.as_bytes());
        line(out, header::CONNECTION.as_str(), b"upgrade");
    } else if trailers {
        line(out, header::CONNECTION.as_str(), b"te");
    }
    if let Some(host) = host {
        line(out, X_FORWARDED_HOST.as_str(), host.as_bytes());
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if up.present.has(Present::X_FORWARDED_FOR) {
        forwarded_for(out, headers, up.client);
    } else {
        push_ip(out, up.client.to_canonical());
    }
    out.extend_from_slice(b"\r\n");
    line(out, X_FORWARDED_PROTO.as_str(), up.proto.as_bytes());
    match up.cert {
        Some(Some(cert)) => {
            line(out, X_CLIENT_VERIFY.as_str(), b"SUCCESS");
            for (name, text) in [
                (&X_CLIENT_CERT_SUBJECT, &cert.subject),
                (&X_CLIENT_CERT_SAN, &cert.san),
            ] {
                if let Ok(v) = HeaderValue::from_str(text) {
                    line(out, name.as_str(), v.as_bytes());
                }
            }
        }
        Some(None) => line(out, X_CLIENT_VERIFY.as_str(), b"NONE"),
        None => {}
    }
    let via = match parts.version {
        Version::HTTP_2 => "2 fulcrum",
        Version::HTTP_10 => "1.0 fulcrum",
        _ => "1.1 fulcrum",
    };
    out.extend_from_slice(b"via: ");
    if let Some(prior) = via_first.and_then(|v| v.to_str().ok()) {
        out.extend_from_slice(prior.as_bytes());
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(via.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == PROXY_CONNECTION
}

#[cfg(test)]
mod tests;
