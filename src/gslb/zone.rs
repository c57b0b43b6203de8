//! The zone as the responder answers it, compiled once per snapshot, and the choice of the
//! region whose vips answer a query.
//!
//! Why compiled: a query must not build names, records or metric label sets. Every record the
//! zone can answer (per name and region, A and AAAA apart), the SOA, the NS set and the
//! `fulcrum_gslb_queries_total` handles are made when a new snapshot is first seen (the zone
//! remembers which, weakly); health is read from the snapshot of each query (atomics shared
//! across snapshots), so health and reloads are both followed.
//!
//! The choice is a pure function of config, querier and health, so every instance with the
//! same config and the same view of health answers the same ([`choose`]):
//! - a querier of a known region gets the first region of its order (itself, then its
//!   `failover` list) in which every pool of the name has an available backend (`select`'s
//!   test: up, not draining, not ejected); when none has, its own region (the proxy there
//!   still fails over on its own);
//! - a querier of unknown region is placed by the first pool's `region_split`: its /24 (IPv4)
//!   or /48 (IPv6) is hashed (FNV-1a, fixed, so every build and instance agrees) onto the
//!   weights of the split regions that qualify; with no split, or none qualifying, the first
//!   region in file order that qualifies, else the first region.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Weak};

use hickory_proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_proto::rr::{LowerName, Name, RData, Record};
use prometheus::IntCounter;

use crate::config::{GslbConfig, PoolId};
use crate::region::{RegionId, Regions};
use crate::snapshot::Snapshot;

/// SOA timers (seconds): refresh, retry, expire. Nothing transfers this zone (every instance
/// is a primary built from the same config), so they only need to be sane.
const SOA_TIMERS: (i32, i32, i32) = (3600, 600, 86_400);

/// The zone of one snapshot.
pub(super) struct Zone {
    /// The snapshot it was built from. Weak: an idle responder does not keep an old snapshot
    /// alive, and the allocation (so the address compared) is not reused while this lives.
    built_from: Weak<Snapshot>,
    pub apex: LowerName,
    pub soa: Record,
    pub ns: Vec<Record>,
    names: HashMap<LowerName, usize>,
    records: Vec<Answers>,
    /// Names above a record's, inside the zone (`b.example.com` of `a.b.example.com`): they
    /// exist (NOERROR, no data), they are not NXDOMAIN.
    empty: std::collections::HashSet<LowerName>,
}

/// One name's answers.
pub(super) struct Answers {
    pools: Box<[PoolId]>,
    split: Box<[(RegionId, u32)]>,
    /// Per region id: the A records, then the AAAA records.
    v4: Box<[Box<[Record]>]>,
    v6: Box<[Box<[Record]>]>,
    /// Per region id: `fulcrum_gslb_queries_total{name, region}`.
    counters: Box<[Option<IntCounter>]>,
    /// The number of regions (every per-region table has this length).
    regions: usize,
}

/// What a query name is to this zone.
pub(super) enum Found<'a> {
    /// Not in the zone: REFUSED.
    Outside,
    /// Inside the zone, not a name of it: NXDOMAIN.
    Missing,
    /// A name with no records of its own but names below it: no data.
    Empty,
    /// The apex (`answers` when a record names the apex too).
    Apex(Option<&'a Answers>),
    /// A record's name.
    Name(&'a Answers),
}

impl Zone {
    /// The zone of `snapshot`; `None` when it has no `[gslb]`.
    pub fn build(snapshot: &Arc<Snapshot>, metrics: bool) -> Option<Zone> {
        let g: &GslbConfig = snapshot.gslb.as_deref()?;
        let ttl = ttl_secs(g);
        let fqdn = |n: &str| Name::from_ascii(format!("{n}.")).ok();
        let apex_name = fqdn(&g.zone)?;
        let ns_names: Vec<Name> = g.ns.iter().filter_map(|n| fqdn(n)).collect();
        let mname = ns_names
            .first()
            .cloned()
            .unwrap_or_else(|| apex_name.clone());
        let rname = fqdn(&g.hostmaster).unwrap_or_else(|| apex_name.clone());
        let (refresh, retry, expire) = SOA_TIMERS;
        let soa = Record::from_rdata(
            apex_name.clone(),
            ttl,
            RData::SOA(SOA::new(mname, rname, 1, refresh, retry, expire, ttl)),
        );
        let ns = ns_names
            .into_iter()
            .map(|n| Record::from_rdata(apex_name.clone(), ttl, RData::NS(NS(n))))
            .collect();
        let regions = g.vips.len();
        let mut names = HashMap::new();
        let mut records = Vec::new();
        let mut empty = std::collections::HashSet::new();
        for r in &g.records {
            let Some(name) = fqdn(&r.name) else { continue };
            let mut above = name.base_name();
            while above.num_labels() > apex_name.num_labels() {
                empty.insert(LowerName::from(above.clone()));
                above = above.base_name();
            }
            let per_region = |v6: bool| -> Box<[Box<[Record]>]> {
                g.vips
                    .iter()
                    .map(|vips| {
                        vips.iter()
                            .filter_map(|ip| match (ip, v6) {
                                (IpAddr::V4(a), false) => Some(RData::A(A(*a))),
                                (IpAddr::V6(a), true) => Some(RData::AAAA(AAAA(*a))),
                                _ => None,
                            })
                            .map(|rd| Record::from_rdata(name.clone(), ttl, rd))
                            .collect()
                    })
                    .collect()
            };
            let counters = (0..regions)
                .map(|id| {
                    let region = RegionId::try_from(id).ok()?;
                    let region = snapshot.regions.name(region)?;
                    metrics.then(|| {
                        crate::metrics::get()
                            .gslb_queries
                            .with_label_values(&[r.name.as_str(), &**region])
                    })
                })
                .collect();
            names.insert(LowerName::from(name.clone()), records.len());
            records.push(Answers {
                pools: r.pools.clone().into_boxed_slice(),
                split: r
                    .split
                    .iter()
                    .filter_map(|&(id, w)| Some((RegionId::try_from(id).ok()?, w)))
                    .collect(),
                v4: per_region(false),
                v6: per_region(true),
                counters,
                regions,
            });
        }
        Some(Zone {
            built_from: Arc::downgrade(snapshot),
            apex: LowerName::from(apex_name),
            soa,
            ns,
            names,
            records,
            empty,
        })
    }

    /// Whether this zone was built from `snapshot`.
    pub fn is_of(&self, snapshot: &Arc<Snapshot>) -> bool {
        std::ptr::eq(self.built_from.as_ptr(), Arc::as_ptr(snapshot))
    }

    /// What `name` is here.
    pub fn find(&self, name: &LowerName) -> Found<'_> {
        if !self.apex.zone_of(name) {
            return Found::Outside;
        }
        let answers = self.names.get(name).and_then(|&i| self.records.get(i));
        if *name == self.apex {
            return Found::Apex(answers);
        }
        match answers {
            Some(a) => Found::Name(a),
            None if self.empty.contains(name) => Found::Empty,
            None => Found::Missing,
        }
    }

    /// The region whose vips answer `answers` for `querier` at `now` (clock ms), with the
    /// health of `snap` (the snapshot this zone is of).
    pub fn region_for(
        &self,
        snap: &Snapshot,
        answers: &Answers,
        querier: IpAddr,
        now: u64,
    ) -> RegionId {
        let available = |r: RegionId| {
            answers.pools.iter().all(|p| {
                snap.pools
                    .get(p.index())
                    .is_some_and(|pool| crate::select::has_fresh(pool, r, now))
            })
        };
        choose(
            &snap.regions,
            querier,
            &answers.split,
            answers.regions,
            available,
        )
    }
}

impl Answers {
    /// The A (`v6 = false`) or AAAA records of region `r`.
    pub fn records(&self, r: RegionId, v6: bool) -> &[Record] {
        let table = if v6 { &self.v6 } else { &self.v4 };
        table.get(usize::from(r)).map_or(&[], |rs| rs)
    }

    /// Counts one answer from region `r`.
    pub fn count(&self, r: RegionId) {
        if let Some(Some(c)) = self.counters.get(usize::from(r)) {
            c.inc();
        }
    }
}

/// `ttl` in whole seconds, as DNS carries it.
fn ttl_secs(g: &GslbConfig) -> u32 {
    u32::try_from(g.ttl.as_secs()).unwrap_or(u32::MAX)
}

/// The region answered for `querier` (see the module doc): `regions` maps it and gives the
/// failover orders, `split` weighs unknown queriers, `count` regions exist, and `available`
/// says whether every pool of the name has an available backend in a region.
pub(super) fn choose(
    regions: &Regions,
    querier: IpAddr,
    split: &[(RegionId, u32)],
    count: usize,
    available: impl Fn(RegionId) -> bool,
) -> RegionId {
    if let Some(own) = regions.lookup(querier) {
        return regions
            .order(own)
            .iter()
            .copied()
            .find(|&r| available(r))
            .unwrap_or(own);
    }
    let total: u64 = split
        .iter()
        .filter(|&&(r, _)| available(r))
        .map(|&(_, w)| u64::from(w))
        .sum();
    if total > 0 {
        let mut point = spread(querier) % total;
        for &(r, w) in split.iter().filter(|&&(r, _)| available(r)) {
            if point < u64::from(w) {
                return r;
            }
            point -= u64::from(w);
        }
    }
    (0..count)
        .filter_map(|i| RegionId::try_from(i).ok())
        .find(|&r| available(r))
        .unwrap_or(0)
}

/// A fixed hash of the querier's network (/24 or /48): the same on every instance and build,
/// and the same for a resolver's neighbours (they are one site more often than not).
fn spread(ip: IpAddr) -> u64 {
    let mut net = [0u8; 6];
    let len = match ip.to_canonical() {
        IpAddr::V4(a) => {
            net[..3].copy_from_slice(&a.octets()[..3]);
            3
        }
        IpAddr::V6(a) => {
            net.copy_from_slice(&a.octets()[..6]);
            6
        }
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in &net[..len] {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64's finalizer: FNV's low bits are poor for a modulo.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::RegionConfig;

    fn regions() -> Regions {
        let region = |name: &str, cidr: &str, failover: &[&str]| RegionConfig {
            name: name.into(),
            cidrs: vec![cidr.parse().unwrap()],
            countries: vec![],
            failover: failover.iter().map(|f| f.to_string()).collect(),
        };
        Regions::with_reader(
            &[
                region("east", "10.1.0.0/16", &["west"]),
                region("west", "10.2.0.0/16", &["east"]),
                region("south", "10.3.0.0/16", &[]),
            ],
            None,
        )
        .unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn known_queriers_get_their_region_then_its_failover() {
        let r = regions();
        assert_eq!(choose(&r, ip("10.1.0.9"), &[], 3, |_| true), 0);
        assert_eq!(choose(&r, ip("10.2.0.9"), &[], 3, |_| true), 1);
        assert_eq!(choose(&r, ip("10.1.0.9"), &[], 3, |x| x != 0), 1);
        // Nothing available in its order: its own region.
        assert_eq!(choose(&r, ip("10.3.0.9"), &[], 3, |x| x != 2), 2);
        assert_eq!(choose(&r, ip("10.1.0.9"), &[], 3, |_| false), 0);
    }

    #[test]
    fn unknown_queriers_follow_the_split_by_network_not_by_turn() {
        let r = regions();
        let split = [(0, 70), (1, 30)];
        let mut counts = [0usize; 3];
        for a in 0..=255u8 {
            for b in (0..=255u8).step_by(5) {
                let q = IpAddr::from([100, a, b, 7]);
                let got = choose(&r, q, &split, 3, |_| true);
                // Same /24, same answer, every time.
                assert_eq!(
                    got,
                    choose(&r, IpAddr::from([100, a, b, 200]), &split, 3, |_| true)
                );
                counts[usize::from(got)] += 1;
            }
        }
        let total = (counts[0] + counts[1]) as f64;
        let east = counts[0] as f64 / total;
        assert!((0.65..0.75).contains(&east), "{counts:?}");
        assert_eq!(counts[2], 0);
        // A split region without backends drops out; none left: first available in file order.
        assert_eq!(choose(&r, ip("100.1.2.3"), &split, 3, |x| x == 1), 1);
        assert_eq!(choose(&r, ip("100.1.2.3"), &split, 3, |x| x == 2), 2);
        assert_eq!(choose(&r, ip("100.1.2.3"), &[], 3, |x| x != 0), 1);
        assert_eq!(choose(&r, ip("2001:db8::1"), &[], 3, |_| false), 0);
    }

    #[test]
    fn the_zone_finds_its_names_and_answers_by_region_and_health() {
        let text = r#"
[[listener]]
name = "web"
bind = "127.0.0.1:0"
pool = "web"
[[pool]]
name = "web"
backends = [{ address = "127.0.0.1:1", region = "east" }, { address = "127.0.0.1:2", region = "west" }]
[[region]]
name = "east"
cidrs = ["10.1.0.0/16"]
failover = ["west"]
vips = ["192.0.2.1", "192.0.2.2", "2001:db8::1"]
[[region]]
name = "west"
cidrs = ["10.2.0.0/16"]
vips = ["192.0.2.9"]
[gslb]
zone = "example.com"
records = [{ name = "www.example.com", pools = ["web"] }, { name = "a.b.example.com", pools = ["web"] }]
"#;
        let config =
            crate::config::Config::from_toml(text, std::path::Path::new("t.toml")).unwrap();
        let snap = Arc::new(Snapshot::build(&config, None, false));
        let zone = Zone::build(&snap, false).unwrap();
        assert!(zone.is_of(&snap));
        let name = |n: &str| LowerName::from(Name::from_ascii(n).unwrap());
        assert!(matches!(zone.find(&name("example.org.")), Found::Outside));
        assert!(matches!(
            zone.find(&name("nope.example.com.")),
            Found::Missing
        ));
        assert!(matches!(zone.find(&name("b.example.com.")), Found::Empty));
        assert!(matches!(
            zone.find(&name("example.com.")),
            Found::Apex(None)
        ));
        let Found::Name(www) = zone.find(&name("WWW.example.com.")) else {
            panic!("www not found")
        };
        let now = crate::clock::now_ms();
        assert_eq!(zone.region_for(&snap, www, ip("10.1.9.9"), now), 0);
        assert_eq!(www.records(0, false).len(), 2);
        assert_eq!(www.records(0, true).len(), 1);
        assert_eq!(www.records(1, true).len(), 0);
        // East's backend drained: east's queriers get west.
        snap.pools[0].backends[0].state.set_draining(true);
        assert_eq!(zone.region_for(&snap, www, ip("10.1.9.9"), now), 1);
        // A rebuilt snapshot is another zone's.
        let next = Arc::new(Snapshot::build(&config, Some(&snap), false));
        assert!(!zone.is_of(&next));
    }

    #[test]
    fn the_spread_is_fixed() {
        // Instances built by other compilers must agree: a changed hash is a changed contract.
        assert_eq!(spread(ip("192.0.2.1")), spread(ip("192.0.2.254")));
        assert_eq!(spread(ip("::ffff:192.0.2.1")), spread(ip("192.0.2.1")));
        assert_ne!(spread(ip("192.0.2.1")), spread(ip("192.0.3.1")));
        assert_eq!(spread(ip("192.0.2.1")), 0x607c_af6b_a07b_26de);
    }
}
