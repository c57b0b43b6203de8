//! Host / path / header rules (http listeners) and server-name rules (`sni`, tcp listeners)
//! to a pool, compiled once per snapshot; first match wins.
//!
//! Routing runs on every request, so everything that can be decided from the config alone is
//! decided in [`RouteTable::new`]: host patterns are lower-cased and split into exact and
//! wildcard (stored as the `.example.com` suffix), header names are parsed into `HeaderName`s
//! (no re-parsing per request). [`RouteTable::pick`] then only compares bytes: no allocation, no
//! lower-casing into a new string (`eq_ignore_ascii_case` on the request's host instead).
//!
//! Matching follows nginx where the config is silent: a wildcard `*.example.com` matches any
//! depth of subdomain (`a.b.example.com`) but not `example.com` itself; the request host's port
//! and a trailing dot are ignored; a header condition holds when any of the request's values of
//! that header (several field lines, or a comma-separated list) equals the configured value.
//! An `sni` pattern matches the ClientHello's server name by the same rules as a host.

use http::header::{HeaderMap, HeaderName};

use crate::config::{PoolId, RouteConfig};

/// The compiled routes of one listener.
#[derive(Debug)]
pub struct RouteTable {
    routes: Box<[Route]>,
    /// The `sni` routes, in order (validation keeps them apart from the HTTP routes: a
    /// listener has only the kind its protocol can match).
    sni: Box<[(HostMatch, PoolId)]>,
    default_pool: PoolId,
}

/// One compiled `[[listener.route]]`: every condition that is set must match.
#[derive(Debug)]
struct Route {
    host: Option<HostMatch>,
    path_prefix: Option<Box<str>>,
    header: Option<HeaderRule>,
    pool: PoolId,
}

#[derive(Debug)]
enum HostMatch {
    /// Lower-cased host.
    Exact(Box<str>),
    /// Lower-cased suffix including the leading dot: `*.example.com` -> `.example.com`.
    Suffix(Box<str>),
}

#[derive(Debug)]
struct HeaderRule {
    /// `None` when the configured name is not a valid header name: no request can carry it, so
    /// the route never matches (validation should have rejected it; this is not the place to
    /// panic).
    name: Option<HeaderName>,
    value: Box<[u8]>,
}

impl RouteTable {
    /// Compiles `routes` (their pools resolved by validation) over the listener's own pool.
    pub fn new(routes: &[RouteConfig], default_pool: PoolId) -> Self {
        let sni = routes
            .iter()
            .filter_map(|r| Some((HostMatch::compile(r.sni.as_deref()?), r.pool)))
            .collect();
        let routes = routes
            .iter()
            .filter(|r| r.sni.is_none())
            .map(|r| Route {
                host: r.host.as_deref().map(HostMatch::compile),
                path_prefix: r.path_prefix.as_deref().map(Box::from),
                header: r.header.as_ref().map(|h| HeaderRule {
                    name: HeaderName::from_bytes(h.name.as_bytes()).ok(),
                    value: h.value.as_bytes().into(),
                }),
                pool: r.pool,
            })
            .collect();
        RouteTable {
            routes,
            sni,
            default_pool,
        }
    }

    /// The listener's own pool (what a tcp listener without `sni` routes always uses).
    #[inline]
    pub fn default_pool(&self) -> PoolId {
        self.default_pool
    }

    /// Whether connections must be routed by their ClientHello's server name.
    #[inline]
    pub fn has_sni(&self) -> bool {
        !self.sni.is_empty()
    }

    /// The pool for a TLS connection whose ClientHello names `server_name` (`None`: no name,
    /// or not a ClientHello at all): the first matching `sni` route's, else the default.
    pub fn pick_sni(&self, server_name: Option<&str>) -> PoolId {
        let Some(name) = server_name else {
            return self.default_pool;
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        self.sni
            .iter()
            .find(|(pattern, _)| pattern.matches(name))
            .map_or(self.default_pool, |(_, pool)| *pool)
    }

    /// The pool for a request. `host` is the request's host (from `Host` or the URI
    /// authority), possibly with a port and in any case.
    pub fn pick(&self, host: Option<&str>, path: &str, headers: &HeaderMap) -> PoolId {
        let host = host.map(strip_host);
        self.routes
            .iter()
            .find(|r| r.matches(host, path, headers))
            .map_or(self.default_pool, |r| r.pool)
    }
}

impl Route {
    /// Cheapest condition first: path (one prefix compare), host, then the header lookup.
    #[inline]
    fn matches(&self, host: Option<&str>, path: &str, headers: &HeaderMap) -> bool {
        if let Some(prefix) = &self.path_prefix {
            if !path.starts_with(&**prefix) {
                return false;
            }
        }
        if let Some(pattern) = &self.host {
            match host {
                Some(host) if pattern.matches(host) => {}
                _ => return false,
            }
        }
        match &self.header {
            Some(rule) => rule.matches(headers),
            None => true,
        }
    }
}

impl HostMatch {
    fn compile(pattern: &str) -> Self {
        let pattern = strip_host(pattern).to_ascii_lowercase();
        match pattern.strip_prefix('*') {
            Some(suffix) if suffix.starts_with('.') => HostMatch::Suffix(suffix.into()),
            _ => HostMatch::Exact(pattern.into()),
        }
    }

    /// `host` is already without port; its case is ignored.
    #[inline]
    fn matches(&self, host: &str) -> bool {
        let host = host.as_bytes();
        match self {
            HostMatch::Exact(exact) => host.eq_ignore_ascii_case(exact.as_bytes()),
            HostMatch::Suffix(suffix) => {
                let suffix = suffix.as_bytes();
                // Strictly longer: `example.com` and `.example.com` are not subdomains.
                host.len() > suffix.len()
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

impl HeaderRule {
    #[inline]
    fn matches(&self, headers: &HeaderMap) -> bool {
        let Some(name) = &self.name else {
            return false;
        };
        headers.get_all(name).iter().any(|v| {
            let v = v.as_bytes();
            v == &*self.value
                || (v.contains(&b',')
                    && v.split(|&c| c == b',')
                        .any(|item| item.trim_ascii() == &*self.value))
        })
    }
}

/// The host without port and trailing dot: `Example.COM.:8080` -> `Example.COM`,
/// `[::1]:8080` -> `[::1]`. Borrowed, no allocation.
#[inline]
fn strip_host(host: &str) -> &str {
    let host = if host.starts_with('[') {
        // IPv6 literal: the port, if any, follows the closing bracket.
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    host.strip_suffix('.').unwrap_or(host)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::HeaderMatch;
    use http::HeaderValue;

    fn route(
        host: Option<&str>,
        path: Option<&str>,
        header: Option<(&str, &str)>,
        pool: &str,
    ) -> RouteConfig {
        // Pools are named "p<index>".
        let pool = PoolId::new(pool[1..].parse().unwrap());
        RouteConfig {
            sni: None,
            host: host.map(String::from),
            path_prefix: path.map(String::from),
            header: header.map(|(name, value)| HeaderMatch {
                name: name.into(),
                value: value.into(),
            }),
            pool,
        }
    }

    /// Pools are named "p<index>"; the default is 0.
    fn table(routes: &[RouteConfig]) -> RouteTable {
        RouteTable::new(routes, PoolId::new(0))
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn exact_host_any_case_with_port() {
        let t = table(&[route(Some("static.example.com"), None, None, "p1")]);
        let none = HeaderMap::new();
        for host in [
            "static.example.com",
            "STATIC.Example.com",
            "static.example.com:8080",
            "static.example.com.",
        ] {
            assert_eq!(t.pick(Some(host), "/", &none).index(), 1, "{host}");
        }
        for host in [
            "example.com",
            "a.static.example.com",
            "static.example.co",
            "static.example.com.evil",
        ] {
            assert_eq!(t.pick(Some(host), "/", &none).index(), 0, "{host}");
        }
        assert_eq!(t.pick(None, "/", &none).index(), 0);
    }

    #[test]
    fn wildcard_host() {
        let t = table(&[route(Some("*.example.com"), None, None, "p1")]);
        let none = HeaderMap::new();
        for host in ["a.example.com", "a.b.example.com", "A.EXAMPLE.COM:443"] {
            assert_eq!(t.pick(Some(host), "/", &none).index(), 1, "{host}");
        }
        for host in [
            "example.com",
            ".example.com",
            "badexample.com",
            "example.com.org",
            "a.example.org",
        ] {
            assert_eq!(t.pick(Some(host), "/", &none).index(), 0, "{host}");
        }
    }

    #[test]
    fn ipv6_host_literal() {
        let t = table(&[route(Some("[::1]"), None, None, "p1")]);
        let none = HeaderMap::new();
        assert_eq!(t.pick(Some("[::1]:8080"), "/", &none).index(), 1);
        assert_eq!(t.pick(Some("[::1]"), "/", &none).index(), 1);
        assert_eq!(t.pick(Some("[::2]"), "/", &none).index(), 0);
    }

    #[test]
    fn path_prefix_is_a_byte_prefix() {
        let t = table(&[route(None, Some("/assets/"), None, "p1")]);
        let none = HeaderMap::new();
        assert_eq!(t.pick(None, "/assets/app.js", &none).index(), 1);
        assert_eq!(t.pick(Some("any.host"), "/assets/", &none).index(), 1);
        assert_eq!(t.pick(None, "/assets", &none).index(), 0);
        assert_eq!(t.pick(None, "/Assets/app.js", &none).index(), 0);
        assert_eq!(t.pick(None, "/", &none).index(), 0);
    }

    #[test]
    fn header_exact_value_any_of_several() {
        let t = table(&[route(None, None, Some(("x-canary", "1")), "p1")]);
        assert_eq!(t.pick(None, "/", &headers(&[("x-canary", "1")])).index(), 1);
        assert_eq!(t.pick(None, "/", &headers(&[("X-Canary", "1")])).index(), 1);
        assert_eq!(
            t.pick(None, "/", &headers(&[("x-canary", "0"), ("x-canary", "1")]))
                .index(),
            1
        );
        assert_eq!(
            t.pick(None, "/", &headers(&[("x-canary", "0, 1")])).index(),
            1
        );
        assert_eq!(
            t.pick(None, "/", &headers(&[("x-canary", "11")])).index(),
            0
        );
        assert_eq!(t.pick(None, "/", &headers(&[("x-canary", "0")])).index(), 0);
        assert_eq!(t.pick(None, "/", &headers(&[("x-other", "1")])).index(), 0);
        assert_eq!(t.pick(None, "/", &HeaderMap::new()).index(), 0);
    }

    #[test]
    fn all_conditions_must_match() {
        let t = table(&[route(
            Some("api.example.com"),
            Some("/v2/"),
            Some(("x-canary", "1")),
            "p1",
        )]);
        let canary = headers(&[("x-canary", "1")]);
        assert_eq!(
            t.pick(Some("api.example.com"), "/v2/users", &canary)
                .index(),
            1
        );
        assert_eq!(
            t.pick(Some("api.example.com"), "/v1/users", &canary)
                .index(),
            0
        );
        assert_eq!(
            t.pick(Some("www.example.com"), "/v2/users", &canary)
                .index(),
            0
        );
        assert_eq!(
            t.pick(Some("api.example.com"), "/v2/users", &HeaderMap::new())
                .index(),
            0
        );
    }

    #[test]
    fn first_match_wins_else_default() {
        let t = table(&[
            route(Some("static.example.com"), None, None, "p1"),
            route(Some("*.example.com"), None, None, "p2"),
            route(None, Some("/"), None, "p3"),
        ]);
        let none = HeaderMap::new();
        assert_eq!(t.pick(Some("static.example.com"), "/", &none).index(), 1);
        assert_eq!(t.pick(Some("img.example.com"), "/", &none).index(), 2);
        assert_eq!(t.pick(Some("other.org"), "/", &none).index(), 3);
        assert_eq!(t.pick(Some("other.org"), "", &none).index(), 0);
        assert_eq!(
            table(&[]).pick(Some("a.example.com"), "/", &none).index(),
            0
        );
    }

    fn sni(name: &str, pool: &str) -> RouteConfig {
        RouteConfig {
            sni: Some(name.into()),
            ..route(None, None, None, pool)
        }
    }

    #[test]
    fn sni_exact_and_wildcard_first_match_else_default() {
        let t = table(&[sni("db.example.com", "p1"), sni("*.example.com", "p2")]);
        assert!(t.has_sni());
        assert!(!table(&[route(Some("a.b"), None, None, "p1")]).has_sni());
        for (name, pool) in [
            (Some("db.example.com"), 1),
            (Some("DB.Example.COM"), 1),
            (Some("db.example.com."), 1),
            (Some("x.example.com"), 2),
            (Some("a.b.example.com"), 2),
            (Some("example.com"), 0),
            (Some("other.org"), 0),
            (None, 0),
        ] {
            assert_eq!(t.pick_sni(name).index(), pool, "{name:?}");
        }
        // sni routes never take part in HTTP routing.
        assert_eq!(
            t.pick(Some("db.example.com"), "/", &HeaderMap::new())
                .index(),
            0
        );
    }

    #[test]
    fn invalid_header_name_never_matches() {
        let t = table(&[route(None, None, Some(("bad name", "1")), "p1")]);
        assert_eq!(t.pick(None, "/", &headers(&[("x-canary", "1")])).index(), 0);
    }
}
