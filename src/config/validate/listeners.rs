//! `[[listener]]` and `[[listener.route]]` tables: unique names and binds, and references to
//! pools that exist.
//!
//! Split from `validate.rs` only to keep each file readable; it extends the same collector.
//! Pools are validated first, so every reference here can be checked against them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;

use toml::Spanned;

use super::{key, label, values, Cx};
use crate::config::file::{Int, RawLimits, RawListener, RawRoute, Str};
use crate::config::{
    BalanceKind, HashKey, HeaderMatch, LimitsConfig, ListenerConfig, PoolConfig, PoolId, Protocol,
    RouteConfig, TraceMode,
};

/// The largest `requests_per_second`, `burst` and `connections_per_client`: a million a second
/// is one request per microsecond per client, far past any real client, and keeps
/// `requests_per_second + burst` within the limiter's counter.
const MAX_LIMIT: i64 = 1_000_000;

impl Cx<'_> {
    /// Every `[[listener]]`: unique names and binds, known pools; at least one must exist.
    pub(super) fn listeners(
        &mut self,
        raw: &[Spanned<RawListener>],
        pools: &[PoolConfig],
    ) -> Vec<ListenerConfig> {
        if raw.is_empty() {
            self.error(0..0, "listener", "at least one [[listener]] is required");
        }
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut binds: Vec<(SocketAddr, String, usize)> = Vec::new();
        let mut out = Vec::new();
        for (i, l) in raw.iter().enumerate() {
            let r = l.get_ref();
            let prefix = label("listener", r.name.as_ref(), i);
            let name = self.req_str(
                r.name.as_ref(),
                l.span(),
                &key(&prefix, "name"),
                values::name,
            );
            if let (Some(name), Some(v)) = (&name, &r.name) {
                self.unique(
                    &mut names,
                    name.clone(),
                    v.span(),
                    &key(&prefix, "name"),
                    "listener name",
                );
            }
            let bind = self.req_str(
                r.bind.as_ref(),
                l.span(),
                &key(&prefix, "bind"),
                values::socket_addr,
            );
            if let (Some(bind), Some(v)) = (bind, &r.bind) {
                self.bind_conflicts(&mut binds, bind, v.span(), &prefix);
            }
            let protocol = self.opt_str(
                r.protocol.as_ref(),
                &key(&prefix, "protocol"),
                Protocol::Http,
                values::protocol,
            );
            let pool = self.pool_ref(r.pool.as_ref(), l.span(), &key(&prefix, "pool"), pools);
            let max_connections = self.opt_int(
                r.max_connections.as_ref(),
                &key(&prefix, "max_connections"),
                100_000,
                values::positive,
            );
            let max_request_body = self.opt_int(
                r.max_request_body.as_ref(),
                &key(&prefix, "max_request_body"),
                0,
                values::non_negative,
            );
            let limits = r
                .limits
                .as_ref()
                .map(|t| self.limits(t.get_ref(), &key(&prefix, "limits"), protocol))
                .unwrap_or_default();
            if protocol == Protocol::Tcp {
                self.tcp_listener(r, &prefix, pool, pools);
            }
            let (tls, redirect_https) = self.listener_tls(r, &prefix, protocol);
            let trace = self.opt_str(
                r.trace.as_ref(),
                &key(&prefix, "trace"),
                TraceMode::Pass,
                values::trace,
            );
            if let (Protocol::Tcp, Some(v)) = (protocol, &r.trace) {
                self.error(
                    v.span(),
                    &key(&prefix, "trace"),
                    "only for http listeners (a tcp listener sees no requests)",
                );
            }
            if protocol == Protocol::Tcp && r.tls.is_some() {
                // Terminated here, the ClientHello is rustls's: `sni` routes are passthrough.
                for (j, route) in r.route.iter().enumerate() {
                    if let Some(v) = &route.get_ref().sni {
                        let at = format!("{prefix}: route #{}", j + 1);
                        self.error(v.span(), &key(&at, "sni"), "only for tcp listeners without tls (TLS passthrough); a listener that terminates TLS sends every connection to its pool");
                    }
                }
            }
            let routes = r
                .route
                .iter()
                .enumerate()
                .filter_map(|(j, route)| {
                    let at = format!("{prefix}: route #{}", j + 1);
                    self.route(route, &at, protocol, pools)
                })
                .collect();
            if let (Some(name), Some(bind), Some(pool)) = (name, bind, pool) {
                out.push(ListenerConfig {
                    name,
                    bind,
                    protocol,
                    pool,
                    max_connections,
                    max_request_body,
                    routes,
                    proxy_protocol: r.proxy_protocol.as_ref().is_some_and(|v| *v.get_ref()),
                    limits,
                    tls,
                    redirect_https,
                    trace,
                });
            }
        }
        out
    }

    /// `[listener.limits]`: each value in 0..=`MAX_LIMIT`; `burst` only with a rate; no request
    /// rate on a tcp listener (it has no requests).
    fn limits(&mut self, raw: &RawLimits, prefix: &str, protocol: Protocol) -> LimitsConfig {
        let mut count = |v: Option<&Int>, field: &str| {
            self.opt_int(v, &key(prefix, field), 0, |n| {
                if n > MAX_LIMIT {
                    return Err(format!("must be at most {MAX_LIMIT} (got {n})"));
                }
                values::non_negative(n)
            })
        };
        let limits = LimitsConfig {
            requests_per_second: count(raw.requests_per_second.as_ref(), "requests_per_second"),
            burst: count(raw.burst.as_ref(), "burst"),
            connections_per_client: count(
                raw.connections_per_client.as_ref(),
                "connections_per_client",
            ),
        };
        if let Some(v) = &raw.requests_per_second {
            if protocol == Protocol::Tcp && *v.get_ref() != 0 {
                let msg = "only for protocol = \"http\" (a tcp listener limits connections: connections_per_client)";
                self.error(v.span(), &key(prefix, "requests_per_second"), msg);
            }
        }
        if let Some(v) = &raw.burst {
            let no_rate = raw
                .requests_per_second
                .as_ref()
                .is_none_or(|r| *r.get_ref() == 0);
            if *v.get_ref() > 0 && no_rate {
                self.error(
                    v.span(),
                    &key(prefix, "burst"),
                    "needs requests_per_second > 0 (a burst of a rate that is off)",
                );
            }
        }
        limits
    }

    /// A `protocol = "tcp"` listener: no HTTP-only keys, and a pool whose balancer needs nothing
    /// but the connection (no sticky cookie; `consistent_hash` only by `client_ip`).
    fn tcp_listener(
        &mut self,
        r: &RawListener,
        prefix: &str,
        pool: Option<PoolId>,
        pools: &[PoolConfig],
    ) {
        let only_http = "only for protocol = \"http\"";
        if let Some(v) = &r.max_request_body {
            self.error(v.span(), &key(prefix, "max_request_body"), only_http);
        }
        if let (Some(id), Some(v)) = (pool, &r.pool) {
            self.tcp_pool(id, v.span(), &key(prefix, "pool"), pools);
        }
    }

    /// A pool a tcp listener sends connections to (its own, or an `sni` route's): its
    /// balancer must need nothing but the connection.
    fn tcp_pool(&mut self, id: PoolId, span: Range<usize>, key: &str, pools: &[PoolConfig]) {
        let Some(p) = pools.get(id.index()) else {
            return;
        };
        let name = &p.name;
        let problem = match (&p.balance, &p.hash_key) {
            (BalanceKind::StickyCookie, _) => Some("balance = \"sticky_cookie\" needs HTTP"),
            (BalanceKind::ConsistentHash, k) if *k != HashKey::ClientIp => {
                Some("a tcp listener's consistent_hash pool must use hash_key = \"client_ip\"")
            }
            _ => None,
        };
        if let Some(problem) = problem {
            self.error(span, key, format!("pool {name:?}: {problem}"));
        }
    }

    /// One `[[listener.route]]`: at least one condition, and a pool that exists. An http
    /// listener's routes match on host, path and headers; a tcp listener's only on `sni` (TLS
    /// passthrough: the bytes are not decrypted, so nothing else of the request is known).
    fn route(
        &mut self,
        route: &Spanned<RawRoute>,
        prefix: &str,
        protocol: Protocol,
        pools: &[PoolConfig],
    ) -> Option<RouteConfig> {
        let r = route.get_ref();
        let http_condition = r.host.is_some() || r.path_prefix.is_some() || r.header.is_some();
        match protocol {
            Protocol::Http => {
                if let Some(v) = &r.sni {
                    let msg = "only for protocol = \"tcp\" listeners without tls (TLS passthrough); an http listener routes by host";
                    self.error(v.span(), &key(prefix, "sni"), msg);
                } else if !http_condition {
                    self.error(route.span(), prefix, "needs at least one of host, path_prefix, header (it would match every request; use the listener's pool instead)");
                }
            }
            Protocol::Tcp => {
                if r.sni.is_none() {
                    self.error(route.span(), prefix, "a tcp listener's route needs sni (the ClientHello's server name; host, path_prefix and header need protocol = \"http\")");
                }
                let only_http = "only for protocol = \"http\" (a tcp listener's routes match sni)";
                let keys = [
                    ("host", r.host.as_ref().map(|v| v.span())),
                    ("path_prefix", r.path_prefix.as_ref().map(|v| v.span())),
                    ("header", r.header.as_ref().map(|v| v.span())),
                ];
                for (name, span) in keys {
                    if let Some(span) = span {
                        self.error(span, &key(prefix, name), only_http);
                    }
                }
            }
        }
        let sni = self.maybe_str(r.sni.as_ref(), &key(prefix, "sni"), values::host);
        let host = self.maybe_str(r.host.as_ref(), &key(prefix, "host"), values::host);
        let path_prefix = self.maybe_str(
            r.path_prefix.as_ref(),
            &key(prefix, "path_prefix"),
            values::path_prefix,
        );
        let header = match &r.header {
            None => Ok(None),
            Some(h) => {
                let hk = key(prefix, "header");
                let name = self.req_str(
                    h.get_ref().name.as_ref(),
                    h.span(),
                    &key(&hk, "name"),
                    values::header_name,
                );
                let value = self.req_str(
                    h.get_ref().value.as_ref(),
                    h.span(),
                    &key(&hk, "value"),
                    values::header_value,
                );
                match (name, value) {
                    (Some(name), Some(value)) => Ok(Some(HeaderMatch { name, value })),
                    _ => Err(()),
                }
            }
        };
        let pool = self.pool_ref(r.pool.as_ref(), route.span(), &key(prefix, "pool"), pools);
        if let (Protocol::Tcp, Some(id), Some(v)) = (protocol, pool, &r.pool) {
            self.tcp_pool(id, v.span(), &key(prefix, "pool"), pools);
        }
        Some(RouteConfig {
            sni: sni.ok()?,
            host: host.ok()?,
            path_prefix: path_prefix.ok()?,
            header: header.ok()?,
            pool: pool?,
        })
    }

    /// A required `pool = "..."` that must name a defined pool: its id.
    fn pool_ref(
        &mut self,
        v: Option<&Str>,
        table: Range<usize>,
        key: &str,
        pools: &[PoolConfig],
    ) -> Option<PoolId> {
        let name = self.req_str(v, table, key, values::name)?;
        if let Some(i) = pools.iter().position(|p| p.name == name) {
            return Some(PoolId::new(i));
        }
        if let Some(v) = v {
            self.error(v.span(), key, format!("no [[pool]] named {name:?}"));
        }
        None
    }

    /// Two listeners cannot bind the same address and port; an unspecified address
    /// (`0.0.0.0`, `[::]`) overlaps every address on its port. Port 0 (pick any) never conflicts.
    fn bind_conflicts(
        &mut self,
        binds: &mut Vec<(SocketAddr, String, usize)>,
        bind: SocketAddr,
        span: Range<usize>,
        prefix: &str,
    ) {
        let line = self.line_col(span.start).0;
        let clash = binds.iter().find(|(b, _, _)| {
            bind.port() != 0
                && b.port() == bind.port()
                && (b.ip() == bind.ip() || b.ip().is_unspecified() || bind.ip().is_unspecified())
        });
        if let Some((other, who, first)) = clash {
            let msg = format!("{bind} conflicts with {other} of {who} (line {first})");
            self.error(span, &key(prefix, "bind"), msg);
        }
        binds.push((bind, prefix.to_string(), line));
    }
}
