//! The client's address: the peer, or what trusted proxies in front of Fulcrum say it is.
//!
//! Only a peer inside `trusted_proxies` is believed. Its `X-Forwarded-For` list is read from the
//! right (the entry its own hop appended) leftwards, skipping addresses that are themselves
//! trusted proxies; the first untrusted one is the client. Anything left of it was written by
//! the client and could be forged, so it is never read. An entry that does not parse stops the
//! walk: the last trusted hop is then the best known address. A peer outside `trusted_proxies`
//! is the client, whatever its headers say.
//!
//! The caller hands in the header values as bytes, so this stays free of HTTP types and the
//! PROXY-protocol path can use [`is_trusted`] the same way.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// Whether `ip` is inside one of the `trusted` networks.
#[inline]
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client address of a request from `peer` carrying `forwarded_for` (every
/// `X-Forwarded-For` value, in order).
pub fn resolve<'a, I>(peer: IpAddr, trusted: &[IpNet], forwarded_for: I) -> IpAddr
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: DoubleEndedIterator,
{
    if trusted.is_empty() || !is_trusted(peer, trusted) {
        return peer;
    }
    let mut client = peer;
    for value in forwarded_for.into_iter().rev() {
        for entry in value.rsplit(|&b| b == b',') {
            let Some(ip) = parse_entry(entry) else {
                return client;
            };
            client = ip;
            if !is_trusted(ip, trusted) {
                return ip;
            }
        }
    }
    client
}

/// One list entry: `1.2.3.4`, `2001:db8::1`, `1.2.3.4:5678` or `[2001:db8::1]:5678`.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim();
    text.parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn res(peer: &str, trusted: &[&str], xff: &[&str]) -> IpAddr {
        resolve(ip(peer), &nets(trusted), xff.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn untrusted_peer_is_the_client() {
        assert_eq!(res("192.0.2.7", &[], &["1.1.1.1"]), ip("192.0.2.7"));
        assert_eq!(
            res("192.0.2.7", &["10.0.0.0/8"], &["1.1.1.1"]),
            ip("192.0.2.7")
        );
    }

    #[test]
    fn rightmost_untrusted_entry_from_a_trusted_peer() {
        let t = ["10.0.0.0/8"];
        assert_eq!(res("10.0.0.1", &t, &["1.1.1.1"]), ip("1.1.1.1"));
        // The forged left entry is never read.
        assert_eq!(
            res("10.0.0.1", &t, &["6.6.6.6, 1.1.1.1, 10.9.9.9"]),
            ip("1.1.1.1")
        );
        // Several header lines are one list.
        assert_eq!(
            res("10.0.0.1", &t, &["6.6.6.6", "2.2.2.2:4000, 10.1.1.1"]),
            ip("2.2.2.2")
        );
        assert_eq!(
            res("10.0.0.1", &t, &["[2001:db8::5]:80"]),
            ip("2001:db8::5")
        );
    }

    #[test]
    fn all_trusted_or_garbage_keeps_the_last_trusted_hop() {
        let t = ["10.0.0.0/8"];
        assert_eq!(res("10.0.0.1", &t, &["10.2.2.2"]), ip("10.2.2.2"));
        assert_eq!(res("10.0.0.1", &t, &["1.1.1.1, junk"]), ip("10.0.0.1"));
        assert_eq!(res("10.0.0.1", &t, &[]), ip("10.0.0.1"));
        assert_eq!(res("::ffff:10.0.0.1", &t, &["1.1.1.1"]), ip("1.1.1.1"));
    }
}
