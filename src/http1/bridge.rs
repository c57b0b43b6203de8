//! Exchanges the engine sends through hyper's client: a pool that speaks HTTP/2 to its
//! backends (`h2`, `h2c`, and `auto`, whose ALPN may pick either). The engine still parses and frames the client's
//! request, refuses what is ambiguous, writes the upstream head (the same edits as for its
//! own connections) and relays the body, decoded and within the listener's limits, into a
//! pipe the request body reads; `http::client` carries it upstream (its pools, h2 streams,
//! TLS sessions, the stale-connection and refused-stream retries of `http::proxy::send`),
//! and the response goes back to the client as HTTP/1, written here.
//!
//! HTTP/2 to backends stays on hyper (issue 17: only HTTP/1 moves); HTTP/1 to backends,
//! plain or over TLS, is the engine's own (`upstream`).

use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use super::attempt::{request_body_error, Shape};
use super::buffers::Buf;
use super::chunked;
use super::forward::end_head;
use super::head::{self, Framing};
use super::relay::{self, Encode, RelayError};
use super::Stream;
use crate::backend::InflightGuard;
use crate::config::{BackendId, UpstreamProtocol};
use crate::http::client::PooledConn;
use crate::http::exchange::Finish;
use crate::http::request_body::RequestBody;
use crate::http::{headers, proxy, Activity, ProxyError};
use crate::pool::Pool;

/// Whether `pool`'s backends are reached through hyper's client (not the engine's own
/// HTTP/1.1 connections, plain or TLS).
pub fn needed(pool: &Pool) -> bool {
    pool.protocol != UpstreamProtocol::Http1
}

/// A backend's answer through hyper's client, not yet relayed.
pub struct Bridged {
    pub resp: Response<Incoming>,
    pub conn: PooledConn,
    pub inflight: InflightGuard,
    /// It came before the request body ended: the client connection closes after it.
    pub early: bool,
}

/// One attempt on backend `index` of `pool` with the request `shape` says, its body (if
/// any) relayed from `client` while the response is awaited.
pub async fn attempt<S: Stream>(
    pool: &Pool,
    index: BackendId,
    client: &mut S,
    buf: &mut Buf,
    shape: Shape<'_>,
    touched: &mut bool,
) -> Result<Bridged, ProxyError> {
    // The upstream head the engine wrote, read back into hyper's form: one place decides
    // the upstream fields for both kinds of backend connection.
    let parts = head::parse_request(shape.up_head)
        .map_err(|_| ProxyError::BadRequest("malformed request head"))?
        .parts;
    if shape.body.framing == Framing::None {
        let req = Request::from_parts(parts, RequestBody::empty());
        let (resp, conn, inflight) = proxy::send(pool, index, req, None, None)
            .await
            .map_err(|(err, _)| err)?;
        return Ok(Bridged {
            resp,
            conn,
            inflight,
            early: false,
        });
    }
    *touched = true;
    let len = match shape.body.framing {
        Framing::Length(n) => Some(n),
        _ => None,
    };
    let (body, pipe) = RequestBody::relayed(len);
    // `request_timeout` runs from the end of the upload, as on the engine's connections.
    // The exchange's own activity record: an HTTP/1 connection has one request at a time,
    // and the engine keeps its deadlines itself (no watchdog reads it).
    let activity = Arc::new(Activity::new(crate::clock::now_ms()));
    let upload = activity.upload();
    let req = Request::from_parts(parts, body);
    let sending = proxy::send(pool, index, req, Some(&activity), None);
    let feeding = async move {
        let _upload = upload;
        let mut pipe = pipe;
        let mut out = Vec::new();
        let framing = shape.body.framing;
        let limits = shape.body.limits;
        relay::relay(
            client,
            buf,
            &mut pipe.pipe,
            &mut out,
            framing,
            Encode::Raw,
            limits,
        )
        .await?;
        pipe.finish().await.map_err(RelayError::Write)
    };
    tokio::pin!(sending, feeding);
    let (sent, early) = tokio::select! {
        biased;
        fed = &mut feeding => match fed {
            Ok(()) => (sending.await, false),
            // hyper stopped taking the body: the backend may have answered already.
            Err(RelayError::Write(_)) => (sending.await, true),
            Err(e) => return Err(request_body_error(e)),
        },
        sent = &mut sending => (sent, true),
    };
    let (resp, conn, inflight) = sent.map_err(|(err, _)| err)?;
    Ok(Bridged {
        resp,
        conn,
        inflight,
        early,
    })
}

/// How the response goes to the client.
pub struct Reply<'a> {
    pub version: Version,
    pub method: Method,
    /// The listener's `Strict-Transport-Security` (replacing the backend's) and the
    /// affinity cookie, written after the backend's fields.
    pub hsts: Option<&'a HeaderValue>,
    pub cookie: Option<&'a HeaderValue>,
    /// The client asked for the connection to close.
    pub close: bool,
    /// The client sent `TE: trailers`.
    pub trailers: bool,
    pub send_timeout: Duration,
}

/// Writes the bridged response to the client: the head in the client's version, the body
/// as it comes (chunked when its length is unknown, or until close to an HTTP/1.0 client),
/// trailers to a client that takes them; a 101 becomes a tunnel. `true`: the connection
/// may carry another request.
pub async fn respond<S: Stream>(
    client: &mut S,
    buf: &mut Buf,
    (mut resp, early): (Response<Incoming>, bool),
    mut finish: Finish,
    reply: Reply<'_>,
) -> bool {
    let status = resp.status();
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let upgraded = switching.then(|| hyper::upgrade::on(&mut resp));
    let (mut parts, mut body) = resp.into_parts();
    headers::prepare_response(&mut parts.headers, switching);
    if reply.hsts.is_some() {
        parts.headers.remove(header::STRICT_TRANSPORT_SECURITY);
    }
    let bodiless = reply.method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut close = reply.close || early;
    let mut chunked = false;
    if !bodiless && !parts.headers.contains_key(header::CONTENT_LENGTH) {
        if body.is_end_stream() {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        } else if reply.version == Version::HTTP_11 {
            chunked = true;
        } else {
            close = true;
        }
    }
    let mut out = Vec::with_capacity(512);
    head::write_status_line(&mut out, reply.version, status);
    head::write_headers(&mut out, &parts.headers);
    end_head(
        &mut out,
        reply.hsts,
        reply.cookie,
        chunked,
        close,
        switching,
        reply.version,
    );
    let timeout = reply.send_timeout;
    if let Some(upgraded) = upgraded {
        finish.detach_connection();
        let bytes = tunnel(client, buf, &out, upgraded, timeout).await;
        finish.complete(bytes, false);
        return false;
    }
    let mut sent = 0u64;
    let mut trailers = Vec::new();
    let mut whole = true;
    if !bodiless {
        // The head goes at once: a streamed body (events, a long download) may take a while.
        if !body.is_end_stream() {
            if !relay::send(client, &out, timeout).await {
                finish.complete(0, false);
                return false;
            }
            out.clear();
        }
        loop {
            match body.frame().await {
                None => break,
                Some(Err(_)) => {
                    whole = false;
                    break;
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => {
                        sent += data.len() as u64;
                        if chunked {
                            chunked::chunk_header(&mut out, data.len());
                        }
                        out.extend_from_slice(&data);
                        if chunked {
                            out.extend_from_slice(b"\r\n");
                        }
                    }
                    Err(frame) => {
                        if let Ok(fields) = frame.into_trailers() {
                            if reply.trailers {
                                head::write_headers(&mut trailers, &fields);
                            }
                        }
                        continue;
                    }
                },
            }
            if relay::write_all(client, &out, timeout).await.is_err() {
                whole = false;
                break;
            }
            out.clear();
        }
    }
    if !whole {
        // The upstream body broke off or the client stopped reading: the client's
        // connection is dropped unfinished (it must not take a cut body as whole).
        finish.complete(sent, false);
        return false;
    }
    if chunked {
        chunked::last_chunk(&mut out, &trailers);
    }
    let written = relay::send(client, &out, timeout).await;
    finish.complete(sent, true);
    written && !close
}

/// An upgraded connection: the 101 head, then bytes both ways until either side closes.
async fn tunnel<S: Stream>(
    client: &mut S,
    buf: &mut Buf,
    head: &[u8],
    upgraded: hyper::upgrade::OnUpgrade,
    timeout: Duration,
) -> u64 {
    let Ok(upstream) = upgraded.await else {
        return 0;
    };
    let mut upstream = TokioIo::new(upstream);
    if !relay::send(client, head, timeout).await {
        return 0;
    }
    if !buf.is_empty() {
        if upstream.write_all(buf.data()).await.is_err() {
            return 0;
        }
        let n = buf.len();
        buf.consume(n);
    }
    match tokio::io::copy_bidirectional(client, &mut upstream).await {
        Ok((_, down)) => down,
        Err(_) => 0,
    }
}
