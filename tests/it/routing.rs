//! Route matching: exact host, wildcard host, path prefix, header; first match wins.

use bytes::Bytes;
use fulcrum::config::{HeaderMatch, PoolId, RouteConfig};
use http::Request;
use http_body_util::Full;

use crate::support::backend::BackendBuilder;
use crate::support::client::{http1, send};
use crate::support::proxy::{config, listener, pool, Proxy};

fn route(
    host: Option<&str>,
    path: Option<&str>,
    header: Option<(&str, &str)>,
    to: &str,
) -> RouteConfig {
    let pool = NAMES
        .iter()
        .position(|n| *n == to)
        .map(PoolId::new)
        .unwrap();
    RouteConfig {
        sni: None,
        host: host.map(str::to_string),
        path_prefix: path.map(str::to_string),
        header: header.map(|(name, value)| HeaderMatch {
            name: name.to_string(),
            value: value.to_string(),
        }),
        pool,
    }
}

/// The pools, in config order (the first is the listener's default).
const NAMES: [&str; 5] = ["default", "exact", "wild", "static", "canary"];

/// (host, path, header, expected pool)
type Case = (
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_land_on_the_first_matching_route() {
    let mut backends = Vec::new();
    for n in NAMES {
        backends.push(BackendBuilder::new(n).start().await);
    }
    let pools = backends.iter().map(|b| pool(&b.name, &[b.addr])).collect();
    let mut l = listener();
    l.routes = vec![
        route(Some("api.example.com"), None, None, "exact"),
        route(Some("*.example.com"), None, None, "wild"),
        route(None, Some("/static/"), None, "static"),
        route(None, None, Some(("x-canary", "1")), "canary"),
    ];
    let proxy = Proxy::start(config(l, pools));

    let cases: &[Case] = &[
        // (host, path, header, expected pool)
        ("api.example.com", "/", None, "exact"),
        // First match wins: the path would match "static", the header "canary".
        (
            "api.example.com",
            "/static/x.css",
            Some(("x-canary", "1")),
            "exact",
        ),
        // Host compared without port and case-insensitively.
        ("API.Example.COM:8080", "/", None, "exact"),
        ("www.example.com", "/", None, "wild"),
        (
            "www.example.com",
            "/static/a.js",
            Some(("x-canary", "1")),
            "wild",
        ),
        ("other.test", "/static/a.js", None, "static"),
        (
            "other.test",
            "/static/a.js",
            Some(("x-canary", "1")),
            "static",
        ),
        ("other.test", "/staticfile", None, "default"),
        ("other.test", "/", Some(("x-canary", "1")), "canary"),
        ("other.test", "/", Some(("x-canary", "2")), "default"),
        ("other.test", "/", None, "default"),
        ("example.org", "/api", None, "default"),
    ];
    let client = http1();
    for (host, path, header, expected) in cases {
        let mut req = Request::get(format!("http://{}{path}", proxy.addr)).header("host", *host);
        if let Some((name, value)) = header {
            req = req.header(*name, *value);
        }
        let r = send(&client, req.body(Full::<Bytes>::default()).unwrap()).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.backend(),
            *expected,
            "host={host} path={path} header={header:?}"
        );
    }
    // Each backend saw exactly the requests routed to it.
    for b in &backends {
        let expected = cases.iter().filter(|c| c.3 == b.name).count();
        assert_eq!(b.count(), expected, "backend {}", b.name);
    }
}
