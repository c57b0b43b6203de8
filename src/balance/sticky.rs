//! Sticky sessions by cookie: a client that has been sent to a backend keeps going there.
//!
//! The cookie's value is a backend id: 16 hex digits of xxh3 over `pool name \0 address`, so it
//! is stable across restarts and instances (any Fulcrum with the same config honours it) and the
//! address itself never reaches the client. It is not a secret: someone who can guess the
//! address space could match ids to addresses, which is no worse than the `Server` headers most
//! backends send; hiding addresses from a determined attacker would need a keyed hash with a
//! configured secret.
//!
//! Everything is precomputed per snapshot: the id -> backend map (a sorted array searched by
//! binary search, no hashing of the id) and each backend's complete `Set-Cookie` value, with and
//! without `Secure`. A pick allocates nothing. A request without the cookie, with an unknown id
//! (a backend removed by a reload, a forged value) or whose backend is not eligible (down,
//! draining, or just failed in this request) goes to the pool's smooth round robin, kept inside
//! this balancer; the proxy then sends the new backend's cookie, replacing the old one.

use http::HeaderValue;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::RoundRobin;
use crate::backend::Backend;

/// Seed of the id hash (fixed: changing it unsticks every client).
const SEED_ID: u64 = 0x7374_6963_6b79_0001;

/// Sticky-cookie balancer.
#[derive(Debug)]
pub struct Sticky {
    /// The cookie's name, as configured.
    name: Box<str>,
    /// `(id, backend index)`, sorted by id.
    ids: Box<[(u64, u32)]>,
    /// Per backend: `Set-Cookie` for plain HTTP listeners and for TLS ones (`Secure`).
    set_cookie: Box<[[HeaderValue; 2]]>,
    round_robin: RoundRobin,
}

impl Sticky {
    /// Precomputes ids and `Set-Cookie` values; `cookie` was validated as a cookie name.
    pub fn new(pool: &str, cookie: &str, backends: &[Backend]) -> Self {
        let mut ids: Vec<(u64, u32)> = backends
            .iter()
            .enumerate()
            .map(|(i, b)| (backend_id(pool, b), i as u32))
            .collect();
        ids.sort_unstable();
        let set_cookie = backends
            .iter()
            .map(|b| {
                let base = format!(
                    "{cookie}={:016x}; Path=/; HttpOnly; SameSite=Lax",
                    backend_id(pool, b)
                );
                let value = |s: String| {
                    HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static("invalid"))
                };
                [value(base.clone()), value(format!("{base}; Secure"))]
            })
            .collect();
        Sticky {
            name: cookie.into(),
            ids: ids.into_boxed_slice(),
            set_cookie,
            round_robin: RoundRobin::new(backends),
        }
    }

    /// The cookie's name.
    pub fn cookie_name(&self) -> &str {
        &self.name
    }

    /// The backend a cookie value names, if it names one of this pool's backends.
    pub fn lookup(&self, value: &str) -> Option<usize> {
        if value.len() != 16 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let id = u64::from_str_radix(value, 16).ok()?;
        self.ids
            .binary_search_by_key(&id, |&(id, _)| id)
            .ok()
            .map(|at| self.ids[at].1 as usize)
    }

    /// The wanted backend while it is eligible, else the next in round robin.
    #[inline]
    pub fn pick(
        &self,
        backends: &[Backend],
        wanted: Option<usize>,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        match wanted {
            Some(i) if i < backends.len() && eligible(i) => Some(i),
            _ => self.round_robin.pick(backends, eligible),
        }
    }

    /// The `Set-Cookie` value that sends a client back to backend `index`.
    pub fn set_cookie(&self, index: usize, secure: bool) -> Option<&HeaderValue> {
        self.set_cookie.get(index).map(|v| &v[usize::from(secure)])
    }
}

/// 64 bits of xxh3 over `pool \0 address`.
fn backend_id(pool: &str, b: &Backend) -> u64 {
    xxh3_64_with_seed(format!("{pool}\0{}", b.addr).as_bytes(), SEED_ID)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::balance::test_support::backends;

    #[test]
    fn cookie_names_its_backend_without_its_address() {
        let b = backends(&[1, 1, 1]);
        let s = Sticky::new("web", "SID", &b);
        for i in 0..3 {
            let v = s.set_cookie(i, false).unwrap().to_str().unwrap();
            assert!(v.starts_with("SID=") && v.ends_with("; Path=/; HttpOnly; SameSite=Lax"));
            assert!(!v.contains("10.0.0") && !v.contains(":80"), "{v}");
            let id = &v[4..20];
            assert_eq!(s.lookup(id), Some(i));
            let secure = s.set_cookie(i, true).unwrap().to_str().unwrap();
            assert_eq!(secure, format!("{v}; Secure"));
        }
        // Stable across builds, different per pool.
        let again = Sticky::new("web", "SID", &b);
        assert_eq!(s.set_cookie(1, false), again.set_cookie(1, false));
        let other = Sticky::new("api", "SID", &b);
        assert_ne!(s.set_cookie(1, false), other.set_cookie(1, false));
        assert_eq!(s.lookup("0123456789abcdef"), None);
        assert_eq!(s.lookup("nope"), None);
        assert_eq!(s.lookup("+123456789abcdef"), None);
    }

    #[test]
    fn sticks_while_eligible_then_round_robin() {
        let b = backends(&[1, 1, 1]);
        let s = Sticky::new("web", "SID", &b);
        for _ in 0..10 {
            assert_eq!(s.pick(&b, Some(2), |_| true), Some(2));
        }
        for _ in 0..10 {
            let i = s.pick(&b, Some(2), |i| i != 2).unwrap();
            assert_ne!(i, 2);
        }
        let seq: Vec<usize> = (0..3)
            .map(|_| s.pick(&b, None, |_| true).unwrap())
            .collect();
        let mut sorted = seq.clone();
        sorted.sort();
        assert_eq!(sorted, [0, 1, 2]);
        assert_eq!(s.pick(&b, Some(7), |_| false), None);
    }
}
