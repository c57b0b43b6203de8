//! The request path as one readable loop: route, pick, forward, retry.
//!
//! One `ArcSwap` load per request gives the snapshot; everything after reads it. The request
//! body's first frame is read before any backend is contacted, so a malformed body is refused
//! with 400 and never reaches a backend, and a request whose body cannot be replayed is known
//! before the first attempt. Retries go to another backend (never the same one twice in a row)
//! when the connection failed, or when a replayable request (idempotent, no body) failed
//! before any response byte, within the pool's retry budget. Which backend is eligible
//! (health, ejection, slow start, backup pools, fail-open) is `select`'s call; each
//! attempt's outcome is reported to `health::passive`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{header, Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::affinity;
use super::client::{self, PooledConn};
use super::error::{is_unprocessed, ProxyError};
use super::exchange::{Exchange, Finish};
use super::headers;
use super::local::{self, Local};
use super::request_body::RequestBody;
use super::request_id;
use super::response_body::ResponseBody;
use super::target;
use super::watchdog::Activity;
use crate::backend::InflightGuard;
use crate::chain::Chain;
use crate::config::{BackendId, ListenerSlot};
use crate::health::passive;
use crate::limits::ClientConnection;
use crate::pool::Pool;
use crate::select::{self, Tried};
use crate::snapshot::{Live, OpenGuard};
use crate::{client_ip, clock};

/// What a connection knows about itself, shared by its requests.
#[derive(Debug)]
pub struct ConnContext {
    pub shared: Arc<Live>,
    /// Slot of the listener in the snapshot (`Snapshot::listener`), stable across reloads.
    pub listener: ListenerSlot,
    pub peer: SocketAddr,
    /// "http" or "https", for `X-Forwarded-Proto`.
    pub proto: &'static str,
    /// A TLS listener with `client_auth`: `Some(Some(cert))` for a verified client
    /// certificate, `Some(None)` for a client without one (`X-Client-Verify` says which).
    /// Boxed: rare, and inline it was a quarter of every connection's context.
    pub client_cert: Option<Option<Box<crate::tls::PeerCert>>>,
    /// What the connection holds open while any part of it lives; `None` where nothing is
    /// counted (unit tests).
    #[allow(dead_code)] // held for its drop
    pub held: Option<Held>,
}

/// An admitted client connection's counts: the open-connection totals and its
/// `connections_per_client` slot. Owned by its context, so they are released when the last
/// part of the connection is gone: its task, or its place among the parked idle connections
/// (`http1::park`), which outlives the task that parked it.
#[derive(Debug)]
#[allow(dead_code)] // held for its drop
pub struct Held {
    pub open: OpenGuard,
    pub per_client: Option<ClientConnection>,
}

/// Serves one request; never fails (errors become responses). It is hyper's service future
/// itself, one future for the whole request: a nested `async fn` would be moved into its caller
/// (kilobytes per request), so failures leave through the `reject!` macro instead.
pub async fn handle(
    req: Request<Incoming>,
    cx: Arc<ConnContext>,
    activity: Arc<Activity>,
) -> Result<Response<ResponseBody>, Infallible> {
    let cx = &*cx;
    // In flight on its connection (no idle deadline) until its response body ends.
    let in_flight = activity.request(req.version() >= Version::HTTP_2);
    let snapshot = cx.shared.snapshot.load_full();
    let snapshot = &*snapshot;
    // The one lookup of the listener for this request. `None`: a reload removed it; its
    // connections drain (see `listener.rs`).
    let listener = snapshot.listener(cx.listener);
    let mut exchange = Exchange::begin(&req, cx.peer, listener);
    macro_rules! reject {
        ($err:expr) => {{
            let mut resp = exchange
                .refuse(&$err, listener)
                .map(|body| ResponseBody::full(body).holding(in_flight));
            local::hsts(listener, resp.headers_mut());
            return Ok(resp);
        }};
    }

    let Some(listener) = listener else {
        reject!(ProxyError::NoBackend);
    };
    // The client's address (believing `trusted_proxies` only) and region, from the headers as
    // the client sent them (before our own hop is appended to X-Forwarded-For).
    let client = client_ip::resolve(
        cx.peer.ip(),
        &snapshot.trusted_proxies,
        req.headers()
            .get_all(headers::X_FORWARDED_FOR)
            .iter()
            .map(|v| v.as_bytes()),
    );
    let client_region = snapshot.regions.lookup(client);
    exchange.client(
        client,
        client_region.and_then(|id| snapshot.regions.name(id)),
    );
    let trusted = client_ip::is_trusted(cx.peer.ip(), &snapshot.trusted_proxies);
    let ids = request_id::decide(req.headers(), trusted, listener.trace);
    exchange.request_id(&ids.request_id);
    // `[listener.limits]`: a client over its rate gets 429 before anything is done for it.
    if let Err(wait) = listener.limits.check_request(client) {
        reject!(ProxyError::RateLimited(wait));
    }
    let (mut parts, body) = req.into_parts();
    let version = parts.version;
    // Nothing below adds a field `Present` tracks before the last lookup that uses it.
    let present = headers::Present::scan(&parts.headers);
    if let Err(err) =
        headers::check_request(&parts, present).and_then(|()| target::check_target(&parts))
    {
        reject!(err);
    }
    // The host is the target's authority when it has one; `Host` says so from here on.
    target::normalize_host(&mut parts);
    match local::decide(&parts, listener, &cx.shared.acme) {
        Some(Local::Answer(resp)) => {
            return Ok(exchange
                .answer(resp, Some(listener))
                .map(|body| ResponseBody::full(body).holding(in_flight)));
        }
        Some(Local::Refuse(e)) => reject!(e),
        None => {}
    }
    let limit = listener.max_request_body;
    if limit > 0 && headers::content_length(&parts.headers).is_some_and(|len| len > limit) {
        reject!(ProxyError::BodyTooLarge);
    }

    let pool_id = listener.routes.pick(
        target::request_host(&parts),
        parts.uri.path(),
        &parts.headers,
    );
    let pool = snapshot.pool(pool_id);
    exchange.routed(&pool.name, listener.metrics.pool(pool_id));

    // Read the first body frame before choosing a backend: a malformed body ends here, and
    // so does one that does not come (`client_body_timeout`, the client's failure).
    let body_timeout = cx.shared.client_body_timeout;
    // gRPC: streamed as it comes (a bidi client may speak only after the server), never
    // replayed, its deadline honoured up to the pool's `request_timeout`.
    let grpc = headers::is_grpc(&parts.headers);
    let deadline = if grpc {
        headers::grpc_timeout(&parts.headers)
    } else {
        None
    };
    let body = if body.is_end_stream() {
        RequestBody::empty()
    } else if grpc {
        RequestBody::unread(body, limit, activity.upload())
    } else {
        let mut body = body;
        match tokio::time::timeout(body_timeout, body.frame()).await {
            Err(_) => reject!(ProxyError::ClientTimeout),
            Ok(None) => RequestBody::empty(),
            Ok(Some(Err(_))) => reject!(ProxyError::BadRequest("malformed request body")),
            Ok(Some(Ok(first))) => {
                let upload = activity.upload();
                match RequestBody::streaming(first, body, limit, body_timeout, upload) {
                    Ok(body) => body,
                    Err(_) => reject!(ProxyError::BodyTooLarge),
                }
            }
        }
    };
    let prefetched = !body.is_end_stream();
    let upgrade = headers::is_upgrade(&parts, present);
    let client_upgrade = if upgrade {
        parts.extensions.remove::<OnUpgrade>()
    } else {
        None
    };
    // consistent_hash / sticky_cookie only (`client_ip` keys hash the resolved client); strips
    // the sticky cookie before anything is copied.
    let affinity = affinity::extract(&pool.balancer, &mut parts, client);
    headers::prepare_upstream(&mut parts, cx.peer.ip(), cx.proto, upgrade, prefetched);
    request_id::apply(&mut parts.headers, &ids);
    if let Some(cert) = &cx.client_cert {
        headers::client_cert(&mut parts.headers, cert.as_deref());
    }

    // A copy to replay on another backend, kept only when a replay is safe and allowed.
    let replayable = is_idempotent(&parts.method) && !prefetched && !upgrade;
    let replay = (replayable && pool.retries > 0).then(|| clone_parts(&parts));
    let mut request = Some(Request::from_parts(parts, body));

    let mut now = clock::now_ms();
    pool.budget.record_request(now);
    let mut tried = Tried::default();
    let mut error = ProxyError::NoBackend;
    // A response whose status `retry_on` retries, kept in case no other backend answers.
    let mut held: Option<(Sent, select::Choice)> = None;
    // The response that goes to the client: bookkeeping handed to its body, cookie set.
    macro_rules! serve {
        ($sent:expr, $choice:expr) => {{
            let ((resp, conn, inflight), choice) = ($sent, $choice);
            let (target, index) = (snapshot.pool(choice.pool), choice.backend);
            snapshot
                .region_metrics
                .inc(client_region, target.regions.of(index.index()));
            let finish = exchange.serve(
                target.backend(index),
                index,
                resp.status().as_u16(),
                listener.metrics.pool(choice.pool).cloned(),
                (Some(conn), inflight),
            );
            let mut resp =
                respond(resp, version, client_upgrade, finish).map(|b| b.holding(in_flight));
            local::hsts(Some(listener), resp.headers_mut());
            if choice.pool == pool_id {
                let secure = cx.proto == "https";
                affinity::set_cookie(
                    &pool.balancer,
                    affinity,
                    index.index(),
                    secure,
                    resp.headers_mut(),
                );
            }
            return Ok(resp);
        }};
    }
    for attempt in 0..=pool.retries {
        if attempt > 0 {
            now = clock::now_ms();
        }
        if attempt > 0 && !pool.budget.try_retry(now) {
            tracing::debug!(pool = %pool.name, "retry budget exhausted");
            break;
        }
        let region = client_region.map(|id| (&snapshot.regions, id));
        let Some(choice) = select::pick(&snapshot.pools, pool_id, affinity, &tried, now, region)
        else {
            break;
        };
        tried.add(choice);
        let (target, index) = (snapshot.pool(choice.pool), choice.backend);
        let req = match request.take() {
            Some(req) => req,
            None => match &replay {
                Some(parts) => Request::from_parts(clone_parts(parts), RequestBody::empty()),
                None => break,
            },
        };
        let uploading = prefetched.then_some(&*activity);
        match send(target, index, req, uploading, deadline).await {
            Ok(sent) => {
                let status = sent.0.status();
                if status.is_server_error() {
                    let _ = passive::failure(target, index, clock::now_ms(), &status);
                } else {
                    passive::success(target.backend(index), now);
                }
                // `retry_on` a status: a replayable request, once per backend, while attempts
                // remain; the response is kept in case no other backend answers.
                if attempt < pool.retries
                    && replay.is_some()
                    && pool.retry_on.status(status.as_u16())
                {
                    tracing::debug!(pool = %target.name, backend = %target.backend(index).label, %status, "retrying on status");
                    held = Some((sent, choice));
                    continue;
                }
                serve!(sent, choice)
            }
            Err((err, unsent)) => {
                if err.is_backend_failure() {
                    exchange.attempted(choice);
                    if passive::failure(target, index, clock::now_ms(), &err) {
                        // Once per backend per change: the first failure after a success.
                        tracing::warn!(pool = %target.name, backend = %target.backend(index).label, error = %Chain(&err), "backend failed");
                    }
                } else if err.is_local_shortage() {
                    local_shortage(&target.name, &err);
                }
                let retry = err.is_retryable(replayable, pool.retry_on);
                tracing::debug!(pool = %target.name, backend = %target.backend(index).label, error = %Chain(&err), retry, "attempt failed");
                request = unsent;
                error = err;
                if !retry {
                    break;
                }
            }
        }
    }
    if let Some((sent, choice)) = held {
        serve!(sent, choice)
    }
    reject!(error)
}

pub(crate) type Sent = (Response<Incoming>, PooledConn, InflightGuard);

/// When Fulcrum last logged a local shortage (`clock::now_ms()`): at most one line a second.
static SHORTAGE_LOGGED: AtomicU64 = AtomicU64::new(0);

/// Fulcrum itself ran out of descriptors, memory or ports connecting upstream: the backend is
/// not blamed, and the operator hears of it (at most once a second, however many requests).
#[cold]
fn local_shortage(pool: &str, err: &ProxyError) {
    let now = clock::now_ms();
    let last = SHORTAGE_LOGGED.load(Ordering::Relaxed);
    if (last == 0 || now.saturating_sub(last) >= 1000)
        && SHORTAGE_LOGGED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::error!(pool, error = %Chain(err), "local resource error: cannot connect upstream (not the backend's failure; raise the descriptor limit or lower max_connections)");
    }
}

/// Waits for `response` for `timeout`, not counting the time a request body of this
/// connection (`uploading`, for a request that has one) was still arriving from the client:
/// `request_timeout` runs from the end of the upload, which is bounded by
/// `client_body_timeout` between the client's frames. `None`: timed out.
async fn within<F: Future>(
    timeout: Duration,
    response: F,
    uploading: Option<&Activity>,
) -> Option<F::Output> {
    let mut response = std::pin::pin!(response);
    let mut wait = timeout;
    loop {
        if let Ok(out) = tokio::time::timeout(wait, response.as_mut()).await {
            return Some(out);
        }
        wait = match uploading.map(Activity::uploads_done_at) {
            None => return None,
            // Still uploading: look again a full timeout later.
            Some(None) => timeout,
            Some(Some(ended)) => {
                let until =
                    ended.saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
                match until.checked_sub(clock::now_ms()) {
                    Some(left) if left > 0 => Duration::from_millis(left),
                    _ => return None,
                }
            }
        };
    }
}

/// One attempt on one backend. On failure, the request comes back when it was not sent.
/// `uploading`: the connection's activity when the request has a body still streaming;
/// `deadline`: a gRPC request's `grpc-timeout`, shortening `request_timeout`.
pub(crate) async fn send(
    pool: &Pool,
    index: BackendId,
    req: Request<RequestBody>,
    uploading: Option<&Activity>,
    deadline: Option<Duration>,
) -> Result<Sent, (ProxyError, Option<Request<RequestBody>>)> {
    let backend = pool.backend(index);
    let inflight = backend.state.acquire();
    let timeout = deadline.map_or(pool.request_timeout, |d| d.min(pool.request_timeout));
    let mut conn = match client::checkout(pool, backend).await {
        Ok(conn) => conn,
        Err(err) => return Err((err, Some(req))),
    };
    let mut req = req;
    // `prepare_upstream` left an `Upgrade` only when the client offered the allowed one.
    let upgrade = req.headers().contains_key(header::UPGRADE);
    // A pooled connection can go stale between checkout and write; that says nothing about
    // the backend, so the unsent request gets one fresh connection to the same backend. An
    // HTTP/2 backend may also refuse a stream unprocessed (REFUSED_STREAM, or above its
    // GOAWAY's last stream: a closing connection races the next requests); hyper keeps no
    // copy of such a request, so a bodyless one keeps its head to go once more.
    for fresh in [false, true] {
        let head = (conn.is_h2() && !fresh && req.body().is_end_stream()).then(|| copy_head(&req));
        let sent = within(timeout, conn.send(req), uploading).await;
        match sent {
            None => return Err((ProxyError::UpstreamTimeout, None)),
            Some(Ok(resp)) => {
                // A bad head: the connection (and the body, unread) is dropped with `conn`.
                headers::check_response(resp.status(), resp.headers(), upgrade)
                    .map_err(|err| (err, None))?;
                return Ok((resp, conn, inflight));
            }
            Some(Err(mut e)) => {
                let unsent = e.take_message();
                let err = e.into_error();
                match (unsent, head) {
                    (Some(unsent), _) if conn.reused && !fresh => {
                        req = unsent;
                        // h2: the connection closed; others of this worker may have made a
                        // new one already (or be making it): take a stream there.
                        let again = if conn.is_h2() {
                            Box::pin(client::checkout(pool, backend)).await
                        } else {
                            Box::pin(client::connect(pool, backend)).await
                        };
                        conn = match again {
                            Ok(conn) => conn,
                            Err(err) => return Err((err, Some(req))),
                        };
                    }
                    (Some(unsent), _) => return Err((ProxyError::NotSent(err), Some(unsent))),
                    (None, Some(head)) if is_unprocessed(&err) => {
                        tracing::debug!(backend = %backend.label, error = %crate::chain::Chain(&err), "stream refused unprocessed: sent again");
                        req = head;
                        conn = match Box::pin(client::checkout(pool, backend)).await {
                            Ok(conn) => conn,
                            Err(err) => return Err((err, Some(req))),
                        };
                    }
                    (None, _) => return Err((ProxyError::exchange(err), None)),
                }
            }
        }
    }
    unreachable!("the second attempt always returns")
}

/// The client's response: headers cleaned, body streamed; a 101 becomes a tunnel.
fn respond(
    resp: Response<Incoming>,
    version: Version,
    client_upgrade: Option<OnUpgrade>,
    mut finish: Finish,
) -> Response<ResponseBody> {
    let (mut parts, body) = resp.into_parts();
    // The client's protocol, whatever the backend spoke (an HTTP/1.0 backend's status line
    // must not reach an HTTP/1.1 client).
    parts.version = version;
    let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    headers::prepare_response(&mut parts.headers, switching);
    if switching {
        if let (Some(client), Some(upstream)) =
            (client_upgrade, parts.extensions.remove::<OnUpgrade>())
        {
            finish.detach_connection();
            tokio::spawn(tunnel(client, upstream, finish));
            return Response::from_parts(parts, ResponseBody::empty());
        }
    }
    if body.is_end_stream() {
        // HEAD, 204, 304 or an empty body: nothing will poll it, finish now.
        finish.complete(0, true);
        return Response::from_parts(parts, ResponseBody::empty());
    }
    Response::from_parts(parts, ResponseBody::upstream(body, finish))
}

/// Copies bytes both ways between an upgraded client and backend connection until either closes.
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade, finish: Finish) {
    let (client, upstream) = tokio::join!(client, upstream);
    let mut bytes = 0;
    if let (Ok(client), Ok(upstream)) = (client, upstream) {
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        if let Ok((_, down)) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            bytes = down;
        }
    }
    finish.complete(bytes, false);
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

/// A bodyless request's head, to send it once more.
fn copy_head(req: &Request<RequestBody>) -> Request<RequestBody> {
    let mut copy = Request::new(RequestBody::empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

fn clone_parts(parts: &http::request::Parts) -> http::request::Parts {
    let mut req = Request::new(());
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    req.into_parts().0
}
