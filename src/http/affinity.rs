//! What a request says about its backend, for `consistent_hash` and `sticky_cookie` pools.
//!
//! Kept apart from `proxy.rs` so the request loop stays one readable screen and the other
//! balancers pay nothing: for them [`extract`] is one match on the balancer and returns
//! `Affinity::None` without touching the request.
//!
//! - `consistent_hash`: the configured key is hashed with xxh3 (`balance::key_hash`): the TCP
//!   peer's IP (IPv4-mapped IPv6 taken as IPv4), a header's value (the first, when repeated), a
//!   cookie's value, or the path without the query. A missing header or cookie gives no key, and
//!   the pool's round robin picks (documented in the README).
//! - `sticky_cookie`: the cookie is looked up (it names a backend) and removed from the request,
//!   so the backend never sees it: the `Cookie` header is rebuilt from the other cookies, or
//!   dropped when none is left. After the pick, [`set_cookie`] adds the precomputed `Set-Cookie`
//!   when the client was not already on that backend (no cookie, unknown id, or its backend was
//!   unavailable and another was picked).

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;

use crate::balance::{ip_hash, key_hash, Affinity, Balancer, Sticky};
use crate::config::HashKey;

/// The request's affinity for `balancer`; strips the sticky cookie from `parts`.
#[inline]
pub fn extract(balancer: &Balancer, parts: &mut Parts, peer: IpAddr) -> Affinity {
    match balancer {
        Balancer::ConsistentHash(ch) => {
            hash_of(ch.key(), parts, peer).map_or(Affinity::None, Affinity::Hash)
        }
        Balancer::Sticky(sticky) => {
            take_sticky(&mut parts.headers, sticky).map_or(Affinity::None, Affinity::Backend)
        }
        _ => Affinity::None,
    }
}

/// Adds `Set-Cookie` for backend `index` to a sticky pool's response, unless the request's
/// cookie already named it. `secure`: the listener is TLS.
pub fn set_cookie(
    balancer: &Balancer,
    affinity: Affinity,
    index: usize,
    secure: bool,
    headers: &mut HeaderMap,
) {
    if let Some(value) = cookie_to_set(balancer, affinity, index, secure) {
        headers.append(header::SET_COOKIE, value.clone());
    }
}

/// The `Set-Cookie` value [`set_cookie`] adds, for heads written line by line.
pub fn cookie_to_set(
    balancer: &Balancer,
    affinity: Affinity,
    index: usize,
    secure: bool,
) -> Option<&HeaderValue> {
    match balancer {
        Balancer::Sticky(sticky) if affinity != Affinity::Backend(index) => {
            sticky.set_cookie(index, secure)
        }
        _ => None,
    }
}

/// The key's hash, or `None` when the request does not carry the key.
fn hash_of(key: &HashKey, parts: &Parts, peer: IpAddr) -> Option<u64> {
    Some(match key {
        HashKey::ClientIp => ip_hash(peer),
        HashKey::Header(name) => key_hash(parts.headers.get(name)?.as_bytes()),
        HashKey::Cookie(name) => key_hash(find_cookie(&parts.headers, name.as_bytes())?),
        HashKey::Path => key_hash(parts.uri.path().as_bytes()),
    })
}

/// `name=value` pairs of one `Cookie` header value, trimmed; quotes around a value removed.
fn pairs(value: &HeaderValue) -> impl Iterator<Item = (&[u8], &[u8])> {
    value
        .as_bytes()
        .split(|&b| b == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|&b| b == b'=') {
            Some(eq) => (p[..eq].trim_ascii(), unquote(p[eq + 1..].trim_ascii())),
            None => (p, &b""[..]),
        })
}

fn unquote(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

/// The value of cookie `name`, from any `Cookie` header (HTTP/2 may send several).
fn find_cookie<'h>(headers: &'h HeaderMap, name: &[u8]) -> Option<&'h [u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(pairs)
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// The backend named by the sticky cookie, if any; the cookie is removed from the request.
fn take_sticky(headers: &mut HeaderMap, sticky: &Sticky) -> Option<usize> {
    let name = sticky.cookie_name().as_bytes();
    let mut present = false;
    let mut wanted = None;
    for (n, v) in headers.get_all(header::COOKIE).iter().flat_map(pairs) {
        if n == name {
            present = true;
            wanted = wanted.or_else(|| std::str::from_utf8(v).ok().and_then(|v| sticky.lookup(v)));
        }
    }
    if !present {
        return None;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| {
            let others: Vec<&[u8]> = value
                .as_bytes()
                .split(|&b| b == b';')
                .map(<[u8]>::trim_ascii)
                .filter(|p| !p.is_empty() && cookie_name(p) != name)
                .collect();
            // Made of pieces of a valid header value joined by "; ": valid again.
            (!others.is_empty())
                .then(|| HeaderValue::from_bytes(&others.join(&b"; "[..])).ok())
                .flatten()
        })
        .collect();
    headers.remove(header::COOKIE);
    for value in kept {
        headers.append(header::COOKIE, value);
    }
    wanted
}

/// The name part of one `name=value` piece.
fn cookie_name(piece: &[u8]) -> &[u8] {
    piece
        .iter()
        .position(|&b| b == b'=')
        .map_or(piece, |eq| piece[..eq].trim_ascii())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::balance::test_support::backends;
    use http::Request;

    fn parts(cookies: &[&str]) -> Parts {
        let mut req = Request::get("/a/b?q=1");
        for c in cookies {
            req = req.header(header::COOKIE, *c);
        }
        req.body(()).unwrap().into_parts().0
    }

    fn cookies(p: &Parts) -> Vec<&str> {
        p.headers
            .get_all(header::COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn sticky_cookie_is_found_and_removed_others_kept() {
        let b = backends(&[1, 1, 1]);
        let s = Sticky::new("web", "SID", &b);
        let id = &s.set_cookie(2, false).unwrap().to_str().unwrap()[4..20];
        let mut p = parts(&[&format!("a=1; SID={id}; b=\"2\""), "c=3"]);
        assert_eq!(take_sticky(&mut p.headers, &s), Some(2));
        assert_eq!(cookies(&p), ["a=1; b=\"2\"", "c=3"]);
        // Alone: the header goes.
        let mut p = parts(&[&format!("SID={id}")]);
        assert_eq!(take_sticky(&mut p.headers, &s), Some(2));
        assert!(cookies(&p).is_empty());
        // Unknown id: removed too, no backend.
        let mut p = parts(&["SID=0000000000000000; x=1"]);
        assert_eq!(take_sticky(&mut p.headers, &s), None);
        assert_eq!(cookies(&p), ["x=1"]);
        // Absent: untouched.
        let mut p = parts(&["SIDX=1; x=1"]);
        assert_eq!(take_sticky(&mut p.headers, &s), None);
        assert_eq!(cookies(&p), ["SIDX=1; x=1"]);
    }

    #[test]
    fn hash_keys() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let mut p = parts(&["session=\"abc\"; other=x"]);
        p.headers
            .insert("x-user-id", HeaderValue::from_static("42"));
        let h = |key: HashKey| hash_of(&key, &p, ip);
        assert_eq!(h(HashKey::ClientIp), Some(key_hash(&[10, 1, 2, 3])));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(
            hash_of(&HashKey::ClientIp, &p, mapped),
            h(HashKey::ClientIp)
        );
        assert_eq!(h(HashKey::Path), Some(key_hash(b"/a/b")));
        let user = HashKey::Header(http::HeaderName::from_static("x-user-id"));
        assert_eq!(h(user), Some(key_hash(b"42")));
        let missing = HashKey::Header(http::HeaderName::from_static("x-tenant"));
        assert_eq!(h(missing), None);
        assert_eq!(h(HashKey::Cookie("session".into())), Some(key_hash(b"abc")));
        assert_eq!(h(HashKey::Cookie("nope".into())), None);
    }
}
