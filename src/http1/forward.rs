//! One exchange on the engine: the request path of `http::proxy` (snapshot, client address
//! and region, limits, checks, route, affinity, header rewriting, pick, retries, passive
//! health, metrics and access log through `http::exchange`) over the engine's own I/O.
//!
//! Retries follow `http::proxy`: another backend, never the same twice, on a connect failure
//! or, for a replayable request (idempotent, no body), a reset before any response byte or a
//! `retry_on` status; a pooled connection found stale gets one fresh connection to the same
//! backend. A request body is relayed while the response is awaited: a backend that answers
//! early is answered through, and the client connection then closes (its body was not read
//! to the end). 1xx responses arriving after the body are passed to HTTP/1.1 clients with the
//! final head.

use std::io;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode, Version};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::attempt::{attempt_once, BodyIn, Got, Shape};
use super::bridge;
use super::buffers::{Buf, SIZE};
use super::chunked::Decoder;
use super::head::{self, Framing, RequestHead};
use super::relay::{self, Encode, Limits};
use super::upstream::Upstream;
use super::Stream;
use crate::health::passive;
use crate::http::exchange::Exchange;
use crate::http::local::{self, Local};
use crate::http::{affinity, headers, request_id, target, ConnContext, ProxyError};
use crate::select::{self, Tried};
use crate::{client_ip, clock};

/// Serves one request whose head is parsed; `buf` starts with it. `Some(when it ended)`:
/// the connection may carry another request (its wait for one starts then).
pub async fn exchange<S: Stream>(
    client: &mut S,
    buf: &mut Buf,
    head: RequestHead,
    cx: &ConnContext,
) -> Option<Instant> {
    let snapshot = cx.shared.snapshot.load_full();
    let snapshot = &*snapshot;
    let listener = snapshot.listener(cx.listener);
    let RequestHead {
        mut parts,
        framing,
        len,
        close: close_request,
        expect_continue,
        present,
    } = head;
    buf.consume(len);
    let version = parts.version;
    let send_timeout = cx.shared.client_send_timeout;
    let mut exchange = Exchange::begin_head(
        (&parts.method, &parts.uri, parts.version, &parts.headers),
        cx.peer,
        listener,
    );
    // Refused before its body was read: the connection cannot find the next request.
    let reusable = !close_request && framing == Framing::None;
    macro_rules! reject {
        ($err:expr) => {{
            let mut resp = exchange.refuse(&$err, listener);
            local::hsts(listener, resp.headers_mut());
            return write_response(client, version, resp, !reusable, send_timeout)
                .await
                .then(Instant::now);
        }};
    }
    let Some(listener) = listener else {
        reject!(ProxyError::NoBackend);
    };
    // Without trusted proxies the peer is the client: no X-Forwarded-For lookup.
    let client_addr = if snapshot.trusted_proxies.is_empty() {
        cx.peer.ip()
    } else {
        client_ip::resolve(
            cx.peer.ip(),
            &snapshot.trusted_proxies,
            parts
                .headers
                .get_all(headers::X_FORWARDED_FOR)
                .iter()
                .map(|v| v.as_bytes()),
        )
    };
    let client_region = snapshot.regions.lookup(client_addr);
    exchange.client(
        client_addr,
        client_region.and_then(|id| snapshot.regions.name(id)),
    );
    let trusted = client_ip::is_trusted(cx.peer.ip(), &snapshot.trusted_proxies);
    let ids = request_id::decide(&parts.headers, trusted, listener.trace);
    exchange.request_id(&ids.request_id);
    if let Err(wait) = listener.limits.check_request(client_addr) {
        reject!(ProxyError::RateLimited(wait));
    }
    if let Err(err) =
        headers::check_request(&parts, present).and_then(|()| target::check_target(&parts))
    {
        reject!(err);
    }
    target::normalize_host(&mut parts);
    match local::decide(&parts, listener, &cx.shared.acme) {
        Some(Local::Answer(resp)) => {
            let resp = exchange.answer(resp, Some(listener));
            return write_response(client, version, resp, !reusable, send_timeout)
                .await
                .then(Instant::now);
        }
        Some(Local::Refuse(e)) => reject!(e),
        None => {}
    }
    let limit = listener.max_request_body;
    if let Framing::Length(n) = framing {
        if limit > 0 && n > limit {
            reject!(ProxyError::BodyTooLarge);
        }
    }
    let pool_id = listener.routes.pick(
        target::request_host(&parts),
        parts.uri.path(),
        &parts.headers,
    );
    let pool = snapshot.pool(pool_id);
    exchange.routed(&pool.name, listener.metrics.pool(pool_id));

    // The body's first bytes before any backend is chosen (as `http::proxy`): a malformed
    // chunked body, or one that does not come, ends here.
    let body_timeout = cx.shared.client_body_timeout;
    let prefetched = framing != Framing::None;
    if prefetched {
        if expect_continue
            && buf.is_empty()
            && !relay::send(client, b"HTTP/1.1 100 Continue\r\n\r\n", send_timeout).await
        {
            return None;
        }
        if buf.is_empty() {
            match tokio::time::timeout(body_timeout, buf.fill(client, SIZE)).await {
                Err(_) => reject!(ProxyError::ClientTimeout),
                Ok(Ok(0)) => reject!(ProxyError::ClientIo(io::ErrorKind::UnexpectedEof.into())),
                Ok(Err(e)) => reject!(ProxyError::ClientIo(e)),
                Ok(Ok(_)) => {}
            }
        }
        if framing == Framing::Chunked && Decoder::new(false).feed(buf.data()).is_err() {
            reject!(ProxyError::BadRequest("malformed request body"));
        }
    }
    let upgrade = headers::is_upgrade(&parts, present);
    let affinity = affinity::extract(&pool.balancer, &mut parts, client_addr);
    let client_version = parts.version;
    let trailers = present.has(headers::Present::TE) && headers::te_trailers(&parts.headers);
    let method = parts.method.clone();
    // The upstream head is written from the client's fields in one pass (no map edits).
    let mut up_head = Vec::with_capacity(512);
    head::write_request_line(&mut up_head, &parts);
    let upstream = headers::Upstream {
        client: cx.peer.ip(),
        proto: cx.proto,
        upgrade,
        body_prefetched: prefetched,
        ids: &ids,
        cert: cx.client_cert.as_ref().map(Option::as_deref),
        present,
    };
    headers::write_fields(&mut up_head, &parts, &upstream);
    request_id::write_lines(&mut up_head, &ids);
    if framing == Framing::Chunked {
        up_head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    up_head.extend_from_slice(b"\r\n");
    drop(parts);

    let replayable = is_idempotent(&method) && !prefetched && !upgrade;
    let body = BodyIn {
        framing,
        limits: Limits {
            max: limit,
            read: Some(body_timeout),
            write: send_timeout,
        },
    };
    let mut touched = false;
    // The exchange's clock reading (its start) serves the first attempt, unless a body was
    // awaited since; a retry reads the clock again.
    let mut at = if prefetched {
        Instant::now()
    } else {
        Instant::from_std(exchange.started())
    };
    let mut now = clock::ms_at(at.into_std());
    pool.budget.record_request(now);
    let mut tried = Tried::default();
    let mut error = ProxyError::NoBackend;
    let mut held: Option<(Answer, select::Choice)> = None;
    let mut served = None;
    for attempt in 0..=pool.retries {
        if attempt > 0 {
            at = Instant::now();
            now = clock::ms_at(at.into_std());
            if touched || !pool.budget.try_retry(now) {
                break;
            }
        }
        let region = client_region.map(|id| (&snapshot.regions, id));
        let Some(choice) = select::pick(&snapshot.pools, pool_id, affinity, &tried, now, region)
        else {
            break;
        };
        tried.add(choice);
        let (target, index) = (snapshot.pool(choice.pool), choice.backend);
        let shape = Shape {
            up_head: &up_head,
            method: &method,
            replayable,
            upgrade,
            body,
        };
        let answered = if bridge::needed(target) {
            // Boxed: the bridge's state stays out of every engine exchange's future.
            Box::pin(bridge::attempt(
                target,
                index,
                client,
                buf,
                shape,
                &mut touched,
            ))
            .await
            .map(Answer::Bridged)
        } else {
            attempt_once(target, index, client, buf, shape, &mut touched, at)
                .await
                .map(Answer::Engine)
        };
        match answered {
            Ok(got) => {
                let status = got.status();
                if status.is_server_error() {
                    let _ = passive::failure(target, index, clock::now_ms(), &status);
                } else {
                    passive::success(target.backend(index), now);
                }
                if attempt < pool.retries
                    && replayable
                    && pool.retries > 0
                    && pool.retry_on.status(status.as_u16())
                {
                    held = Some((got, choice));
                    continue;
                }
                served = Some((got, choice));
                break;
            }
            Err(err) => {
                if err.is_backend_failure() {
                    exchange.attempted(choice);
                    if passive::failure(target, index, clock::now_ms(), &err) {
                        tracing::warn!(pool = %target.name, backend = %target.backend(index).label, error = %crate::chain::Chain(&err), "backend failed");
                    }
                }
                let retry = err.is_retryable(replayable, pool.retry_on);
                error = err;
                if !retry {
                    break;
                }
            }
        }
    }
    let Some((got, choice)) = served.or(held) else {
        reject!(error)
    };
    let (target, index) = (snapshot.pool(choice.pool), choice.backend);
    snapshot
        .region_metrics
        .inc(client_region, target.regions.of(index.index()));
    let status = got.status();
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    // Fulcrum's own response fields, after the backend's (whose hop-by-hop ones are gone).
    let hsts = local::hsts_value(Some(listener));
    let cookie = (choice.pool == pool_id)
        .then(|| {
            affinity::cookie_to_set(&pool.balancer, affinity, index.index(), cx.proto == "https")
        })
        .flatten();
    let got = match got {
        Answer::Engine(got) => got,
        Answer::Bridged(bridge::Bridged {
            resp,
            conn,
            inflight,
            early,
        }) => {
            let finish = exchange.serve(
                target.backend(index),
                index,
                status.as_u16(),
                listener.metrics.pool(choice.pool).cloned(),
                (Some(conn), inflight),
            );
            let reply = bridge::Reply {
                version: client_version,
                method,
                hsts,
                cookie,
                close: close_request,
                trailers,
                send_timeout,
            };
            return Box::pin(bridge::respond(client, buf, (resp, early), finish, reply))
                .await
                .then(Instant::now);
        }
    };
    let Got {
        head: resp,
        mut up,
        mut upbuf,
        inflight,
        interim,
        early,
    } = got;
    let finish = exchange.serve(
        target.backend(index),
        index,
        status.as_u16(),
        listener.metrics.pool(choice.pool).cloned(),
        (None, inflight),
    );
    let (encode, mut close) = match resp.framing {
        Framing::Chunked if client_version == Version::HTTP_11 => {
            (Encode::Chunked { trailers }, false)
        }
        Framing::Chunked | Framing::Close => (Encode::Raw, true),
        Framing::None | Framing::Length(_) => (Encode::Raw, false),
    };
    // The client asked, or the backend answered before the request body ended.
    close |= close_request || early;
    let mut out = Vec::with_capacity(512);
    if client_version == Version::HTTP_11 {
        out.extend_from_slice(&interim);
    }
    head::write_status_line(&mut out, client_version, status);
    if hsts.is_some() && resp.sts {
        head::write_fields_without_sts(&mut out, &resp.fields);
    } else {
        out.extend_from_slice(&resp.fields);
    }
    let chunked = matches!(encode, Encode::Chunked { .. });
    end_head(
        &mut out,
        hsts,
        cookie,
        chunked,
        close,
        switching,
        client_version,
    );
    if switching {
        let bytes = tunnel(client, buf, &mut up, &upbuf, &out, send_timeout).await;
        finish.complete(bytes, false);
        upbuf.release();
        return None;
    }
    let limits = Limits {
        max: 0,
        read: None,
        write: send_timeout,
    };
    let relayed = relay::relay(
        &mut up.stream,
        &mut upbuf,
        client,
        &mut out,
        resp.framing,
        encode,
        limits,
    )
    .await;
    let flushed = relayed.is_ok() && relay::flush(client).await.is_ok();
    match relayed {
        Ok(bytes) => {
            let end = finish.complete(bytes, false);
            // Reused only when both messages ended where their framing said (an early
            // answer left the request body unfinished on it).
            if !early && !resp.close && upbuf.is_empty() && resp.framing != Framing::Close {
                up.release(end);
            }
            upbuf.release();
            (flushed && !close).then(|| Instant::from_std(end))
        }
        Err(_) => {
            // The upstream body broke off or the client stopped reading: the client's
            // connection is dropped unfinished (it must not take a cut body as whole).
            finish.complete(0, false);
            None
        }
    }
}

/// A backend's answer: on one of the engine's own connections, or through hyper's client.
enum Answer {
    Engine(Got),
    Bridged(bridge::Bridged),
}

impl Answer {
    fn status(&self) -> StatusCode {
        match self {
            Answer::Engine(got) => got.head.status,
            Answer::Bridged(bridged) => bridged.resp.status(),
        }
    }
}

/// The end of a response head to the client, after the backend's fields: the listener's
/// `Strict-Transport-Security`, the affinity cookie, the framing Fulcrum chose, and what
/// the connection does next.
pub(super) fn end_head(
    out: &mut Vec<u8>,
    hsts: Option<&HeaderValue>,
    cookie: Option<&HeaderValue>,
    chunked: bool,
    close: bool,
    switching: bool,
    version: Version,
) {
    for (name, value) in [("strict-transport-security", hsts), ("set-cookie", cookie)] {
        if let Some(value) = value {
            head::write_field(out, name, value.as_bytes());
        }
    }
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if close && !switching {
        out.extend_from_slice(b"connection: close\r\n");
    } else if version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// An upgraded connection: the 101 head, then bytes both ways until either side closes.
async fn tunnel<S: Stream>(
    client: &mut S,
    buf: &mut Buf,
    up: &mut Upstream,
    upbuf: &Buf,
    head: &[u8],
    send_timeout: std::time::Duration,
) -> u64 {
    let mut first = head.to_vec();
    first.extend_from_slice(upbuf.data());
    if !relay::send(client, &first, send_timeout).await {
        return 0;
    }
    if !buf.is_empty() {
        if up.stream.write_all(buf.data()).await.is_err() {
            return 0;
        }
        let n = buf.len();
        buf.consume(n);
    }
    match tokio::io::copy_bidirectional(client, &mut up.stream).await {
        Ok((_, down)) => down + upbuf.len() as u64,
        Err(_) => upbuf.len() as u64,
    }
}

/// Writes a response Fulcrum made itself. `true`: the connection may go on.
pub async fn write_response<S: Stream>(
    client: &mut S,
    version: Version,
    resp: Response<Bytes>,
    close: bool,
    timeout: std::time::Duration,
) -> bool {
    let (mut parts, body) = resp.into_parts();
    let close = close
        || parts
            .headers
            .get(header::CONNECTION)
            .is_some_and(|v| v == "close");
    if close {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let mut out = Vec::with_capacity(256 + body.len());
    head::write_status_line(&mut out, version, parts.status);
    head::write_headers(&mut out, &parts.headers);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    relay::send(client, &out, timeout).await && !close
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}
