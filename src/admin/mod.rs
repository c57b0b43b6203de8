//! The admin server: status page, status JSON, history JSON, Prometheus metrics, reload and
//! drain/enable.
//!
//! Why here and like this: everything an operator does must stay off the request path, so the
//! server runs on the control runtime and reads the same `Snapshot` the workers read (one
//! `ArcSwap` load) instead of asking them anything. Drain/enable flip the backend's shared
//! atomic; the workers see it on their next pick. Routing is one `match` on method and path.
//! A bearer token (`admin_token_file`, read at start, compared in constant time) guards every
//! endpoint except the static page and its script and style, which carry no data (the page
//! asks for the token). Every response carries a strict Content-Security-Policy and
//! `nosniff`: the page shows operator-chosen names next to the token it keeps. Connections
//! are capped and must send their request head in time, so idle sockets cannot take the
//! process's descriptors from the data plane.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::backend::Condition;
use crate::chain::Chain;
use crate::history::History;
use crate::reload::{ReloadError, Reloader, Trigger};
use crate::snapshot::{Live, Phase};

pub mod harness;
mod probe;
mod scrape;
mod status;

/// The status page and its script and style: static, served without the token (they hold no
/// data), each its own file so the policy below needs no `unsafe-inline`.
const PAGE: &str = include_str!("status.html");
const SCRIPT: &str = include_str!("status.js");
const STYLE: &str = include_str!("status.css");

/// The Content-Security-Policy of every admin response. The page holds the admin token (in
/// localStorage) and shows operator-chosen names, so whatever markup slipped past escaping
/// must not run: scripts and styles only from the server's own files, requests only to it,
/// no framing (the drain buttons cannot be clickjacked), no forms or base URL to redirect.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// How long an admin connection may take to send a request head: from accept, and again
/// between keep-alive requests; then it is closed. Operators, scrapers and the page (which
/// asks every 2 s) send theirs at once; a socket that sends nothing must not keep its place
/// under [`MAX_CONNECTIONS`] for ever (issue 14: idle admin sockets were never closed).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Admin connections open at once; a connection over it is closed at accept. A few pages, a
/// Prometheus scraper and some scripts need a handful. The admin server shares the process's
/// descriptors with the data plane, and 1,100 idle unauthenticated admin connections once
/// left it none (issue 14): with the cap, the admin API can hold 64 at most.
pub const MAX_CONNECTIONS: usize = 64;

/// Why the admin server could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin: cannot read admin_token_file {path}")]
    Token {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("admin: admin_token_file {0} is empty")]
    EmptyToken(String),
    #[error("admin: {0} is not loopback and no admin_token_file is set")]
    Unprotected(SocketAddr),
    #[error("admin: cannot bind {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Endpoints an embedder adds to the admin API, behind the same bearer token (the demo's kill
/// and revive switches), so the admin server knows nothing of who adds them.
pub trait Extension: Send + Sync {
    /// The reply to `method` on the path `segments` (the path split on `/`), or `None` when
    /// the path is not this extension's. Asked before the built-in routes.
    fn handle(&self, method: &Method, segments: &[&str]) -> Option<(StatusCode, Value)>;

    /// A field of its own in the status document (`GET /api/v1/status`): name and value.
    fn status(&self) -> Option<(&'static str, Value)>;
}

/// What every admin request reads.
pub struct Admin {
    shared: Arc<Live>,
    reloader: Arc<Reloader>,
    extension: Option<Arc<dyn Extension>>,
    /// Ten minutes of per-second samples (`GET /api/v1/history`), taken by `history::run`.
    history: Arc<History>,
    token: Option<Vec<u8>>,
    started: Instant,
    started_at: SystemTime,
}

/// Reads the token file: the token is its first line, trimmed.
pub fn read_token(path: &Path) -> Result<Vec<u8>, AdminError> {
    let text = std::fs::read_to_string(path).map_err(|source| AdminError::Token {
        path: path.display().to_string(),
        source,
    })?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(AdminError::EmptyToken(path.display().to_string()));
    }
    Ok(token.as_bytes().to_vec())
}

/// Binds `addr` (or takes `inherited`, the old process's socket in a binary upgrade) and
/// serves the admin API on `control`; returns the bound address and a duplicate of the socket
/// for the next upgrade. It stops accepting once the process has handed over to a new one.
pub fn start(
    addr: SocketAddr,
    inherited: Option<std::net::TcpListener>,
    token: Option<Vec<u8>>,
    shared: Arc<Live>,
    reloader: Arc<Reloader>,
    (extension, history): (Option<Arc<dyn Extension>>, Arc<History>),
    control: &tokio::runtime::Handle,
) -> Result<(SocketAddr, std::net::TcpListener), AdminError> {
    if token.is_none() && !addr.ip().is_loopback() {
        return Err(AdminError::Unprotected(addr));
    }
    let bind_err = |source| AdminError::Bind { addr, source };
    let std_listener = match inherited {
        Some(socket) => socket,
        None => std::net::TcpListener::bind(addr).map_err(bind_err)?,
    };
    std_listener.set_nonblocking(true).map_err(bind_err)?;
    let bound = std_listener.local_addr().map_err(bind_err)?;
    let handover = std_listener.try_clone().map_err(bind_err)?;
    let mut phase = shared.phase.subscribe();
    let admin = Arc::new(Admin {
        shared,
        reloader,
        extension,
        history,
        token,
        started: Instant::now(),
        started_at: SystemTime::now(),
    });
    let _guard = control.enter();
    let listener = tokio::net::TcpListener::from_std(std_listener).map_err(bind_err)?;
    control.spawn(async move {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        // Whether the cap is full and said so: logged once each time it fills, not per socket.
        let mut full = false;
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                // The new process answers from here on (it shares this socket).
                _ = phase.wait_for(|p| *p == Phase::HandedOver) => return,
            };
            let Ok((stream, peer)) = accepted else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                if !full {
                    let cap = MAX_CONNECTIONS;
                    tracing::warn!(%peer, "admin: {cap} connections open, closing new ones");
                    full = true;
                }
                drop(stream);
                continue;
            };
            full = false;
            let admin = Arc::clone(&admin);
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let admin = Arc::clone(&admin);
                    async move { Ok::<_, Infallible>(admin.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                drop(slot);
            });
        }
    });
    tracing::info!(%bound, "admin API and status page at http://{bound}/");
    Ok((bound, handover))
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    let headers = resp.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CSP),
    );
    // A JSON body that echoes a name is never sniffed into HTML or script.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    resp
}

fn json_reply(status: StatusCode, value: &Value) -> Reply {
    reply(status, "application/json", value.to_string())
}

fn error(status: StatusCode, message: &str) -> Reply {
    json_reply(
        status,
        &json!({ "error": message, "status": status.as_u16() }),
    )
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("extension", &self.extension.is_some())
            .field("token", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

impl Admin {
    fn authorized<B>(&self, req: &Request<B>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        bool::from(given.as_bytes().ct_eq(token))
    }

    /// One request, whatever its body type: no endpoint reads a body, and the fuzz harness
    /// (`harness.rs`) calls this without a network.
    async fn handle<B>(self: Arc<Self>, req: Request<B>) -> Reply {
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        // Segments are percent-decoded one by one (the page encodes a backend's address, and
        // `%3A` must name the same backend as `:`; an encoded `/` stays inside its segment).
        let decoded: Result<Vec<_>, _> = path
            .trim_matches('/')
            .split('/')
            .map(|s| percent_decode_str(s).decode_utf8())
            .collect();
        let Ok(decoded) = decoded else {
            return error(
                StatusCode::BAD_REQUEST,
                "the path is not UTF-8 once decoded",
            );
        };
        let segments: Vec<&str> = decoded.iter().map(AsRef::as_ref).collect();
        let method = req.method().clone();
        // The page and its files hold no data; everything else needs the token (and an
        // extension never sees a request without it).
        if method == Method::GET {
            let page = match path.as_str() {
                "/" => Some(("text/html; charset=utf-8", PAGE)),
                "/status.js" => Some(("text/javascript; charset=utf-8", SCRIPT)),
                "/status.css" => Some(("text/css; charset=utf-8", STYLE)),
                _ => None,
            };
            if let Some((content_type, body)) = page {
                return reply(StatusCode::OK, content_type, body);
            }
            // `/live`, `/ready`: probes carry no token (see `probe`).
            if let Some(resp) = probe::answer(&path, &self.shared) {
                return resp;
            }
        }
        if !self.authorized(&req) {
            let mut resp = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return resp;
        }
        if let Some((status, body)) = self
            .extension
            .as_ref()
            .and_then(|e| e.handle(&method, &segments))
        {
            return json_reply(status, &body);
        }
        let get = method == Method::GET;
        let post = method == Method::POST;
        match (segments.as_slice(), get, post) {
            (["metrics"], true, _) => self.metrics(),
            (["api", "v1", "status"], true, _) => json_reply(StatusCode::OK, &status::of(&self)),
            (["api", "v1", "history"], true, _) => {
                let snapshot = self.shared.snapshot.load();
                json_reply(StatusCode::OK, &self.history.to_json(&snapshot))
            }
            (["api", "v1", "reload"], _, true) => self.reload(query.contains("dry_run=true")).await,
            (
                ["api", "v1", "pools", pool, "backends", backend, action @ ("drain" | "enable")],
                _,
                true,
            ) => self.set_draining(pool, backend, *action == "drain"),
            (
                [""]
                | ["status.js" | "status.css" | "metrics"]
                | ["api", "v1", "status" | "history"],
                false,
                _,
            )
            | (["api", "v1", "reload"], _, false)
            | (["api", "v1", "pools", _, "backends", _, "drain" | "enable"], _, false) => {
                let mut resp = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                let get_only = path.ends_with("/status") || path.ends_with("/history");
                let allow = if path.starts_with("/api/v1/") && !get_only {
                    "POST"
                } else {
                    "GET"
                };
                resp.headers_mut()
                    .insert(header::ALLOW, header::HeaderValue::from_static(allow));
                resp
            }
            _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
        }
    }

    fn metrics(&self) -> Reply {
        let snapshot = self.shared.snapshot.load();
        let listeners: Vec<(String, usize)> = self
            .reloader
            .listeners()
            .into_iter()
            .map(|(name, _, open)| (name, open))
            .collect();
        match scrape::encode(&snapshot, &listeners, self.shared.parked_connections()) {
            Ok(text) => reply(StatusCode::OK, "text/plain; version=0.0.4", text),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }

    async fn reload(&self, dry_run: bool) -> Reply {
        let reloader = Arc::clone(&self.reloader);
        let outcome = tokio::task::spawn_blocking(move || {
            if dry_run {
                reloader.dry_run().map(|diff| {
                    let lines: Vec<String> = diff.to_string().lines().map(String::from).collect();
                    json!({ "ok": true, "dry_run": true, "changes": lines })
                })
            } else {
                reloader
                    .reload(Trigger::Api)
                    .map(|r| json!({ "ok": true, "result": status::reload_json(&r) }))
            }
        })
        .await;
        match outcome {
            Ok(Ok(body)) => json_reply(StatusCode::OK, &body),
            Ok(Err(e)) => {
                let status = match e {
                    ReloadError::Config(_) | ReloadError::Bind(_) => {
                        StatusCode::UNPROCESSABLE_ENTITY
                    }
                    ReloadError::NoFile | ReloadError::ShuttingDown => StatusCode::CONFLICT,
                    ReloadError::Unchanged => StatusCode::OK,
                };
                let text = Chain(&e).to_string();
                let lines: Vec<String> = text.lines().map(String::from).collect();
                json_reply(
                    status,
                    &json!({ "ok": false, "error": text, "errors": lines }),
                )
            }
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }

    fn set_draining(&self, pool: &str, backend: &str, drain: bool) -> Reply {
        let snapshot = self.shared.snapshot.load();
        let Some(p) = snapshot.pools.iter().find(|p| &*p.name == pool) else {
            return error(StatusCode::NOT_FOUND, "no such pool");
        };
        let Some(b) = p.backends.iter().find(|b| &*b.label == backend) else {
            return error(StatusCode::NOT_FOUND, "no such backend in this pool");
        };
        b.state.set_draining(drain);
        p.membership_changed();
        let (state, reason) = if drain {
            (Condition::Draining, "drained through the admin API")
        } else {
            (Condition::Up, "enabled through the admin API")
        };
        b.state.record_change(state, reason.to_string());
        tracing::info!(pool, backend, %state, "{reason}");
        json_reply(
            StatusCode::OK,
            &json!({ "ok": true, "pool": pool, "backend": backend, "draining": drain }),
        )
    }
}

/// Seconds since the epoch, for JSON.
fn epoch(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
