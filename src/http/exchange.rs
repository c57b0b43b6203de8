//! One request's bookkeeping, from its head to its last byte: when it started, its access-log
//! record, and the metric handles it counts against.
//!
//! Why one value: the proxy loop learns things in stages (the listener, the pool, the client's
//! address and region, the backend) and must account for the request exactly once whichever
//! way it ends. The loop tells the [`Exchange`] what it learned and leaves through one of two
//! doors: [`Exchange::refuse`] (Fulcrum answers itself: logged and counted at once) or
//! [`Exchange::serve`] (a backend answered: the returned [`Finish`] rides in the response body
//! and completes the exchange when the last byte has gone through).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;

use super::client::PooledConn;
use super::error::ProxyError;
use super::request_id::RequestId;
use crate::access_log::{self, Record};
use crate::backend::{Backend, InflightGuard};
use crate::chain::Chain;
use crate::config::BackendId;
use crate::metrics::PoolMetrics;
use crate::select::Choice;
use crate::snapshot::ListenerSnapshot;

/// One request in flight through the proxy.
#[derive(Debug)]
pub struct Exchange {
    started: Instant,
    /// `None` when the access log is off: no record is built at all. Boxed: inline, its
    /// 300-odd bytes were copied each time the exchange moved (into the proxy loop, into
    /// `Finish`), with the log on or off.
    log: Option<Box<Record>>,
    /// The routed pool's handles of this listener: a refusal after routing counts there.
    routed: Option<Arc<PoolMetrics>>,
    /// The last backend that failed this request: a refusal counts against it.
    failed: Option<Choice>,
    /// A gRPC request: a refusal is a gRPC status (`ProxyError::to_grpc_response`).
    grpc: bool,
}

impl Exchange {
    /// A request head arrived on `listener` (`None`: a reload removed it) from `peer`.
    pub fn begin(
        req: &Request<Incoming>,
        peer: SocketAddr,
        listener: Option<&ListenerSnapshot>,
    ) -> Exchange {
        let head = (req.method(), req.uri(), req.version(), req.headers());
        Exchange::begin_head(head, peer, listener)
    }

    /// [`Exchange::begin`] from a head's parts (the HTTP/1 engine parses its own).
    pub fn begin_head(
        (method, uri, version, headers): (&Method, &Uri, Version, &HeaderMap),
        peer: SocketAddr,
        listener: Option<&ListenerSnapshot>,
    ) -> Exchange {
        let log = access_log::enabled().then(|| {
            Box::new(Record {
                time: SystemTime::now(),
                client: peer.ip(),
                method: method.clone(),
                uri: uri.clone(),
                version,
                status: 0,
                bytes: 0,
                duration: Default::default(),
                listener: listener.map_or_else(|| Arc::from("-"), |l| Arc::clone(&l.name)),
                pool: None,
                backend: None,
                client_region: None,
                served_region: None,
                referer: headers.get(header::REFERER).cloned(),
                user_agent: headers.get(header::USER_AGENT).cloned(),
                request_id: None,
            })
        });
        Exchange {
            started: Instant::now(),
            log,
            routed: None,
            failed: None,
            grpc: super::headers::is_grpc(headers),
        }
    }

    /// When the exchange began (its head was parsed): the request path's one clock reading
    /// before the backend's answer, from which its other stamps are taken.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The route chose pool `name`; `metrics` are this listener's handles for it.
    pub fn routed(&mut self, name: &Arc<str>, metrics: Option<&Arc<PoolMetrics>>) {
        self.routed = metrics.cloned();
        if let Some(record) = self.log.as_mut() {
            record.pool = Some(Arc::clone(name));
        }
    }

    /// An attempt on `choice` failed through the backend's fault.
    pub fn attempted(&mut self, choice: Choice) {
        self.failed = Some(choice);
    }

    /// The client as resolved through `trusted_proxies`, and its region.
    pub fn client(&mut self, ip: IpAddr, region: Option<&Arc<str>>) {
        if let Some(record) = self.log.as_mut() {
            record.client = ip;
            record.client_region = region.cloned();
        }
    }

    /// The request's id (`request_id::decide`), for the access log.
    pub fn request_id(&mut self, id: &RequestId) {
        if let Some(record) = self.log.as_mut() {
            record.request_id = match id {
                RequestId::Kept(v) => Some(v.clone()),
                RequestId::Generated(hex) => HeaderValue::from_bytes(hex).ok(),
            };
        }
    }

    /// Fulcrum answers `err` itself: counted (against the routed pool, or the listener when
    /// none was chosen yet) and logged now.
    pub fn refuse(self, err: &ProxyError, listener: Option<&ListenerSnapshot>) -> Response<Bytes> {
        if err.is_backend_failure() {
            let name = listener.map_or("-", |l| &*l.name);
            tracing::debug!(listener = name, error = %Chain(err), "request failed");
        }
        let resp = if self.grpc {
            err.to_grpc_response()
        } else {
            err.to_response()
        };
        self.answer(resp, listener)
    }

    /// Ends an exchange Fulcrum answered itself (an error, an ACME challenge, a redirect):
    /// counted and logged like any response, against the pool it was routed to if any.
    pub fn answer(
        self,
        resp: Response<Bytes>,
        listener: Option<&ListenerSnapshot>,
    ) -> Response<Bytes> {
        let code = resp.status().as_u16();
        let took = self.started.elapsed();
        let blamed = self.failed.and_then(|c| {
            let pool = listener?.metrics.pool(c.pool)?;
            Some((pool, c.backend))
        });
        match (blamed, &self.routed, listener) {
            // The backend that failed it: its 502s and 504s show on its row.
            (Some((pool, backend)), _, _) => pool.record(Some(backend), code, took),
            (None, Some(pool), _) => pool.record(None, code, took),
            (None, None, Some(l)) => {
                if let Some(unrouted) = &l.metrics.unrouted {
                    unrouted.inc(code);
                }
            }
            (None, None, None) => {}
        }
        if let Some(mut record) = self.log {
            record.status = code;
            record.duration = took;
            record.bytes = resp.body().len() as u64;
            access_log::emit(*record);
        }
        resp
    }

    /// `backend` (index `index` of the serving pool, whose handles are `metrics`) answered
    /// with `status`; the exchange completes when the returned `Finish` does.
    pub fn serve(
        mut self,
        backend: &Backend,
        index: BackendId,
        status: u16,
        metrics: Option<Arc<PoolMetrics>>,
        upstream: (Option<PooledConn>, InflightGuard),
    ) -> Finish {
        if let Some(record) = self.log.as_mut() {
            record.backend = Some(Arc::clone(&backend.label));
            record.served_region.clone_from(&backend.region);
            record.status = status;
        }
        let (conn, inflight) = upstream;
        Finish {
            conn,
            _inflight: inflight,
            served: metrics.map(|m| (m, index)),
            status,
            exchange: self,
        }
    }
}

/// A served exchange, completed when the response body has gone through (see
/// `response_body::ResponseBody`) or the upgraded tunnel has closed.
#[derive(Debug)]
pub struct Finish {
    conn: Option<PooledConn>,
    _inflight: InflightGuard,
    /// The serving pool's handles (of this listener) and the backend's index.
    served: Option<(Arc<PoolMetrics>, BackendId)>,
    status: u16,
    exchange: Exchange,
}

impl Finish {
    /// The upstream socket now belongs to an upgrade tunnel: it never returns to the pool.
    pub fn detach_connection(&mut self) {
        self.conn = None;
    }

    /// `clean`: the upstream body was read to its end, so the connection can be reused.
    /// Returns when it completed (the clock is read once here, for the metrics, the log and
    /// whatever the caller stamps next).
    pub fn complete(mut self, bytes: u64, clean: bool) -> Instant {
        if let Some(conn) = self.conn.take() {
            if clean {
                conn.release();
            }
        }
        let end = Instant::now();
        let took = end.saturating_duration_since(self.exchange.started);
        if let Some((m, backend)) = self.served.take() {
            m.record(Some(backend), self.status, took);
        }
        if let Some(mut record) = self.exchange.log.take() {
            record.bytes = bytes;
            record.duration = took;
            access_log::emit(*record);
        }
        end
    }
}
