//! The request-target and the host a request is for (RFC 9112 section 3.2, RFC 9113 8.3.1).
//!
//! A request names its host in two places, and a proxy that reads one while the backend reads
//! the other is a route bypass (`GET http://public.example/x` with `Host: internal.example`
//! was routed to the internal pool). The request-target's authority wins when there is one:
//! absolute-form in HTTP/1 (RFC 9112 3.2.2: the recipient ignores `Host`), `:authority` in
//! HTTP/2. [`normalize_host`] makes `Host` that one value before anything reads it, so routing,
//! hashing, `X-Forwarded-Host` and the backend's `Host` agree.
//!
//! A target of none of the forms a reverse proxy serves is refused: origin-form (`/path`),
//! absolute-form (`http://` or `https://` with an authority and no userinfo) and asterisk-form
//! (`*`, OPTIONS only). Authority-form is CONNECT's, which `headers::check_request` refuses.
//! hyper parses `GET echo` as an authority-only target; it was forwarded as `GET /`.

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::uri::Scheme;
use http::Method;

use super::error::ProxyError;

/// Refuses a request-target that is not origin-form, absolute-form (http or https, no
/// userinfo) or `*` for OPTIONS.
pub fn check_target(parts: &Parts) -> Result<(), ProxyError> {
    let uri = &parts.uri;
    let form = match (uri.scheme(), uri.authority()) {
        (None, None) => true,
        (Some(scheme), Some(authority)) => {
            if authority.as_str().contains('@') {
                return Err(ProxyError::BadRequest("userinfo in the request-target"));
            }
            *scheme == Scheme::HTTP || *scheme == Scheme::HTTPS
        }
        _ => false,
    };
    // An absolute-form target without a path has the path "/".
    let path = uri.path();
    if form && (path.starts_with('/') || (path == "*" && parts.method == Method::OPTIONS)) {
        Ok(())
    } else {
        Err(ProxyError::BadRequest("invalid request-target"))
    }
}

/// Makes `Host` the target's authority when it has one (absolute-form, `:authority`); a
/// request without one keeps its `Host`. Run after [`check_target`].
pub fn normalize_host(parts: &mut Parts) {
    let Some(authority) = parts.uri.authority() else {
        return;
    };
    let authority = authority.as_str();
    if parts
        .headers
        .get(header::HOST)
        .is_some_and(|h| h.as_bytes() == authority.as_bytes())
    {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(authority) {
        parts.headers.insert(header::HOST, value);
    }
}

/// The request's host: `Host` (the target's authority once [`normalize_host`] ran), else the
/// authority.
pub fn request_host(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
}

/// Where a `redirect_https` listener sends the request: `https://HOST/path?query`, HOST being
/// the request's own host (its port dropped: HTTPS is on its default port) and nothing else,
/// so the redirect never leaves the authority the client asked for. A host that is not a
/// plain DNS name or IP literal is refused.
pub fn https_location(parts: &Parts) -> Result<HeaderValue, ProxyError> {
    const BAD: &str = "invalid Host for the https redirect";
    let authority: http::uri::Authority = request_host(parts)
        .and_then(|h| h.parse().ok())
        .ok_or(ProxyError::BadRequest(BAD))?;
    if authority.as_str().contains('@') {
        return Err(ProxyError::BadRequest(BAD));
    }
    let host = authority.host();
    let plain = |h: &str| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    };
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok());
    if !(plain(host) || literal) {
        return Err(ProxyError::BadRequest(BAD));
    }
    let path = match parts.uri.path_and_query().map(|pq| pq.as_str()) {
        Some(pq) if pq.starts_with('/') => pq,
        _ => "/",
    };
    HeaderValue::from_str(&format!("https://{host}{path}")).map_err(|_| ProxyError::BadRequest(BAD))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::{Request, Uri, Version};

    fn parts(method: Method, uri: Uri) -> Parts {
        let mut p = Request::new(()).into_parts().0;
        p.method = method;
        p.uri = uri;
        p
    }

    fn target(method: Method, target: &str) -> Result<(), ProxyError> {
        check_target(&parts(method, target.parse().unwrap()))
    }

    #[test]
    fn the_four_forms() {
        assert!(target(Method::GET, "/a?b").is_ok());
        assert!(target(Method::GET, "http://h.example/a").is_ok());
        assert!(target(Method::GET, "https://h.example:8443").is_ok());
        assert!(target(Method::OPTIONS, "*").is_ok());
        assert!(target(Method::OPTIONS, "/").is_ok());
        for bad in ["echo", "h.example:80", "*", "ftp://h/x", "http://u:p@h/x"] {
            assert!(target(Method::GET, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_h2_asterisk_is_for_options_only() {
        // h2 builds the URI from :scheme, :authority and :path as they came (a :path that is
        // not a path at all is its own stream error).
        let h2 = |method: Method| {
            let mut uri = http::uri::Parts::default();
            uri.scheme = Some(Scheme::HTTP);
            uri.authority = Some("h.example".parse().unwrap());
            uri.path_and_query = Some(http::uri::PathAndQuery::from_static("*"));
            check_target(&parts(method, Uri::from_parts(uri).unwrap()))
        };
        assert!(h2(Method::GET).is_err());
        assert!(h2(Method::OPTIONS).is_ok());
    }

    #[test]
    fn the_authority_replaces_host() {
        let mut p = parts(Method::GET, "http://public.example/x".parse().unwrap());
        p.headers
            .insert(header::HOST, HeaderValue::from_static("internal.example"));
        normalize_host(&mut p);
        assert_eq!(p.headers[header::HOST], "public.example");
        assert_eq!(request_host(&p), Some("public.example"));

        let mut p = parts(Method::GET, "http://h2.example:8080/".parse().unwrap());
        p.version = Version::HTTP_2;
        normalize_host(&mut p);
        assert_eq!(p.headers[header::HOST], "h2.example:8080");

        let mut p = parts(Method::GET, "/x".parse().unwrap());
        p.headers
            .insert(header::HOST, HeaderValue::from_static("kept.example"));
        normalize_host(&mut p);
        assert_eq!(p.headers[header::HOST], "kept.example");
    }

    #[test]
    fn the_https_redirect_keeps_the_requests_own_host_only() {
        let at = |target: &str, host: &str| {
            let mut p = parts(Method::GET, target.parse().unwrap());
            p.headers
                .insert(header::HOST, HeaderValue::from_str(host).unwrap());
            normalize_host(&mut p);
            https_location(&p).map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(
            at("/a?b=1", "example.test:8080").unwrap(),
            "https://example.test/a?b=1"
        );
        assert_eq!(at("/", "[::1]:80").unwrap(), "https://[::1]/");
        assert_eq!(
            at("//evil.test/x", "example.test").unwrap(),
            "https://example.test//evil.test/x"
        );
        assert_eq!(
            at("http://other.test/p", "example.test").unwrap(),
            "https://other.test/p"
        );
        assert!(at("/", "a@evil.test").is_err());
        assert!(at("/", "exa mple").is_err());
        assert!(at("/", "").is_err());
    }
}
