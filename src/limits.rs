//! Per-client limits of one listener (`[listener.limits]`): a request rate, answered 429 past
//! it, and a cap on each client's open connections, enforced at accept. The client is the
//! address the caller resolved: `client_ip::resolve` (trusted `X-Forwarded-For`) for
//! requests, the peer after any PROXY header for connections.
//!
//! The rate is GCRA from the `governor` crate, one state per client in governor's
//! `DashMapStateStore`: a `DashMap` split into shards (four per core) of `IpAddr -> AtomicU64`.
//! Why that store: a request for a known client takes one shard's read lock (an atomic, shared
//! with every other reader, never parked unless a writer holds that shard) and updates its
//! state with a compare-and-swap; only a client's first request takes the shard's write lock,
//! to insert it. governor's other store is one `Mutex<HashMap>`, which every worker would
//! queue on. The hasher is std's `RandomState` (SipHash, random keys): clients choose the
//! keys, so a predictable hash would let them pile into one bucket. Nothing is allocated per
//! request except what that insert grows.
//!
//! A client may send `requests_per_second + burst` requests at once, then one every
//! `1 / requests_per_second` s (governor's quota: that rate, a burst of `rps + burst`).
//!
//! Memory: [`ClientLimits::sweep`] (every [`SWEEP_EVERY`] on the control runtime) removes
//! the clients whose state is indistinguishable from a fresh one (governor's `retain_recent`:
//! `(rps + burst + 1) / rps` seconds after their last request) and gives the table's memory
//! back once it has halved. The table therefore holds the clients seen in that time plus one
//! sweep interval, each one 33-byte slot (`IpAddr` and the 8-byte state padded to 32, and a
//! control byte) in a table kept between 7/16 and 7/8 full: 38 to 76 bytes per client, 66 MiB
//! for 1,000,000 clients (measured: README, `cargo bench --bench figures -- limits`).
//!
//! Open connections are counted in a `DashMap<IpAddr, u32>` of the clients that have one: a
//! [`ClientConnection`] guard counts one and its drop uncounts it, removing the client with its
//! last connection, so that table never holds more than the listener's open connections.
//!
//! Reloads: the snapshot hands the previous [`ClientLimits`] of a listener that stays to
//! [`ClientLimits::build`]; the rate state is kept while `requests_per_second` and `burst` are
//! unchanged (governor's quota is fixed per limiter: a changed rate starts from fresh), the
//! connection counts always (the guards of open connections point at them).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::config::LimitsConfig;
use crate::metrics::LimitedCounters;

/// How often [`ClientLimits::sweep`] runs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Tables smaller than this are never shrunk: not worth a rehash.
const SHRINK_FLOOR: usize = 4096;

/// governor's keyed GCRA limiter over the sharded `DashMap` store (named, not the
/// `DefaultKeyedRateLimiter` alias, so a change of governor's default store cannot slip in).
/// Whose share a request or connection counts against: an IPv4 client by its address (an
/// IPv4-mapped IPv6 address as the IPv4 one), an IPv6 client by its /64. A host is given a
/// whole /64 (RFC 6177; SLAAC and privacy addresses rotate inside it), so keying by the full
/// address would let one client mint 2^64 fresh keys and never be limited.
#[inline]
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

type Limiter = RateLimiter<IpAddr, DashMapStateStore<IpAddr>, DefaultClock>;

/// The limits of one listener, in its snapshot.
#[derive(Debug)]
pub struct ClientLimits {
    rate: Option<Rate>,
    /// `connections_per_client`; 0 = off.
    per_client: u32,
    open: Arc<OpenTable>,
    counters: LimitedCounters,
}

/// A request rate and the clients' states under it.
#[derive(Debug, Clone)]
struct Rate {
    limiter: Arc<Limiter>,
    /// `(requests_per_second, burst)` it was built for: a reload keeps it only for the same.
    built_for: (u32, u32),
    /// Entries before the last sweeps (since the last shrink): the table's high-water mark.
    peak: Arc<AtomicUsize>,
}

/// Open connections per client; a client is in it only while it has one.
#[derive(Debug, Default)]
struct OpenTable(DashMap<IpAddr, u32>);

/// A connection over the client's `connections_per_client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit;

/// One open connection counted for its client; uncounted on drop.
#[derive(Debug)]
pub struct ClientConnection {
    open: Arc<OpenTable>,
    client: IpAddr,
}

impl Drop for ClientConnection {
    fn drop(&mut self) {
        if let Entry::Occupied(mut e) = self.open.0.entry(self.client) {
            if *e.get() <= 1 {
                e.remove();
            } else {
                *e.get_mut() -= 1;
            }
        }
    }
}

impl ClientLimits {
    /// The limits of listener `listener` from `config`; `previous` is this listener's in the
    /// snapshot before (a reload), whose state is kept as the module doc says. `metrics`:
    /// resolve the `fulcrum_limited_total` handles.
    pub fn build(
        config: &LimitsConfig,
        previous: Option<&ClientLimits>,
        listener: &str,
        metrics: bool,
    ) -> ClientLimits {
        let built_for = (config.requests_per_second, config.burst);
        let rate = NonZeroU32::new(config.requests_per_second).map(|rps| {
            let kept = previous
                .and_then(|p| p.rate.as_ref())
                .filter(|r| r.built_for == built_for);
            match kept {
                Some(r) => r.clone(),
                None => {
                    let burst =
                        NonZeroU32::new(rps.get().saturating_add(config.burst)).unwrap_or(rps);
                    let quota = Quota::per_second(rps).allow_burst(burst);
                    Rate {
                        limiter: Arc::new(RateLimiter::dashmap(quota)),
                        built_for,
                        peak: Arc::default(),
                    }
                }
            }
        });
        let open = previous.map_or_else(Arc::default, |p| Arc::clone(&p.open));
        ClientLimits {
            counters: LimitedCounters::build(
                listener,
                rate.is_some(),
                config.connections_per_client > 0,
                metrics,
            ),
            rate,
            per_client: config.connections_per_client,
            open,
        }
    }

    /// No limit at all (listeners built without a config).
    #[cfg(test)]
    pub fn off() -> ClientLimits {
        ClientLimits::build(&LimitsConfig::default(), None, "", false)
    }

    /// One request of `client`: `Err(wait)` when it is over its rate, `wait` being how long
    /// until its next request would pass. Counted in `fulcrum_limited_total`.
    #[inline]
    pub fn check_request(&self, client: IpAddr) -> Result<(), Duration> {
        let Some(rate) = &self.rate else {
            return Ok(());
        };
        match rate.limiter.check_key(&client_key(client)) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                if let Some(c) = &self.counters.requests {
                    c.inc();
                }
                Err(not_until.wait_time_from(rate.limiter.clock().now()))
            }
        }
    }

    /// A new connection of `client`: `Ok(Some(guard))` counts it until the guard drops,
    /// `Ok(None)` when `connections_per_client` is off, `Err` when the client already has its
    /// share open (counted in `fulcrum_limited_total`; the caller closes it).
    pub fn admit(&self, client: IpAddr) -> Result<Option<ClientConnection>, OverLimit> {
        if self.per_client == 0 {
            return Ok(None);
        }
        let client = client_key(client);
        let mut open = self.open.0.entry(client).or_insert(0);
        if *open >= self.per_client {
            drop(open);
            if let Some(c) = &self.counters.connections {
                c.inc();
            }
            return Err(OverLimit);
        }
        *open += 1;
        drop(open);
        Ok(Some(ClientConnection {
            open: Arc::clone(&self.open),
            client,
        }))
    }

    /// Forgets the clients whose rate state is back to fresh, and returns memory once a table
    /// has shrunk to half of its high-water mark. Off the request path (control runtime): it
    /// write-locks one shard at a time while it walks it.
    pub fn sweep(&self) {
        if let Some(rate) = &self.rate {
            let before = rate.limiter.len();
            rate.limiter.retain_recent();
            let after = rate.limiter.len();
            let peak = rate.peak.fetch_max(before, Ordering::Relaxed).max(before);
            if peak >= SHRINK_FLOOR && after <= peak / 2 {
                rate.limiter.shrink_to_fit();
                rate.peak.store(after, Ordering::Relaxed);
            }
        }
        let open = &self.open.0;
        if open.capacity() >= SHRINK_FLOOR && open.len() * 4 < open.capacity() {
            open.shrink_to_fit();
        }
    }

    /// Clients with a rate state (tests and the memory figure).
    pub fn tracked_clients(&self) -> usize {
        self.rate.as_ref().map_or(0, |r| r.limiter.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn limits(rps: u32, burst: u32, per_client: u32) -> ClientLimits {
        let config = LimitsConfig {
            requests_per_second: rps,
            burst,
            connections_per_client: per_client,
        };
        ClientLimits::build(&config, None, "t", false)
    }

    #[test]
    fn an_ipv6_client_is_limited_by_its_64_wherever_in_it_it_moves() {
        let l = ClientLimits::build(
            &LimitsConfig {
                requests_per_second: 1,
                burst: 0,
                connections_per_client: 1,
            },
            None,
            "",
            false,
        );
        assert_eq!(l.check_request(ip("2001:db8:1:2::1")), Ok(()));
        assert!(l
            .check_request(ip("2001:db8:1:2:ffff:1234:5678:9abc"))
            .is_err());
        assert_eq!(
            l.check_request(ip("2001:db8:1:3::1")),
            Ok(()),
            "another /64"
        );
        let held = l.admit(ip("2001:db8:1:2::7")).expect("first connection");
        assert!(l.admit(ip("2001:db8:1:2::8")).is_err(), "same /64");
        assert!(l.admit(ip("2001:db8:1:3::8")).is_ok(), "another /64");
        drop(held);
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn rate_plus_burst_at_once_then_429_with_the_wait() {
        let l = limits(1, 2, 0);
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(l.check_request(a), Ok(()));
        }
        let wait = l.check_request(a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another client is not affected; the v4-mapped form is the same client.
        assert_eq!(l.check_request(ip("192.0.2.2")), Ok(()));
        assert!(l.check_request(ip("::ffff:192.0.2.1")).is_err());
        assert_eq!(l.tracked_clients(), 2);
    }

    #[test]
    fn off_limits_pass_everything_and_track_nothing() {
        let l = ClientLimits::off();
        for _ in 0..1000 {
            assert_eq!(l.check_request(ip("192.0.2.1")), Ok(()));
        }
        assert!(l.admit(ip("192.0.2.1")).unwrap().is_none());
        assert_eq!(l.tracked_clients(), 0);
        assert!(l.open.0.is_empty());
    }

    #[test]
    fn connections_are_counted_per_client_and_uncounted_on_close() {
        let l = limits(0, 0, 2);
        let a = ip("192.0.2.1");
        let first = l.admit(a).unwrap();
        let second = l.admit(a).unwrap();
        assert_eq!(l.admit(a).unwrap_err(), OverLimit);
        assert!(l.admit(ip("192.0.2.2")).unwrap().is_some());
        drop(first);
        let third = l.admit(a).unwrap();
        drop((second, third));
        // A client with no connection left is not in the table.
        assert!(l.open.0.is_empty(), "{:?}", l.open.0);
    }

    #[test]
    fn a_reload_keeps_the_state_of_an_unchanged_rate_and_every_open_count() {
        let before = limits(1, 0, 1);
        let a = ip("192.0.2.1");
        assert_eq!(before.check_request(a), Ok(()));
        let conn = before.admit(a).unwrap();
        let same = ClientLimits::build(
            &LimitsConfig {
                requests_per_second: 1,
                burst: 0,
                connections_per_client: 1,
            },
            Some(&before),
            "t",
            false,
        );
        assert!(same.check_request(a).is_err(), "rate state kept");
        assert_eq!(same.admit(a).unwrap_err(), OverLimit, "open count kept");
        let changed = ClientLimits::build(
            &LimitsConfig {
                requests_per_second: 2,
                burst: 0,
                connections_per_client: 1,
            },
            Some(&same),
            "t",
            false,
        );
        assert_eq!(changed.check_request(a), Ok(()), "a new rate starts fresh");
        drop(conn);
        assert!(changed.admit(a).unwrap().is_some());
    }

    #[test]
    fn sweep_forgets_clients_back_to_fresh_and_keeps_the_others() {
        // 1000/s and no burst: a client is fresh again 1 ms after its request.
        let l = limits(1000, 0, 0);
        for i in 0..100u8 {
            assert_eq!(l.check_request(IpAddr::from([198, 51, 100, i])), Ok(()));
        }
        assert_eq!(l.tracked_clients(), 100);
        std::thread::sleep(Duration::from_millis(5));
        l.sweep();
        assert_eq!(l.tracked_clients(), 0);
    }
}
